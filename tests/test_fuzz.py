"""Grammar-aware fuzzing in the suite: any input ends in a result or located diagnostics.

The generators live in `fuzz/specgen.py` (shared with the long run `fuzz/run.py`); here
hypothesis draws their choices, the same on every run (tests/conftest.py), and a failure
shrinks to a small spec.

- Front end: grammar-built text, and mutations of it and of the example specs, through
  parsing, the checks and the domain analysis.
- Lowering and code writing: well-typed random specs through the whole pipeline but
  verification; the module must parse and define the loss class.
- A few well-typed specs compiled with verification, for every target.

Every outcome must be a result or a `LossSpecError` whose diagnostics each render as
`fuzz.loss:LINE:COL: severity[CODE]: message`, and never E9xx ("a bug in lossdsl") for a
spec the generator knows to be valid.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lossdsl.compiler import check_source, compile_source, domain_warnings
from lossdsl.diagnostics import LossSpecError, render
from lossdsl.parser import read_source
from lossdsl.source import SourceFile

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))  # `fuzz` is a folder of the checkout, not of the package
from fuzz.specgen import (  # noqa: E402
    FUNCTIONS,
    NAMES,
    Chooser,
    RandomChooser,
    grammar_spec,
    mutate,
    paired_spec,
    typed_spec,
)
from lossdsl.builtins import BUILTINS, CONSTANT_VALUES, RoleRule  # noqa: E402

T = TypeVar("T")
FILE_NAME = "fuzz.loss"
EXAMPLE_SPECS = tuple(path.read_text("utf-8") for path in sorted(ROOT.glob("examples/*.loss")))
RENDERED_HEADER = re.compile(
    rf"^{re.escape(FILE_NAME)}:\d+:\d+: (error|warning)\[[EW]\d{{3}}\]: \S", re.MULTILINE
)
# Diagnostics about the file as a whole, with no statement to point at: an empty spec
# (E100) and one over the size limit (E117).
UNLOCATED_CODES = frozenset({"E100", "E117"})


def fuzz_settings(examples: int, *, shrink: bool = True) -> settings:
    """Settings for `examples` draws (the same on every run: tests/conftest.py).

    Without `shrink`, a failing example is reported as generated: shrinking a spec that
    is verified costs minutes, and the generated specs are small already.
    """
    phases = (Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ())
    return settings(
        max_examples=examples,
        deadline=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class DrawChooser:
    """The generators' choices, drawn by hypothesis (so that failures shrink)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))


def chooser_of(draw: st.DrawFn) -> Chooser:
    return DrawChooser(draw)


@st.composite
def grammar_bytes(draw: st.DrawFn) -> bytes:
    return grammar_spec(chooser_of(draw)).encode("utf-8", errors="surrogatepass")


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    chooser = chooser_of(draw)
    text = draw(st.sampled_from(EXAMPLE_SPECS)) if chance_of(draw) else grammar_spec(chooser)
    return mutate(chooser, text)


def chance_of(draw: st.DrawFn) -> bool:
    return draw(st.booleans())


@st.composite
def typed_text(draw: st.DrawFn) -> str:
    return typed_spec(chooser_of(draw))


def assert_located_diagnostics(failure: LossSpecError, *, valid_spec: bool) -> None:
    """Every diagnostic is coded and located; none says "a bug in lossdsl" for a valid spec."""
    assert failure.diagnostics, "a LossSpecError without diagnostics"
    assert any(d.is_error for d in failure.diagnostics), str(failure)
    for diagnostic in failure.diagnostics:
        assert re.fullmatch(r"[EW]\d{3}", diagnostic.code), diagnostic
        assert diagnostic.message.strip(), diagnostic
        rendered = render(diagnostic, failure.source)
        if diagnostic.span is None:
            assert diagnostic.code in UNLOCATED_CODES, rendered
        else:
            assert RENDERED_HEADER.match(rendered), rendered
        if valid_spec:
            assert not diagnostic.code.startswith("E9"), rendered
    str(failure)


def front_end(data: bytes) -> None:
    """Parse, check and analyse domains; a LossSpecError must be well formed."""
    try:
        checked = check_source(read_source(data, FILE_NAME))
        domain_warnings(checked)
    except LossSpecError as failure:
        assert_located_diagnostics(failure, valid_spec=False)


@fuzz_settings(150)
@given(grammar_bytes())
def test_grammar_built_text_ends_in_a_tree_or_located_diagnostics(data: bytes) -> None:
    front_end(data)


@fuzz_settings(250)
@given(mutated_bytes())
def test_mutated_text_ends_in_a_tree_or_located_diagnostics(data: bytes) -> None:
    front_end(data)


@fuzz_settings(40)
@given(typed_text())
def test_well_typed_specs_lower_and_write_a_module(text: str) -> None:
    try:
        compiled = compile_source(SourceFile.from_text(text, FILE_NAME), verify=False)
    except LossSpecError as failure:
        assert_located_diagnostics(failure, valid_spec=True)
        return
    ast.parse(compiled.python_source)
    assert compiled.loss_class.__name__ in compiled.python_source
    assert callable(compiled.per_sample_function)


@fuzz_settings(5, shrink=False)
@given(typed_text())
def test_well_typed_specs_compile_with_verification(text: str) -> None:
    try:
        compile_source(SourceFile.from_text(text, FILE_NAME), verify=True)
    except LossSpecError as failure:
        assert_located_diagnostics(failure, valid_spec=True)


@pytest.mark.parametrize("target", ["jax", "torch"])
@fuzz_settings(4, shrink=False)
@given(text=typed_text())
def test_well_typed_specs_compile_with_verification_for_every_target(
    target: str, text: str
) -> None:
    """The same specs through each backend's printer, verified on that backend (a Python
    bool where torch.where wants a tensor was found this way)."""
    pytest.importorskip(target)
    try:
        compile_source(SourceFile.from_text(text, FILE_NAME), target=target)
    except LossSpecError as failure:
        assert_located_diagnostics(failure, valid_spec=True)


@st.composite
def paired_text(draw: st.DrawFn) -> str:
    return paired_spec(chooser_of(draw))


@fuzz_settings(4, shrink=False)
@given(paired_text())
def test_specs_that_pair_samples_compile_with_verification(text: str) -> None:
    try:
        compile_source(SourceFile.from_text(text, FILE_NAME), verify=True)
    except LossSpecError as failure:
        assert_located_diagnostics(failure, valid_spec=True)


def test_the_generators_draw_every_builtin_and_constant() -> None:
    """A row added to the built-in table is fuzzed with no change to the generators."""
    assert set(BUILTINS) <= set(FUNCTIONS)
    assert set(CONSTANT_VALUES) <= set(NAMES)
    texts = "\n".join(typed_spec(RandomChooser(seed)) for seed in range(400))
    drawn = set(re.findall(r"\w+", texts))
    elementwise = {name for name, row in BUILTINS.items() if row.role_rule is RoleRule.ELEMENTWISE}
    assert elementwise - drawn == set()
    assert set(CONSTANT_VALUES) - drawn == set()
