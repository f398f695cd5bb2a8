"""``python -m scorefleet.scorer --config path.yaml``: run the scorer (see docs/scorer.md)."""

from scorefleet.scorer.cli import main
from scorefleet.scorer.lifecycle import exit_without_finalizing

if __name__ == "__main__":
    # serve() has stopped the workers and cleaned up by the time main() returns.
    exit_without_finalizing(main())
