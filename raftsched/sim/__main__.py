"""`python -m raftsched.sim`: see raftsched/sim/cli.py."""

import sys

from .cli import main

sys.exit(main())
