"""The ``ddb2bq`` command line (thin: each command parses, calls the library, prints).

>>> from ddb2bq.cli import main
>>> main(["convert", "--from", "lambda"])  # doctest: +SKIP
"""

from __future__ import annotations

from ddb2bq.cli.main import main

__all__ = ["main"]
