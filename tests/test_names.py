"""Spec names -> Python identifiers (`codegen.names`): one-to-one, never reserved, and
accepted by `tf.function` as they are."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lossdsl
from lossdsl import cache
from lossdsl.codegen.names import (
    GENERATED_NAMES,
    ascii_spelling,
    is_reserved,
    python_names,
    tf_argument_name,
    unique_identifiers,
)
from lossdsl.compiler import check_source
from lossdsl.source import SourceFile

Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
P = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test compiles for itself: an empty disk cache and in-process cache."""
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_loaded", {})


def test_free_names_keep_their_spelling_and_clashing_ones_take_the_next_free_one() -> None:
    names = unique_identifiers(["lambda", "lambda_", "tf", "tf_", "gamma", "t0"], ["focal"])
    assert names == {
        "lambda": "lambda__",
        "lambda_": "lambda_",
        "tf": "tf__",
        "tf_": "tf_",
        "gamma": "gamma",
        "t0": "t0_",
    }


def test_names_tf_function_would_rename_are_spelled_as_it_spells_them() -> None:
    names = unique_identifiers(["_", "__", "_g", "arg__g"], [])
    assert names == {"_": "arg__", "__": "arg___", "_g": "arg__g_", "arg__g": "arg__g"}
    assert all(tf_argument_name(identifier) == identifier for identifier in names.values())


def test_inputs_are_spelled_in_ascii_and_params_keep_their_spelling() -> None:
    """TensorFlow names a traced argument's placeholder after it, in ASCII; the inputs
    are positional, so their names are the module's own, while a param's is a keyword."""
    names = unique_identifiers(["λ", "ŷ", "y", "γ"], [], positional=["λ", "ŷ"])
    assert names == {"λ": "lamda", "ŷ": "y_", "y": "y", "γ": "γ"}
    assert ascii_spelling("学") == "_" and tf_argument_name(ascii_spelling("学")) == "arg__"


def test_the_loss_function_and_class_names_are_taken_too() -> None:
    spec = "param focal = 1.0\nparam focal_mask = 2.0\nparam Focal = 3.0\n"
    spec += "loss focal = mean(square(p - y)) * (focal + focal_mask + Focal)\n"
    names = python_names(check_source(SourceFile.from_text(spec)))
    assert names == {"y": "y", "p": "p", "focal": "focal_", "focal_mask": "focal_mask_"} | {
        "Focal": "Focal_"
    }


identifiers = st.from_regex(r"[_a-zA-Zé][_a-zA-Z0-9é]{0,4}", fullmatch=True).filter(
    str.isidentifier
)


@given(st.lists(identifiers | st.sampled_from(sorted(GENERATED_NAMES)), max_size=12, unique=True))
def test_identifiers_are_one_to_one_free_and_valid_tf_function_arguments(
    spec_names: list[str],
) -> None:
    module = ["loss", "loss_mask", "Loss"]
    names = unique_identifiers(spec_names, module)
    assert list(names) == spec_names
    assert len(set(names.values())) == len(spec_names)
    for identifier in names.values():
        assert identifier.isidentifier()
        assert not is_reserved(identifier)
        assert identifier not in module
        assert tf_argument_name(identifier) == identifier


CLASHING = """\
input _: target
input __: real
param lambda: nonneg = 0.5
param lambda_: nonneg = 0.25
param tf = 2.0
param tf_ = 3.0
param _g: positive = 1.5
loss clash = mean(square(__ - _)) * (lambda + 2 * lambda_ + tf + tf_ + _g)
"""


def test_names_that_clash_in_python_compile_verify_and_keep_their_spec_names() -> None:
    compiled = lossdsl.compile(CLASHING)  # verified: tf.function renames no argument
    ast.parse(compiled.python_source)
    overrides: dict[str, Any] = {"_g": 4.0, "lambda": 1.0}
    loss = lossdsl.load(CLASHING, **overrides)
    assert loss.params == {"lambda": 1.0, "lambda_": 0.25, "tf": 2.0, "tf_": 3.0, "_g": 4.0}
    expected = np.mean(np.square(P - Y)) * (1.0 + 2 * 0.25 + 2.0 + 3.0 + 4.0)
    np.testing.assert_allclose(float(loss(Y, P)), expected, rtol=1e-6)
    config = loss.get_config()
    assert config["_g"] == 4.0 and config["lambda"] == 1.0
    np.testing.assert_allclose(float(type(loss).from_config(config)(Y, P)), expected, rtol=1e-6)
