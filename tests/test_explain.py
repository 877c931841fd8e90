"""`lossdsl explain`: every section in the spec's own notation, and a closed-form gradient.

The expected texts are exact: what a Keras user reads for the focal loss and for a
softmax cross-entropy on logits, where a stable rewrite fires.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy

from lossdsl import cli
from lossdsl.builtins import row_of
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.display import MADE_NAMES, SpecPrinter, spec_text
from lossdsl.symbolic.gradient import EPS, latex
from lossdsl.typed import ALL_ROLES, CLASS_ONLY, PER_ELEMENT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FOCAL_EXPLAINED = r"""Parsed:
    # Categorical focal loss (Lin et al., 2017).
    # The leading comment block becomes the loss's docstring.

    input y: onehot
    input p: prob
    param gamma: nonneg = 2.0
    param alpha: unit = 0.25
    let q = clip(p)
    let ce = -y * log(q)
    loss focal = mean(sum(alpha * (1 - q)^gamma * ce))

Simplified (one element):
    loss focal = mean(sum(-alpha * y * (1 - clip(p))^gamma * log(clip(p))))
    call returns sum(-alpha * y * (1 - clip(p))^gamma * log(clip(p)))  (Keras takes the outer mean)

Desugarings:
    inline_let: a let's name = its value: every use of `let a = e` is the node `e` itself
    default_arguments: omitted trailing arguments = the built-in's defaults: `clip(x)` = `clip(x, eps, 1 - eps)`
    default_axis: a reduction without `axis=` = `axis=-1`: it removes its argument's last role (class, else spatial, else batch)
    lift_outer_mean: `loss = mean(x)` = the Keras call returns x and Keras's mean reduction averages it (x with batch and no class role; through sums, negations and constant multiples)

Rewrites:
    none fired

Target fusions:
    factors_outside_sums: sum(-alpha * y * (1 - clip(p))^gamma * log(clip(p))) -> -alpha * sum(y * (1 - clip(p))^gamma * log(clip(p)))
        law: sum(k * x) = k * sum(x), and the same for a mean, for the factors k that lack every role the reduction removes (numbers, scalar params, per-sample weights); the terms of what stays inside then go out too (`terms_outside_sums`).
    clip_masks_read_from_the_clip: p >= eps and p <= 1 - eps -> clip(p) == p
        law: lo <= x and x <= hi = (clip(x, lo, hi) == x) for lo <= hi, where the body computes clip(x, lo, hi): the clip's derivative, one comparison where two and their and take three passes (as the helpers' `_inside`). False at NaN either way.

Gradient with respect to p (one element):
    -alpha * y * (1 - clip(p))^gamma * where(p >= eps and p <= 1 - eps, 1, 0) / clip(p) + alpha * gamma * y * (1 - clip(p))^gamma * log(clip(p)) * where(p >= eps and p <= 1 - eps, 1, 0) / (1 - clip(p))

Backward pass:
    the loss's own (a custom gradient, verified like the value):
    d sum(upstream * loss) / d p = where(p >= eps and p <= 1 - eps, alpha * upstream * y * (-(1 - clip(p))^gamma / clip(p) + gamma * (1 - clip(p))^(-1 + gamma) * log(clip(p))), 0)
    Keras's default reduction, the mean of every value (focal_mean, its own custom gradient):
    d (upstream * mean(loss)) / d p = where(p >= eps and p <= 1 - eps, alpha * upstream * y * (-(1 - clip(p))^gamma / clip(p) + gamma * (1 - clip(p))^(-1 + gamma) * log(clip(p))) * 1 / count[batch, spatial], 0)

LaTeX:
    loss: \operatorname{mean}_{s}\left(\sum_{c}\left(- \alpha y \left(1 - \operatorname{clip}\left(p\right)\right)^{\gamma} \log{\left(\operatorname{clip}\left(p\right) \right)}\right)\right)
    gradient: \frac{\alpha \gamma y \left(1 - \operatorname{clip}\left(p\right)\right)^{\gamma} \log{\left(\operatorname{clip}\left(p\right) \right)} \begin{cases} 1 & \text{if}\: p \geq \epsilon \wedge p \leq 1 - \epsilon \\ 0 & \text{otherwise} \end{cases}}{1 - \operatorname{clip}\left(p\right)} - \frac{\alpha y \left(1 - \operatorname{clip}\left(p\right)\right)^{\gamma} \begin{cases} 1 & \text{if}\: p \geq \epsilon \wedge p \leq 1 - \epsilon \\ 0 & \text{otherwise} \end{cases}}{\operatorname{clip}\left(p\right)}
"""  # noqa: E501

LOGITS_SPEC = "input y: onehot\ninput z: logits\nloss ce = mean(-sum(y * log(softmax(z))))\n"

LOGITS_EXPLAINED = r"""Parsed:
    input y: onehot
    input z: logits
    loss ce = mean(-sum(y * log(softmax(z))))

