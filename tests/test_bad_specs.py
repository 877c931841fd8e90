"""Every bad spec under tests/bad_specs/ renders exactly its golden diagnostics.

Each `NAME.loss` sits beside `NAME.expected`: the rendered `LossSpecError` text. Run
`pytest tests/test_bad_specs.py --update-golden` to rewrite the expected files after a
deliberate change, and read the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lossdsl.compiler import diagnose_file

BAD_SPECS = Path(__file__).parent / "bad_specs"
SPEC_FILES = sorted(BAD_SPECS.glob("*.loss"))


@pytest.mark.parametrize("spec_path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_bad_spec_renders_golden_diagnostics(spec_path: Path, update_golden: bool) -> None:
    rendered, has_errors = diagnose_file(spec_path, relative_to=BAD_SPECS)
    expected_path = spec_path.with_suffix(".expected")
    if update_golden:
        expected_path.write_text(rendered + "\n", encoding="utf-8")
    assert has_errors, f"{spec_path.name} should have errors"
    assert rendered + "\n" == expected_path.read_text(encoding="utf-8")


def test_there_are_at_least_thirty_bad_specs() -> None:
    assert len(SPEC_FILES) >= 30
