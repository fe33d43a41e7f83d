"""`python -m jepsen run ...` (see jepsen/cli.py and docs/jepsen.md)."""

import sys

from .cli import main

sys.exit(main())