Simplified (one element):
    loss ce = mean(-sum(y * log_softmax(z)))
    call returns -sum(y * log_softmax(z))  (Keras takes the outer mean)

Desugarings:
    default_axis: a reduction without `axis=` = `axis=-1`: it removes its argument's last role (class, else spatial, else batch)
    lift_outer_mean: `loss = mean(x)` = the Keras call returns x and Keras's mean reduction averages it (x with batch and no class role; through sums, negations and constant multiples)

Rewrites:
    log_softmax_of_log_softmax: log(softmax(z)) -> log_softmax(z)
        law: log(softmax(z)) = log_softmax(z).

Target fusions:
    none fired

Gradient with respect to z (one element):
    -y + sum(y) * softmax(z)

Backward pass:
    the loss's own (a custom gradient, verified like the value):
    d sum(upstream * loss) / d z = upstream * (-y + exp(log_softmax(z)))
    Keras's default reduction, the mean of every value (ce_mean, its own custom gradient):
    d (upstream * mean(loss)) / d z = upstream * (-y + exp(log_softmax(z))) * 1 / count[batch, spatial]

LaTeX:
    loss: \operatorname{mean}_{s}\left(- \sum_{c}\left(y \operatorname{log\_softmax}\left(z\right)\right)\right)
    gradient: - y + \sum_{c}\left(y\right) \operatorname{softmax}\left(z\right)
"""  # noqa: E501


def explain(capsys: pytest.CaptureFixture[str], spec: Path) -> str:
    status = cli.main(["explain", str(spec)])
    out = capsys.readouterr().out
    assert status == 0
    return out


def test_focal_loss_is_explained_in_the_spec_notation(capsys) -> None:
    assert explain(capsys, EXAMPLES / "focal.loss") == FOCAL_EXPLAINED


def test_logits_spec_shows_the_rewrite_and_its_law(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "ce.loss"
    spec.write_text(LOGITS_SPEC, encoding="utf-8")
    assert explain(capsys, spec) == LOGITS_EXPLAINED


@pytest.mark.parametrize("example", ["weighted_bce_logits", "binary_crossentropy_logits"])
def test_binary_crossentropy_on_logits_lists_the_fusion_that_produced_its_code(
    example: str, capsys
) -> None:
    out = explain(capsys, EXAMPLES / f"{example}.loss")
    fusions = out.split("Target fusions:\n")[1].split("\n\n")[0]
    assert fusions.startswith("    softplus_pair: ")
    assert "law: a * softplus(-x) + b * softplus(x)" in fusions
    assert "-> softplus_pair(" in fusions and "SoftplusPair" not in fusions


def test_weighted_bce_on_logits_shows_the_fused_node_as_its_law_writes_it(capsys) -> None:
    out = explain(capsys, EXAMPLES / "weighted_bce_logits.loss")
    assert (
        "    softplus_pair: (1 - y) * softplus(z) + pos_weight * y * softplus(-z) -> "
        "softplus_pair(pos_weight * y, 1 - y, z)\n"
    ) in out


def pairs_samples(spec: Path) -> bool:
    return "other(" in spec.read_text(encoding="utf-8")


def test_the_mean_function_s_own_fusions_are_listed_under_its_name(tmp_path: Path, capsys) -> None:
    """Taylor CE's mean over everything sums its row sums, which only `taylor_mean` does."""
    spec = tmp_path / "taylor.loss"
    spec.write_text(
        "input y: onehot\ninput p: prob\nlet pt = sum(y * p)\n"
        "loss taylor = mean(1 - pt + square(1 - pt))\n"
    )
    fusions = explain(capsys, spec).split("Target fusions:\n")[1].split("\n\n")[0]
    per_sample, mean = fusions.split("    in taylor_mean:\n")
    assert mean.startswith("    sum_of_a_partial_sum: sum[batch, ")
    assert "sum_of_a_partial_sum" not in per_sample


DERIVATIVE_LEFT = {"squared_emd"}
"""Examples whose gradient goes through `cumsum` of y_pred: explain leaves that derivative
as it is (docs/LANGUAGE_NOTES.md, version 2 built-ins)."""


@pytest.mark.parametrize(
    "spec",
    [spec for spec in sorted(EXAMPLES.glob("*.loss")) if not pairs_samples(spec)],
    ids=lambda path: path.stem,
)
def test_every_example_has_a_closed_form_gradient(spec: Path, capsys) -> None:
    if spec.stem in DERIVATIVE_LEFT:
        pytest.skip("the derivative of cumsum(p) is left as a derivative")
    out = explain(capsys, spec)
    assert "Derivative(" not in out and "\\frac{\\partial}" not in out
    gradient = out.split("(one element):\n")[-1].split("\n")[0]
    assert gradient.strip() and not any(name in gradient for name in ("Clip(", "Reduce"))


