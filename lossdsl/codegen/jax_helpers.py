"""The module-level helpers of generated JAX modules, as code ruff and mypy check.

`codegen.tensorflow_helpers`' functions that every backend needs, under the same names,
with the same arguments and meaning, and `_sparse_softmax_cross_entropy`; they use only
`jax` and `jnp`. A hand-written gradient is a `jax.custom_vjp` defined inside its
helper, so that the helper's source is complete where a generated module embeds it:
numbers (clip bounds) are closed over as constants, and arrays that may need a gradient
are the custom_vjp's arguments. Shapes are static in JAX, so checks run when tracing.
"""

import jax
import jax.numpy as jnp


def _softplus_pair(a, b, x):
    """a * softplus(-x) + b * softplus(x), with its exact gradient in one pass.

    a and b are numbers or arrays that broadcast against x. They are broadcast to one
    shape for `_softplus_pair_same_shape`, and each gradient is summed back to its
    argument's shape.
    """
    a = jnp.asarray(a, dtype=x.dtype)
    b = jnp.asarray(b, dtype=x.dtype)
    return _softplus_pair_same_shape(*jnp.broadcast_arrays(a, b, x))


def _softplus_pair_same_shape(a, b, x):
    """`_softplus_pair` of arrays of x's shape and dtype; each gradient has that shape.

    The value is (a + b) * log1p(exp(-|x|)) + a * relu(-x) + b * relu(x), the gradient
    with respect to x b * sigmoid(x) - a * sigmoid(-x): exact in both tails and at
    x = 0, where differentiating the value would take |x|'s derivative there, 0.
    """

    @jax.custom_vjp
    def pair(a, b, x):
        return forward(a, b, x)[0]

    def forward(a, b, x):
        log_term = jnp.log1p(jnp.exp(-jnp.abs(x)))
        value = (a + b) * log_term + a * jax.nn.relu(-x) + b * jax.nn.relu(x)
        return value, (a, b, x, log_term)

    def backward(saved, upstream):
        a, b, x, log_term = saved
        return (
            upstream * (log_term + jax.nn.relu(-x)),
            upstream * (log_term + jax.nn.relu(x)),
            upstream * (b * jax.nn.sigmoid(x) - a * jax.nn.sigmoid(-x)),
        )

    pair.defvjp(forward, backward)
    return pair(a, b, x)


def _abs(x):
    """jnp.abs(x), differentiated as TensorFlow and PyTorch differentiate it: sign(x),
    0 at x = 0, where jnp.abs's derivative is 1. A module that JAX differentiates meets
    exact zeros wherever y_pred equals y_true."""

    @jax.custom_jvp
    def absolute(x):
        return jnp.abs(x)

    @absolute.defjvp
    def derivative(primals, tangents):
        (x,), (dx,) = primals, tangents
        return jnp.abs(x), jnp.sign(x) * dx

    return absolute(x)


def _maximum(a, b):
    """jnp.maximum(a, b), differentiated as TensorFlow differentiates it: the gradient
    goes to a where a >= b and to b elsewhere, where jnp.maximum's splits it in halves
    at a tie (a hinge at its margin, a relu written as maximum(x, 0) at 0)."""
    return _tie_to_first(jnp.maximum, jnp.greater_equal, a, b)


def _minimum(a, b):
    """jnp.minimum(a, b), differentiated as TensorFlow differentiates it: the gradient
    goes to a where a <= b and to b elsewhere (`_maximum`'s ties)."""
    return _tie_to_first(jnp.minimum, jnp.less_equal, a, b)


def _tie_to_first(choose, first_chosen, a, b):
    """choose(a, b), a jnp.maximum or jnp.minimum, whose tangent is a's where
    first_chosen(a, b) and b's elsewhere. Integers have no tangents: choose itself."""
    dtype = jnp.result_type(a, b)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return choose(a, b)

    @jax.custom_jvp
    def chosen(a, b):
        return choose(a, b)

    @chosen.defjvp
    def derivative(primals, tangents):
        (a, b), (da, db) = primals, tangents
        return choose(a, b), jnp.where(first_chosen(a, b), da, db)

    return chosen(jnp.asarray(a, dtype), jnp.asarray(b, dtype))


def _clip(x, low, high):
    """minimum(maximum(x, low), high) for numbers low and high, its gradient in one
    pass.

    As NumPy's clip, it is high everywhere when low > high. The gradient is the upstream
    one where low <= x <= high and 0 elsewhere (and at NaN), as TensorFlow's;
    differentiating the minimum and maximum would halve it at the bounds.
    """

    @jax.custom_vjp
    def clipped(x):
        return jnp.minimum(jnp.maximum(x, low), high)

    def forward(x):
        return clipped(x), x

    def backward(x, upstream):
        return (jnp.where((x >= low) & (x <= high), upstream, 0.0),)

    clipped.defvjp(forward, backward)
    return clipped(x)


