"""The README's demo command keeps working: examples/demo.py end to end on the local stand-ins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_replicates_while_writing_and_the_mirror_equals_the_table() -> None:
    # GIVEN nothing but the project (the demo starts its own servers and `ddb2bq run` processes)
    # WHEN the demo runs, as `scripts/demo` runs it, without a terminal
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    out = result.stdout
    # THEN it exits 0 and its final check passed: the mirror is the table, the changelog every change
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "The mirror equals the DynamoDB table (" in out
    assert "the changelog holds each of the 3,000 changes written, once, in order." in out
    # AND the runner stopped cleanly on SIGTERM, then caught up from its checkpoint
    assert "ddb2bq run exited with code 0: orders: " in out
    assert "dead-lettered; stopped." in out
    assert "dead-lettered; caught up." in out
    assert "MISMATCH" not in out
