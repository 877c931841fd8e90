"""The parser: every construct, precedence, spans, layout, Unicode, limits and decoding."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from lossdsl import nodes
from lossdsl.diagnostics import LossSpecError
from lossdsl.parser import NESTING_LIMIT, SIZE_LIMIT, parse, read_source
from lossdsl.source import SourceFile, Span
from lossdsl.unparse import unparse_expr, unparse_spec

SPAN_FIELDS = frozenset({"span", "name_span", "func_span", "kind_span"})


def strip_spans(value: Any) -> Any:
    """A node as nested tuples `(ClassName, field...)` without its spans, for comparisons."""
    if isinstance(value, tuple):
        return tuple(strip_spans(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (
            strip_spans(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.name not in SPAN_FIELDS and field.name not in ("source",)
        )
        return (type(value).__name__, *fields)
    return value


def parse_text(text: str) -> nodes.Spec:
    return parse(SourceFile.from_text(text, "test.loss"))


def expr(text: str) -> nodes.Expr:
    """The expression of a one-line spec `loss = TEXT`."""
    (statement,) = parse_text(f"loss = {text}").statements
    assert isinstance(statement, nodes.LossDecl)
    return statement.value


def shape(text: str) -> Any:
    return strip_spans(expr(text))


def errors(text: str) -> list[tuple[str, int, int]]:
    """(code, line, column) of every diagnostic of a spec that fails to parse."""
    with pytest.raises(LossSpecError) as failure:
        parse_text(text)
    return [
        (d.code, d.span.line if d.span else 0, d.span.column if d.span else 0)
        for d in failure.value.diagnostics
    ]


def name(id_: str) -> tuple[str, str]:
    return ("Name", id_)


def number(text: str) -> tuple[str, float, str]:
    return ("Number", float(text), text)


FOCAL = """\
# Categorical focal loss (Lin et al., 2017).
# The leading comment block becomes the loss's docstring.

input y: onehot          # y_true, shape [batch, ..., C]
input p: prob            # y_pred, shape [batch, ..., C]

param gamma: nonneg = 2.0
param alpha: unit = 0.25