def _clipped_log(x, low, high):
    """jnp.log(`_clip`(x, low, high)).

    Its gradient is upstream / x where low <= x <= high and 0 elsewhere: the log's
    gradient, one division, selected by `_clip`'s.
    """
    return jnp.log(_clip(x, low, high))


def _huber(x, delta):
    """where(|x| <= delta, x**2 / 2, delta * (|x| - delta / 2)) for delta > 0, with
    the gradients of that select.

    delta is a number or a 0-d array (a param that may be learned). jax.grad of the
    select is clip(x, -delta, delta) with respect to x, exactly, and relu(|x| - delta)
    with respect to delta. XLA on the CPU computes the select in fewer passes than
    m * (|x| - m / 2) with m = minimum(|x|, delta), the other helpers' form, whose two
    factors its reduction reads as two arrays (0.55-0.79 of optax.huber_loss's time
    against 0.67-1.10, measured).
    """
    size = jnp.abs(x)
    delta = jnp.asarray(delta, dtype=x.dtype)
    return jnp.where(size <= delta, 0.5 * x * x, delta * (size - 0.5 * delta))


def _softmax_cross_entropy(labels, logits):
    """Categorical cross-entropy on logits for labels whose rows sum to 1, axis kept.

    logsumexp(logits) - sum(labels * logits) over the last axis, in float32 for
    half-precision logits, taken as sum(labels * (logsumexp - logits)): its gradient
    with respect to the logits is softmax(logits) - labels, with respect to the labels
    -log_softmax(logits), the exact one. Below 64 classes it is -sum(labels *
    log_softmax(logits)), as optax computes it: XLA on the CPU runs jax.nn.logsumexp's
    guards for infinite rows there as separate small kernels (1.2-1.4 times optax's
    time at 4096x10 and 4096x32), and from 64 classes it computes the logsumexp form
    faster (0.43 of optax's time at 256x32000).
    """
    half = logits.dtype in (jnp.float16, jnp.bfloat16)
    wide = logits.astype(jnp.float32 if half else logits.dtype)
    labels = labels.astype(wide.dtype)
    if wide.shape[-1] < 64:
        terms = labels * -jax.nn.log_softmax(wide, axis=-1)
    else:
        terms = labels * (jax.nn.logsumexp(wide, axis=-1, keepdims=True) - wide)
    return jnp.sum(terms, axis=-1, keepdims=True).astype(logits.dtype)


def _sparse_softmax_cross_entropy(labels, logits):
    """Categorical cross-entropy on logits [..., C] for labels [..., 1] that hold
    integers in [0, C) (an integer or float array), axis kept.

    logsumexp(logits) - the logit at the label, in float32 for half-precision logits;
    its gradient with respect to the logits is softmax(logits) - one_hot(labels).
    Below 64 classes both terms are taken from the logits less their row's largest,
    without jax.nn.logsumexp's guards for infinite rows, which XLA on the CPU runs as
    separate small kernels there (0.82-0.87 of optax's time at 4096x10 and 4096x32,
    against 0.98-1.03); from 64 classes jax.nn.logsumexp measured faster.
    """
    half = logits.dtype in (jnp.float16, jnp.bfloat16)
    wide = logits.astype(jnp.float32 if half else logits.dtype)
    labels = labels.astype(jnp.int32)
    if wide.shape[-1] < 64:
        wide = wide - jax.lax.stop_gradient(jnp.max(wide, axis=-1, keepdims=True))
        total = jnp.log(jnp.sum(jnp.exp(wide), axis=-1, keepdims=True))
    else:
        total = jax.nn.logsumexp(wide, axis=-1, keepdims=True)
    picked = jnp.take_along_axis(wide, labels, axis=-1)
    return (total - picked).astype(logits.dtype)


def _per_class(values, y_pred, name):
    """A vector param `name` as an array of y_pred's dtype, with one entry per class.

    The class count is static, so it is checked when tracing (a ValueError).
    """
    values = jnp.asarray(values, dtype=y_pred.dtype)
    classes, entries = y_pred.shape[-1], values.shape[0]
    if entries != classes:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected one entry per class "
            f"(C = {classes}), received {entries} entries."
        )
    return values


def _other(x, partner):
    """x seen from the other sample of each pair: its batch axis swapped with the
    size-1 axis of partner `partner` (1 or 2), so that entry [i, j] holds sample j's x.
    """
    return jnp.swapaxes(x, 0, partner)


def _paired(y_true, y_pred, partners, name):
    """The inputs of the loss `name`, which pairs samples: y_pred must be [batch, C],
    and both inputs get `partners` axes of size 1 after the batch axis."""
    if y_pred.ndim != 2:
        raise ValueError(
            f"{name} pairs samples, so y_pred must have the shape [batch, C] (or "
            f"[batch]); received the shape {tuple(y_pred.shape)}."
        )
    new_axes = (slice(None),) + (None,) * partners
    return y_true[new_axes], y_pred[new_axes]


