"""The README's demo command keeps working: examples/demo.py end to end on the local stand-ins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_mirrors_the_table_exactly() -> None:
    # GIVEN nothing but the project (the demo starts its own servers)
    # WHEN the demo runs
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    # THEN it ends with the mirror equal to the table and every image exact
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "The mirror equals the DynamoDB table (2 items)" in result.stdout
    assert "batchItemFailures': []" in result.stdout
