"""Golden generated modules: each `tests/golden/NAME.loss` compiles to exactly `NAME.py`.

Run `pytest tests/test_golden_modules.py --update-golden` to rewrite the modules after a
deliberate change, and read the diff. The modules are also checked as products: they
import only tensorflow and keras, are the same in a fresh process, and work standalone.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lossdsl.compiler import compile_source
from lossdsl.parser import read_source

GOLDEN = Path(__file__).parent / "golden"
SPEC_FILES = sorted(GOLDEN.glob("*.loss"))


def generate(spec_path: Path) -> str:
    source = read_source(spec_path.read_bytes(), str(spec_path))
    return compile_source(source, verify=False).python_source


@pytest.mark.parametrize("spec_path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_generated_module_matches_golden(spec_path: Path, update_golden: bool) -> None:
    generated = generate(spec_path)
    golden_path = spec_path.with_suffix(".py")
    if update_golden:
        golden_path.write_text(generated, encoding="utf-8", newline="\n")
    assert generated == golden_path.read_text(encoding="utf-8")
    assert generate(spec_path) == generated, "compiling twice gives the same bytes"


@pytest.mark.parametrize("spec_path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_generated_module_imports_only_tensorflow_and_keras(spec_path: Path) -> None:
    tree = ast.parse(spec_path.with_suffix(".py").read_text(encoding="utf-8"))
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert all(isinstance(node, ast.Import) for node in imports)
    assert sorted(alias.name for node in imports for alias in node.names) == [
        "keras",
        "tensorflow",
    ]
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & {"eval", "exec", "compile", "__import__", "open"}


def test_a_fresh_process_generates_the_same_bytes(tmp_path: Path) -> None:
    spec_path = GOLDEN / "focal.loss"
    done = subprocess.run(
        [sys.executable, "-m", "lossdsl.cli", "compile", str(spec_path), "--no-verify"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == spec_path.with_suffix(".py").read_text(encoding="utf-8")


def test_generated_module_trains_standalone(tmp_path: Path) -> None:
    import keras

    module_path = tmp_path / "weighted_ce_standalone.py"
    shutil.copy(GOLDEN / "weighted_ce.py", module_path)
    spec = importlib.util.spec_from_file_location("weighted_ce_standalone", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 4)).astype("float32")
    targets = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=module.WeightedCe(w=[1.0, 2.0, 3.0]))
    before = model.evaluate(features, targets, verbose=0)
    model.fit(features, targets, epochs=1, batch_size=8, verbose=0)
    after = model.evaluate(features, targets, verbose=0)
    assert np.isfinite(before) and after < before
