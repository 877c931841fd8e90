"""The table of diagnostic codes (`lossdsl.codes`) against the package and the docs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lossdsl import codes
from lossdsl.codes import CODES, Stage
from lossdsl.diagnostics import Severity

PACKAGE = Path(codes.__file__).parent
ROOT = PACKAGE.parent
CODE = re.compile(r"[EW]\d{3}")
TABLE_ROW = re.compile(r"^\| ([EW]\d{3}) \| (.*) \|$", re.MULTILINE)


def _modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if path.name != "codes.py"]


def test_no_module_spells_a_code_itself() -> None:
    literals = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}"
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and CODE.fullmatch(node.value)
    ]
    assert literals == []


def test_every_row_is_reported_somewhere() -> None:
    constants = {
        name: value
        for name, value in vars(codes).items()
        if isinstance(value, str) and value in CODES and name.isupper()
    }
    assert sorted(constants.values()) == sorted(CODES)
    used = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "lossdsl.codes":
                used.update(alias.name for alias in node.names)
    assert sorted(set(constants) - used) == []


def test_docs_tables_are_the_table() -> None:
    notes = (ROOT / "docs" / "LANGUAGE_NOTES.md").read_text(encoding="utf-8")
    documented = dict(TABLE_ROW.findall(notes))
    assert len(documented) == len(TABLE_ROW.findall(notes)), "a code documented twice"
    assert documented == {code: row.meaning for code, row in CODES.items()}


@pytest.mark.parametrize("document", ["README.md", "docs/API.md", "docs/LANGUAGE_NOTES.md"])
def test_codes_the_docs_mention_exist(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    mentioned = set(re.findall(r"\b[EW]\d{3}\b", text))
    assert sorted(mentioned - set(CODES)) == []


def test_severity_and_stage_follow_the_code() -> None:
    for code, row in CODES.items():
        assert row.code == code
        expected = Severity.WARNING if code.startswith("W") else Severity.ERROR
        assert row.severity is expected
    assert CODES["E101"].stage is Stage.PARSER
    assert CODES["E401"].stage is Stage.CHECKER
    assert CODES["W408"].stage is Stage.DOMAINS
