"""The module-level helpers of generated PyTorch modules, as code ruff and mypy check.

`codegen.tensorflow_helpers`' functions that every backend needs, under the same names,
with the same arguments and meaning, and `_sparse_softmax_cross_entropy`; they use only
`torch`. A hand-written gradient is a module-level `torch.autograd.Function`, which a
generated module defines with the helper that applies it (`torch.compile` cannot trace
a class defined while the loss runs); where differentiating PyTorch's own ops gives the
gradient the TensorFlow helper writes out (the clamp's), the helper composes them.
Eagerly, where each op is a pass over memory, a helper takes PyTorch's fused ops that
compute the same values and gradients; under torch.compile, which fuses ops into
loops, the composed form with the fewest transcendentals where that measured faster.
Constants are made on the input's device. Shapes are static in PyTorch, so checks run
when the loss is called.
"""

import torch

from lossdsl.codegen.common_helpers import _power_form, _whole_power


class _AutogradFunction(torch.autograd.Function):
    """A `torch.autograd.Function` in torch.func's form (`setup_context`, a generated
    vmap rule), applied without binding its arguments to `forward`'s signature anew.

    `Function.apply` binds the arguments of a Function with `setup_context` to its
    `forward`'s signature on every call, for default values, which these forwards do
    not have: 20-30 µs a call on the CPU, against 55 µs for all of
    `F.binary_cross_entropy_with_logits` with its gradient at 8x10. Outside torch.func's
    transforms, `apply` here does what `Function.apply` does after that; inside them
    it is `Function.apply`. torch.compile traces `apply` as a Function's, not this code.
    """

    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        args = torch._functorch.utils.unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)  # type: ignore[misc]


def _softplus_pair(a, b, x):
    """a * softplus(-x) + b * softplus(x), with its exact gradient in one pass.

    a and b are numbers or tensors that broadcast against x. They are broadcast to one
    shape for `_softplus_pair_same_shape`, and each gradient is summed back to its
    argument's shape.
    """
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    return _softplus_pair_same_shape(*torch.broadcast_tensors(a, b, x))


class _SoftplusPair(_AutogradFunction):
    """`_softplus_pair_same_shape`: the value, and the gradients of a, b and x.

    Written as torch.func asks (`setup_context`, a generated vmap rule), so that
    torch.func.grad and torch.func.vmap apply. Eagerly, where each op is a pass over
    memory, softplus(-x) and softplus(x) come from one op each, exact in both tails:
    -logsigmoid(x), and softplus with a threshold (40) past which log1p(exp(x)) and x
    differ by less than an ulp; every temporary after the first of an expression is
    written in place (a fresh tensor costs a pass of page faults on the CPU). Under
    torch.compile, which fuses the ops into one loop, the form with the fewest exp
    and log1p: (a + b) * log1p(exp(-|x|)) + a * relu(-x) + b * relu(x). Nothing but
    the inputs is saved: the gradients of a and b, which only learned labels need,
    recompute their softplus.
    """

    @staticmethod
    def forward(a, b, x):
        if torch.compiler.is_compiling() or torch.is_grad_enabled():
            log_term = torch.log1p(torch.exp(-torch.abs(x)))
            return (a + b) * log_term + a * torch.relu(-x) + b * torch.relu(x)
        up = torch.nn.functional.softplus(x, threshold=40.0).mul_(b)
        return up.sub_(torch.nn.functional.logsigmoid(x).mul_(a))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, upstream):
        if _differentiated_twice():
            inputs = ctx.saved_tensors[:3]
            needs = ctx.needs_input_grad
            return _autograd_gradients(_SoftplusPair, inputs, needs, upstream)
        a, b, x = ctx.saved_tensors
        need_a, need_b, need_x = ctx.needs_input_grad
        slope = None
        if need_x:
            slope = torch.sigmoid(x).mul_(b)
            slope.sub_(torch.neg(x).sigmoid_().mul_(a)).mul_(upstream)
        functional = torch.nn.functional
        return (
            -upstream * functional.logsigmoid(x) if need_a else None,
            upstream * functional.softplus(x, threshold=40.0) if need_b else None,
            slope,
        )


def _softplus_pair_same_shape(a, b, x):
    """`_softplus_pair` of tensors of x's shape and dtype; each gradient has that shape.

    The value is a * softplus(-x) + b * softplus(x), the gradient with respect to x
    b * sigmoid(x) - a * sigmoid(-x): both exact in both tails.
    """
    return _SoftplusPair.apply(a, b, x)


