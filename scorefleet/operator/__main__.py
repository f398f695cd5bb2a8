"""Run the operator: `python -m scorefleet.operator [kopf run options]`."""

from __future__ import annotations

import sys

from kopf.cli import main as kopf_main


def main(argv: list[str] | None = None) -> None:
    args = ["run", "--standalone", "--all-namespaces", "-m", "scorefleet.operator.handlers",
            *(sys.argv[1:] if argv is None else argv)]
    kopf_main(args=args, prog_name="scorefleet-operator")


if __name__ == "__main__":
    main()
