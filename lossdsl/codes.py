"""The one table of diagnostic codes: code, stage, severity and one-line meaning each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from lossdsl.diagnostics import Severity


class Stage(Enum):
    """The stage of the pipeline that reports a code (docs/LANGUAGE_NOTES.md, one table each)."""

    PARSER = "parser"
    CHECKER = "checker"
    DOMAINS = "domains"
    GRADIENT = "gradient"
    VERIFIER = "verifier"
    CLI = "cli"


@dataclass(frozen=True)
class Code:
    """One diagnostic code: `E` codes are errors, `W` codes warnings."""

    code: str
    stage: Stage
    meaning: str

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code.startswith("W") else Severity.ERROR


CODES: dict[str, Code] = {}
"""Every diagnostic code lossdsl reports, by code, in the order of the docs' tables."""


def _code(code: str, stage: Stage, meaning: str) -> str:
    """Add a row to `CODES` and return its code, for the named constant that reports it."""
    if code in CODES:
        raise ValueError(f"diagnostic code {code} defined twice")
    CODES[code] = Code(code, stage, meaning)
    return code


EMPTY_SPEC = _code(
    "E100",
    Stage.PARSER,
    "the spec is empty (no statement; only blank or comment lines)",
)
INVALID_UTF8 = _code(
    "E101",
    Stage.PARSER,
    "the spec is not valid UTF-8 (points at the first bad byte)",
)
UNEXPECTED_CHARACTER = _code(
    "E102",
    Stage.PARSER,
    "a character that is not part of the language (`$`, `@`, `;`, `{`, `\\`, `&`, `%`, "
    "invisible characters, ...)",
)
STRING_LITERAL = _code(
    "E103",
    Stage.PARSER,
    "a string literal (`\"...\"` or `'...'`): the language has no strings",
)
ATTRIBUTE_ACCESS = _code(
    "E104",
    Stage.PARSER,
    "attribute access (`p.sum()`): call a function instead (`sum(p)`)",
)
UNEXPECTED_TOKEN = _code(
    "E105",
    Stage.PARSER,
    "an unexpected token (two operators in a row, a missing `:` or `=`, a param default "
    "that is not a literal, ...)",
)
UNEXPECTED_END = _code(
    "E106",
    Stage.PARSER,
    "a statement that ends too early (`loss =`, `input y:`)",
)
UNCLOSED_BRACKET = _code(
    "E107",
    Stage.PARSER,
    "an unclosed `(` or `[` (points at the opening bracket)",
)
UNMATCHED_BRACKET = _code(
    "E108",
    Stage.PARSER,
    "a `)` or `]` with no opening bracket",
)
MISPLACED_COMPARISON = _code(
    "E109",
    Stage.PARSER,
    "a comparison outside `mask` and a call's first argument, or a chained comparison",
)
MALFORMED_NUMBER = _code(
    "E110",
    Stage.PARSER,
    "a malformed number (`1e`, `1.2.3`, `2x`) or one too large for a float",
)
INVALID_NAME = _code(
    "E111",
    Stage.PARSER,
    "a name that is not a valid identifier (`x²`)",
)
TOO_DEEP = _code(
    "E112",
    Stage.PARSER,
    "nesting deeper than 64 levels (brackets in the text, or operations with lets written out)",
)
BARE_EXPRESSION = _code(
    "E113",
    Stage.PARSER,
    "an expression on its own line in a spec with statements",
)
MISSING_KEYWORD = _code(
    "E114",
    Stage.PARSER,
    "a statement without a keyword (`gamma = 2`)",
)
INVALID_INTERVAL = _code(
    "E115",
    Stage.PARSER,
    "an infinite interval bound that is closed or has the wrong sign",
)
POSITIONAL_AFTER_KEYWORD = _code(
    "E116",
    Stage.PARSER,
    "a positional argument after a keyword argument",
)
TOO_LARGE = _code(
    "E117",
    Stage.PARSER,
    "a spec larger than 100,000 characters, a statement of more than 20,000 nodes with lets "
    "written out, or a vector param of more than 256 entries",
)
UNKNOWN_FUNCTION = _code(
    "E201",
    Stage.CHECKER,
    "unknown function (`lg(p)`; hint: a built-in with a similar name)",
)
UNKNOWN_NAME = _code(
    "E202",
    Stage.CHECKER,
    "unknown name (hint: a visible name with a similar spelling)",
)
USED_BEFORE_DEFINITION = _code(
    "E203",
    Stage.CHECKER,
    "a `let` used above its line, or in its own definition",
)
DUPLICATE_NAME = _code(
    "E204",
    Stage.CHECKER,
    "a name declared twice (input, param or let), naming the first line",
)
RESERVED_NAME = _code(
    "E205",
    Stage.CHECKER,
    "a reserved name (built-in function or constant, `sample`, `all`, `name`, `reduction`, "
    "`dtype`) declared as input, param or let",
)
UNKNOWN_KIND = _code(
    "E206",
    Stage.CHECKER,
    "unknown input kind (`onehott`)",
)
KIND_IN_WRONG_POSITION = _code(
    "E207",
    Stage.CHECKER,
    "an input kind in the wrong position (`label` as y_pred, `prob` as y_true)",
)
TOO_MANY_INPUTS = _code(
    "E208",
    Stage.CHECKER,
    "a third `input`",
)
NO_LOSS = _code(
    "E209",
    Stage.CHECKER,
    "no `loss`",
)
SECOND_LOSS = _code(
    "E210",
    Stage.CHECKER,
    "a second `loss`, naming the first's line",
)
SECOND_MASK = _code(
    "E211",
    Stage.CHECKER,
    "a second `mask`, naming the first's line",
)
UNKNOWN_DOMAIN = _code(
    "E212",
    Stage.CHECKER,
    "unknown param domain name",
)
EMPTY_INTERVAL = _code(
    "E213",
    Stage.CHECKER,
    "an interval whose low bound is not below its high bound",
)
WRONG_ARITY = _code(
    "E214",
    Stage.CHECKER,
    "wrong number of arguments to a built-in",
)
UNKNOWN_KEYWORD = _code(
    "E215",
    Stage.CHECKER,
    "unknown keyword argument (reductions take only `axis=`; others none)",
)
REPEATED_KEYWORD = _code(
    "E216",
    Stage.CHECKER,
    "a keyword argument given twice",
)
NOT_A_FUNCTION = _code(
    "E217",
    Stage.CHECKER,
    "calling something that is not a function (`w(class(y))`; hint `w[class(y)]`)",
)
FUNCTION_AS_VALUE = _code(
    "E218",
    Stage.CHECKER,
    "a built-in function used as a value (`sum` without arguments)",
)
NOT_A_VALUE = _code(
    "E219",
    Stage.CHECKER,
    "`inf`, `sample`, `all`, `name`, `reduction`, `dtype`, `and`, `or` or `not` used as a value",
)
COMPARISON_OUTSIDE_CONDITION = _code(
    "E220",
    Stage.CHECKER,
    "a comparison or `and`/`or`/`not` outside `where`'s first argument and `mask`",
)
NOT_A_CONDITION = _code(
    "E221",
    Stage.CHECKER,
    "`where`'s first argument or a reduction's `where=` is not a condition (a comparison, "
    "or comparisons joined by `and`, `or`, `not`)",
)
ROLES_NOT_NESTED = _code(
    "E301",
    Stage.CHECKER,
    "operands whose roles do not nest (a [class] vector times a per-sample value: hint "
    "`w[class(y)]`)",
)
NO_CLASS_ROLE = _code(
    "E302",
    Stage.CHECKER,
    "a class-axis function (`softmax`, `log_softmax`, `cumsum`) of a value without the class role",
)
NOTHING_TO_REDUCE = _code(
    "E303",
    Stage.CHECKER,
    "a reduction with nothing to remove",
)
INVALID_AXIS = _code(
    "E304",
    Stage.CHECKER,
    "an `axis` other than -1, 0, sample, all, partner, partner2",
)
CLASS_OF_NON_Y_TRUE = _code(
    "E305",
    Stage.CHECKER,
    "`class()` of something other than the y_true input",
)
ONEHOT_OF_NON_LABEL = _code(
    "E306",
    Stage.CHECKER,
    "`onehot()` of something other than a `label` input",
)
GATHER_FROM_NON_VECTOR = _code(
    "E307",
    Stage.CHECKER,
    "indexing a value that is not a per-class vector",
)
GATHER_INDEX_NOT_CLASS_ID = _code(
    "E308",
    Stage.CHECKER,
    "a gather index that is not a class id",
)
CLASS_IDS_IN_ARITHMETIC = _code(
    "E309",
    Stage.CHECKER,
    "class ids (a `label` input, `class(y)`) in arithmetic",
)
RESULT_HAS_CLASS_ROLE = _code(
    "E310",
    Stage.CHECKER,
    "the loss's result still has the class role",
)
RESULT_SPATIAL_WITHOUT_BATCH = _code(
    "E311",
    Stage.CHECKER,
    "the loss's result has the spatial role without the batch role",
)
MASK_HAS_CLASS_ROLE = _code(
    "E312",
    Stage.CHECKER,
    "a `mask` with the class role",
)
MASK_ON_SCALAR_RESULT = _code(
    "E313",
    Stage.CHECKER,
    "a `mask` on a loss whose result is a scalar",
)
MASK_ROLES_NOT_IN_RESULT = _code(
    "E314",
    Stage.CHECKER,
    "a `mask` with roles the result does not have",
)
VECTOR_LENGTHS_DIFFER = _code(
    "E315",
    Stage.CHECKER,
    "vector params of different lengths",
)
SELECTION_NOT_LITERAL = _code(
    "E320",
    Stage.CHECKER,
    "a channel index or slice bound that is not an integer literal (`p[0.5]`, `p[k:2]`), "
    "or a slice with a step (`p[0:2:1]`)",
)
SELECTION_OUTSIDE = _code(
    "E321",
    Stage.CHECKER,
    "a channel selection outside a class axis of known size (a vector param, a slice of "
    "literal width), or one that selects nothing (`p[2:1]`)",
)
CLASS_SIZES_DIFFER = _code(
    "E322",
    Stage.CHECKER,
    "class axes of different known sizes combined (`p[0:2] - p[0:3]`)",
)
OTHER_WITHOUT_BATCH = _code(
    "E330",
    Stage.CHECKER,
    "`other(x)` of a value without the batch role",
)
OTHER_OF_PARTNER = _code(
    "E331",
    Stage.CHECKER,
    "`other(x)` of a value that already has a partner role (`other(other(x))`: hint `other(x, 2)`)",
)
INVALID_PARTNER = _code(
    "E332",
    Stage.CHECKER,
    "`other(x, n)` with n other than the number 1 or 2",
)
RESULT_HAS_PARTNER_ROLE = _code(
    "E333",
    Stage.CHECKER,
    "the loss's result still has a partner role",
)
DEFAULT_OUTSIDE_DOMAIN = _code(
    "E401",
    Stage.CHECKER,
    "a param default outside its domain (the checker's one E4xx)",
)
BATCH_COUPLED = _code(
    "W301",
    Stage.CHECKER,
    "each sample's loss depends on the whole batch (a reduction over the batch, or `other`, "
    "inside the result)",
)
SCALAR_NOT_LIFTED = _code(
    "W302",
    Stage.CHECKER,
    "a scalar result that cannot be lifted: sample_weight scales it as Keras scales a scalar loss",
)
SLICE_IS_ALL_CHANNELS = _code(
    "W303",
    Stage.CHECKER,
    "a slice of y_pred's channels of literal width combined with a value that has all of "
    "y_pred's classes (`onehot(y) * log_softmax(z[0:4])`): the loss runs only where y_pred "
    "has exactly that many, the slice all of it",
)
LOG_OF_NEGATIVE = _code(
    "E402",
    Stage.DOMAINS,
    "`log`/`log1p` of a value that is below 0 (-1) for some inputs and params: NaN; names "
    "a witness",
)
NEVER_FINITE = _code(
    "E403",
    Stage.DOMAINS,
    "`log`/`log1p` of a value that is never above 0 (-1), or a function with poles (its "
    "row's `Domain`) of a value always at one: never finite",
)
SQRT_OF_NEGATIVE = _code(
    "E404",
    Stage.DOMAINS,
    "`sqrt` of a value that can be negative: NaN; names a witness",
)
POWER_OF_NEGATIVE = _code(
    "E405",
    Stage.DOMAINS,
    "a negative base to a non-integer power (constant, param or expression exponent); "
    "names a witness",
)
DIVISION_BY_ZERO_EVERYWHERE = _code(
    "E406",
    Stage.DOMAINS,
    "division by a value that is 0 everywhere",
)
CONSTANT_OVERFLOW = _code(
    "E407",
    Stage.DOMAINS,
    "a constant beyond float64's range (`1e308 * 10`, `p * 2^1e5`, or params and constants "
    "at the params' defaults: `a * a` with `param a = 1e308`): no float holds it, so the "
    "loss is not the spec's for any input; also a constant factor whose product is 0 "
    "whatever it multiplies (`p * 0.5^2200`), and one too small to compute exactly "
    "(below 2^-65536)",
)
INFINITE_AT_ZERO_OR_POLE = _code(
    "W401",
    Stage.DOMAINS,
    "`log`/`log1p` of a value that can be 0 (-1): -inf (`log(p)` of a `prob` input); a "
    "function with poles of a value that can be at one: not finite",
)
UNPROVEN_DOMAIN = _code(
    "W402",
    Stage.DOMAINS,
    "the ranges allow a NaN or a pole (negative `log`/`sqrt` argument, negative base of a "
    "fractional power, an argument at a function's pole) but no witness was found: "
    "the compiler could not prove the value stays in range",
)
DIVISION_BY_ZERO = _code(
    "W403",
    Stage.DOMAINS,
    "division by a value that can be 0 (names the divisor, and a point where it is 0)",
)
SQRT_GRADIENT_AT_ZERO = _code(
    "W404",
    Stage.DOMAINS,
    "`sqrt` of a value that can be 0: infinite gradient there",
)
POWER_GRADIENT_AT_ZERO = _code(
    "W405",
    Stage.DOMAINS,
    "`x^a` with x able to be 0 and a able to lie in (0, 1): infinite gradient (`(1 - "
    "p)^gamma` with `gamma: nonneg`)",
)
NEGATIVE_POWER_OF_ZERO = _code(
    "W406",
    Stage.DOMAINS,
    "a negative power of a value that can be 0: infinite value",
)
UNSELECTED_NAN = _code(
    "W407",
    Stage.DOMAINS,
    "a NaN that only occurs in a `where` branch not selected there: TensorFlow computes "
    "both branches, and the gradient through `sqrt` or a power is NaN there",
)
FLOAT32_OVERFLOW = _code(
    "W408",
    Stage.DOMAINS,
    "a value beyond float32's range (3.4e38), which a loss computing in float32 holds as "
    "inf: a constant (`cosh(100)`), a param whose domain allows such values, or a "
    "sub-expression that overflows at a named witness",
)
NO_PREDICTION = _code(
    "E501",
    Stage.DOMAINS,
    "the loss does not contain y_pred",
)
NO_GRADIENT_PATH = _code(
    "E502",
    Stage.DOMAINS,
    "y_pred occurs only where no gradient flows: inside `stop_gradient`, `class`, "
    "`onehot`, comparisons (`where` conditions) or gather indices",
)
PREDICTION_CANCELS = _code(
    "E503",
    Stage.GRADIENT,
    "y_pred cancels: the loss as written uses it, but the simplified loss does not "
    "(`mean(p - p)`), so its gradient is always 0. Found after lowering "
    "(`symbolic/gradient.py`, `cancellation_diagnostics`), at the `loss` line; a "
    "cancellation that SymPy's bounded simplification does not see (`square(p - y) - "
    "square(y - p)`) is not reported",
)
LOSS_RISES_TOWARD_TRUTH = _code(
    "W601",
    Stage.DOMAINS,
    "the loss rises as y_pred moves toward y_true at every sampled point (a `onehot`, "
    "`label` or `binary` y_true against a `prob` or `logits` y_pred): a missing minus, as "
    "in `mean(sum(y * log(clip(p))))`",
)
VALUE_DISAGREES = _code(
    "E901",
    Stage.VERIFIER,
    "the generated loss value differs from SymPy's exact value",
)
GRADIENT_DISAGREES = _code(
    "E902",
    Stage.VERIFIER,
    "the generated gradient of sum(cotangent * loss) with respect to y_pred differs",
)
GENERATED_FUNCTION_FAILED = _code(
    "E903",
    Stage.VERIFIER,
    "the generated function raised, or returned a shape other than Keras's ([B, S...], [B] or [])",
)
INTERNAL_ERROR = _code(
    "E900",
    Stage.CLI,
    "internal error: an exception inside lossdsl while handling the spec (command line "
    "only, exit 70; no span)",
)
