"""`python benchmarks/scale [options]`: the benchmark as a directory to run (see run.py)."""

import sys
from pathlib import Path

# The package is `scale`, importable from benchmarks/ (no package above it: the other benchmarks
# run as scripts with bare module names).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale.run import main

raise SystemExit(main())
