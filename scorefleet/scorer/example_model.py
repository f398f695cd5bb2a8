"""Build the example ONNX models reproducibly from SYNTHETIC email-security features.

    python -m scorefleet.scorer.example_model --out DIR

Nothing here is real data: the features and labels are drawn from a hand-written generator
(fixed seed) that only mimics the shape of an email-security detector's inputs, so that the
scorer, its tests and its benchmark have a model of realistic cost (100 trees of depth 5: a few
microseconds per row in onnxruntime) without shipping anyone's data. Users bring their own ONNX.

Written to DIR:
  model-v1.onnx   gradient-boosted trees (ai.onnx.ml TreeEnsembleRegressor + Sigmoid)
  model-v2.onnx   the same recipe on a fresh sample with more trees: scores close to v1 but not
                  identical, so shadow comparisons (agreement, flips) have something to measure
  broken.onnx     a truncated copy of v1, for tests of load failures
  manifest.json   feature names, shapes and the sha256 of each file
The sha256 of each file is printed; building twice gives identical bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

FEATURES: tuple[str, ...] = (
    "sender_reputation", "sender_domain_age_log_days", "spf_pass", "dkim_pass", "dmarc_pass",
    "url_count", "unique_url_domains", "shortened_url_count", "ip_literal_url", "attachment_count",
    "attachment_entropy", "has_macro", "has_executable", "display_name_mismatch",
    "reply_to_mismatch", "first_time_sender", "recipient_count_log", "subject_urgency",
    "html_text_ratio", "hidden_text_ratio", "login_form_present", "brand_impersonation",
    "lookalike_domain_distance", "sender_geo_risk", "send_hour_anomaly", "message_size_log_kb",
    "received_header_count", "tls_used", "bulk_sender", "account_age_log_days",
    "prior_user_reports", "language_mismatch",
)
NUM_FEATURES = len(FEATURES)
INPUT_NAME = "features"
OUTPUT_NAME = "score"


def synthetic_features(n: int, seed: int = 0) -> FloatArray:
    """Draw n synthetic events, shape [n, 32], float32. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, NUM_FEATURES))
    x = np.empty((n, NUM_FEATURES), dtype=np.float64)
    x[:, 0] = rng.beta(5, 2, n)                           # sender_reputation
    x[:, 1] = rng.gamma(3.0, 1.5, n)                      # domain age (log days)
    for j in (2, 3, 4):                                   # SPF / DKIM / DMARC pass
        x[:, j] = u[:, j] < 0.85
    x[:, 5] = rng.poisson(2.0, n)                         # url_count
    x[:, 6] = np.minimum(x[:, 5], rng.poisson(1.2, n))    # unique url domains
    x[:, 7] = rng.binomial(x[:, 5].astype(np.int64), 0.08)
    x[:, 8] = u[:, 8] < 0.02
    x[:, 9] = rng.poisson(0.4, n)
    x[:, 10] = np.where(x[:, 9] > 0, rng.uniform(3.0, 8.0, n), 0.0)
    x[:, 11] = (x[:, 9] > 0) & (u[:, 11] < 0.06)
    x[:, 12] = (x[:, 9] > 0) & (u[:, 12] < 0.02)
    for j, p in ((13, 0.05), (14, 0.07), (15, 0.3), (20, 0.04), (27, 0.9), (28, 0.25),
                 (31, 0.05)):
        x[:, j] = u[:, j] < p
    x[:, 16] = rng.gamma(1.2, 0.8, n)
    x[:, 17] = rng.beta(1.5, 6, n)
    x[:, 18] = rng.uniform(0, 1, n)
    x[:, 19] = rng.beta(1, 20, n)
    x[:, 21] = rng.beta(1, 12, n)
    x[:, 22] = rng.exponential(4.0, n)
    x[:, 23] = rng.beta(2, 8, n)
    x[:, 24] = rng.beta(2, 10, n)
    x[:, 25] = rng.normal(3.5, 1.0, n)
    x[:, 26] = rng.poisson(5.0, n)
    x[:, 29] = rng.gamma(4.0, 1.2, n)
    x[:, 30] = rng.poisson(0.1, n)
    return x.astype(np.float32)


