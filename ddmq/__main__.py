"""Run the ddmq command line: ``python -m ddmq``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