def test_abs_of_a_channel_has_a_closed_form_gradient(tmp_path: Path, capsys) -> None:
    """A Laplace NLL's abs(y[0] - p[0]): the channel stood for by a dummy that SymPy took
    as complex, so abs differentiated through re() and im(), and putting the channel
    back failed (E900, "Can't calculate derivative wrt Channel(p, 0)")."""
    spec = tmp_path / "laplace_nll.loss"
    spec.write_text(
        "input y: target\ninput p: real\n"
        "loss laplace_nll = mean(p[1] + abs(y[0] - p[0]) * exp(-p[1]))\n"
    )
    gradient = explain(capsys, spec).split("(one element):\n")[-1].split("\n")[0]
    assert "sign(" in gradient
    assert not any(name in gradient for name in ("Derivative(", "re(", "im("))


@pytest.mark.parametrize(
    "spec",
    [spec for spec in sorted(EXAMPLES.glob("*.loss")) if pairs_samples(spec)],
    ids=lambda path: path.stem,
)
def test_a_pair_loss_leaves_the_partners_part_of_the_gradient_a_derivative(
    spec: Path, capsys
) -> None:
    """Each sample's gradient has a part as another sample's partner, which the
    per-element formula writes as d other(e) / d e (`symbolic.gradient`)."""
    gradient = explain(capsys, spec).split("(one element):\n")[-1].split("\n")[0]
    assert "Derivative(other(" in gradient
    assert not any(name in gradient for name in ("Clip(", "Reduce"))


def test_spec_notation_of_the_loss_vocabulary() -> None:
    y, p, z = (sympy.Symbol(name, real=True) for name in "ypz")
    w, label = sympy.Symbol("w", real=True), sympy.Symbol("k", integer=True)
    roles = {y: ALL_ROLES, p: ALL_ROLES, z: ALL_ROLES, w: CLASS_ONLY, label: PER_ELEMENT}
    clipped = fn.Clip(p, EPS, 1 - EPS)
    assert spec_text(clipped, roles) == "clip(p)"
    assert spec_text(fn.Clip(p, EPS, 1), roles) == "clip(p, eps, 1)"
    assert spec_text(sympy.Rational(1, 4) * y + p / 2, roles) == "0.5 * p + 0.25 * y"
    assert spec_text(fn.Sigmoid(z) ** 2, roles) == "sigmoid(z)^2"
    assert spec_text(fn.TakeClass(fn.LogSoftmax(z), label), roles) == "log_softmax(z)[k]"
    assert spec_text(fn.Gather(w, fn.ClassId(y)), roles) == "w[class(y)]"
    by_class = fn.ReduceSum(y * z, fn.CLASS_MASK)
    assert spec_text(fn.ReduceMean(by_class, fn.encode_roles(PER_ELEMENT)), roles) == (
        "mean[batch, spatial](sum(y * z))"
    )
    assert spec_text(fn.ReduceSum(p, fn.encode_roles(ALL_ROLES)) / fn.NUM_CLASSES, roles) == (
        "sum[batch, spatial, class](p) / num_classes"
    )


def test_fused_nodes_are_shown_by_the_names_their_laws_use() -> None:
    y, p, z, d = (sympy.Symbol(name, real=True) for name in "ypzd")
    label = sympy.Symbol("k", integer=True)
    roles = {y: ALL_ROLES, p: ALL_ROLES, z: ALL_ROLES, d: frozenset(), label: PER_ELEMENT}
    assert spec_text(fn.SoftplusPair(y, 1 - y, z), roles) == "softplus_pair(y, 1 - y, z)"
    assert spec_text(fn.ClippedLog(p, EPS, 1 - EPS), roles) == "clipped_log(p, eps, 1 - eps)"
    assert spec_text(fn.Huber(p - y, d), roles) == "huber(p - y, d)"
    assert spec_text(fn.SoftmaxCrossEntropy(y, z), roles) == (
        "softmax_cross_entropy_with_logits(y, z)"
    )
    assert spec_text(fn.SparseSoftmaxCrossEntropy(z, label), roles) == (
        "sparse_softmax_cross_entropy_with_logits(k, z)"
    )


def test_every_function_no_built_in_makes_has_a_name_in_text() -> None:
    """A new fused or rewritten function needs a name here, or a printer method: its class
    name would otherwise reach `explain`."""

    def subclasses(cls: type) -> list[type]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]

    concrete = [
        cls
        for cls in subclasses(fn.LossFunction)
        if cls.__module__ == fn.__name__ and cls.nargs != sympy.S.Naturals0
    ]
    unnamed = [
        cls.__name__
        for cls in concrete
        if row_of(cls) is None
        and cls not in MADE_NAMES
        and f"_print_{cls.__name__}" not in vars(SpecPrinter)
    ]
    assert unnamed == []


def test_latex_names_eps() -> None:
    p = sympy.Symbol("p", real=True)
    assert latex(sympy.log(fn.Clip(p, EPS, 1 - EPS))) == (
        r"\log{\left(\operatorname{clip}\left(p\right) \right)}"
    )
    assert latex(p + EPS) == r"p + \epsilon"