let q = clip(p)
let ce = -y * log(q)
loss focal = mean(sum(alpha * (1 - q)^gamma * ce))
"""


# ---------------------------------------------------------------- statements


def test_focal_spec_parses_to_its_statements() -> None:
    spec = parse_text(FOCAL)
    kinds = [type(s).__name__ for s in spec.statements]
    assert kinds == ["InputDecl"] * 2 + ["ParamDecl"] * 2 + ["LetDecl"] * 2 + ["LossDecl"]
    assert spec.docstring == (
        "Categorical focal loss (Lin et al., 2017).\n"
        "The leading comment block becomes the loss's docstring."
    )
    y, p, gamma, alpha, q, ce, loss = spec.statements
    assert strip_spans(y) == ("InputDecl", "y", "onehot")
    assert strip_spans(p) == ("InputDecl", "p", "prob")
    assert strip_spans(gamma) == ("ParamDecl", "gamma", ("NamedDomain", "nonneg"), number("2.0"))
    assert isinstance(alpha, nodes.ParamDecl) and alpha.default == nodes.Number(
        0.25, "0.25", Span(8, 21, 8, 25)
    )
    assert strip_spans(q) == ("LetDecl", "q", ("Call", "clip", (name("p"),), ()))
    assert isinstance(ce, nodes.LetDecl) and ce.name == "ce"
    assert isinstance(loss, nodes.LossDecl) and loss.name == "focal"
    assert unparse_spec(spec).splitlines()[-1] == (
        "loss focal = mean(sum(alpha * (1 - q)^gamma * ce))"
    )


@pytest.mark.parametrize(
    ("domain_text", "low", "high", "low_closed", "high_closed"),
    [
        ("(0, 1)", 0.0, 1.0, False, False),
        ("[0, inf)", 0.0, None, True, False),
        ("(-inf, 0]", None, 0.0, False, True),
        ("(0, 10]", 0.0, 10.0, False, True),
        ("[-1.5, +2e3]", -1.5, 2000.0, True, True),
    ],
)
def test_interval_domains(
    domain_text: str, low: float | None, high: float | None, low_closed: bool, high_closed: bool
) -> None:
    (param,) = parse_text(f"param t: {domain_text} = 0.5").statements
    assert isinstance(param, nodes.ParamDecl)
    assert strip_spans(param.domain) == ("Interval", low, high, low_closed, high_closed)
    assert param.domain is not None and param.domain.span == Span(1, 10, 1, 10 + len(domain_text))


def test_param_defaults_signed_numbers_and_vectors_across_lines() -> None:
    spec = parse_text(
        "param a = -2\nparam b: positive = +3\nparam w = [1.0,\n  2.5,   # mid\n 4.0,]"
    )
    a, b, w = spec.statements
    assert isinstance(a, nodes.ParamDecl) and a.domain is None
    assert a.default == nodes.Number(-2.0, "-2", Span(1, 11, 1, 13))
    assert isinstance(b, nodes.ParamDecl) and strip_spans(b.default) == number("3")
    assert isinstance(w, nodes.ParamDecl) and isinstance(w.default, nodes.VectorLiteral)
    assert [n.value for n in w.default.values] == [1.0, 2.5, 4.0]
    assert w.default.span == Span(3, 11, 5, 7)
    assert w.span == Span(3, 1, 5, 7)


def test_let_mask_and_unnamed_loss() -> None:
    spec = parse_text("let t = y\nmask y != -1\nloss = t")
    let, mask, loss = spec.statements
    assert strip_spans(let) == ("LetDecl", "t", name("y"))
    assert strip_spans(mask) == (
        "MaskDecl",
        ("Compare", "!=", name("y"), ("Neg", number("1"))),
    )
    assert isinstance(loss, nodes.LossDecl) and loss.name is None and loss.name_span is None


def test_statement_keywords_are_names_elsewhere() -> None:
    (let,) = parse_text("let mask = loss + input * inf").statements
    assert isinstance(let, nodes.LetDecl) and let.name == "mask"
    assert unparse_expr(let.value) == "loss + input * inf"


def test_bare_expression_is_the_loss() -> None:
    spec = parse(SourceFile.from_text("mean(square(p - y))"))
    (loss,) = spec.statements
    assert isinstance(loss, nodes.LossDecl) and loss.name is None
    assert unparse_expr(loss.value) == "mean(square(p - y))"
    assert loss.span == loss.value.span == Span(1, 1, 1, 20)


def test_bare_expression_among_statements_is_an_error() -> None:
    assert errors("input y: target\np - y") == [("E113", 2, 1)]


# ---------------------------------------------------------------- expressions


def test_unary_minus_is_looser_than_power() -> None:
    assert shape("-x^2") == ("Neg", ("Pow", name("x"), number("2")))
    assert shape("x^-2") == ("Pow", name("x"), ("Neg", number("2")))
    assert shape("x**-y**2") == ("Pow", name("x"), ("Neg", ("Pow", name("y"), number("2"))))


def test_power_is_right_associative() -> None:
    assert shape("2^3^2") == ("Pow", number("2"), ("Pow", number("3"), number("2")))
    assert shape("(2^3)^2") == ("Pow", ("Pow", number("2"), number("3")), number("2"))


def test_sums_and_products_are_flat() -> None:
    assert shape("a - b - c") == ("Add", (name("a"), name("b"), name("c")), (False, True, True))
    assert shape("a / b * c") == ("Mul", (name("a"), name("b"), name("c")), (False, True, False))
    assert shape("a + b * c - -d") == (
        "Add",
        (name("a"), ("Mul", (name("b"), name("c")), (False, False)), ("Neg", name("d"))),
        (False, False, True),
    )
    nested = shape("(a + b) + c")
    assert nested[0] == "Add" and nested[1][0][0] == "Add"


def test_unary_plus_is_dropped() -> None:
    assert shape("+x") == name("x")
    assert shape("-+x") == ("Neg", name("x"))


def test_calls_keywords_and_indexing() -> None:
    assert shape("sum(x, axis=0)") == (
        "Call",
        "sum",
        (name("x"),),
        (("Keyword", "axis", number("0")),),
    )
    assert shape("mean(x, axis=-1)")[3] == (("Keyword", "axis", ("Neg", number("1"))),)
    assert shape("sum(x, axis=sample,)")[3] == (("Keyword", "axis", name("sample")),)
    assert shape("f()") == ("Call", "f", (), ())
    assert shape("w[class(y)]") == (
        "Index",
        name("w"),
        ("Call", "class", (name("y"),), ()),
        False,
    )


def test_channel_selections() -> None:
    assert shape("p[0]") == ("Index", name("p"), number("0"), False)
    assert shape("p[-1]") == ("Index", name("p"), ("Neg", number("1")), False)
    assert shape("p[..., 1]") == ("Index", name("p"), number("1"), True)
    assert shape("p[0:2]") == ("Index", name("p"), ("Slice", number("0"), number("2"), None), False)
    assert shape("p[..., :-1]") == (
        "Index",
        name("p"),
        ("Slice", None, ("Neg", number("1")), None),
        True,
    )
    assert shape("p[1:]") == ("Index", name("p"), ("Slice", number("1"), None, None), False)
    assert shape("p[0:4:2]")[2] == ("Slice", number("0"), number("4"), number("2"))
    assert shape("softmax(z)[0]")[1] == ("Call", "softmax", (name("z"),), ())


@pytest.mark.parametrize(
    "text", ["p[0]", "p[-1]", "p[..., 1]", "p[0:2]", "p[..., :-1]", "p[1:]", "p[:]", "p[0:4:2]"]
)
def test_selections_unparse_as_written(text: str) -> None:
    assert unparse_expr(expr(text)) == text


def test_comparison_as_first_argument() -> None:
    assert shape("where(y >= 0.5, p, 1 - p)") == (
        "Call",
        "where",
        (
            ("Compare", ">=", name("y"), number("0.5")),
            name("p"),
            ("Add", (number("1"), name("p")), (False, True)),
        ),
        (),
    )


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_every_comparison_operator(op: str) -> None:
    (mask,) = parse_text(f"mask y {op} 1").statements
    assert isinstance(mask, nodes.MaskDecl) and isinstance(mask.condition, nodes.Compare)
    assert mask.condition.op == op


@pytest.mark.parametrize(
    "text", ["p > 0.5", "where(y, p > 0, p)", "sum(p) == 1", "(y > 0)", "where(a < b < c, p, y)"]
)
def test_comparisons_elsewhere_are_syntax_errors(text: str) -> None:
    assert [code for code, _, _ in errors(f"loss = {text}")] == ["E109"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("2", 2.0), ("0.5", 0.5), ("1e-7", 1e-7), ("1E+3", 1000.0), (".5", 0.5), ("5.", 5.0)],
)
def test_numbers(text: str, value: float) -> None:
    assert expr(text) == nodes.Number(value, text, Span(1, 8, 1, 8 + len(text)))


# ---------------------------------------------------------------- spans and layout


def test_expression_spans_are_one_based_with_exclusive_ends() -> None:
    value = expr("mean(w[i] * (p - y)^2)")
    assert isinstance(value, nodes.Call)
    assert value.span == Span(1, 8, 1, 30) and value.func_span == Span(1, 8, 1, 12)
    (product,) = value.args
    assert isinstance(product, nodes.Mul) and product.span == Span(1, 13, 1, 29)
    index, power = product.operands
    assert isinstance(index, nodes.Index) and index.span == Span(1, 13, 1, 17)
    assert isinstance(power, nodes.Pow) and power.span == Span(1, 20, 1, 29)
    assert isinstance(power.base, nodes.Add) and power.base.span == Span(1, 21, 1, 26)


def test_declaration_spans() -> None:
    spec = parse_text("\n  input y: label\nloss ce = y")
    inp, loss = spec.statements
    assert isinstance(inp, nodes.InputDecl)
    assert (inp.span, inp.name_span, inp.kind_span) == (
        Span(2, 3, 2, 17),
        Span(2, 9, 2, 10),
        Span(2, 12, 2, 17),
    )
    assert isinstance(loss, nodes.LossDecl) and loss.name_span == Span(3, 6, 3, 8)


def test_crlf_and_cr_line_ends() -> None:
    spec = parse(read_source(b"# doc\r\ninput y: target\r\nloss = mean(\r\n  y)\r\n", "c.loss"))
    assert spec.docstring == "doc"
    loss = spec.statements[1]
    assert loss.span == Span(3, 1, 4, 5)
    assert len(parse(read_source(b"input y: target\rloss = y", "r.loss")).statements) == 2


def test_continuation_inside_brackets_with_comments_and_blank_lines() -> None:
    spec = parse_text("loss = mean(   # open\n\n   p - y   # inside\n\n)\n# trailing comment\n")
    (loss,) = spec.statements
    assert isinstance(loss, nodes.LossDecl) and loss.span == Span(1, 1, 5, 2)
    assert unparse_expr(loss.value) == "mean(p - y)"


def test_docstring_is_the_leading_comment_block_only() -> None:
    spec = parse_text("#First line\n#   indented\n#\n# after blank\n\nloss = y  # not doc\n# no")
    assert spec.docstring == "First line\n  indented\n\nafter blank"
    assert parse_text("loss = y\n# late").docstring == ""


def test_unicode_identifiers_are_nfkc_normalised() -> None:
    spec = parse_text("param λ = 0.5\nlet γ = ﬁ\nloss = λ * γ")
    param, let, loss = spec.statements
    assert isinstance(param, nodes.ParamDecl) and param.name == "λ"
    assert isinstance(let, nodes.LetDecl) and let.name == "γ"
    assert let.value == nodes.Name("fi", Span(2, 9, 2, 10))
    assert type(param.name) is str
    assert isinstance(loss, nodes.LossDecl) and unparse_expr(loss.value) == "λ * γ"


def test_names_python_rejects_are_rejected() -> None:
    assert errors("loss = x²") == [("E111", 1, 8)]


# ---------------------------------------------------------------- errors and limits


def test_every_bad_statement_is_reported() -> None:
    text = "input y onehot\nparam g 2\nlet a = p $ 1\nloss = (p -\nlet b = 1"
    assert errors(text) == [("E105", 1, 9), ("E105", 2, 9), ("E102", 3, 11), ("E107", 4, 8)]


def test_unexpected_end_points_after_the_last_code() -> None:
    with pytest.raises(LossSpecError) as failure:
        parse_text("loss = p *   # more later\n\n")
    (diagnostic,) = failure.value.diagnostics
    assert diagnostic.code == "E106" and diagnostic.span == Span(1, 11, 1, 12)
    assert diagnostic.label == "expected an expression"


def test_empty_and_comment_only_specs() -> None:
    assert errors("") == [("E100", 0, 0)]
    assert errors("# nothing\n\n   # here\n") == [("E100", 0, 0)]


def _nest(depth: int) -> str:
    return "(" * depth + "x" + ")" * depth


def test_nesting_up_to_the_limit_parses() -> None:
    assert shape(_nest(NESTING_LIMIT)) == name("x")
    assert shape("-" * NESTING_LIMIT + "x")[0] == "Neg"


@pytest.mark.parametrize(
    ("text", "column"),
    [
        (_nest(NESTING_LIMIT + 1), 8 + NESTING_LIMIT),
        ("-" * 10_000 + "x", 8 + NESTING_LIMIT),
        ("x^" * 10_000 + "x", 8 + 2 * NESTING_LIMIT + 1),
        (_nest(10_000), 8 + NESTING_LIMIT),
        ("f(" * 10_000 + "x" + ")" * 10_000, 8 + 2 * NESTING_LIMIT + 1),
    ],
    ids=["limit+1", "signs", "powers", "brackets", "calls"],
)
def test_deep_nesting_is_an_error_at_the_crossing_point(text: str, column: int) -> None:
    started = time.perf_counter()
    assert errors(f"loss = {text}") == [("E112", 1, column)]
    assert time.perf_counter() - started < 5


def test_long_flat_expression_is_one_node() -> None:
    operands = 5_000
    text = " + ".join(f"a{i} * b{i}" for i in range(operands))
    assert len(text) < SIZE_LIMIT
    started = time.perf_counter()
    value = expr(text)
    assert time.perf_counter() - started < 5
    assert isinstance(value, nodes.Add) and len(value.operands) == operands


def test_spec_over_the_size_limit_is_an_error() -> None:
    text = "loss = " + " + ".join("x" for _ in range(100_000))  # 300 KB
    started = time.perf_counter()
    assert errors(text) == [("E117", 0, 0)]
    assert time.perf_counter() - started < 1


# ---------------------------------------------------------------- reading bytes


def test_read_source_drops_a_bom_and_normalises_newlines() -> None:
    source = read_source(b"\xef\xbb\xbfloss = y\r\n", "bom.loss")
    assert source.text == "loss = y\n" and source.name == "bom.loss"


def test_invalid_utf8_is_a_located_diagnostic() -> None:
    with pytest.raises(LossSpecError) as failure:
        read_source(b"input y: target\r\nloss = \xff\xfe y\n", "bad.loss")
    (diagnostic,) = failure.value.diagnostics
    assert diagnostic.code == "E101" and diagnostic.message == "spec is not valid UTF-8"
    assert diagnostic.span == Span(2, 8, 2, 9)
    assert "UTF-8" in diagnostic.help[0]
    assert "bad.loss:2:8: error[E101]" in str(failure.value)
