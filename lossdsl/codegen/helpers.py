"""Module-level functions a generated module defines when its printed code calls them."""

from __future__ import annotations

SOFTPLUS_PAIR = "_softplus_pair"
"""a * softplus(-x) + b * softplus(x) with a hand-written exact gradient (`HELPERS`)."""

SOFTPLUS_PAIR_SAME_SHAPE = "_softplus_pair_same_shape"
"""`_softplus_pair` of tensors of one shape, called directly when the printer knows it."""

SUM_OVER_CLASSES = "_sum_over_classes"
"""A sum over the last axis as a product with a vector of ones (XLA modules only)."""

MEAN_OVER_CLASSES = "_mean_over_classes"
"""A mean over the last axis as a product with a vector of ones (XLA modules only)."""

HELPERS: dict[str, str] = {
    SOFTPLUS_PAIR: '''
def _softplus_pair(a, b, x):
    """a * softplus(-x) + b * softplus(x), with its exact gradient in one pass.

    The value is (a + b) * log1p(exp(-|x|)) + where(x >= 0, b * x, -a * x), which keeps
    the small terms apart from the large ones. The gradient with respect to x is
    where(x >= 0, b - (a + b) * s, (a + b) * s - a) with s = sigmoid(-|x|), exact where
    the plain b - (a + b) * sigmoid(-x) cancels. It computes s again rather than keep the
    value's exp: XLA then fuses each pass instead of storing exp(-|x|) between them.
    """
    a = tf.convert_to_tensor(a, dtype=x.dtype)
    b = tf.convert_to_tensor(b, dtype=x.dtype)
    shape = tf.broadcast_dynamic_shape(
        tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b)), tf.shape(x)
    )
    return _softplus_pair_same_shape(
        tf.broadcast_to(a, shape), tf.broadcast_to(b, shape), tf.broadcast_to(x, shape)
    )
'''.strip(),
    SOFTPLUS_PAIR_SAME_SHAPE: '''
@tf.custom_gradient
def _softplus_pair_same_shape(a, b, x):
    """`_softplus_pair` of tensors of x's shape and dtype; each gradient has that shape."""
    log_term = tf.math.log1p(tf.math.exp(-tf.math.abs(x)))
    total = a + b
    nonnegative = tf.math.greater_equal(x, 0.0)
    value = total * log_term + tf.where(nonnegative, b * x, -a * x)

    def gradient(upstream):
        scaled = total * tf.math.sigmoid(-tf.math.abs(x))
        return (
            upstream * (log_term + tf.nn.relu(-x)),
            upstream * (log_term + tf.nn.relu(x)),
            upstream * tf.where(nonnegative, b - scaled, scaled - a),
        )

    return value, gradient
'''.strip(),
    SUM_OVER_CLASSES: '''
def _sum_over_classes(x):
    """tf.math.reduce_sum(x, axis=-1, keepdims=True), as a matrix-vector product.

    XLA on the CPU computes the product in one pass, fused with the ops that make x; a
    reduction this large it splits into reduce-windows, for which x is written to memory
    and read back. This module is compiled with XLA, so its class sums use this form.
    """
    classes = tf.shape(x)[-1:]
    rows = tf.reshape(x, tf.concat([[-1], classes], 0))
    total = tf.linalg.matvec(rows, tf.ones(classes, x.dtype))
    return tf.reshape(total, tf.concat([tf.shape(x)[:-1], [1]], 0))
'''.strip(),
    MEAN_OVER_CLASSES: '''
def _mean_over_classes(x):
    """tf.math.reduce_mean(x, axis=-1, keepdims=True), as `_sum_over_classes` computes it."""
    return _sum_over_classes(x) / tf.cast(tf.shape(x)[-1], x.dtype)
'''.strip(),
}
"""Each helper's source, formatted as ruff formats it; it uses only `tf`. A generated
module defines the helpers its printed code calls (`FunctionBody.helpers`) after its
imports, in the order of this table; `HELPER_DEPENDENCIES` adds the helpers they call."""

HELPER_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    SOFTPLUS_PAIR: (SOFTPLUS_PAIR_SAME_SHAPE,),
    MEAN_OVER_CLASSES: (SUM_OVER_CLASSES,),
}

HELPER_NAMES: frozenset[str] = frozenset(
    {SOFTPLUS_PAIR, SOFTPLUS_PAIR_SAME_SHAPE, SUM_OVER_CLASSES, MEAN_OVER_CLASSES}
)
"""Every module-level name the helpers define (kept out of spec names by `codegen.names`)."""
