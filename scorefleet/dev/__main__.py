import sys

from scorefleet.dev.cli import main

sys.exit(main(sys.argv[1:]))
