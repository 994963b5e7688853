"""``python -m ddb2bq``: the command line, as the ``ddb2bq`` script runs it."""

from __future__ import annotations

import sys
from typing import NoReturn


def run() -> NoReturn:
    """Run the command line and exit with its code (also ``python -m ddb2bq.cli``)."""
    try:
        from ddb2bq.cli.main import main  # noqa: PLC0415 (a Ctrl-C while it loads is caught)
    except KeyboardInterrupt:  # Ctrl-C while the modules load: nothing has started yet
        print("ddb2bq: stopped by Ctrl-C.", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())


if __name__ == "__main__":
    run()
