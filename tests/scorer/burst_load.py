"""A bounded burst of concurrent ``Score`` RPCs against a scorer, and the codes they ended with.

Used by tests/scorer/test_server_burst.py, and runnable on its own to reproduce a burst against
any scorer (this is how the before/after figures in docs/scorer.md were taken)::

    python -m tests.scorer.burst_load 127.0.0.1:9000 --rpcs 5000 --channels 1

Each RPC has a kind: ``normal`` (a generous deadline), ``tight`` (a 1 ms deadline), ``short``
(a deadline of 5-200 ms: long enough to reach the server during a burst, short enough to pass
while it waits there) or ``cancel`` (cancelled by the client 0-50 ms after it was sent). All
RPCs of a burst are started at once, spread round-robin over ``channels`` separate HTTP/2
connections, and the whole burst is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from scorefleet.scorer.example_model import synthetic_features
from scorefleet.scorer.protos import v1_pb2, v1_pb2_grpc

KINDS = ("normal", "tight", "short", "cancel")


@dataclass
class BurstResult:
    codes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # (kind, code) -> up to 3 distinct status details, to show what a refusal said.
    details: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, kind: str | None = None, code: str | None = None) -> int:
        return sum(n for (k, c), n in self.codes.items()
                   if (kind is None or k == kind) and (code is None or c == code))

    def table(self) -> str:
        return ", ".join(f"{k}/{c}: {n}" for (k, c), n in sorted(self.codes.items()))


def mix(rpcs: int, tight: float = 0.0, short: float = 0.0, cancel: float = 0.0,
        seed: int = 7) -> list[str]:
    """Kinds for ``rpcs`` RPCs: the given shares of tight, short and cancel, the rest normal."""
    rng = random.Random(seed)
    kinds = []
    for _ in range(rpcs):
        u = rng.random()
        kinds.append("tight" if u < tight else "short" if u < tight + short
                     else "cancel" if u < tight + short + cancel else "normal")
    return kinds


def burst(address: str, kinds: Sequence[str], channels: int = 1,
          normal_timeout: float = 30.0, tight_timeout: float = 0.001,
          short_timeouts: tuple[float, float] = (0.005, 0.2), cancel_after: float = 0.05,
          timeout: float = 60.0) -> BurstResult:
    """Start every RPC at once; wait for all (bounded by ``timeout``); count their codes.

    The synchronous client's futures are used because gRPC core sends them from its own
    threads: 5,000 calls start in a fraction of a second, where an asyncio client needed about
    two seconds just to start them, so short deadlines passed before the server saw the calls.
    """
    rows = [r.tolist() for r in synthetic_features(64, seed=11)]
    rng = random.Random(len(kinds))
    deadlines = {"normal": lambda: normal_timeout, "tight": lambda: tight_timeout,
                 "short": lambda: rng.uniform(*short_timeouts), "cancel": lambda: normal_timeout}
    # A local subchannel pool per channel: otherwise gRPC shares one connection among them.
    opened = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
              for _ in range(channels)]
    result = BurstResult()
    for ch in opened:
        grpc.channel_ready_future(ch).result(timeout=30)
    stubs = [v1_pb2_grpc.ScorerStub(ch) for ch in opened]
    requests = [v1_pb2.ScoreRequest(event=v1_pb2.Event(event_id=str(i),
                                                       features=rows[i % len(rows)]))
                for i in range(len(kinds))]
    started = time.monotonic()
    calls = [stubs[i % channels].Score.future(requests[i], timeout=deadlines[kind]())
             for i, kind in enumerate(kinds)]
    to_cancel = sorted((rng.uniform(0, cancel_after), i) for i, kind in enumerate(kinds)
                       if kind == "cancel")
    for at, i in to_cancel:
        time.sleep(max(0.0, started + at - time.monotonic()))
        calls[i].cancel()
    end = started + timeout
    for i, (kind, call) in enumerate(zip(kinds, calls, strict=True)):
        try:
            response = call.result(timeout=max(0.0, end - time.monotonic()))
            assert response.event_id == str(i), "answer for another request"
            code, detail = "OK", ""
        except grpc.FutureCancelledError:
            # Told apart from a CANCELLED status, which would come from the server side.
            code, detail = "CLIENT_CANCELLED", "cancelled by this client"
        except grpc.RpcError as exc:
            code, detail = exc.code().name, exc.details() or ""
        result.codes[(kind, code)] += 1
        seen = result.details.setdefault((kind, code), set())
        if len(seen) < 3:
            seen.add(detail)
    result.seconds = time.monotonic() - started
    # The channels are not closed: with cancelled calls behind them, grpcio 1.85's close() hung
    # for minutes (seen in this test). The process running a burst exits right after instead
    # (see main and run_burst).
    return result


def run_burst(address: str, rpcs: int, channels: int = 1, tight: float = 0.0,
              short: float = 0.0, cancel: float = 0.0, timeout: float = 120.0) -> BurstResult:
    """:func:`burst` in a child process (bounded by ``timeout``), its result read back."""
    argv = [sys.executable, "-m", "tests.scorer.burst_load", address, "--rpcs", str(rpcs),
            "--channels", str(channels), "--tight", str(tight), "--short", str(short),
            "--cancel", str(cancel), "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    raw = json.loads(out)
    result = BurstResult(seconds=raw["seconds"])
    for kind, code, n, details in raw["codes"]:
        result.codes[(kind, code)] = n
        result.details[(kind, code)] = set(details)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.scorer.burst_load")
    parser.add_argument("address")
    parser.add_argument("--rpcs", type=int, default=3000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--tight", type=float, default=0.0, help="share with 1 ms deadlines")
    parser.add_argument("--short", type=float, default=0.0, help="share with 5-200 ms deadlines")
    parser.add_argument("--cancel", type=float, default=0.0, help="share cancelled mid-flight")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON result")
    args = parser.parse_args(argv)
    kinds = mix(args.rpcs, args.tight, args.short, args.cancel)
    for _ in range(args.repeat):
        res = burst(args.address, kinds, args.channels)
        if args.json:
            codes = [[k, c, n, sorted(res.details.get((k, c), ()))]
                     for (k, c), n in res.codes.items()]
            print(json.dumps({"seconds": res.seconds, "codes": codes}))
            continue
        print(f"{args.rpcs} RPCs on {args.channels} channel(s) in {res.seconds:.1f}s: "
              f"{res.table()}")
        for key, details in sorted(res.details.items()):
            if key[1] != "OK":
                print(f"  {key[0]}/{key[1]}: {sorted(details)}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # without closing the channels: see burst()
