"""The backends of generated code (`codegen.targets`): one vocabulary, each spelled whole."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lossdsl.builtins import BUILTINS
from lossdsl.codegen.helpers import target_helpers
from lossdsl.codegen.targets import OPTIONAL_FORMS, TARGETS, TENSORFLOW, target_named
from lossdsl.compiler import generate
from lossdsl.parser import read_source

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.loss"))

NAMESPACES = {"tensorflow": ("tf.",), "jax": ("jnp.", "jax."), "torch": ("torch.",)}
"""The names each backend's calls start with."""


def test_every_target_spells_every_operation() -> None:
    required = set(TENSORFLOW.forms) - OPTIONAL_FORMS
    for target in TARGETS.values():
        assert set(target.forms) - OPTIONAL_FORMS == required, target.name
        assert set(target.forms) - required <= OPTIONAL_FORMS, target.name


def test_every_builtin_with_a_call_has_one_per_target_in_its_namespace() -> None:
    for name, row in BUILTINS.items():
        if row.calls is None:
            continue
        for target in TARGETS:
            call = getattr(row.calls, target)
            in_namespace = call.startswith(NAMESPACES[target])
            assert in_namespace or call in target_helpers(target).sources, (name, target, call)


def test_an_unknown_target_is_a_value_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tensorflow, jax, torch"):
        target_named("numpy")


MODULE_NAMES = {"tensorflow": {"tf"}, "jax": {"jax", "jnp"}, "torch": {"torch"}}
"""The names each backend's modules reach their framework by."""


@pytest.mark.parametrize("target", ["jax", "torch"])
def test_a_module_uses_only_its_own_framework(target: str) -> None:
    """No example's module for JAX or PyTorch uses another framework (spec text quoted in
    docstrings aside), and each one imports every module it uses."""
    others = set().union(*(names for name, names in MODULE_NAMES.items() if name != target))
    for spec in EXAMPLES:
        text = generate(read_source(spec.read_bytes(), spec.name), target=target).python_source
        tree = ast.parse(text)
        used = {
            node.value.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        }
        imported = {
            (alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert not (used | imported) & others, spec.name
        modules = used & {"jnp", "jax", "torch", "math", "keras"}
        assert modules <= imported, (spec.name, modules - imported)


@pytest.mark.parametrize(
    ("spec", "form"),
    [
        ("binary_crossentropy_logits", "_sigmoid_cross_entropy("),
        ("huber", "_huber(p, delta, target=y)"),
        (
            "categorical_crossentropy_logits",
            "_affine(y, 1.0 - label_smoothing, label_smoothing * 1.0 / num_classes)",
        ),
    ],
)
def test_a_target_writes_a_node_with_its_optional_form(spec: str, form: str) -> None:
    """PyTorch's forms of binary cross-entropy (weights that sum to 1, label smoothing's
    included), of the Huber loss of a difference and of labels scaled and shifted by
    params (`num_classes` a Python int there), where every other target writes the shared
    helper or the products and sums."""
    path = EXAMPLES[0].parent / f"{spec}.loss"
    source = read_source(path.read_bytes(), path.name)
    assert form in generate(source, target="torch").python_source
    assert form not in generate(source, target="jax").python_source
