"""Every example spec compiles with verification on: `lossdsl check examples/*.loss` exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_every_example_compiles_and_verifies() -> None:
    specs = sorted(str(path) for path in EXAMPLES.glob("*.loss"))
    assert len(specs) >= 40
    checked = subprocess.run(
        [sys.executable, "-m", "lossdsl", "check", *specs],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert checked.returncode == 0, checked.stderr[-4000:]
    assert "error[" not in checked.stderr
