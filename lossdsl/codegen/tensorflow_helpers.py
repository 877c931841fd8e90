"""The module-level helpers of generated modules, as real code that ruff and mypy check.

`codegen.helpers` embeds each function's source in the generated modules that call it;
tests import and call them here. They use only `tf`; `codegen.xla_helpers` holds the
forms a module compiled with XLA defines instead.
"""

import tensorflow as tf

from lossdsl.codegen.common_helpers import _power_form, _whole_power


def _softplus_pair(a, b, x):
    """a * softplus(-x) + b * softplus(x), with its exact gradient in one pass.

    The value keeps log1p(exp(-|x|)) apart from the terms linear in x, and the gradient
    with respect to x is exact where the plain b - (a + b) * sigmoid(-x) cancels. The
    arguments are broadcast to one shape for `_softplus_pair_same_shape`, whose form
    differs with and without XLA.
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
    """`_softplus_pair` of tensors of x's shape and dtype; each gradient has that shape.

    The value is (a + b) * log1p(exp(-|x|)) + a * relu(-x) + b * relu(x), the gradient
    with respect to x b * sigmoid(x) - a * sigmoid(-x): exact in both tails, and without
    the comparisons and selects that TensorFlow's CPU kernels run slowest.
    """
    minus_x = -x
    log_term = tf.math.log1p(tf.math.exp(-tf.math.abs(x)))
    value = (a + b) * log_term + a * tf.nn.relu(minus_x) + b * tf.nn.relu(x)

    def gradient(upstream):
        return (
            upstream * (log_term + tf.nn.relu(minus_x)),
            upstream * (log_term + tf.nn.relu(x)),
            upstream * (b * tf.math.sigmoid(x) - a * tf.math.sigmoid(minus_x)),
        )

    return value, gradient


def _clip(x, low, high):
    """minimum(maximum(x, low), high) for numbers low and high, its gradient in one
    pass.

    As NumPy's, JAX's and PyTorch's clips, and unlike tf.clip_by_value, it is high
    everywhere when low > high. The gradient is the upstream one where low <= x <= high
    and 0 elsewhere (and at NaN), as TensorFlow's: where the clipped value is x itself
    (`_inside`). Written out, it is one comparison and one product; differentiating the
    minimum and maximum takes two selects, two comparisons and zeros.
    """

    @tf.custom_gradient
    def clipped(x):
        value = tf.math.minimum(tf.math.maximum(x, low), high)

        def gradient(upstream):
            return _where_zero(_inside(x, value, low, high), upstream)

        return value, gradient

    return clipped(x)


def _clipped_log(x, low, high):
    """tf.math.log(`_clip`(x, low, high)), its gradient in one pass.

    The gradient is upstream / x where low <= x <= high and 0 elsewhere: one division,
    one comparison and one product, where differentiating the log and the clip apart
    takes a reciprocal, a product and the clip's masks.
    """

    @tf.custom_gradient
    def clipped_log(x):
        value = tf.math.minimum(tf.math.maximum(x, low), high)

        def gradient(upstream):
            return _where_zero(_inside(x, value, low, high), upstream / x)

        return tf.math.log(value), gradient

    return clipped_log(x)


def _inside(x, clipped, low, high):
    """Whether low <= x <= high, from x clipped to [low, high] (numbers): one comparison
    where (x >= low) & (x <= high) takes three ops. False at NaN, and everywhere when
    low > high (the clip is then high, a constant)."""
    if low > high:
        return tf.zeros_like(x, dtype=tf.bool)
    return tf.math.equal(clipped, x)


def _where_zero(condition, x):
    """tf.where(condition, x, 0.0), bit for bit, with the same gradients: x where the
    condition holds (inf and NaN too), a positive 0.0 elsewhere.

    It is multiply_no_nan(x, cast(condition)), whose product with 0 is 0 even for an
    infinite or NaN x. TensorFlow's CPU select broadcasting a number costs several
    products: at [4096, 10], 120 against 20 us (benchmarks/README.md). XLA compiles
    both to the same loop. A condition that is True, decided when the graph is built
    from params given as numbers, gives x itself.
    """
    if condition is True:
        return x
    return tf.math.multiply_no_nan(x, tf.cast(condition, x.dtype))


def _one_hot_times(labels, values, like, fewest=1024):
    """one_hot(labels) * values in the shape of `like` [..., C], for integer labels and
    values without the class axis ([..., 1]); 0 in a row whose label is outside [0, C),
    as one_hot's.

    From `fewest` classes (known when traced) each value is scattered to its row's
    label, one pass over the classes where one_hot and a product take two: 0.6 against
    0.9 of hand-written TensorFlow's time for a label gather's gradient at 256x32000.
    Below, scatter_nd's cost per row is more than the pass it saves (1.4 against 1.1 at
    4096x10).
    """
    classes = like.shape[-1]
    if classes is None or classes < fewest:
        return tf.one_hot(labels[..., 0], tf.shape(like)[-1], dtype=like.dtype) * values
    shape = tf.shape(like)
    labels = tf.reshape(labels, [-1])
    rows = tf.size(labels)
    values = tf.broadcast_to(values, tf.concat([shape[:-1], [1]], 0))
    values = tf.reshape(tf.cast(values, like.dtype), [-1])
    inside = (labels >= 0) & (labels < classes)
    values = tf.where(inside, values, tf.zeros_like(values))
    ids = tf.range(rows) * classes + tf.clip_by_value(labels, 0, classes - 1)
    return tf.reshape(tf.scatter_nd(ids[:, None], values, [rows * classes]), shape)


def _log_sum_exp_shift(x, axis):
    """The shift m of log(sum(exp(x))) = m + log(sum(exp(x - m))) over `axis`, kept:
    the largest x, 0 where that is not finite, as tf.math.reduce_logsumexp takes it (a
    row of -inf then gives -inf, not NaN). Without a gradient: the value does not
    depend on it."""
    largest = tf.stop_gradient(tf.math.reduce_max(x, axis=axis, keepdims=True))
    return tf.where(tf.math.is_finite(largest), largest, tf.zeros_like(largest))


def _trigamma(x):
    """polygamma(1, x), digamma's derivative, from elementwise passes of x.

    For y = x >= 1/2 (else y = 1 - x): the sum of 1 / (y + k)^2 for k < 6, plus the
    asymptotic series at z = y + 6, 1/z + 1/(2 z^2) + 1/(6 z^3) - 1/(30 z^5) +
    1/(42 z^7) - 1/(30 z^9) + 5/(66 z^11), whose next term is below 2e-12 of the value;
    below 1/2, the reflection pi^2 / sin^2(pi x) - trigamma(1 - x), with sin(pi x)
    taken at x's distance from the nearest whole number: exactly 0 at the poles 0, -1,
    -2, ..., which give inf, as tf.math.polygamma. That op (Hurwitz zeta) took 15.6 ms
    at [1024, 256] in float32, this 3.2 ms.
    """
    pi = 3.141592653589793
    below = x < 0.5
    y = tf.where(below, 1.0 - x, x)
    total = tf.zeros_like(y)
    for k in range(6):
        total += 1.0 / tf.math.square(y + k)
    w = 1.0 / (y + 6.0)
    w2 = w * w
    tail = -1.0 / 30.0 + w2 * (1.0 / 42.0 + w2 * (-1.0 / 30.0 + w2 * 5.0 / 66.0))
    value = total + w * (1.0 + w * (0.5 + w * (1.0 / 6.0 + w2 * tail)))
    sine = tf.math.sin(pi * (x - tf.math.round(x)))
    return tf.where(below, pi * pi / tf.math.square(sine) - value, value)


def _params_or(decided, condition):
    """tf.math.logical_or(decided, condition) for `decided`, a condition on scalar
    params alone: where they are numbers it is a Python bool, and the or is taken when
    the graph is built (True, or `condition` itself). A power's guard, `gamma - 1 >= 0
    or base > 0`, then costs nothing for a gamma given as a number, where it took a
    comparison, a logical or and a product over the whole array; a learned gamma (a
    tensor) keeps it.
    """
    if isinstance(decided, bool):
        return decided or condition
    return tf.math.logical_or(decided, condition)


def _huber(x, delta):
    """where(|x| <= delta, x**2 / 2, delta * (|x| - delta / 2)) for delta > 0, its
    gradient in one op.

    The gradient is clip(x, -delta, delta), the same as differentiating both branches
    and the select, which takes two selects, zeros, a sign and four products. delta (a
    number, or a scalar param that may be learned: a tensor or tf.Variable) gets
    relu(|x| - delta), summed; in a graph, only where something asks for it.
    """

    @tf.custom_gradient
    def huber(x, delta):
        size = tf.math.abs(x)
        inside = 0.5 * tf.math.square(x)
        value = tf.where(size <= delta, inside, delta * (size - 0.5 * delta))

        def gradient(upstream):
            slope = upstream * tf.clip_by_value(x, -delta, delta)
            return slope, tf.math.reduce_sum(upstream * tf.nn.relu(size - delta))

        return value, gradient

    return huber(x, tf.cast(tf.convert_to_tensor(delta, dtype_hint=x.dtype), x.dtype))


def _power(x, exponent):
    """tf.math.pow(x, exponent), fast for every number.

    TensorFlow's pow is fast where Grappler and XLA rewrite it (2, 3, -1 and +-0.5,
    and 0 and 1 where Grappler knows x's shape) and several times slower than exp and
    log elsewhere. Of a Python number exponent (`_power_form`):
    - 0 is ones, whose gradient is 0 (pow's is NaN at x = 0);
    - a whole number from -16 to 16 other than those is x or products of x or of
      1 / x (`_whole_power`), whose gradient autodiff takes exactly;
    - any other finite one that is neither whole nor +-0.5 is exp(exponent * log(x)),
      which has pow's values at every x (NaN below 0, 0 or inf at 0), with pow's
      gradient, exponent * x ** (exponent - 1), written the same way (autodiff of
      exp(exponent * log(x)) gives NaN at x = 0). It is |exponent * log(x)| ulps from
      pow's value.
    Those are a few ulps (products) or percents (exp and log) off in float16 and
    bfloat16, which keep tf.math.pow, as do the other numbers and tensor exponents (a
    learned param, with its gradient).
    """
    form = None if x.dtype in (tf.float16, tf.bfloat16) else _power_form(exponent)
    if form == "one":
        return tf.ones_like(x)
    if form == "products":
        return _whole_power(x, int(exponent))
    if form is None:
        return tf.math.pow(x, exponent)

    @tf.custom_gradient
    def power(x):
        log_x = tf.math.log(x)

        def gradient(upstream):
            return upstream * exponent * tf.math.exp((exponent - 1.0) * log_x)

        return tf.math.exp(exponent * log_x), gradient

    return power(x)


def _log1p(x):
    """tf.math.log1p(x), as XLA on the CPU computes it fastest.

    log(w) * x / (w - 1) with w = 1 + x (x where w rounds to 1, inf at inf): as exact as
    log1p (Goldberg, 1991), at about half the time of XLA's log1p on the CPU. Its
    gradient is upstream / w, as TensorFlow's. With a GPU or TPU it is tf.math.log1p.
    """
    if not _cpu_only():
        return tf.math.log1p(x)

    @tf.custom_gradient
    def log1p(x):
        w = 1.0 + x
        value = tf.where(w == 1.0, x, tf.math.log(w) * (x / (w - 1.0)))
        return tf.where(x == float("inf"), x, value), lambda upstream: upstream / w

    return log1p(x)


def _sum_over_classes(x, fewest=9, blocks=True):
    """tf.math.reduce_sum(x, axis=-1, keepdims=True), as XLA on the CPU computes it
    fastest.

    XLA splits a large reduction into reduce-windows, slow on the CPU, and writes x to
    memory first; a product with a vector of ones runs as one fast matrix-vector
    product.
    Over more than 2048 classes it is taken over blocks of 512 to 2048 classes and the
    blocks' sums added, so that float32 sums stay as accurate as TensorFlow's reduction.
    Fewer than `fewest` classes (XLA reduces a few well), a count with no such divisor
    or one unknown when tracing, and a machine with a GPU or TPU get the reduction; so
    does a count past 2048 without `blocks`, which the printer passes where a per-class
    vector multiplies x (XLA computes the blocks of w * x three times slower than the
    reduction: 30 against 10 ms, loss and gradient at 256x32000).
    """
    classes = x.shape[-1]
    block = _class_block(classes, fewest, blocks) if _cpu_only() else None
    if block is None:
        return tf.math.reduce_sum(x, axis=-1, keepdims=True)
    sums = tf.linalg.matvec(tf.reshape(x, [-1, block]), tf.ones([block], x.dtype))
    sums = tf.reshape(sums, tf.concat([tf.shape(x)[:-1], [classes // block]], 0))
    return tf.math.reduce_sum(sums, axis=-1, keepdims=True)


def _class_block(classes, fewest, blocks=True):
    """How many classes one matrix-vector product of `_sum_over_classes` adds up, or
    None."""
    if classes is None or classes < fewest:
        return None
    if classes <= 2048:
        return classes
    if not blocks:
        return None
    divisors = [size for size in range(2048, 511, -1) if classes % size == 0]
    return divisors[0] if divisors else None


def _mean_over_classes(x, blocks=True):
    """tf.math.reduce_mean(x, axis=-1, keepdims=True), as `_sum_over_classes` computes
    it."""
    return _sum_over_classes(x, blocks=blocks) / tf.cast(tf.shape(x)[-1], x.dtype)


def _softmax_cross_entropy(labels, logits):
    """tf.nn.softmax_cross_entropy_with_logits for labels whose rows sum to 1, axis
    kept.

    logsumexp(logits) - sum(labels * logits), both sums as `_sum_over_classes` computes
    them over 256 classes or more (below, XLA's reductions measured faster here), in
    float32 for half-precision logits. XLA on the CPU computes it in fewer passes than
    the fused op, with the same gradient, softmax(logits) - labels. The labels get
    -logits, which differs from the fused op's -log_softmax(logits) by a constant per
    row (nothing along rows that sum to 1); taking the sum as sum(labels * (logsumexp -
    logits)) would give the fused op's, but XLA then computes the class blocks two times
    slower (the per-row logsumexp inside the sum; 11.1 against 5.6 ms at 256x32000).
    A module with its own backward pass gives y_true no gradient anyway. With a GPU or
    TPU it is the fused op.
    """
    if not _cpu_only():
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.expand_dims(loss, -1)
    dtype = tf.float32 if logits.dtype in (tf.float16, tf.bfloat16) else logits.dtype
    labels, wide = tf.cast(labels, dtype), tf.cast(logits, dtype)
    largest = tf.stop_gradient(tf.math.reduce_max(wide, axis=-1, keepdims=True))
    total = _sum_over_classes(tf.math.exp(wide - largest), 256)
    log_total = tf.math.log(total) + largest
    return tf.cast(log_total - _sum_over_classes(labels * wide, 256), logits.dtype)


def _class_of(y):
    """tf.math.argmax(y, axis=-1, output_type=tf.int32), with its last axis kept.

    The first index of each row's largest entry, as argmax gives it. Over 256 classes or
    more it comes from two float reductions, which XLA on the CPU computes faster than
    its argmax (a reduction of value-index pairs) or a reduction of integers (not so
    with a GPU or TPU).
    """
    if y.shape[-1] is None or y.shape[-1] < 256 or not _cpu_only():
        return tf.expand_dims(tf.math.argmax(y, axis=-1, output_type=tf.int32), -1)
    classes = y.shape[-1]
    largest = tf.math.reduce_max(y, axis=-1, keepdims=True)
    from_the_end = tf.range(classes, 0, -1, dtype=tf.float32)  # exact below 2**24
    where_largest = tf.where(y == largest, from_the_end, 0.0)
    first = tf.math.reduce_max(where_largest, -1, keepdims=True)
    return classes - tf.cast(first, tf.int32)


def _cpu_only():
    """Whether no GPU or TPU is visible, so that XLA compiles for the CPU.

    The helpers' forms pay off there; XLA for a GPU or TPU fuses reductions itself.
    """
    devices = tf.config.list_logical_devices
    return not (devices("GPU") or devices("TPU"))


def _per_class(values, y_pred, name):
    """A vector param `name` as a tensor of y_pred's dtype, with one entry per class.

    A class count known when tracing is checked then (a ValueError), one that is not
    when the loss runs (tf.debugging.assert_equal).
    """
    values = tf.convert_to_tensor(values, dtype_hint=y_pred.dtype)
    values = tf.cast(values, y_pred.dtype)
    classes, entries = y_pred.shape[-1], values.shape[0]
    message = f"Invalid value for argument `{name}`: expected one entry per class"
    if classes is None:
        count = tf.shape(y_pred)[-1]
        tf.debugging.assert_equal(tf.shape(values)[0], count, message=f"{message}.")
    elif entries != classes:
        raise ValueError(f"{message} (C = {classes}), received {entries} entries.")
    return values


def _other(x, partner):
    """x seen from the other sample of each pair: its batch axis swapped with the
    size-1 axis of partner `partner` (1 or 2), so that entry [i, j] holds sample j's x.
    """
    axes = list(range(len(x.shape)))
    axes[0], axes[partner] = partner, 0
    return tf.transpose(x, axes)


def _paired(y_true, y_pred, partners, name):
    """The inputs of the loss `name`, which pairs samples: y_pred must be [batch, C],
    and both inputs get `partners` axes of size 1 after the batch axis."""
    if y_pred.shape.rank != 2:
        raise ValueError(
            f"{name} pairs samples, so y_pred must have the shape [batch, C] (or "
            f"[batch]); received the shape {y_pred.shape}."
        )
    new_axes = (slice(None),) + (tf.newaxis,) * partners
    return y_true[new_axes], y_pred[new_axes]


def _check_channels(x, needed, argument, selection):
    """`x` (the loss's `argument`), checked to have the `needed` entries on its last
    axis that the spec's `selection` takes: when tracing if its size is known then (a
    ValueError), else when the loss runs (tf.debugging.assert_greater_equal, which
    every use of the returned tensor waits for).
    """
    message = (
        f"Invalid {argument}: the loss selects `{selection}`, which needs at least "
        f"{needed} entries on the last axis"
    )
    if x.shape[-1] is None:
        size = tf.shape(x)[-1]
        check = tf.debugging.assert_greater_equal(size, needed, message=f"{message}.")
        with tf.control_dependencies([check]):
            return tf.identity(x)
    if x.shape[-1] < needed:
        raise ValueError(f"{message}, received shape {tuple(x.shape)}.")
    return x


def _pair_rows(x):
    """Rows [B, 1, ..., C] of a loss that pairs samples as a matrix [B, C]; half
    precision in float32, as other sums are."""
    rows = (slice(None),) + (0,) * (len(x.shape) - 2)
    exact = tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype
    return tf.cast(x[rows], exact)


def _pair_result(matrix, like, partner):
    """A matrix [B, B'] of pairs of samples as [B, 1, ..., 1] with the B' samples on
    axis `partner`, of rank and dtype `like`'s."""
    shape = [tf.shape(matrix)[0]] + [1] * (len(like.shape) - 1)
    shape[partner] = tf.shape(matrix)[1]
    return tf.cast(tf.reshape(matrix, shape), like.dtype)


def _pair_dot(a, b, partner):
    """The sum over the classes of a * other(b, partner) as one matrix product: a and b
    are rows [B, 1, ..., C], the result [B, 1, ..., 1] with b's samples on axis
    `partner`."""
    first, second = _pair_rows(a), _pair_rows(b)
    return _pair_result(tf.linalg.matmul(first, second, transpose_b=True), a, partner)


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
    center = tf.stop_gradient(tf.math.reduce_mean(rows, axis=0))
    first = rows - center
    second = first if b is None else _pair_rows(b) - center
    norms = tf.reduce_sum(tf.square(first), axis=1)
    other_norms = norms if b is None else tf.reduce_sum(tf.square(second), axis=1)
    products = tf.linalg.matmul(first, second, transpose_b=True)
    squared = norms[:, None] + other_norms[None, :] - 2.0 * products
    squared = tf.math.maximum(squared, 0.0)
    if b is None:
        squared = tf.linalg.set_diag(squared, tf.zeros_like(norms))
    return _pair_result(squared, a, partner)


def _into_channels(values, size, start, stop):
    """`values` at entries start to stop - 1 of a last axis of `size` entries, 0 at the
    others: what selecting those channels passes back. Bounds below 0 count from the
    end, a stop of None is the end."""
    start = start if start >= 0 else size + start
    stop = size if stop is None else stop if stop >= 0 else size + stop
    paddings = [[0, 0]] * (len(values.shape) - 1) + [[start, size - stop]]
    return tf.pad(values, paddings)


def _held(value):
    """`value` as a constant of the loss's own backward pass, which differentiates
    y_pred alone: a tensor's (or variable's) gradient is None, a number stays one."""
    return tf.stop_gradient(value) if tf.is_tensor(value) else value


def _custom_gradient(forward, y_pred, *params):
    """`forward(y_pred, *params)`, which returns the loss's value and its backward
    function (y_pred's gradient), as one tf.custom_gradient.

    The params given as tensors or tf.Variables (what a custom training loop learns)
    are its inputs too, cast to y_pred's dtype, and get their gradients from
    TensorFlow's autodiff of `forward` run again, which a graph runs only where
    something asks for them; numbers stay numbers. (tf.custom_gradient's own
    `variables` would keep, in a tf.function traced once, the variables of its first
    call.)
    """
    learned = [i for i, param in enumerate(params) if tf.is_tensor(param)]

    @tf.custom_gradient
    def loss(y_pred, *tensors):
        given = list(params)
        for i, tensor in zip(learned, tensors, strict=True):
            given[i] = tensor
        result, backward = forward(y_pred, *given)

        def gradient(upstream):
            if not tensors:
                return backward(upstream)
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                again, _ = forward(y_pred, *given)
            found = tape.gradient(again, tensors, output_gradients=upstream)
            return backward(upstream), *found

        return result, gradient

    return loss(y_pred, *(tf.cast(params[i], y_pred.dtype) for i in learned))


def _channels_joined(size, *pieces):
    """The sum of `_into_channels` of (values, start, stop) pieces at disjoint
    channels of a last axis of `size` entries, sorted by start, as one concatenation:
    zeros between them and after the last. The values have one shape but for their
    last axis."""
    parts = []
    end = 0
    for values, start, stop in pieces:
        if start > end:
            parts.append(_zeros_beside(values, start - end))
        parts.append(values)
        end = stop
    parts.append(_zeros_beside(pieces[-1][0], size - end))
    return tf.concat(parts, -1)


def _zeros_beside(values, width):
    """Zeros with `values`' shape but for a last axis of `width` entries."""
    shape = tf.concat([tf.shape(values)[:-1], [width]], 0)
    return tf.zeros(shape, values.dtype)
