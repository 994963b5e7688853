"""``python -m ddb2bq``: the command line, as the ``ddb2bq`` script runs it."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from ddb2bq.cli.main import main
    except KeyboardInterrupt:  # Ctrl-C while the modules load: nothing has started yet
        print("ddb2bq: stopped by Ctrl-C.", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