def _maximum(a, b):
    """torch.maximum(a, b), differentiated as TensorFlow differentiates it: the
    gradient goes to a where a >= b and to b elsewhere, where torch.maximum's splits it
    in halves at a tie (a hinge at its margin, a relu written as maximum(x, 0) at 0).
    Without grad mode (an autograd.Function's forward, inference) it is torch.maximum
    alone. A Python number (a constant such as 1 / C) becomes a tensor like the other:
    torch.maximum takes tensors only."""
    a, b = _tensors(a, b)
    larger = torch.maximum(a, b)
    if not torch.is_grad_enabled():
        return larger
    return torch.where(a >= b, a, larger)


def _minimum(a, b):
    """torch.minimum(a, b), differentiated as TensorFlow differentiates it: the gradient
    goes to a where a <= b and to b elsewhere (`_maximum`'s ties, and its numbers)."""
    a, b = _tensors(a, b)
    smaller = torch.minimum(a, b)
    if not torch.is_grad_enabled():
        return smaller
    return torch.where(a <= b, a, smaller)


def _tensors(a, b):
    """a and b, with a Python number among them a tensor like the other."""
    if not torch.is_tensor(a):
        a = torch.as_tensor(a, dtype=b.dtype, device=b.device)
    if not torch.is_tensor(b):
        b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
    return a, b


def _clip(x, low, high):
    """minimum(maximum(x, low), high) for numbers low and high: torch.clamp.

    As NumPy's clip, it is high everywhere when low > high. Its gradient is the upstream
    one where low <= x <= high and 0 elsewhere (and at NaN), as TensorFlow's helper
    writes it out.
    """
    return torch.clamp(x, low, high)


def _clipped_log(x, low, high):
    """torch.log(`_clip`(x, low, high)).

    Its gradient is upstream / x where low <= x <= high and 0 elsewhere: the log's
    gradient, one division, selected by the clamp's.
    """
    return torch.log(_clip(x, low, high))


