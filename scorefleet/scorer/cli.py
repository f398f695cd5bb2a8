"""Command line of the scorer: one command, one config file.

    python -m scorefleet.scorer --config /etc/scorefleet/config.yaml

The operator's Deployment runs exactly that; everything else comes from the config file so that
a config change (a ConfigMap update) is the only way the scorer's behaviour changes.
"""

from __future__ import annotations

import argparse
import logging
import os


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scorefleet.scorer",
        description="Serve an ONNX scoring model over gRPC (scorefleet.v1.Scorer and "
                    "Open Inference Protocol v2) with Prometheus metrics.",
    )
    parser.add_argument("--config", required=True,
                        help="path of the ScorerConfig YAML file; watched and reloaded on change")
    parser.add_argument("--host", default=os.environ.get("SCOREFLEET_HOST", "0.0.0.0"),
                        help="address the gRPC and metrics servers bind (default 0.0.0.0, or "
                             "$SCOREFLEET_HOST); ports come from the config")
    parser.add_argument("--log-level", default=os.environ.get("SCOREFLEET_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default INFO, or $SCOREFLEET_LOG_LEVEL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s",
    )
    from scorefleet.scorer.server import serve  # after logging, so import-time logs are formatted

    return serve(args.config, host=args.host, log_level=args.log_level)
