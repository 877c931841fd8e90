"""The module-level helpers of generated PyTorch modules, as code ruff and mypy check.

`codegen.tensorflow_helpers`' functions that every backend needs, under the same names,
with the same arguments and meaning, and `_sparse_softmax_cross_entropy`; they use only
`torch`. A hand-written gradient is a module-level `torch.autograd.Function`, which a
generated module defines with the helper that applies it (`torch.compile` cannot trace
a class defined while the loss runs); where differentiating PyTorch's own ops gives the
gradient the TensorFlow helper writes out (the clamp's), the helper composes them.
Constants are made on the input's device. Shapes are static in PyTorch, so checks run
when the loss is called.
"""

import torch


def _softplus_pair(a, b, x):
    """a * softplus(-x) + b * softplus(x), with its exact gradient in one pass.

    a and b are numbers or tensors that broadcast against x. They are broadcast to one
    shape for `_softplus_pair_same_shape`, and each gradient is summed back to its
    argument's shape.
    """
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    return _softplus_pair_same_shape(*torch.broadcast_tensors(a, b, x))


class _SoftplusPair(torch.autograd.Function):
    """`_softplus_pair_same_shape`: the value, and the gradients of a, b and x.

    Written as torch.func asks (`setup_context`, a generated vmap rule), so that
    torch.func.grad and torch.func.vmap apply; log1p(exp(-|x|)), which both passes
    need, is a second output that is not differentiable.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(a, b, x):
        log_term = torch.log1p(torch.exp(-torch.abs(x)))
        return (a + b) * log_term + a * torch.relu(-x) + b * torch.relu(x), log_term

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(*inputs, output[1])

    @staticmethod
    def backward(ctx, upstream, _):
        a, b, x, log_term = ctx.saved_tensors
        need_a, need_b, need_x = ctx.needs_input_grad
        slope = b * torch.sigmoid(x) - a * torch.sigmoid(-x) if need_x else None
        return (
            upstream * (log_term + torch.relu(-x)) if need_a else None,
            upstream * (log_term + torch.relu(x)) if need_b else None,
            upstream * slope if need_x else None,
        )


def _softplus_pair_same_shape(a, b, x):
    """`_softplus_pair` of tensors of x's shape and dtype; each gradient has that shape.

    The value is (a + b) * log1p(exp(-|x|)) + a * relu(-x) + b * relu(x), the gradient
    with respect to x b * sigmoid(x) - a * sigmoid(-x): exact in both tails, and at
    x = 0, where differentiating the value would take |x|'s derivative, 0.
    """
    return _SoftplusPair.apply(a, b, x)[0]


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


def _huber(x, delta):
    """where(|x| <= delta, x**2 / 2, delta * (|x| - delta / 2)) for delta > 0, with
    the gradients of that select.

    delta is a number or a 0-d tensor (a param that may be learned). Written as
    m * (|x| - m / 2) with m = minimum(|x|, delta), the value is the select's, bit for
    bit, and differentiating it gives the select's gradients: clip(x, -delta, delta)
    with respect to x, exactly, and relu(|x| - delta) with respect to delta.
    """
    size = torch.abs(x)
    delta = torch.as_tensor(delta, dtype=x.dtype, device=x.device)
    inside = torch.minimum(size, delta)
    return inside * (size - 0.5 * inside)


def _softmax_cross_entropy(labels, logits):
    """Categorical cross-entropy on logits for labels whose rows sum to 1, axis kept.

    logsumexp(logits) - sum(labels * logits) over the last axis, in float32 for
    half-precision logits; its gradient with respect to the logits is
    softmax(logits) - labels.
    """
    half = logits.dtype in (torch.float16, torch.bfloat16)
    wide = logits.to(torch.float32 if half else logits.dtype)
    total = torch.logsumexp(wide, dim=-1, keepdim=True)
    picked = torch.sum(labels.to(wide.dtype) * wide, dim=-1, keepdim=True)
    return (total - picked).to(logits.dtype)


def _sparse_softmax_cross_entropy(labels, logits):
    """Categorical cross-entropy on logits [..., C] for labels [..., 1] that hold
    integers in [0, C) (an integer or float tensor), axis kept.

    logsumexp(logits) - the logit at the label, in float32 for half-precision logits;
    its gradient with respect to the logits is softmax(logits) - one_hot(labels).
    """
    half = logits.dtype in (torch.float16, torch.bfloat16)
    wide = logits.to(torch.float32 if half else logits.dtype)
    total = torch.logsumexp(wide, dim=-1, keepdim=True)
    picked = torch.gather(wide, -1, labels.to(torch.int64))
    return (total - picked).to(logits.dtype)


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


def _pair_dot(a, b, partner):
    """The sum over the classes of a * other(b, partner) as one matrix product: a and b
    are rows [B, 1, ..., C], the result [B, 1, ..., 1] with b's samples on axis
    `partner`. Half-precision rows are multiplied in float32, as other sums are."""
    rank = a.dim()
    rows = (slice(None),) + (0,) * (rank - 2)
    exact = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
    products = a[rows].to(exact) @ b[rows].to(exact).T
    shape = [a.shape[0]] + [1] * (rank - 1)
    shape[partner] = b.shape[0]
    return products.reshape(shape).to(a.dtype)


def _over_spatial(reduce, x):
    """`reduce` (torch.sum, torch.amax...) over x's spatial axes, kept: those between
    its batch axis and its last. With none, x itself, where PyTorch would reduce every
    axis for an empty `dim`."""
    axes = tuple(range(1, x.ndim - 1))
    return reduce(x, dim=axes, keepdim=True) if axes else x
