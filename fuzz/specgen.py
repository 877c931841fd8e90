"""Random `.loss` spec text for fuzzing: grammar-driven, mutated, and well-typed.

One set of generators serves both the test suite (hypothesis draws the choices, so
failures shrink) and the long run `fuzz/run.py` (a seeded `random.Random` draws them,
so it is fast). Each generator takes a `Chooser`, the only source of randomness.

- `grammar_spec`: text built from the productions of `lossdsl/grammar/loss.lark`
  (statements, domains, vectors, expressions, comparisons, keywords, indexing), with
  names and numbers drawn from pools of ordinary, reserved, Python-clashing, Unicode,
  huge and malformed ones. Mostly not well-typed: it exercises the parser and checker.
- `mutate`: token deletions, insertions, duplications and swaps, odd Unicode, deep
  nesting, huge numbers, long lines and invalid UTF-8 bytes, on any spec text.
- `typed_spec`: a spec that should pass the checker: inputs of matching kinds, params
  with domains and defaults inside them, lets, elementwise functions, reductions,
  `where`, `clip` and gathers, combined only where roles nest (LANGUAGE.md section 2)
  and with `log`, `sqrt` and divisions kept on their domains.
- `paired_spec`: a well-typed spec that pairs samples (`other`, `sample_index`, `where=`
  on reductions, triplets with `other(e, 2)`).

The functions and constants come from the built-in table (`lossdsl.builtins`), so a row
added there is fuzzed without a change here: every elementwise row is drawn with its
argument clipped into its domain (`table_forms`), besides the hand-written forms that
keep some unclipped.

Spec text is only ever handed to lossdsl's own parser, never evaluated.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from lossdsl.builtins import BUILTIN_LIST, CONSTANT_VALUES, RESERVED_NAMES, Builtin, RoleRule

T = TypeVar("T")


class Chooser(Protocol):
    """Where the generators' choices come from."""

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        ...

    def choice(self, options: Sequence[T]) -> T:
        """One of `options`."""
        ...


class RandomChooser:
    """Choices from a seeded `random.Random` (the long fuzz run)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.random.randrange(len(options))]


def chance(chooser: Chooser, percent: int) -> bool:
    """True with about `percent` percent probability."""
    return chooser.integer(1, 100) <= percent


# ---------------------------------------------------------------- pools

ORDINARY_NAMES = ("x", "y", "p", "z", "q", "w", "gamma", "alpha", "beta2", "w_2", "t", "ce")
UNICODE_NAMES = ("λ", "γ", "Ωmega", "ﬁx", "x²", "变量", "é", "ǅ", "a\u0301", "_λ_")
PYTHON_NAMES = (
    "lambda", "lambda_", "tf", "tf_", "keras", "_", "__", "_a", "__init__", "self", "print",
    "None", "True", "def", "import", "y_true", "y_pred", "sample_weight", "config", "super",
    "np", "math", "Loss", "call", "get_config", "__class__", "float", "len", "range",
)  # fmt: skip
# Sorted: a frozenset's order changes between processes, and seed i must give one input.
KEYWORDS = ("input", "param", "let", "mask", "loss")
TAKEN_NAMES = tuple(sorted(RESERVED_NAMES)) + KEYWORDS
NAMES = ORDINARY_NAMES + UNICODE_NAMES + PYTHON_NAMES + TAKEN_NAMES

# Every built-in function, and names that are not one.
FUNCTIONS = (*(row.name for row in BUILTIN_LIST), "lg", "f", "sin", "gamma", "Pi")
KINDS = ("onehot", "label", "binary", "target", "prob", "logits", "real", "nonneg", "int")
DOMAINS = ("real", "nonneg", "positive", "unit", "prob", "(0, 1)", "[0, inf)", "(-inf, 0]",
           "(0, 10]", "[1, 0]", "[0, 1e200]", "(-inf, inf)", "[inf, 1)", "(0,)")  # fmt: skip
NUMBERS = (
    "0", "1", "2", "0.5", ".5", "1e-7", "3.25", "10", "2E+3", "100", "1000", "1e308",
    "1e309", "1e-400", "1e200", "2000", "1e5", "9" * 40, "0." + "0" * 30 + "1",
)  # fmt: skip
MALFORMED_NUMBERS = ("1e", "1.2.3", "2x", "0x10", "1_000", "1e+", "1..2", "1e99999")
COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")
BINARY_OPS = (" + ", " - ", " * ", " / ", "^", " ** ", "*", "-")
COMMENT_TEXTS = (
    "A loss.", "tab\there", 'triple """ quotes', "triple ''' quotes", "back\\slash \\n \\",
    "control \x0b\x0c chars", "-*- coding: utf-7 -*-", "+AGEAYQ-", "coding=latin-1",
    "unicode λ ﬁ \u202e reversed", "{braces} %s %(x)s", "trailing backslash \\", "",
    "\x1b[31m escape", "</script>", "\u2028 line separator", "\x7f delete",
)  # fmt: skip

