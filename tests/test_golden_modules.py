"""Golden generated modules: each `tests/golden/NAME.loss` compiles to exactly `NAME.py`,
and for the JAX and PyTorch targets to `jax/NAME.py` and `torch/NAME.py`.

Run `pytest tests/test_golden_modules.py --update-golden` to rewrite the modules after a
deliberate change, and read the diff. The modules are also checked as products: they
import only their framework (and keras), are the same in a fresh process, and work
standalone.
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

from lossdsl.compiler import generate as generate_source
from lossdsl.parser import read_source

GOLDEN = Path(__file__).parent / "golden"
SPEC_FILES = sorted(GOLDEN.glob("*.loss"))


TARGETS = ("tensorflow", "jax", "torch")
CASES = [(target, path) for target in TARGETS for path in SPEC_FILES]
CASE_IDS = [f"{target}-{path.stem}" for target, path in CASES]
IMPORTS = {
    "tensorflow": ["keras", "tensorflow"],
    "jax": ["jax", "jax.numpy", "keras"],
    "torch": ["keras", "torch"],
}
"""What each target's modules import (`math` too, where they take a product of sizes)."""


def generate(spec_path: Path, target: str = "tensorflow") -> str:
    source = read_source(spec_path.read_bytes(), str(spec_path))
    return generate_source(source, target=target).python_source


def golden_path(spec_path: Path, target: str) -> Path:
    folder = spec_path.parent if target == "tensorflow" else spec_path.parent / target
    return folder / f"{spec_path.stem}.py"


@pytest.mark.parametrize(("target", "spec_path"), CASES, ids=CASE_IDS)
def test_generated_module_matches_golden(target: str, spec_path: Path, update_golden: bool) -> None:
    generated = generate(spec_path, target)
    golden = golden_path(spec_path, target)
    if update_golden:
        golden.write_text(generated, encoding="utf-8", newline="\n")
    assert generated == golden.read_text(encoding="utf-8")
    assert generate(spec_path, target) == generated, "compiling twice gives the same bytes"


@pytest.mark.parametrize(("target", "spec_path"), CASES, ids=CASE_IDS)
def test_generated_module_imports_only_its_framework_and_keras(
    target: str, spec_path: Path
) -> None:
    tree = ast.parse(golden_path(spec_path, target).read_text(encoding="utf-8"))
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert all(isinstance(node, ast.Import) for node in imports)
    imported = sorted(alias.name for node in imports for alias in node.names)
    assert [name for name in imported if name != "math"] == IMPORTS[target]
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