def _sigmoid_cross_entropy(t, x):
    """t * softplus(-x) + (1 - t) * softplus(x): binary cross-entropy of the logits x
    against the target t, a number or a tensor that broadcasts against x.

    The softplus pair with a + b = 1, in fewer passes: `_SigmoidCrossEntropy`.
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return _SigmoidCrossEntropy.apply(*torch.broadcast_tensors(t, x))


class _SigmoidCrossEntropy(_AutogradFunction):
    """`_sigmoid_cross_entropy` of tensors of one shape: the value relu(x) - t * x +
    log1p(exp(-|x|)), exact in both tails for t of 0 or 1 (relu(x) - t * x is 0 or |x|
    exactly there, before the small term is added), and the gradients sigmoid(x) - t
    of x and -x of t.

    The gradient of x is that of F.binary_cross_entropy_with_logits, in one pass: where
    the exact gradient is below float's resolution of 1 (|x| past about 17 in float32,
    t of 1 and x positive), it is 0, as every framework's is. Eagerly log1p(exp(-|x|))
    is -logsigmoid(|x|), one kernel for three, and each temporary after the first is
    written in place (a fresh tensor costs a pass of page faults on the CPU); under
    torch.compile, which fuses the ops into one loop, the plain form.
    A module-level autograd.Function with a generated vmap rule (torch.compile,
    torch.func).
    """

    @staticmethod
    def forward(t, x):
        if torch.compiler.is_compiling() or torch.is_grad_enabled():
            return torch.relu(x) - t * x + torch.log1p(torch.exp(-torch.abs(x)))
        tail = torch.nn.functional.logsigmoid(torch.abs(x))
        return torch.relu(x).addcmul_(t, x, value=-1).sub_(tail)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, upstream):
        if _differentiated_twice():
            inputs = ctx.saved_tensors[:2]
            needs = ctx.needs_input_grad
            return _autograd_gradients(_SigmoidCrossEntropy, inputs, needs, upstream)
        t, x = ctx.saved_tensors
        need_t, need_x = ctx.needs_input_grad
        slope = torch.sigmoid(x).sub_(t).mul_(upstream) if need_x else None
        return (-x * upstream if need_t else None), slope


def _huber(x, delta, target=None):
    """where(|e| <= delta, e**2 / 2, delta * (|e| - delta / 2)) for delta > 0 and the
    residual e = x - target (x itself without a target), with the gradients of that
    select.

    delta is a number or a 0-d tensor (a param that may be learned). For a number it
    is torch.nn.functional.huber_loss of x against the target (against zeros, a view,
    not an array, without one): the same value bit for bit, and its gradient
    clip(e, -delta, delta) in one fused kernel, with no pass to write e. A tensor goes
    through `_Huber`, which also gives the gradient of delta.
    """
    if isinstance(delta, torch.Tensor):
        residual = x if target is None else x - target
        return _Huber.apply(residual, delta.to(x.dtype))
    if target is None:
        target = torch.zeros((), dtype=x.dtype, device=x.device).expand_as(x)
    huber_loss = torch.nn.functional.huber_loss
    return huber_loss(x, target, reduction="none", delta=float(delta))


class _Huber(_AutogradFunction):
    """`_huber` of a tensor delta: m * (|x| - m / 2) with m = minimum(|x|, delta), the
    select's value bit for bit; the gradients clip(x, -delta, delta) with respect to x
    and relu(|x| - delta) with respect to delta, summed to delta's shape.

    A module-level autograd.Function with a generated vmap rule (torch.compile,
    torch.func); autograd through the product took about 20 kernels.
    """

    @staticmethod
    def forward(x, delta):
        size = torch.abs(x)
        inside = torch.minimum(size, delta)
        return inside * (size - 0.5 * inside)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, upstream):
        if _differentiated_twice():
            inputs = ctx.saved_tensors[:2]
            needs = ctx.needs_input_grad
            return _autograd_gradients(_Huber, inputs, needs, upstream)
        x, delta = ctx.saved_tensors
        need_x, need_delta = ctx.needs_input_grad
        outside = None
        if need_delta:
            outside = upstream * torch.relu(torch.abs(x) - delta)
            outside = outside.sum_to_size(delta.shape)
        return upstream * torch.clamp(x, -delta, delta) if need_x else None, outside


def _softmax_cross_entropy(labels, logits):
    """Categorical cross-entropy on logits for labels whose rows sum to 1, axis kept.

    logsumexp(logits) - sum(labels * logits) over the last axis, in float32 for
    half-precision logits; its gradient with respect to the logits is
    softmax(logits) - labels, with respect to the labels -log_softmax(logits) (the
    exact one, as F.cross_entropy's: the value is taken as sum(labels * (logsumexp -
    logits))). From 16 classes it
    is `_SoftmaxCrossEntropy`, on log_softmax's fused kernels; below, where PyTorch's
    CPU log_softmax measured three times slower than these few ops, the ops.
    """
    half = logits.dtype in (torch.float16, torch.bfloat16)
    wide = logits.to(torch.float32 if half else logits.dtype)
    labels = labels.to(wide.dtype)
    if wide.shape[-1] >= 16:
        return _SoftmaxCrossEntropy.apply(labels, wide)[0].to(logits.dtype)
    total = torch.logsumexp(wide, dim=-1, keepdim=True)
    return torch.sum(labels * (total - wide), dim=-1, keepdim=True).to(logits.dtype)


class _SoftmaxCrossEntropy(_AutogradFunction):
    """`_softmax_cross_entropy` from log_softmax: the value -sum(labels * log_softmax)
    (logsumexp - sum(labels * logits) for rows that sum to 1), and the gradients
    softmax * sum(labels) - labels of the logits (softmax - labels for those rows) and
    -log_softmax of the labels. The logits' is log_softmax's own backward kernel, as
    F.cross_entropy's, one pass where exp(log_softmax) - labels took three and a slow
    exp (101 against 181 us at 1024x256).

    A module-level autograd.Function with a generated vmap rule (torch.compile,
    torch.func); log_softmax is a second output, not differentiable, for the backward
    pass.
    """

    @staticmethod
    def forward(labels, logits):
        log_softmax = torch.log_softmax(logits, dim=-1)
        value = torch.sum(labels * log_softmax, dim=-1, keepdim=True).neg_()
        return value, log_softmax

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no array of zeros for log_softmax's gradient
        ctx.save_for_backward(*inputs, output[1])

    @staticmethod
    def backward(ctx, upstream, _):
        if _differentiated_twice():
            inputs = ctx.saved_tensors[:2]
            needs = ctx.needs_input_grad
            return _autograd_gradients(_SoftmaxCrossEntropy, inputs, needs, upstream)
        labels, _, log_softmax = ctx.saved_tensors
        need_labels, need_logits = ctx.needs_input_grad
        labels_gradient = -upstream * log_softmax if need_labels else None
        logits_gradient = (
            _log_softmax_grad(labels * -upstream, log_softmax) if need_logits else None
        )
        return labels_gradient, logits_gradient


def _log_softmax_grad(upstream, log_softmax):
    """The gradient that `upstream` of log_softmax's value passes to its logits,
    upstream - exp(log_softmax) * sum(upstream) over the last axis, in one kernel."""
    dtype = log_softmax.dtype
    return torch.ops.aten._log_softmax_backward_data(upstream, log_softmax, -1, dtype)


def _sparse_softmax_cross_entropy(labels, logits):
    """Categorical cross-entropy on logits [..., C] for labels [..., 1] that hold
    integers in [0, C) (an integer or float tensor), axis kept.

    logsumexp(logits) - the logit at the label, in float32 for half-precision logits;
    its gradient with respect to the logits is softmax(logits) - one_hot(labels).
    Eagerly from 16 classes it is torch.nn.functional.cross_entropy on [N, C] and
    [N], fused kernels; below, where PyTorch's CPU log_softmax measured three times
    slower, and under torch.compile, which fuses them better than cross_entropy's
    decomposition (measured), a logsumexp and a gather.
    """
    half = logits.dtype in (torch.float16, torch.bfloat16)
    wide = logits.to(torch.float32 if half else logits.dtype)
    labels = labels.to(torch.int64)
    classes = wide.shape[-1]
    if classes >= 16 and not torch.compiler.is_compiling():
        loss = torch.nn.functional.cross_entropy(
            wide.reshape(-1, classes), labels.reshape(-1), reduction="none"
        )
        return loss.reshape(labels.shape).to(logits.dtype)
    total = torch.logsumexp(wide, dim=-1, keepdim=True)
    return (total - torch.gather(wide, -1, labels)).to(logits.dtype)


def _per_class(values, y_pred, name):
    """A vector param `name` as a tensor of y_pred's dtype and device, with one entry
    per class.

    The class count is known when the loss is called, and checked then (a ValueError).
    """
    values = torch.as_tensor(values, dtype=y_pred.dtype, device=y_pred.device)
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
    return torch.transpose(x, 0, partner)


def _paired(y_true, y_pred, partners, name):
    """The inputs of the loss `name`, which pairs samples: y_pred must be [batch, C],
    and both inputs get `partners` axes of size 1 after the batch axis."""
    if y_pred.dim() != 2:
        raise ValueError(
            f"{name} pairs samples, so y_pred must have the shape [batch, C] (or "
            f"[batch]); received the shape {tuple(y_pred.shape)}."
        )
    new_axes = (slice(None),) + (None,) * partners
    return y_true[new_axes], y_pred[new_axes]


def _check_channels(x, needed, argument, selection):
    """`x` (the loss's `argument`), checked when the loss is called to have the `needed`
    entries on its last axis that the spec's `selection` takes (a ValueError)."""
    if x.shape[-1] < needed:
        raise ValueError(
            f"Invalid {argument}: the loss selects `{selection}`, which needs at least "
            f"{needed} entries on the last axis, received shape {tuple(x.shape)}."
        )
    return x


def _pair_rows(x):
    """Rows [B, 1, ..., C] of a loss that pairs samples as a matrix [B, C]; half
    precision in float32, as other sums are."""
    rows = (slice(None),) + (0,) * (x.dim() - 2)
    exact = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return x[rows].to(exact)


def _pair_result(matrix, like, partner):
    """A matrix [B, B'] of pairs of samples as [B, 1, ..., 1] with the B' samples on
    axis `partner`, of rank and dtype `like`'s."""
    shape = [matrix.shape[0]] + [1] * (like.dim() - 1)
    shape[partner] = matrix.shape[1]
    return matrix.reshape(shape).to(like.dtype)


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
    center = torch.mean(rows, dim=0).detach()
    first = rows - center
    second = first if b is None else _pair_rows(b) - center
    norms = torch.sum(torch.square(first), dim=1)
    other_norms = norms if b is None else torch.sum(torch.square(second), dim=1)
    products = first @ second.T
    squared = norms[:, None] + other_norms[None, :] - 2.0 * products
    squared = torch.clamp_min(squared, 0.0)
    if b is None:
        squared = torch.diagonal_scatter(squared, torch.zeros_like(norms))
    return _pair_result(squared, a, partner)


def _affine(x, scale, shift):
    """x * scale + shift, for a scale and shift that are the same for every element:
    numbers, or scalar tensors (a learned param).

    Eagerly each op is a pass over memory, and PyTorch folds no constants: where the
    scale is the number 1 or the shift the number 0 (a param at its neutral value, as
    label_smoothing=0), that op is left out, and for both the result is a view of x
    (which an autograd.Function may return and save, where x itself it may not);
    otherwise the shift is added in place to the one fresh tensor.
    """
    scale_is_one = isinstance(scale, (int, float)) and scale == 1
    shift_is_zero = isinstance(shift, (int, float)) and shift == 0
    if scale_is_one:
        return x.view_as(x) if shift_is_zero else x + shift
    if shift_is_zero:
        return x * scale
    if torch.compiler.is_compiling():
        return x * scale + shift
    return torch.mul(x, scale).add_(shift)


def _power(x, exponent):
    """torch.pow(x, exponent), fast for every number.

    PyTorch's pow has fast kernels for whole numbers from -2 to 3 and +-0.5, and is
    several times slower than exp and log elsewhere. Of a Python number exponent
    (`_power_form`):
    - 0 stays torch.pow, a fill of ones, and a whole number from -16 to 16 other than
      0, 2, 3 and -1 is x or products of x or of 1 / x (`_whole_power`);
    - any other finite one that is neither whole nor +-0.5 is exp(exponent * log(x)),
      which has pow's values at every x (NaN below 0, 0 or inf at 0), where autograd
      records nothing (a loss's own forward pass). Where it records (a second
      derivative, y_true's gradient) pow stays, whose gradient is 0 or inf at x = 0
      where autograd of exp(exponent * log(x)) gives NaN.
    Those are a few ulps (products) or percents (exp and log) off in float16 and
    bfloat16, which keep torch.pow, as do the other numbers and tensor exponents.
    """
    form = None if x.dtype in (torch.float16, torch.bfloat16) else _power_form(exponent)
    if form == "products":
        return _whole_power(x, int(exponent))
    if form in (None, "one") or torch.is_grad_enabled():
        return torch.pow(x, exponent)
    return torch.exp(exponent * torch.log(x))


def _mean(x, dim=None, keepdim=False):
    """torch.mean(x, dim, keepdim): the sum over those axes (all for None) divided by
    their size.

    Eagerly, torch.mean's backward writes a full array, the upstream gradient expanded
    and divided; a sum's backward is a view of the upstream gradient, here already
    divided, so the gradient reaches the op before it without a pass over memory.
    """
    axes = range(x.ndim) if dim is None else [dim] if isinstance(dim, int) else dim
    count = 1
    for axis in axes:
        count *= x.shape[axis]
    return torch.sum(x, dim=dim, keepdim=keepdim) / count


def _check_reduction(reduction):
    """`torch.nn`'s check of a `reduction` argument: "mean", "sum" or "none"."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction!r} is not a valid value for reduction")


def _reduced(losses, reduction, mask=None):
    """The loss's values reduced as `torch.nn`'s losses take `reduction`: "none" as they
    are, "sum" their sum, "mean" their mean; with a mask (a spec's `where`), the mean of
    the values that count, as with `ignore_index`."""
    _check_reduction(reduction)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return torch.sum(losses)
    if mask is not None:
        return torch.sum(losses) / torch.sum(mask)
    return _mean(losses)


def _class_reduced(terms, over_classes, reduction, dtype):
    """A loss whose last step is the mean (`over_classes` "mean") or sum ("sum") of
    whole-shaped terms [..., C] over the classes, reduced as `_reduced` takes
    `reduction`, cast to dtype.

    "none" gives the values per element, [...]. For "mean" and "sum" the batch's
    reduction and the classes' are one, over every term (the mean over the elements of
    means over the classes is the mean of the terms), as `torch.nn`'s losses reduce: the
    gradient reaching the terms is one number broadcast, not one per element, which
    PyTorch's CPU kernels take row by row (a third of the time at 4096x10).
    """
    if reduction == "none":
        reduce = _mean if over_classes == "mean" else torch.sum
        return reduce(terms, dim=-1).to(dtype)
    total = _reduced(terms, reduction)
    if over_classes == "sum" and reduction == "mean":
        total = total * terms.shape[-1]
    elif over_classes == "mean" and reduction == "sum":
        total = total / terms.shape[-1]
    return total.to(dtype)


def _over_spatial(reduce, x):
    """`reduce` (torch.sum, torch.amax...) over x's spatial axes, kept: those between
    its batch axis and its last. With none, x itself, where PyTorch would reduce every
    axis for an empty `dim`."""
    axes = tuple(range(1, x.ndim - 1))
    return reduce(x, dim=axes, keepdim=True) if axes else x


def _into_channels(values, size, start, stop):
    """`values` at entries start to stop - 1 of a last axis of `size` entries, 0 at the
    others: what selecting those channels passes back. Bounds below 0 count from the
    end, a stop of None is the end."""
    start = start if start >= 0 else size + start
    stop = size if stop is None else stop if stop >= 0 else size + stop
    return torch.nn.functional.pad(values, (start, size - stop))


def _save(ctx, inputs, temporaries):
    """Keep a loss's inputs and forward temporaries for its own backward pass
    (`_saved`): tensors through `save_for_backward`, numbers, dtypes and axes on `ctx`;
    the temporaries, returned as outputs only to be kept, have no gradient (and autograd
    writes no arrays of zeros for them)."""
    kept = [value for value in temporaries if torch.is_tensor(value)]
    ctx.mark_non_differentiable(*kept)
    ctx.set_materialize_grads(False)
    values = (*inputs, *temporaries)
    ctx.inputs = len(inputs)
    ctx.save_for_backward(*(value for value in values if torch.is_tensor(value)))
    ctx.kept = tuple(None if torch.is_tensor(value) else value for value in values)


def _saved(ctx):
    """What `_save` kept, in its order."""
    tensors = iter(ctx.saved_tensors)
    return tuple(next(tensors) if value is None else value for value in ctx.kept)


def _differentiated_twice():
    """Whether autograd runs a backward pass to differentiate it again
    (`create_graph=True`): under grad mode, outside torch.func's transforms, which run
    every backward pass under grad mode and differentiate it themselves."""
    return torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()


def _other_gradients(function, ctx, upstream, first=1):
    """The gradients that autograd asks for (`ctx.needs_input_grad`) of the inputs of a
    loss's own autograd.Function from `first` on (`_autograd_gradients`): after y_pred,
    a soft target or a learnable param, which its own backward pass does not cover; all
    of them (`first` 0) for a second derivative (`_differentiated_twice`)."""
    needs = ctx.needs_input_grad
    if not any(needs[first:]):  # y_pred's alone, as a loss is mostly used
        return (None,) * (len(needs) - first)
    inputs = _saved(ctx)[: ctx.inputs]
    return _autograd_gradients(function, inputs, needs, upstream, first)


def _autograd_gradients(function, inputs, needs, upstream, first=0):
    """The gradients of an autograd.Function's inputs from `first` on that `needs`
    asks for, from its forward pass run again on them and differentiated by autograd;
    None for the others.

    For a second derivative the own backward passes will not do: they are once
    differentiable (their temporaries have no gradient, and they write in place). Then
    the inputs keep their graph, autograd's gradient is differentiable again, and the
    helpers' forward passes, under grad mode, take their plain forms, without writes in
    place.
    """
    twice = _differentiated_twice()
    wanted = [i for i, needed in enumerate(needs) if needed and i >= first]
    if not wanted:
        return (None,) * (len(inputs) - first)
    with torch.enable_grad():
        again = [x.detach() if torch.is_tensor(x) and not twice else x for x in inputs]
        for i in wanted:
            again[i].requires_grad_(True)
        value = function.forward(*again)
        value = value[0] if isinstance(value, tuple) else value
        chosen = [again[i] for i in wanted]
        grad = torch.autograd.grad
        found = grad(value, chosen, upstream, allow_unused=True, create_graph=twice)
    gradients = dict(zip(wanted, found, strict=True))
    return tuple(gradients.get(i) for i in range(first, len(inputs)))


def _channels_joined(size, *pieces):
    """The sum of `_into_channels` of (values, start, stop) pieces at disjoint
    channels of a last axis of `size` entries, sorted by start, as one concatenation:
    zeros between them and after the last. The values have one shape but for their
    last axis."""
    parts = []
    end = 0
    for values, start, stop in pieces:
        if start > end:
            parts.append(values.new_zeros((*values.shape[:-1], start - end)))
        parts.append(values)
        end = stop
    last = pieces[-1][0]
    parts.append(last.new_zeros((*last.shape[:-1], size - end)))
    return torch.cat(parts, -1)