# Tokens and characters inserted by `mutate`.
INSERTED_TOKENS = (
    "(", ")", "[", "]", ",", ":", "=", "==", "<", "^", "**", "-", "+", "*", "/", "#", "\n",
    " ", "\t", "input", "param", "let", "mask", "loss", "inf", "eps", "axis=", "axis=0",
    "where(", "clip(", "sum(", "p", "y", "1e309", "0", "'", '"', ";", ".", "@", "$", "\\",
    "\r", "\r\n", "\x00", "\ufeff", "\u00a0", "\u200b", "\u202e", "\u2028", "\ud7ff", "²",
    "\U0001f600", "ﬁ", "\x0c", "\x1f", "𝑥", "Ⅷ", "٣",
)  # fmt: skip
INVALID_BYTES = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc0\xaf")
_TOKEN = re.compile(r"\w+|\s+|\*\*|[<>=!]=|.", re.DOTALL)


# ---------------------------------------------------------------- grammar-driven text


def grammar_spec(chooser: Chooser) -> str:
    """A spec built from the grammar's productions, mostly with random names and types."""
    lines = [f"# {chooser.choice(COMMENT_TEXTS)}" for _ in range(chooser.integer(0, 2))]
    if chance(chooser, 15):
        return "\n".join([*lines, _expression(chooser, chooser.integer(0, 5))])
    for _ in range(chooser.integer(0, 6)):
        lines.append(_statement(chooser))
    separator = "\r\n" if chance(chooser, 10) else "\n"
    text = separator.join(lines)
    if chance(chooser, 5):
        text = "\ufeff" + text
    return text


def _name(chooser: Chooser) -> str:
    return chooser.choice(NAMES)


def _number(chooser: Chooser) -> str:
    if chance(chooser, 10):
        return chooser.choice(MALFORMED_NUMBERS)
    return chooser.choice(NUMBERS)


def _signed(chooser: Chooser) -> str:
    return chooser.choice(("", "-", "+")) + _number(chooser)


def _statement(chooser: Chooser) -> str:
    match chooser.integer(0, 5):
        case 0:
            return f"input {_name(chooser)}: {chooser.choice(KINDS)}"
        case 1:
            domain = f": {chooser.choice(DOMAINS)}" if chance(chooser, 60) else ""
            if chance(chooser, 25):
                entries = [_signed(chooser) for _ in range(chooser.integer(0, 6))]
                default = "[" + ", ".join(entries) + ("," if chance(chooser, 20) else "") + "]"
            else:
                default = _signed(chooser)
            return f"param {_name(chooser)}{domain} = {default}"
        case 2:
            return f"let {_name(chooser)} = {_expression(chooser, chooser.integer(0, 4))}"
        case 3:
            return f"mask {_comparison(chooser, 2)}"
        case 4:
            name = f" {_name(chooser)}" if chance(chooser, 40) else ""
            return f"loss{name} = {_expression(chooser, chooser.integer(0, 5))}"
        case _:
            return _expression(chooser, chooser.integer(0, 3))


def _comparison(chooser: Chooser, depth: int) -> str:
    left = _expression(chooser, depth)
    return f"{left} {chooser.choice(COMPARE_OPS)} {_expression(chooser, depth)}"