def _check_channels(x, needed, argument, selection):
    """`x` (the loss's `argument`), checked when tracing to have the `needed` entries on
    its last axis that the spec's `selection` takes (a ValueError)."""
    if x.shape[-1] < needed:
        raise ValueError(
            f"Invalid {argument}: the loss selects `{selection}`, which needs at least "
            f"{needed} entries on the last axis, received shape {tuple(x.shape)}."
        )
    return x


def _pair_rows(x):
    """Rows [B, 1, ..., C] of a loss that pairs samples as a matrix [B, C]; half
    precision in float32, as other sums are."""
    rows = (slice(None),) + (0,) * (x.ndim - 2)
    exact = jnp.float32 if x.dtype in (jnp.float16, jnp.bfloat16) else x.dtype
    return x[rows].astype(exact)


def _pair_result(matrix, like, partner):
    """A matrix [B, B'] of pairs of samples as [B, 1, ..., 1] with the B' samples on
    axis `partner`, of rank and dtype `like`'s."""
    shape = [matrix.shape[0]] + [1] * (like.ndim - 1)
    shape[partner] = matrix.shape[1]
    return matrix.reshape(shape).astype(like.dtype)


def _pair_dot(a, b, partner):
    """The sum over the classes of a * other(b, partner) as one matrix product: a and b
    are rows [B, 1, ..., C], the result [B, 1, ..., 1] with b's samples on axis
    `partner`."""
    first, second = _pair_rows(a), _pair_rows(b)
    return _pair_result(first @ second.T, a, partner)


def _pair_squared_distance(a, b, partner):
    """The sum over the classes of (a - other(b, partner))^2 as |a|^2 + |b|^2 - 2 a.b,
    one matrix product and two row norms; rows and result as `_pair_dot`'s.

    The rows are first moved by a's mean row, which leaves every distance as it is and
    shrinks the norms that cancel to the batch's spread; rows closer than that spread's
    rounding still lose digits (TensorFlow Addons' pairwise_distance and torch.cdist
    move nothing), so the result is clamped at 0. b None means a's rows to each other,
    each row's distance to itself exactly 0.
    """
    rows = _pair_rows(a)
    center = jax.lax.stop_gradient(jnp.mean(rows, axis=0))
    first = rows - center
    second = first if b is None else _pair_rows(b) - center
    norms = jnp.sum(jnp.square(first), axis=1)
    other_norms = norms if b is None else jnp.sum(jnp.square(second), axis=1)
    products = first @ second.T
    squared = norms[:, None] + other_norms[None, :] - 2.0 * products
    squared = jnp.maximum(squared, 0.0)
    if b is None:
        squared = jnp.where(jnp.eye(squared.shape[0], dtype=bool), 0.0, squared)
    return _pair_result(squared, a, partner)


def _into_channels(values, size, start, stop):
    """`values` at entries start to stop - 1 of a last axis of `size` entries, 0 at the
    others: what selecting those channels passes back. Bounds below 0 count from the
    end, a stop of None is the end."""
    start = start if start >= 0 else size + start
    stop = size if stop is None else stop if stop >= 0 else size + stop
    paddings = [(0, 0)] * (values.ndim - 1) + [(start, size - stop)]
    return jnp.pad(values, paddings)


def _other_cotangents(forward, upstream, y_pred, *others):
    """The cotangents of a loss's arguments after y_pred (a soft target, a param), by
    jax.vjp of its forward pass (`forward` returns the value first); under jit, XLA
    drops them where nothing uses them. Integer arrays (labels) get None. The loss's own
    backward pass covers y_pred."""

    def is_float(value):
        return jnp.issubdtype(jnp.result_type(value), jnp.inexact)

    floating = [i for i, value in enumerate(others) if is_float(value)]

    def value(*chosen):
        values = list(others)
        for i, entry in zip(floating, chosen, strict=True):
            values[i] = entry
        return forward(y_pred, *values)[0]

    _, pullback = jax.vjp(value, *(others[i] for i in floating))
    found = dict(zip(floating, pullback(upstream), strict=True))
    return tuple(found.get(i) for i in range(len(others)))


def _channels_joined(size, *pieces):
    """The sum of `_into_channels` of (values, start, stop) pieces at disjoint
    channels of a last axis of `size` entries, sorted by start, as one concatenation:
    zeros between them and after the last. The values have one shape but for their
    last axis."""
    parts = []
    end = 0
    for values, start, stop in pieces:
        if start > end:
            parts.append(jnp.zeros((*values.shape[:-1], start - end), values.dtype))
        parts.append(values)
        end = stop
    last = pieces[-1][0]
    parts.append(jnp.zeros((*last.shape[:-1], size - end), last.dtype))
    return jnp.concatenate(parts, -1)
