"""The README is what a new user follows: its commands, its library table, its links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|python)?\n(.*?)```", text, flags=re.DOTALL)


def test_readme_opens_with_the_two_set_up_commands() -> None:
    before_prose = README.split("\n\n")[1:3]
    first, second = (block.strip() for block in code_blocks("\n\n".join(before_prose)))
    assert "pip install" in first and "examples/train.py" in first and "compile" in first
    assert "pip install" in second and "pytest" in second
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert second in ci_script


def test_every_example_is_in_the_library_table() -> None:
    listed = set(re.findall(r"^\| `([a-z0-9_]+)`", README, flags=re.MULTILINE))
    examples = {path.stem for path in (ROOT / "examples").glob("*.loss")}
    assert examples <= listed, sorted(examples - listed)


def test_relative_links_point_at_files() -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_the_readme_python_examples_run(tmp_path: Path, monkeypatch) -> None:
    """The quick tour and the API examples, run as written (examples/ made absolute)."""
    monkeypatch.chdir(tmp_path)
    blocks = [block for block in code_blocks(README) if "lossdsl.load(" in block]
    runnable = [block for block in blocks if "def replica_step" not in block]
    assert len(runnable) == 2
    for block in runnable:
        code = block.replace('"examples/', f'"{ROOT / "examples"}/')
        namespace: dict[str, object] = {}
        exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
