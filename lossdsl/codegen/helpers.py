"""Module-level functions a generated module defines when its printed code calls them."""

from __future__ import annotations

SOFTPLUS_PAIR = "_softplus_pair"
"""a * softplus(-x) + b * softplus(x) with a hand-written exact gradient (`HELPERS`)."""

HELPERS: dict[str, str] = {
    SOFTPLUS_PAIR: '''
def _softplus_pair(a, b, x):
    """a * softplus(-x) + b * softplus(x), from one exp, with its exact gradient.

    The value is (a + b) * log1p(exp(-|x|)) + where(x >= 0, b * x, -a * x), which keeps
    the small terms apart from the large ones. The gradient with respect to x is
    where(x >= 0, b - (a + b) * s, (a + b) * s - a) with s = sigmoid(-|x|), computed from
    the value's own exp and exact where the plain b - (a + b) * sigmoid(-x) cancels.
    """
    a = tf.convert_to_tensor(a, dtype=x.dtype)
    b = tf.convert_to_tensor(b, dtype=x.dtype)
    shape = tf.broadcast_dynamic_shape(
        tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b)), tf.shape(x)
    )
    return _softplus_pair_same_shape(
        tf.broadcast_to(a, shape), tf.broadcast_to(b, shape), tf.broadcast_to(x, shape)
    )


@tf.custom_gradient
def _softplus_pair_same_shape(a, b, x):
    """`_softplus_pair` of arguments of one shape, so that each gradient has its shape."""
    exp_term = tf.math.exp(-tf.math.abs(x))
    log_term = tf.math.log1p(exp_term)
    total = a + b
    nonnegative = tf.math.greater_equal(x, 0.0)
    value = total * log_term + tf.where(nonnegative, b * x, -a * x)

    def gradient(upstream):
        scaled = total * exp_term / (1.0 + exp_term)
        return (
            upstream * (log_term + tf.nn.relu(-x)),
            upstream * (log_term + tf.nn.relu(x)),
            upstream * tf.where(nonnegative, b - scaled, scaled - a),
        )

    return value, gradient
'''.strip(),
}
"""Each helper's source, formatted as ruff formats it; it uses only `tf`. A generated
module defines the helpers its printed code calls (`FunctionBody.helpers`) after its
imports, in the order of this table."""

HELPER_NAMES: frozenset[str] = frozenset({SOFTPLUS_PAIR, "_softplus_pair_same_shape"})
"""Every module-level name the helpers define (kept out of spec names by `codegen.names`)."""
