"""``python -m ddb2bq.cli``: the command line."""

from __future__ import annotations

import sys

from ddb2bq.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
