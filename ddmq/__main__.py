"""Run the ddmq command line: ``python -m ddmq``."""

import sys

from .cli import main

sys.exit(main())
