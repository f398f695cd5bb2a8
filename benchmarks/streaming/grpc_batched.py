"""Reference in the streaming benchmark: the scorer's gRPC batched path on the same machine,
model and worker count. ScoreBatch with a packed FeatureMatrix of 500 events (the stream's
default batch), 4 RPCs in flight, from one client process.

    python benchmarks/streaming/grpc_batched.py client PORT SECONDS OUT_JSON

A Python client costs CPU on the same two cores (as the stream benchmark's producer and reader
do); issue 3's benchmark measures this path with ghz at 64 events per RPC.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVENTS_PER_RPC = 500
IN_FLIGHT = 4


def client(port: int, seconds: float) -> dict[str, Any]:
    import grpc

    from scorefleet.scorer.example_model import NUM_FEATURES, synthetic_features
    from scorefleet.scorer.protos import v1_pb2, v1_pb2_grpc

    x = synthetic_features(EVENTS_PER_RPC, 5).astype("float32")
    request = v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
        num_features=NUM_FEATURES, features=x.ravel().tolist()))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = v1_pb2_grpc.ScorerStub(channel)
    stub.ScoreBatch(request, timeout=10)  # warm
    done = failed = 0
    latencies: list[float] = []
    started = time.monotonic()
    end = started + seconds
    pending: list[tuple[float, Any]] = []
    while time.monotonic() < end or pending:
        while len(pending) < IN_FLIGHT and time.monotonic() < end:
            pending.append((time.monotonic(), stub.ScoreBatch.future(request, timeout=10)))
        sent, future = pending.pop(0)
        try:
            future.result()
            done += 1
            latencies.append(time.monotonic() - sent)
        except grpc.RpcError:
            failed += 1
    elapsed = time.monotonic() - started
    channel.close()
    latencies.sort()
    return {"rpcs": done, "failed": failed, "events_per_rpc": EVENTS_PER_RPC,
            "in_flight": IN_FLIGHT, "seconds": elapsed,
            "events_per_s": done * EVENTS_PER_RPC / elapsed,
            "rpc_p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
            "rpc_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None}


def measure_grpc_batched(model: dict[str, Any], workdir: Path, seconds: float) -> dict[str, Any]:
    from run_streaming import Scorer

    scorer = Scorer(workdir, {"model": model})
    out = workdir / "grpc-client.json"
    try:
        scorer.wait_serving()
        subprocess.run([sys.executable, __file__, "client", str(scorer.port), str(seconds),
                        str(out)], check=True, timeout=seconds + 120)
    finally:
        scorer.stop()
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str]) -> int:
    if argv[:1] != ["client"] or len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    result = client(int(argv[1]), float(argv[2]))
    Path(argv[3]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
