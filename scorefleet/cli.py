"""`scorefleet`: one entry point for the local default, the operator, the scorer and tools.

    scorefleet up [--pipeline FILE] [--streams] [--kwok-nodes N ...]
                                       local cluster (real node when root) + operator +
                                       example pipeline serving, with QPS and p99
                                       (--streams: + Kafka, Redis and the example stream
                                       pipeline scoring events: docs/streaming.md)
    scorefleet stream produce|verdicts [--count N --rate R]
                                       events to the example stream pipeline; its verdicts
    scorefleet down                    stop them and put the host back
    scorefleet load PIPELINE [--rate R --duration S --concurrency C]
                                       bounded load through cluster DNS (real node): RPC/s,
                                       codes, latency quantiles
    scorefleet score PIPELINE          score one event through cluster DNS (real node)
    scorefleet operator [kopf args]    run the operator against $KUBECONFIG
    scorefleet scorer --config FILE    run a scorer
    scorefleet crd [--write|--check]   print, write or check the generated CRD
    scorefleet rollout get|watch|promote|pause|resume|abort|retry ...
                                       the SRE's rollout controls (= kubectl scorefleet)
    scorefleet dev build|up|env|status|down   the local control plane alone
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "up":
        from scorefleet import local

        return local.main(rest)
    if command == "down":
        from scorefleet import local

        return local.down()
    if command == "stream":
        from scorefleet import stream_example

        return stream_example.main(rest)
    if command in ("load", "score"):
        from scorefleet import load

        return load.main(rest) if command == "load" else load.score_main(rest)
    if command == "operator":
        from scorefleet.operator.__main__ import main as operator_main

        operator_main(rest)
        return 0
    if command == "scorer":
        from scorefleet.scorer.cli import main as scorer_main

        return scorer_main(rest)
    if command == "crd":
        from scorefleet.api.crd import main as crd_main

        return crd_main(rest)
    if command == "rollout":
        from scorefleet.rollout_cli import main as rollout_main

        return rollout_main(rest)
    if command == "dev":
        from scorefleet.dev.cli import main as dev_main

        return dev_main(rest)
    print(f"scorefleet: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
