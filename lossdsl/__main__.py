"""`python -m lossdsl`: the same command line as the `lossdsl` script."""

from __future__ import annotations

import sys

from lossdsl.cli import main

sys.exit(main())
