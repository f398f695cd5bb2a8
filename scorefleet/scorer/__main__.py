"""``python -m scorefleet.scorer --config path.yaml``: run the scorer (see docs/scorer.md)."""

from scorefleet.scorer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
