"""Property test: random specs over the built-ins compile, and the generated code verifies."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossdsl.compiler import compile_source
from lossdsl.source import SourceFile
from lossdsl.verification.driver import verify_module

LEAVES = st.sampled_from(["p", "y", "0.5", "2", "1.5", "p[0]", "p[-1]", "y[1]"])

UNARY_FORMS = (
    "sigmoid({})",
    "softplus({})",
    "tanh({})",
    "log(clip({}))",
    "clip({}, -3, 3)",
    "exp(clip({}, -5, 5))",
    "square(clip({}, -4, 4))",
    "relu({})",
    "abs({})",
    "stop_gradient({})",
)
BINARY_FORMS = ("{} + {}", "{} - {}", "({}) * ({})", "maximum({}, {})", "minimum({}, {})")


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    unary = st.builds(lambda form, x: form.format(x), st.sampled_from(UNARY_FORMS), children)
    binary = st.builds(
        lambda form, a, b: form.format(a, b), st.sampled_from(BINARY_FORMS), children, children
    )
    return unary | binary


ELEMENTWISE = st.recursive(LEAVES, _extend, max_leaves=5)

SPECS = st.builds(
    lambda element, outer, kinds: (
        f"input y: {kinds[0]}\ninput p: {kinds[1]}\n" + outer.format(f"{element} + sigmoid(p)")
    ),
    ELEMENTWISE,
    st.sampled_from(["loss = mean(sum({}))", "loss = mean({})", "loss = sum(mean({}))"]),
    st.sampled_from([("binary", "logits"), ("target", "real"), ("onehot", "prob")]),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(SPECS)
def test_random_specs_verify_clean(spec: str) -> None:
    compiled = compile_source(SourceFile.from_text(spec), verify=False)
    assert verify_module(compiled.symbolic, compiled.per_sample_function) == (), spec