def _expression(chooser: Chooser, depth: int) -> str:
    if depth <= 0 or chance(chooser, 20):
        return _number(chooser) if chance(chooser, 40) else _name(chooser)
    below = depth - 1
    match chooser.integer(0, 6):
        case 0 | 1:
            parts = [_expression(chooser, below) for _ in range(chooser.integer(2, 4))]
            text = parts[0]
            for part in parts[1:]:
                text += chooser.choice(BINARY_OPS) + part
            return text
        case 2:
            return chooser.choice(("-", "+", "--", "- +")) + _expression(chooser, below)
        case 3:
            return f"({_expression(chooser, below)})"
        case 4:
            return f"{_expression(chooser, 0)}[{_expression(chooser, below)}]"
        case 5:
            condition = _comparison(chooser, below)
            return (
                f"where({condition}, {_expression(chooser, below)}, {_expression(chooser, below)})"
            )
        case _:
            arguments = [_expression(chooser, below) for _ in range(chooser.integer(0, 3))]
            if chance(chooser, 25):
                value = chooser.choice(("0", "-1", "sample", "all", "1", "x", "partner"))
                arguments.append(f"{chooser.choice(('axis', 'axis', 'keepdims', 'p'))}={value}")
            return f"{chooser.choice(FUNCTIONS)}({', '.join(arguments)})"


# ---------------------------------------------------------------- mutations


def mutate(chooser: Chooser, text: str) -> bytes:
    """`text` with a few token-level edits; sometimes bytes that are not UTF-8."""
    tokens = _TOKEN.findall(text)
    for _ in range(chooser.integer(1, 4)):
        _MUTATIONS[chooser.integer(0, len(_MUTATIONS) - 1)](chooser, tokens)
    data = "".join(tokens).encode("utf-8", errors="surrogatepass")
    if chance(chooser, 5):
        position = chooser.integer(0, len(data))
        data = data[:position] + chooser.choice(INVALID_BYTES) + data[position:]
    return data


def _position(chooser: Chooser, tokens: list[str]) -> int:
    return chooser.integer(0, len(tokens))


def _delete(chooser: Chooser, tokens: list[str]) -> None:
    if tokens:
        del tokens[chooser.integer(0, len(tokens) - 1)]


def _insert(chooser: Chooser, tokens: list[str]) -> None:
    tokens.insert(_position(chooser, tokens), chooser.choice(INSERTED_TOKENS))


def _duplicate(chooser: Chooser, tokens: list[str]) -> None:
    if tokens:
        index = chooser.integer(0, len(tokens) - 1)
        tokens.insert(index, tokens[index])


def _swap(chooser: Chooser, tokens: list[str]) -> None:
    if len(tokens) >= 2:
        index = chooser.integer(0, len(tokens) - 2)
        tokens[index], tokens[index + 1] = tokens[index + 1], tokens[index]


def _huge_number(chooser: Chooser, tokens: list[str]) -> None:
    numbers = [i for i, token in enumerate(tokens) if token[:1].isdigit()]
    huge = chooser.choice(("1e309", "9" * 500, "1e-999", "1" + "0" * 5000, "1e99999999999"))
    if numbers:
        tokens[chooser.choice(numbers)] = huge
    else:
        tokens.insert(_position(chooser, tokens), huge)


def _deep_nesting(chooser: Chooser, tokens: list[str]) -> None:
    depth = chooser.choice((30, 63, 64, 65, 66, 100, 500, 3000))
    start = _position(chooser, tokens)
    end = chooser.integer(start, len(tokens))
    opening, closing = chooser.choice((("(", ")"), ("-", ""), ("exp(", ")"), ("2^", "")))
    tokens[end:end] = [closing * depth]
    tokens[start:start] = [opening * depth]


def _long_line(chooser: Chooser, tokens: list[str]) -> None:
    piece = chooser.choice(("p + ", "x", " ", "# ", "1"))
    # Lines near the size limit take the parser seconds (by design, LANGUAGE_NOTES), so
    # they are rare here; tests/adversarial/ has a few.
    length = chooser.choice((300, 1000, 3000, 3000, 120_000))
    tokens.insert(_position(chooser, tokens), piece * length)


