"""The example specs' generated modules for each backend, and inputs every spec accepts:
random draws and the edge grid, shared by the JAX and PyTorch tests."""

from __future__ import annotations

import functools
import types
from pathlib import Path

import numpy as np

from lossdsl.codegen.names import function_names
from lossdsl.compiler import GeneratedSource, generate
from lossdsl.kinds import KINDS
from lossdsl.parser import read_source
from lossdsl.symbolic import functions
from lossdsl.typed import Roles
from lossdsl.verification.driver import verification_layouts
from lossdsl.verification.layouts import Layout, draw_inputs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPECS = sorted(path.stem for path in EXAMPLES.glob("*.loss"))

EDGES: dict[str, tuple[float, ...]] = {
    "prob": (0.0, 1.0, 1e-9, 1.0 - 1e-7),
    "logits": (-1e4, 1e4, 0.0, 30.0, -30.0),
    "real": (-1e4, 1e4, 0.0, 30.0, -30.0),
    "nonneg": (0.0, 1e-9, 1e4),
}
"""The edge grid of each y_pred kind: benchmarks/bench_losses.py's (probabilities exactly
0 and 1, logits and residuals of 1e4) with the verifier's tails and exact zeros."""


@functools.cache
def generated(spec: str, target: str, directory: Path = EXAMPLES) -> GeneratedSource:
    """`directory`/`spec`.loss (an example's) compiled for `target`, once per process."""
    path = directory / f"{spec}.loss"
    return generate(read_source(path.read_bytes(), path.name), target=target)


@functools.cache
def module(spec: str, target: str, directory: Path = EXAMPLES) -> types.ModuleType:
    """The generated module of `spec` for `target`, executed as `lossdsl.runtime` does."""
    module = types.ModuleType(f"{spec}_{target}")
    source = generated(spec, target, directory).python_source
    code = compile(source, f"{spec}_{target}.py", "exec")
    exec(code, module.__dict__)  # the compiler's own output, not spec text
    return module


def loss_function(spec: str, target: str, directory: Path = EXAMPLES) -> types.FunctionType:
    """The per-element function `<name>(y_true, y_pred, *params)` of a generated module."""
    checked = generated(spec, target, directory).checked
    function: types.FunctionType = getattr(
        module(spec, target, directory), function_names(checked.loss_name)[0]
    )
    return function


def layout(spec: str) -> Layout:
    """The second of the shapes the compiler verifies `spec` at: [2, 5, C], or [2, C]
    for a spec that pairs samples."""
    return verification_layouts(generated(spec, "tensorflow").symbolic)[0][1]


def roles(spec: str) -> Roles:
    """The roles of `spec`'s result: the axes of the values its function returns."""
    symbolic = generated(spec, "tensorflow").symbolic
    return functions.roles_of(symbolic.result, symbolic.roles)


def output_shape(spec: str) -> tuple[int, ...]:
    """The shape of the values `spec`'s function returns for `inputs`."""
    return layout(spec).output_shape(roles(spec))


def inputs(spec: str, seed: int, edge: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """y_true (int32 labels or float64) and y_pred (float64) for `spec`: drawn from the
    kinds as the verifier draws them, and with `edge` half of y_pred on the edge grid."""
    symbolic = generated(spec, "tensorflow").symbolic
    checked = symbolic.checked
    rng = np.random.default_rng(seed)
    draw = draw_inputs(rng, checked.y_true, checked.y_pred, layout(spec), roles(spec), edge, False)
    y_pred = draw.y_pred
    if edge:
        grid = np.asarray(EDGES[checked.y_pred.kind])
        chosen = rng.random(y_pred.shape) < 0.5
        y_pred = np.where(chosen, rng.choice(grid, y_pred.shape), y_pred)
    return draw.y_true, y_pred


def is_labels(spec: str) -> bool:
    """Whether the spec's y_true holds class ids."""
    return KINDS[generated(spec, "tensorflow").checked.y_true.kind].class_ids
