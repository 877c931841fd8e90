"""Shared pytest set-up: a private spec cache, quiet TensorFlow, reproducible hypothesis, and
`--update-golden`."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
from hypothesis import settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The tests never read or fill the user's own cache (~/.cache/lossdsl).
if "LOSSDSL_CACHE_DIR" not in os.environ:
    os.environ["LOSSDSL_CACHE_DIR"] = tempfile.mkdtemp(prefix="lossdsl-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LOSSDSL_CACHE_DIR"], ignore_errors=True)

# Every property test draws the same examples on every run and keeps no example database:
# a test that passes here passes in CI. Exploring further is fuzz/run.py's job.
settings.register_profile("reproducible", derandomize=True, database=None)
settings.load_profile("reproducible")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files (bad-spec diagnostics, generated modules) from current output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
