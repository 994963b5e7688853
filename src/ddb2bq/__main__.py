"""``python -m ddb2bq``: the command line, as the ``ddb2bq`` script runs it."""

from __future__ import annotations

import sys

from ddb2bq.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
