"""Run the operator: `python -m scorefleet.operator [kopf run options]`."""

from __future__ import annotations

import sys

from kopf.cli import main as kopf_main


def kopf_args(argv: list[str]) -> list[str]:
    """`kopf run` arguments: standalone, our handlers, and every namespace unless the caller
    names some (`--namespace=ns` / `-n ns`, repeatable, globs allowed, as Kopf takes them)."""
    scoped = any(a in ("-n", "--namespace") or a.startswith("--namespace=") for a in argv)
    scope = [] if scoped else ["--all-namespaces"]
    return ["run", "--standalone", *scope, "-m", "scorefleet.operator.handlers", *argv]


def main(argv: list[str] | None = None) -> None:
    kopf_main(args=kopf_args(sys.argv[1:] if argv is None else argv),
              prog_name="scorefleet-operator")


if __name__ == "__main__":
    main()
