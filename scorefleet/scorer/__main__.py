"""``python -m scorefleet.scorer --config path.yaml``: run the scorer (see docs/scorer.md)."""

import logging
import os
import sys

from scorefleet.scorer.cli import main

if __name__ == "__main__":
    code = main()
    # serve() has stopped the workers and cleaned up; the interpreter's own finalization took a
    # further ~1.5 s (measured) that would only lengthen every pod termination.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
