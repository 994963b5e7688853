"""``python -m ddb2bq.cli``: the command line, the same as ``python -m ddb2bq``."""

from __future__ import annotations

from ddb2bq.__main__ import run

if __name__ == "__main__":
    run()
