"""The layout: no import cycles, a module table that is the tree, every stage run once."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lossdsl
from lossdsl import cache, cli, compiler
from lossdsl.source import SourceFile

PACKAGE = Path(__file__).resolve().parents[1] / "lossdsl"
ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"

FOCAL = """\
input y: onehot
input p: prob
param gamma: nonneg = 2.0
let q = clip(p)
loss focal = mean(sum((1 - q)^gamma * -y * log(q)))
"""


# ---------------------------------------------------------------------- import graph


def module_names(package: Path) -> dict[str, Path]:
    """Every module of a package by dotted name (a package by its `__init__.py`)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that a module's import statements name, wherever they stand.

    `from p import x` is module `p.x` when that is a module, else `p`; relative imports are
    resolved against the importing module.
    """
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")  # a package is its own anchor, a module its parent
                anchor = anchor[: len(anchor) - node.level + int(is_package)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports."""
    modules = module_names(package)
    return {
        name: imported_modules(
            ast.parse(path.read_text(encoding="utf-8")),
            name,
            path.name == "__init__.py",
            set(modules),
        )
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for successor in sorted(graph[node]):
            cycle = visit(successor)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import f\n")
    (package / "a.py").write_text("def f():\n    from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import a\nimport os\n")
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.a"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_cli_drives_plot_and_the_compiler_needs_no_keras_class() -> None:
    graph = import_graph(PACKAGE)
    assert "lossdsl.plot" in graph["lossdsl.cli"]
    assert "lossdsl.cli" not in graph["lossdsl.plot"]
    assert {"lossdsl.cache", "lossdsl.spec_loss"}.isdisjoint(graph["lossdsl.compiler"])
    assert "lossdsl.compiler" not in graph["lossdsl.runtime"]


def test_only_spec_loss_imports_keras_or_tensorflow_at_its_top() -> None:
    """`import lossdsl` loads neither, and importing Keras runs lossdsl's hook that imports
    `spec_loss`: a module `spec_loss` needs that imported Keras at its top would be only
    half initialised then, and the registration of `lossdsl>SpecLoss` would fail."""
    importers = set()
    for name, path in module_names(PACKAGE).items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            if roots & {"keras", "tensorflow"}:
                importers.add(name)
    # the helpers generated modules embed: read as text by codegen.helpers, imported by tests
    helper_code = {"lossdsl.codegen.tensorflow_helpers", "lossdsl.codegen.xla_helpers"}
    assert importers == {"lossdsl.spec_loss", *helper_code}
    graph = import_graph(PACKAGE)
    assert {name for name, imported in graph.items() if imported & helper_code} == {
        "lossdsl.codegen.xla_helpers"
    }


# ---------------------------------------------------------------------- the module table


def table_rows(markdown: str) -> Iterator[str]:
    """The first cell of each row of the module table (`| module | owns | ...`)."""
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("| module |"):
            in_table = True
        elif in_table and not line.startswith("|"):
            return
        elif in_table and not line.startswith("|---"):
            yield line.split("|")[1].strip()


def test_the_architecture_table_lists_every_module_once() -> None:
    rows = list(table_rows(ARCHITECTURE.read_text(encoding="utf-8")))
    files = sorted(
        path.relative_to(PACKAGE).as_posix()
        for pattern in ("*.py", "*.lark")
        for path in PACKAGE.rglob(pattern)
    )
    named = [re.fullmatch(r"`([^`]+)`", row) for row in rows]
    assert all(named), f"rows naming more or less than one file: {rows}"
    listed = [match.group(1) for match in named if match]
    assert len(listed) == len(set(listed)), "a file listed twice"
    assert sorted(listed) == files


# ---------------------------------------------------------------------- each stage once


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[object]:
    """Replace `owner.name` by a wrapper that records each call; returns the record."""
    calls: list[object] = []
    real = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_loaded", {})


def test_a_verified_compile_executes_its_module_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One module, verified through an untraced copy: no float64 traces in the user's
    function, and the Keras class registered is the one the user gets."""
    import keras

    executed = counting(monkeypatch, compiler, "load_generated_module")
    compiled = compiler.compile_source(SourceFile.from_text(FOCAL), verify=True)
    assert len(executed) == 1
    assert compiled.per_sample_function.experimental_get_tracing_count() == 0
    assert keras.saving.get_registered_object("lossdsl_generated>Focal") is compiled.loss_class


@pytest.mark.usefixtures("private_cache")
def test_a_load_executes_its_module_once_compiled_or_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled = counting(monkeypatch, compiler, "load_generated_module")
    cached = counting(monkeypatch, cache, "load_generated_module")
    lossdsl.load(FOCAL, gamma=1.0)
    assert (len(compiled), len(cached)) == (1, 0)
    monkeypatch.setattr(cache, "_loaded", {})
    lossdsl.load(FOCAL)
    assert (len(compiled), len(cached)) == (1, 1)


@pytest.mark.parametrize("command", ["compile", "check"])
def test_a_command_parses_checks_and_executes_once(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = tmp_path / "focal.loss"
    spec.write_text(FOCAL, encoding="utf-8")
    parsed = counting(monkeypatch, compiler, "parse")
    checked = counting(monkeypatch, compiler, "check")
    executed = counting(monkeypatch, compiler, "load_generated_module")
    assert cli.main([command, str(spec)]) == 0, capsys.readouterr().err
    assert (len(parsed), len(checked), len(executed)) == (1, 1, 1)