def _cut(chooser: Chooser, tokens: list[str]) -> None:
    del tokens[_position(chooser, tokens) :]


_MUTATIONS: tuple[Callable[[Chooser, list[str]], None], ...] = (
    _delete, _delete, _insert, _insert, _insert, _duplicate, _swap, _huge_number,
    _deep_nesting, _long_line, _cut,
)  # fmt: skip


# ---------------------------------------------------------------- well-typed specs


class Roles(Enum):
    """The role sets a typed value may have (LANGUAGE.md section 2, Roles)."""

    FULL = frozenset({"batch", "spatial", "class"})
    ELEMENT = frozenset({"batch", "spatial"})
    SAMPLE = frozenset({"batch"})
    SCALAR = frozenset[str]()
    CLASS = frozenset({"class"})


class Sign(Enum):
    """What the generator knows of a value's range, to keep functions on their domains."""

    ANY = "any"
    NONNEG = "nonneg"
    POSITIVE = "positive"


@dataclass(frozen=True)
class Value:
    """A typed expression: its text, roles, known sign, and whether it involves y_pred."""

    text: str
    roles: Roles
    sign: Sign
    uses_prediction: bool


def nests(a: Roles, b: Roles) -> bool:
    """Whether two operands' roles may meet in an elementwise operation."""
    return a.value <= b.value or b.value <= a.value


def union(a: Roles, b: Roles) -> Roles:
    return a if b.value <= a.value else b


# Kinds of (y_true, y_pred) that make sense together, and the sign of each kind's values.
KIND_PAIRS = (
    ("binary", "logits"), ("binary", "prob"), ("target", "real"), ("onehot", "prob"),
    ("onehot", "logits"), ("label", "logits"), ("label", "prob"), ("nonneg", "nonneg"),
    ("target", "nonneg"), ("binary", "real"),
)  # fmt: skip
KIND_SIGN = {
    "binary": Sign.NONNEG, "prob": Sign.NONNEG, "onehot": Sign.NONNEG, "nonneg": Sign.NONNEG,
    "target": Sign.ANY, "real": Sign.ANY, "logits": Sign.ANY,
}  # fmt: skip
# Param domains, a default inside each, and the sign every allowed value has.
PARAM_DOMAINS = (
    ("", "0.5", Sign.ANY), (": real", "-1.5", Sign.ANY), (": nonneg", "2.0", Sign.NONNEG),
    (": positive", "0.75", Sign.POSITIVE), (": unit", "0.25", Sign.NONNEG),
    (": (0, 10]", "3", Sign.POSITIVE), (": [0, inf)", "1e-3", Sign.NONNEG),
    (": [1, 5]", "1", Sign.POSITIVE), (": (-inf, 0]", "-2", Sign.ANY),
)  # fmt: skip
TYPED_NAMES = (
    "a", "b", "c", "gamma", "alpha", "delta", "s", "λ", "γ", "lambda", "lambda_", "tf",
    "tf_", "print", "self", "_", "__", "_a", "x_1", "None", "keras", "y_true", "config",
)  # fmt: skip


BUILTINS_BY_NAME = {row.name: row for row in BUILTIN_LIST}


def _clipped_into_domain(row: Builtin) -> str:
    """`name(clip({}, lo, hi))`, with [lo, hi] where the one-argument row is finite."""
    low, high = -4.0, 4.0
    if row.domain is not None and row.domain.poles:
        low, high = 0.125, 4.0
    elif row.domain is not None and row.domain.edge > -4.0:
        low, high = row.domain.edge + 0.125, row.domain.edge + 4.0
    return f"{row.name}(clip({{}}, {low:g}, {high:g}))"


def table_forms() -> tuple[tuple[Builtin, str, Sign], ...]:
    """Every elementwise built-in of one argument, its argument clipped into its domain.

    What the generator knows of the result's sign is nothing (`Sign.ANY`): a row says
    where it is defined, not the sign of its values.
    """
    return tuple(
        (row, _clipped_into_domain(row), Sign.ANY)
        for row in BUILTIN_LIST
        if row.role_rule is RoleRule.ELEMENTWISE and row.min_args == 1
    )


