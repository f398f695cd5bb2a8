"""Request payloads for ghz, written once as serialized protobuf (``ghz -B FILE``).

Binary payloads keep the load generator's own CPU per call low (no JSON -> protobuf conversion
per request), which matters when ghz shares two cores with the server under test. The messages
are built with the scorer's generated Python code, so they follow the same ``.proto`` files the
servers (and ghz, via ``--proto``) use. Features are synthetic rows from the example-model
generator, the same distribution the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scorefleet.scorer.example_model import INPUT_NAME, NUM_FEATURES, synthetic_features
from scorefleet.scorer.protogen import ensure_generated

OIP_PROTO = "inference/grpc_service.proto"
SCORER_PROTO = "scorefleet/v1/scorer.proto"
BATCH_EVENTS = 64


@dataclass(frozen=True)
class LoadSpec:
    """One kind of call: which RPC, with which payload, carrying how many events."""

    label: str
    call: str
    proto: str  # relative to the proto root
    payload: Path
    events_per_rpc: int


def write_payloads(out: Path, model_name: str) -> dict[str, LoadSpec]:
    """Serialize every request the benchmark sends; returns specs keyed by label."""
    ensure_generated()
    from scorefleet.scorer._generated.inference import grpc_service_pb2 as oip
    from scorefleet.scorer._generated.scorefleet.v1 import scorer_pb2 as sf

    out.mkdir(parents=True, exist_ok=True)
    rows = synthetic_features(BATCH_EVENTS, seed=7)
    one = rows[:1]
    messages = {
        "oip_infer_1": oip.ModelInferRequest(
            model_name=model_name, id="bench",
            inputs=[oip.ModelInferRequest.InferInputTensor(
                name=INPUT_NAME, datatype="FP32", shape=[1, NUM_FEATURES])],
            raw_input_contents=[one.astype("<f4").tobytes()],
        ),
        "score_1": sf.ScoreRequest(event=sf.Event(
            event_id="evt-000001", tenant="acme", features=one[0].tolist())),
        f"batch_matrix_{BATCH_EVENTS}": sf.ScoreBatchRequest(matrix=sf.FeatureMatrix(
            num_features=NUM_FEATURES, features=rows.reshape(-1).tolist())),
        f"batch_events_{BATCH_EVENTS}": sf.ScoreBatchRequest(events=[
            sf.Event(event_id=f"evt-{i:06d}", tenant="acme", features=r.tolist())
            for i, r in enumerate(rows)]),
    }
    calls = {
        "oip_infer_1": ("inference.GRPCInferenceService/ModelInfer", OIP_PROTO, 1),
        "score_1": ("scorefleet.v1.Scorer/Score", SCORER_PROTO, 1),
        f"batch_matrix_{BATCH_EVENTS}": ("scorefleet.v1.Scorer/ScoreBatch", SCORER_PROTO,
                                         BATCH_EVENTS),
        f"batch_events_{BATCH_EVENTS}": ("scorefleet.v1.Scorer/ScoreBatch", SCORER_PROTO,
                                         BATCH_EVENTS),
    }
    specs: dict[str, LoadSpec] = {}
    for label, msg in messages.items():
        path = out / f"{label}.bin"
        path.write_bytes(msg.SerializeToString())
        call, proto, events = calls[label]
        specs[label] = LoadSpec(label, call, proto, path, events)
    assert np.isfinite(rows).all()
    return specs