def synthetic_labels(x: FloatArray, seed: int = 0) -> npt.NDArray[np.float64]:
    """A hand-written 'ground truth' with interactions and noise: ~10% positives."""
    rng = np.random.default_rng(seed + 1_000_003)
    f = x.astype(np.float64)
    auth_fail = 3.0 - f[:, 2] - f[:, 3] - f[:, 4]
    logit = (
        -4.2
        + 2.5 * (1.0 - f[:, 0]) + 0.6 * auth_fail
        + 1.2 * f[:, 7] + 2.0 * f[:, 8] + 1.8 * f[:, 11] + 2.5 * f[:, 12]
        + 1.4 * f[:, 13] * f[:, 15] + 1.1 * f[:, 14]
        + 3.0 * f[:, 17] + 4.0 * f[:, 19] + 2.2 * f[:, 20] * (f[:, 21] > 0.1)
        + 5.0 * f[:, 21] + 1.5 * (f[:, 22] < 1.5) + 2.0 * f[:, 23]
        - 0.25 * f[:, 1] - 0.15 * f[:, 29] + 0.8 * f[:, 30] + 0.5 * f[:, 31]
    )
    logit += rng.normal(0.0, 0.7, len(f))
    return (rng.random(len(f)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)


@dataclass(frozen=True)
class Tree:
    """Flat node arrays; leaf nodes have feature == -1."""

    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    value: list[float]


def _fit_tree(binned: npt.NDArray[np.int64], edges: list[FloatArray],
              grad: npt.NDArray[np.float64], hess: npt.NDArray[np.float64],
              depth: int, lam: float = 1.0) -> Tree:
    """One regression tree on binned features by histogram split search (Newton leaves)."""
    tree = Tree([], [], [], [], [])
    nbins = max(len(e) for e in edges) + 1
    nfeat = binned.shape[1]
    offsets = np.arange(nfeat, dtype=np.int64) * nbins
    # Split after bin b is only meaningful where feature j has an edge b.
    valid = np.arange(nbins - 1)[None, :] < np.array([len(e) for e in edges])[:, None]

    def grow(idx: npt.NDArray[np.int64], d: int) -> int:
        node = len(tree.feature)
        tree.feature.append(-1)
        tree.threshold.append(0.0)
        tree.left.append(-1)
        tree.right.append(-1)
        g, h = grad[idx], hess[idx]
        tree.value.append(float(-g.sum() / (h.sum() + lam)))
        if d == depth or len(idx) < 40:
            return node
        parent = g.sum() ** 2 / (h.sum() + lam)
        # All features' histograms in one bincount: column j's bins live at j*nbins + bin.
        keys = (binned[idx] + offsets).ravel()
        gh = np.bincount(keys, weights=np.repeat(g, nfeat), minlength=nfeat * nbins)
        hh = np.bincount(keys, weights=np.repeat(h, nfeat), minlength=nfeat * nbins)
        gl = np.cumsum(gh.reshape(nfeat, nbins), axis=1)[:, :-1]
        hl = np.cumsum(hh.reshape(nfeat, nbins), axis=1)[:, :-1]
        gr, hr = g.sum() - gl, h.sum() - hl
        gain = gl**2 / (hl + lam) + gr**2 / (hr + lam) - parent
        gain[(hl < 1.0) | (hr < 1.0) | ~valid] = 0.0
        best = (0.0, -1, -1)
        if gain.max() > 0.0:
            jj, bb = np.unravel_index(int(gain.argmax()), gain.shape)
            best = (float(gain[jj, bb]), int(jj), int(bb))
        _, j, b_split = best
        if j < 0:
            return node
        # bin(x) <= b  <=>  x <= edges[b]  (bins come from searchsorted(side="left")).
        go_left = binned[idx, j] <= b_split
        tree.feature[node] = j
        tree.threshold[node] = float(edges[j][b_split])
        tree.left[node] = grow(idx[go_left], d + 1)
        tree.right[node] = grow(idx[~go_left], d + 1)
        return node

    grow(np.arange(len(grad)), 0)
    return tree


def train(x: FloatArray, y: npt.NDArray[np.float64], n_trees: int, depth: int = 5,
          learning_rate: float = 0.1, subsample: float = 0.3,
          seed: int = 0) -> tuple[float, list[Tree]]:
    """Logistic-loss gradient boosting with row subsampling; returns (base margin, trees).

    Each tree sees a seeded random 30% of the rows (stochastic gradient boosting): 3x faster
    to build, so the test suite can build the models itself, and no worse a model.
    """
    rng = np.random.default_rng(seed)
    edges: list[FloatArray] = []
    for j in range(x.shape[1]):
        qs = np.unique(np.quantile(x[:, j], np.linspace(0.02, 0.98, 24)).astype(np.float32))
        edges.append(qs)
    binned = np.stack([np.searchsorted(edges[j], x[:, j], side="left")
                       for j in range(x.shape[1])], axis=1).astype(np.int64)
    p0 = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    base = float(np.log(p0 / (1 - p0)))
    margin = np.full(len(y), base)
    trees: list[Tree] = []
    for _ in range(n_trees):
        rows = np.flatnonzero(rng.random(len(y)) < subsample)
        p = 1.0 / (1.0 + np.exp(-margin[rows]))
        tree = _fit_tree(binned[rows], edges, p - y[rows], p * (1 - p), depth)
        tree = Tree(tree.feature, tree.threshold, tree.left, tree.right,
                    [v * learning_rate for v in tree.value])
        trees.append(tree)
        margin += predict_margin([tree], x)
    return base, trees


def predict_margin(trees: list[Tree], x: FloatArray) -> npt.NDArray[np.float64]:
    out = np.zeros(len(x))
    for t in trees:
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(64):
            feat = np.asarray(t.feature)[node]
            internal = feat >= 0
            if not internal.any():
                break
            thr = np.asarray(t.threshold, dtype=np.float32)[node]
            xv = x[np.arange(len(x)), np.maximum(feat, 0)]
            nxt = np.where(xv <= thr, np.asarray(t.left)[node], np.asarray(t.right)[node])
            node = np.where(internal, nxt, node)
        out += np.asarray(t.value)[node]
    return out


def to_onnx(base: float, trees: list[Tree], version: str) -> bytes:
    """TreeEnsembleRegressor (ai.onnx.ml v3) -> Sigmoid -> flatten to [N]."""
    from onnx import TensorProto, helper

    attrs: Any = {
        k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values",
                        "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids",
                        "target_treeids", "target_nodeids", "target_ids", "target_weights")
    }
    for tid, t in enumerate(trees):
        for nid, feat in enumerate(t.feature):
            leaf = feat < 0
            attrs["nodes_treeids"].append(tid)
            attrs["nodes_nodeids"].append(nid)
            attrs["nodes_featureids"].append(max(feat, 0))
            attrs["nodes_values"].append(t.threshold[nid])
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attrs["nodes_truenodeids"].append(0 if leaf else t.left[nid])
            attrs["nodes_falsenodeids"].append(0 if leaf else t.right[nid])
            if leaf:
                attrs["target_treeids"].append(tid)
                attrs["target_nodeids"].append(nid)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(t.value[nid])
    ensemble = helper.make_node("TreeEnsembleRegressor", [INPUT_NAME], ["margin"],
                                domain="ai.onnx.ml", n_targets=1, base_values=[base],
                                aggregate_function="SUM", post_transform="NONE", **attrs)
    sigmoid = helper.make_node("Sigmoid", ["margin"], ["prob"])
    shape = helper.make_tensor("flat", TensorProto.INT64, [1], [-1])
    reshape = helper.make_node("Reshape", ["prob", "flat"], [OUTPUT_NAME])
    graph = helper.make_graph(
        [ensemble, sigmoid, reshape], "scorefleet_example_email_security",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, NUM_FEATURES])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None])],
        initializer=[shape],
    )
    model = helper.make_model(
        graph, producer_name="scorefleet.example_model", producer_version="1",
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        doc_string="SYNTHETIC example: trained on generated data, not for real detection.",
    )
    model.ir_version = 8  # old enough for every onnxruntime >= 1.14
    model.model_version = int(version.lstrip("v"))
    helper.set_model_props(model, {"scorefleet.version": version,
                                   "scorefleet.features": ",".join(FEATURES)})
    return bytes(model.SerializeToString())


def build(out: Path) -> dict[str, str]:
    """Write the artifacts; returns {file name: sha256}."""
    out.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    recipes = {"v1": (11, 100), "v2": (22, 110)}  # (data seed, trees): close but not equal
    for version, (seed, n_trees) in recipes.items():
        x = synthetic_features(20_000, seed)
        base, trees = train(x, synthetic_labels(x, seed), n_trees, seed=seed)
        data = to_onnx(base, trees, version)
        name = f"model-{version}.onnx"
        (out / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    broken = (out / "model-v1.onnx").read_bytes()[:1000]
    (out / "broken.onnx").write_bytes(broken)
    digests["broken.onnx"] = hashlib.sha256(broken).hexdigest()
    manifest = {"synthetic": True, "input": INPUT_NAME, "output": OUTPUT_NAME,
                "num_features": NUM_FEATURES, "features": list(FEATURES), "sha256": digests}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorefleet.scorer.example_model",
                                     description="Build the synthetic example ONNX models.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    for name, digest in build(args.out).items():
        print(f"{digest}  {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