def binary_table_forms() -> tuple[tuple[Builtin, str, Sign], ...]:
    """Every elementwise built-in of exactly two arguments, both clipped to [-4, 4]."""
    return tuple(
        (row, f"{row.name}(clip({{}}, -4, 4), clip({{}}, -4, 4))", Sign.ANY)
        for row in BUILTIN_LIST
        if row.role_rule is RoleRule.ELEMENTWISE and row.min_args == row.max_args == 2
    )


TABLE_FORMS = table_forms()
BINARY_TABLE_FORMS = binary_table_forms()


class _TypedSpec:
    """The state of one well-typed spec being generated."""

    def __init__(self, chooser: Chooser) -> None:
        self.chooser = chooser
        names = list(TYPED_NAMES)
        self.free_names = names
        self.y_kind, self.p_kind = chooser.choice(KIND_PAIRS)
        self.y = self.fresh_name(("y", "t", "target", "labels", "lambda", "_y", "λ"))
        self.p = self.fresh_name(("p", "z", "pred", "logits_", "print", "__p", "γ"))
        self.lines: list[str] = [f"input {self.y}: {self.y_kind}", f"input {self.p}: {self.p_kind}"]
        self.atoms: list[Value] = []
        self.vector: str | None = None
        self.vector_length = 0

    def fresh_name(self, options: Sequence[str]) -> str:
        available = [name for name in options if name in self.free_names] or self.free_names
        name = self.chooser.choice(available)
        self.free_names.remove(name)
        return name

    def build(self) -> str:
        chooser = self.chooser
        if self.y_kind == "label":
            self.atoms.append(Value(f"onehot({self.y})", Roles.FULL, Sign.NONNEG, False))
        else:
            self.atoms.append(Value(self.y, Roles.FULL, KIND_SIGN[self.y_kind], False))
        self.atoms.append(Value(self.p, Roles.FULL, KIND_SIGN[self.p_kind], True))
        for _ in range(chooser.integer(0, 3)):
            self.add_param()
        for number in ("0.5", "2", "1e-3", *CONSTANT_VALUES, "num_classes"):
            self.atoms.append(Value(number, Roles.SCALAR, Sign.POSITIVE, False))
        for _ in range(chooser.integer(0, 3)):
            value = self.expression(chooser.integer(1, 3))
            name = self.fresh_name(self.free_names)
            self.lines.append(f"let {name} = {value.text}")
            self.atoms.append(Value(name, value.roles, value.sign, value.uses_prediction))
        body = self.expression(chooser.integer(1, 4))
        prediction = Value(self.p, Roles.FULL, KIND_SIGN[self.p_kind], True)
        body = self.combine(body, self.with_prediction(prediction))
        if self.y_kind == "label" and chance(chooser, 30):
            # A mask on a lifted mean of per-element values (a per-element result that is
            # not a mean takes one too, LANGUAGE.md 6.4; tests/test_masks.py covers it).
            if body.roles in (Roles.FULL, Roles.CLASS):
                body = self.reduce(body, "sum", axis="")
            self.lines.append(f"mask {self.y} != -1")
            result = Value(f"mean({body.text})", Roles.SCALAR, body.sign, True)
        else:
            result = self.reduce_to_result(body)
        name = f" {self.fresh_name(self.free_names)}" if chance(chooser, 30) else ""
        self.lines.append(f"loss{name} = {result.text}")
        return "\n".join(self.lines) + "\n"

    def with_prediction(self, prediction: Value) -> Value:
        """A function of y_pred through which its gradient flows."""
        while True:
            value = self.unary(prediction)
            if value.uses_prediction:
                return value

    def add_param(self) -> None:
        chooser = self.chooser
        name = self.fresh_name(self.free_names)
        if self.vector is None and chance(chooser, 30):
            self.vector_length = chooser.integer(1, 5)
            entries = ", ".join(
                chooser.choice(("0.5", "1", "2.5", "4")) for _ in range(self.vector_length)
            )
            self.lines.append(f"param {name}: nonneg = [{entries}]")
            self.vector = name
            self.atoms.append(Value(name, Roles.CLASS, Sign.NONNEG, False))
            return
        domain, default, sign = chooser.choice(PARAM_DOMAINS)
        self.lines.append(f"param {name}{domain} = {default}")
        self.atoms.append(Value(name, Roles.SCALAR, sign, False))

    def expression(self, depth: int) -> Value:
        chooser = self.chooser
        if depth <= 0 or chance(chooser, 15):
            return chooser.choice(self.atoms)
        match chooser.integer(0, 9):
            case 0 | 1 | 2:
                return self.unary(self.expression(depth - 1))
            case 3 | 4 | 5:
                return self.combine(self.expression(depth - 1), self.expression(depth - 1))
            case 6:
                return self.reduction(self.expression(depth - 1))
            case 7:
                return self.where(depth - 1)
            case 8:
                return self.class_axis(self.expression(depth - 1))
            case _:
                return self.gather()

    def unary(self, x: Value) -> Value:
        """An elementwise function of x, chosen among those defined wherever x can be."""
        forms: list[tuple[str, Sign]] = [
            ("sigmoid({})", Sign.POSITIVE), ("softplus({})", Sign.POSITIVE),
            ("tanh({})", Sign.ANY), ("exp(clip({}, -5, 5))", Sign.POSITIVE),
            ("square({})", Sign.NONNEG), ("abs({})", Sign.NONNEG), ("relu({})", Sign.NONNEG),
            ("cosh(clip({}, -4, 4))", Sign.POSITIVE), ("stop_gradient({})", x.sign),
            ("clip({}, -3, 3)", Sign.ANY), ("log(clip({}))", Sign.ANY), ("-({})", Sign.ANY),
            ("clip({}, 0.1, 2)", Sign.POSITIVE), ("expm1(clip({}, -3, 3))", Sign.ANY),
            ("({})^2", Sign.NONNEG), ("log1p(sigmoid({}))", Sign.POSITIVE),
            ("erf({})", Sign.ANY), ("erfc({})", Sign.POSITIVE), ("log(erfc({}))", Sign.ANY),
            ("sign({})", Sign.ANY), ("({0}) * sign({0})", Sign.ANY), ("erf({} / pi)", Sign.ANY),
        ]  # fmt: skip
        if x.sign is not Sign.ANY:
            forms += [
                ("sqrt({} + eps)", Sign.POSITIVE), ("log({} + eps)", Sign.ANY),
                ("log1p({})", Sign.NONNEG), ("({} + 1)^0.5", Sign.POSITIVE),
            ]  # fmt: skip
        if x.sign is Sign.POSITIVE:
            forms += [("log({})", Sign.ANY), ("1 / ({})", Sign.POSITIVE)]
        if x.sign is not Sign.ANY:
            forms += [
                ("lgamma({} + eps)", Sign.ANY), ("digamma({} + 1)", Sign.ANY),
                ("lgamma({} + 1)", Sign.ANY), ("sqrt(digamma({} + 2))", Sign.NONNEG),
            ]  # fmt: skip
        row: Builtin | None
        if chance(self.chooser, 30):
            row, form, sign = self.chooser.choice(TABLE_FORMS)
        else:
            form, sign = self.chooser.choice(forms)
            row = BUILTINS_BY_NAME.get(form.partition("(")[0])  # None: an operator
        text = form.format(x.text)
        uses = x.uses_prediction and (row is None or row.differentiable)
        return Value(text, x.roles, sign, uses)

    def combine(self, a: Value, b: Value) -> Value:
        """A binary elementwise operation; a class-role operand that cannot nest is summed."""
        if not nests(a.roles, b.roles):
            a = a if a.roles is not Roles.CLASS else self.reduce(a, "sum")
            b = b if b.roles is not Roles.CLASS else self.reduce(b, "sum")
        roles = union(a.roles, b.roles)
        uses = a.uses_prediction or b.uses_prediction
        forms: list[tuple[str, Sign]] = [
            ("{} + {}", _sum_sign(a.sign, b.sign)), ("{} - ({})", Sign.ANY),
            ("({}) * ({})", _product_sign(a.sign, b.sign)),
            ("maximum({}, {})", _max_sign(a.sign, b.sign)),
            ("minimum({}, {})", _min_sign(a.sign, b.sign)),
            ("({}) / (1 + square({}))", _product_sign(a.sign, Sign.POSITIVE)),
        ]  # fmt: skip
        if b.sign is Sign.POSITIVE:
            forms.append(("({}) / ({})", _product_sign(a.sign, Sign.POSITIVE)))
        if b.sign is not Sign.ANY:
            forms.append(("({}) / ({} + 1)", _product_sign(a.sign, Sign.POSITIVE)))
        if b.sign is not Sign.ANY and not b.uses_prediction:
            forms.append(("clip({}, 0.01, 0.99)^({})", Sign.POSITIVE))
        if BINARY_TABLE_FORMS and chance(self.chooser, 15):
            row, form, sign = self.chooser.choice(BINARY_TABLE_FORMS)
            uses = uses and row.differentiable
        else:
            form, sign = self.chooser.choice(forms)
        return Value(form.format(a.text, b.text), roles, sign, uses)

    def reduction(self, x: Value) -> Value:
        function = self.chooser.choice(("sum", "mean", "max", "min", "logsumexp"))
        return self.reduce(x, function)

    def reduce(self, x: Value, function: str, axis: str | None = None) -> Value:
        """x reduced over its last role, or over `axis=sample` / `axis=all` / `axis=0`."""
        chooser = self.chooser
        sign = Sign.ANY if function == "logsumexp" else x.sign
        if x.roles is Roles.SCALAR:
            return x
        after = {
            Roles.FULL: Roles.ELEMENT, Roles.ELEMENT: Roles.SAMPLE,
            Roles.SAMPLE: Roles.SCALAR, Roles.CLASS: Roles.SCALAR,
        }[x.roles]  # fmt: skip
        if axis is None:
            axis = ""
            if x.roles in (Roles.FULL, Roles.ELEMENT) and chance(chooser, 20):
                axis, after = ", axis=sample", Roles.SAMPLE
            elif chance(chooser, 10):
                axis, after = ", axis=all", Roles.SCALAR
            elif x.roles is Roles.SAMPLE and chance(chooser, 30):
                axis = ", axis=0"
        return Value(f"{function}({x.text}{axis})", after, sign, x.uses_prediction)

    def where(self, depth: int) -> Value:
        condition_left = self.expression(depth)
        condition_right = self.chooser.choice(self.atoms)
        a = self.expression(depth)
        b = self.expression(depth)
        values = [condition_left, condition_right, a, b]
        # The roles of all four must nest pairwise; sum away any class-only operand.
        if not all(nests(u.roles, v.roles) for u in values for v in values):
            values = [v if v.roles is not Roles.CLASS else self.reduce(v, "sum") for v in values]
        condition_left, condition_right, a, b = values
        roles = Roles.SCALAR
        for value in values:
            roles = union(roles, value.roles)
        operator = self.chooser.choice(COMPARE_OPS)
        text = f"where({condition_left.text} {operator} {condition_right.text}, {a.text}, {b.text})"
        sign = _max_sign(a.sign, b.sign) if a.sign == b.sign else Sign.ANY
        return Value(text, roles, sign, a.uses_prediction or b.uses_prediction)

    def class_axis(self, x: Value) -> Value:
        if x.roles is not Roles.FULL:
            return self.unary(x)
        form, sign = self.chooser.choice(
            (
                ("softmax({})", Sign.POSITIVE),
                ("log_softmax({})", Sign.ANY),
                ("cumsum({})", x.sign),
            )
        )
        return Value(form.format(x.text), x.roles, sign, x.uses_prediction)

    def gather(self) -> Value:
        if self.y_kind == "label" and chance(self.chooser, 50):
            text = f"log_softmax({self.p})[{self.y}]"
            return Value(text, Roles.ELEMENT, Sign.ANY, True)
        if self.vector is not None and self.y_kind in ("label", "onehot"):
            return Value(f"{self.vector}[class({self.y})]", Roles.ELEMENT, Sign.NONNEG, False)
        return self.chooser.choice(self.atoms)

    def reduce_to_result(self, body: Value) -> Value:
        """The loss: the body reduced to per-element, per-sample or scalar values."""
        chooser = self.chooser
        if body.roles in (Roles.FULL, Roles.CLASS):
            body = self.reduce(body, chooser.choice(("sum", "mean", "sum", "max")))
        if chance(chooser, 70) and body.roles is not Roles.SCALAR:
            return self.reduce(body, "mean")
        return body


