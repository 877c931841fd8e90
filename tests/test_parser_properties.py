"""Parser properties: any text fails only with LossSpecError; unparsed trees parse back."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser import strip_spans

from lossdsl import nodes
from lossdsl.diagnostics import LossSpecError
from lossdsl.parser import parse, read_source
from lossdsl.source import SourceFile, Span
from lossdsl.unparse import unparse_expr, unparse_spec

EXAMPLES = Path(__file__).parent.parent / "examples"
INLINE_SPECS = (
    "# Focal loss.\ninput y: onehot\ninput p: prob\nparam gamma: nonneg = 2.0\n"
    "param alpha: unit = 0.25\nlet q = clip(p)\nlet ce = -y * log(q)\n"
    "loss focal = mean(sum(alpha * (1 - q)^gamma * ce))\n",
    "input y: onehot\ninput p: prob\nparam w: nonneg = [1.0, 2.5, 4.0]\n"
    "loss weighted_ce = mean(w[class(y)] * -sum(y * log(clip(p))))\n",
    "input y: label\ninput z: logits\nparam t: (0, 10] = 1\nmask y != -1\n"
    "loss = mean(where(y >= 0, -log_softmax(z / t)[y], 0), axis=sample)\n",
)
SPECS = tuple(p.read_text("utf-8") for p in sorted(EXAMPLES.glob("*.loss"))) + INLINE_SPECS
# Characters that matter to the grammar, plus some it rejects or that are unusual.
ALPHABET = "abcxyzpqλﬁ_019.eE+-*/^()[],:=<>!#$@;\"' \t\n\r\x00\u00a0²"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_bytes_or_error(data: bytes) -> None:
    """Parse bytes as a spec; a LossSpecError is fine, any other exception fails the test."""
    try:
        parse(read_source(data, "fuzz.loss"))
    except LossSpecError as failure:
        assert failure.diagnostics and all(d.code.startswith("E1") for d in failure.diagnostics)
        str(failure)


@SETTINGS
@given(st.text(alphabet=ALPHABET, max_size=200))
def test_random_text_only_raises_loss_spec_errors(text: str) -> None:
    parse_bytes_or_error(text.encode("utf-8"))


@SETTINGS
@given(st.binary(max_size=100))
def test_random_bytes_only_raise_loss_spec_errors(data: bytes) -> None:
    parse_bytes_or_error(data)


@st.composite
def mutated_spec(draw: st.DrawFn) -> str:
    """An example spec with a few characters inserted, deleted or replaced."""
    text = draw(st.sampled_from(SPECS))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        character = draw(st.sampled_from(ALPHABET))
        if edit == "insert":
            text = text[:position] + character + text[position:]
        elif edit == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + character + text[position + 1 :]
    return text


@SETTINGS
@given(mutated_spec())
def test_mutated_examples_only_raise_loss_spec_errors(text: str) -> None:
    parse_bytes_or_error(text.encode("utf-8"))


def test_example_specs_round_trip_through_unparse() -> None:
    for text in SPECS:
        spec = parse(SourceFile.from_text(text))
        again = parse(SourceFile.from_text(unparse_spec(spec)))
        assert strip_spans(again.statements) == strip_spans(spec.statements)
        assert again.docstring == spec.docstring


# ---------------------------------------------------------------- random trees

NOWHERE = Span(1, 1, 1, 1)
names = st.sampled_from(["x", "y", "p", "gamma", "λ", "w_2", "sample", "mask", "inf"])
numbers = st.sampled_from(["0", "1", "2", "0.5", "1e-7", "3.25", "10", ".5", "2E+3"]).map(
    lambda text: nodes.Number(float(text), text, NOWHERE)
)
leaves: st.SearchStrategy[nodes.Expr] = st.one_of(
    numbers, names.map(lambda id_: nodes.Name(id_, NOWHERE))
)
COMPARE_OPS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


def _flags(count: int) -> st.SearchStrategy[tuple[bool, ...]]:
    return st.lists(st.booleans(), min_size=count - 1, max_size=count - 1).map(
        lambda rest: (False, *rest)
    )


def _extend(children: st.SearchStrategy[nodes.Expr]) -> st.SearchStrategy[nodes.Expr]:
    operands = st.lists(children, min_size=2, max_size=4).map(tuple)
    keywords = st.lists(
        st.builds(lambda n, v: nodes.Keyword(n, v, NOWHERE, NOWHERE), names, children),
        max_size=2,
    ).map(tuple)
    comparison = st.builds(
        lambda op, a, b: nodes.Compare(op, a, b, NOWHERE), COMPARE_OPS, children, children
    )
    return st.one_of(
        operands.flatmap(
            lambda ops: _flags(len(ops)).map(lambda flags: nodes.Add(ops, flags, NOWHERE))
        ),
        operands.flatmap(
            lambda ops: _flags(len(ops)).map(lambda flags: nodes.Mul(ops, flags, NOWHERE))
        ),
        children.map(lambda operand: nodes.Neg(operand, NOWHERE)),
        st.builds(lambda b, e: nodes.Pow(b, e, NOWHERE), children, children),
        st.builds(lambda t, i: nodes.Index(t, i, NOWHERE), children, children),
        st.builds(
            lambda func, args, kws: nodes.Call(func, tuple(args), kws, NOWHERE, NOWHERE),
            names,
            st.lists(children, max_size=3),
            keywords,
        ),
        st.builds(
            lambda cond, rest: nodes.Call("where", (cond, *rest), (), NOWHERE, NOWHERE),
            comparison,
            st.lists(children, max_size=2),
        ),
    )


expressions = st.recursive(leaves, _extend, max_leaves=25)


@SETTINGS
@given(expressions)
def test_unparsed_expressions_parse_back_to_the_same_tree(expression: nodes.Expr) -> None:
    text = unparse_expr(expression)
    (loss,) = parse(SourceFile.from_text(f"loss = {text}")).statements
    assert isinstance(loss, nodes.LossDecl)
    assert strip_spans(loss.value) == strip_spans(expression), text
