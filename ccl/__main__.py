"""`python -m ccl ...`: the `ccl` command line (ccl.cli)."""

import sys

from ccl.cli import main

sys.exit(main())