def _sum_sign(a: Sign, b: Sign) -> Sign:
    if Sign.ANY in (a, b):
        return Sign.ANY
    return Sign.POSITIVE if Sign.POSITIVE in (a, b) else Sign.NONNEG


def _product_sign(a: Sign, b: Sign) -> Sign:
    if Sign.ANY in (a, b):
        return Sign.ANY
    return Sign.POSITIVE if a is b is Sign.POSITIVE else Sign.NONNEG


def _max_sign(a: Sign, b: Sign) -> Sign:
    if Sign.POSITIVE in (a, b):
        return Sign.POSITIVE
    return Sign.NONNEG if Sign.NONNEG in (a, b) else Sign.ANY


def _min_sign(a: Sign, b: Sign) -> Sign:
    if Sign.ANY in (a, b):
        return Sign.ANY
    return Sign.POSITIVE if a is b is Sign.POSITIVE else Sign.NONNEG


def typed_spec(chooser: Chooser) -> str:
    """A spec that should pass the checker (see the module docstring)."""
    return _TypedSpec(chooser).build()


PAIR_VALUES = (
    "sum(square(e - other(e)))",
    "sqrt(sum(square(e - other(e))) + eps)",
    "sum(e * other(e))",
    "sum(abs(e - other(e)))",
    "sum(e * other(e)) / sqrt(sum(square(e)) * sum(square(other(e))) + eps)",
)
"""Values of each pair of samples (roles batch and partner) from embeddings `e`."""

PAIR_CONDITIONS = (
    "other(y) == y",
    "other(y) != y",
    "other(y) == y and other(sample_index) != sample_index",
    "not (other(y) == y) or other(sample_index) == sample_index",
    "{} > 0.5",
    "other(y) != y and {} < 2",
)
"""Conditions on pairs; `{}` is the pair value (a condition may depend on y_pred)."""

PAIR_SHAPES = (
    "relu({} + margin)", "exp(-({}))", "softplus({})", "({})^2", "-({})", "log1p(abs({}))",
    "clip({}, -3, 3)", "{}",
)  # fmt: skip
"""Elementwise functions applied to a pair value before it is reduced over the partners."""


def paired_spec(chooser: Chooser) -> str:
    """A spec that pairs samples (LANGUAGE.md 6.5) and should pass the checker: pair values
    of embeddings, reduced over the partners with or without `where=`, sometimes against
    a second partner (triplets), combined per sample under an outer mean."""
    lines = ["input y: label", "input e: real", "param margin: positive = 1.0"]
    terms = []
    for index in range(chooser.integer(1, 3)):
        value = chooser.choice(PAIR_VALUES)
        if chance(chooser, 25):  # a triplet: the same value at the second partner
            second = value.replace("other(e)", "other(e, 2)")
            value = f"{value} - ({second})"
        lines.append(f"let pair{index} = {chooser.choice(PAIR_SHAPES).format(value)}")
        reduction = chooser.choice(("sum", "mean", "max", "min", "logsumexp"))
        axis = chooser.choice(("", ", axis=sample", ", axis=partner"))
        if "other(e, 2)" in value and axis == ", axis=partner":
            axis = ", axis=sample"
        where = ""
        if chance(chooser, 70):
            where = ", where=" + chooser.choice(PAIR_CONDITIONS).format(f"pair{index}")
        reduced = f"{reduction}(pair{index}{axis}{where})"
        if "other(e, 2)" in value and axis == "":
            reduced = f"max({reduced})"  # the default axis removed partner2 only
        terms.append(f"softplus({reduced})" if reduction == "logsumexp" else reduced)
    lines += ["# lossdsl: allow W301", f"loss = mean({' + '.join(terms)})"]
    return "\n".join(lines) + "\n"
