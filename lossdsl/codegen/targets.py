"""The backends generated code runs on: each one's spelling of the printer's operations.

One printer (`codegen.printer`) and one writer (`codegen.writer`) serve every backend.
Where the code differs, they ask the target: a built-in's call comes from its row
(`builtins.Calls`), every other operation from a template here, filled with the
printed operands (`{0}`, `{1}`...), y_pred's name (`{y_pred}`) and its dtype
(`{dtype}`). A template that names a helper (`_sparse_softmax_cross_entropy(...)`)
makes the module define it, from the target's helpers module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Target:
    """One backend of generated code."""

    name: str  # as `--target` and `keras.backend.backend()` name it
    title: str  # as prose names it
    imports: tuple[str, ...]  # the module's import lines, in order
    keras_optional: bool  # whether the module imports without Keras (its native API)
    helpers_module: str  # where its helpers are written as real code
    axis: str  # the keyword of a reduction's axes
    keepdims: str  # the keyword that keeps the reduced axes
    tensor_arguments: bool  # whether every argument of a call must be a tensor
    empty_axes_reduce_all: bool  # whether a reduction over no axes reduces them all
    custom_gradient: bool  # whether its modules carry the loss's own backward pass
    always_compiled: bool  # whether its modules always run under XLA (jax.jit)
    # whether `num_classes` is a Python int, so that arithmetic of it and the scalar
    # params runs in Python (a param's neutral value then folds: `_affine`), not a tensor
    num_classes_number: bool
    backward_depths: tuple[int, int, int]  # the indentation of its body, forward, backward
    # fused nodes whose helper's own gradient the target keeps: a loss with one of them
    # is differentiated by the framework (measured faster there; benchmarks/README.md)
    helper_gradients: frozenset[str]
    # fusions into a library kernel that its own backward pass does without, unless
    # compiled with XLA: the general form measured faster (benchmarks/README.md)
    kernels_slower: frozenset[str]
    forms: Mapping[str, str]

    def form(self, operation: str, *operands: str, y_pred: str) -> str:
        """The code of `operation` applied to printed `operands`."""
        return self.forms[operation].format(*operands, y_pred=y_pred, dtype=f"{y_pred}.dtype")

    def axes(self, axes: list[str]) -> str:
        """Several axes of a reduction, as the backend takes them."""
        joined = ", ".join(axes)
        return f"[{joined}]" if self.name == "tensorflow" else f"({joined})"


OPTIONAL_FORMS = frozenset(
    {
        "affine",
        "class_reduced",
        "huber_of_difference",
        "sigmoid_cross_entropy",
        "where_zero",
        "params_or",
        "where_positive",
        "sigmoid_grad",
        "tanh_grad",
        "split_channels",
        "negated_argument",
        "one_hot_times",
        "log_sum_exp_shift",
    }
)
"""Forms a target may lack: where it has one, the printer writes that node with it (a
faster spelling on that backend); where not, in the general way (the helper every target
defines, or a plain select for "where_zero")."""


HELPER_GRADIENTS = frozenset(
    {"SoftplusPair", "Huber", "ClippedLog", "SoftmaxCrossEntropy", "SparseSoftmaxCrossEntropy"}
)
"""The fused nodes (`symbolic.functions` classes) whose JAX and PyTorch helpers have a
tuned gradient (`jax.custom_vjp`; in-place PyTorch ops, `F.huber_loss`,
`F.cross_entropy`) that measured faster than the loss's own backward pass there."""


TENSORFLOW = Target(
    name="tensorflow",
    title="TensorFlow",
    imports=("import keras", "import tensorflow as tf"),
    keras_optional=False,
    helpers_module="lossdsl.codegen.tensorflow_helpers",
    axis="axis",
    keepdims="keepdims",
    tensor_arguments=False,
    empty_axes_reduce_all=False,
    custom_gradient=True,
    always_compiled=False,
    num_classes_number=False,
    backward_depths=(1, 2, 3),
    helper_gradients=frozenset(),
    kernels_slower=frozenset({"softmax_cross_entropy", "sparse_softmax_cross_entropy"}),
    forms=MappingProxyType(
        {
            "prepare_pred": "tf.convert_to_tensor({0}, dtype_hint=keras.backend.floatx())",
            "is_floating": "{0}.dtype.is_floating",
            "default_float": "tf.cast({0}, keras.backend.floatx())",
            "rank": "{0}.shape.rank",
            "add_axis": "tf.expand_dims({0}, -1)",
            "drop_axis": "tf.squeeze({0}, -1)",
            "prepare_labels": "tf.convert_to_tensor({0})",
            "as_labels": "tf.cast({0}, tf.int32)",
            "prepare_true": "tf.convert_to_tensor({0}, dtype_hint={dtype})",
            "set_mask": "{0}._keras_mask = {1}",
            "constant": "tf.constant({0}, {dtype})",
            "scalar": "tf.cast(tf.convert_to_tensor({0}, dtype_hint={dtype}), {dtype})",
            "cast": "tf.cast({0}, {1})",
            "size": "tf.shape({0})[{1}]",
            "size_of_all": "tf.size({0})",
            "spatial_size": "tf.reduce_prod(tf.shape({y_pred})[1:-1])",
            "half": "{dtype} in (tf.float16, tf.bfloat16)",
            "float32": "tf.float32",
            "spatial_axes": "list(range(1, len({y_pred}.shape) - 1))",
            "all_axes": "None",
            "later_axes": "list(range(1, len({y_pred}.shape)))",
            "sample_index": (
                "tf.reshape(tf.range(tf.shape({y_pred})[0]), "
                "[-1] + [1] * (len({y_pred}.shape) - 1))"
            ),
            "square": "tf.math.square({0})",
            "sqrt": "tf.math.sqrt({0})",
            "rsqrt": "tf.math.rsqrt({0})",
            "any": "tf.math.reduce_any",
            "pow": "_power({0}, {1})",
            "where": "tf.where({0}, {1}, {2})",
            "where_zero": "_where_zero({0}, {1})",
            # a condition on scalar params ({0}, a Python bool for numbers) or an array's
            "params_or": "_params_or({0}, {1})",
            # {1} where {0} > 0, else 0, of one shape and a finite {1}: ReluGrad's one pass
            "where_positive": "tf.raw_ops.ReluGrad(gradients={1}, features={0})",
            # {1} * {0} * (1 - {0}) for a sigmoid's value {0} and a {1} of its shape
            "sigmoid_grad": "tf.raw_ops.SigmoidGrad(y={0}, dy={1})",
            # {1} * (1 - {0}^2) for a tanh's value {0} and a {1} of its shape
            "tanh_grad": "tf.raw_ops.TanhGrad(y={0}, dy={1})",
            # an array {0} negated as a one-argument function's argument: no Neg for
            # Grappler to chain with the function (`Printer.unary_argument`)
            "negated_argument": "{0} * -1.0",
            # one_hot({0}) * {1} for a {1} without the class axis: a scatter
            "one_hot_times": "_one_hot_times({0}, {1}, {y_pred})",
            # the shift of a logsumexp over axes {1}: its largest {0}, 0 if not finite
            "log_sum_exp_shift": "_log_sum_exp_shift({0}, {1})",
            "split_channels": "tf.split({0}, {1}, axis=-1)",
            "not": "tf.math.logical_not({0})",
            "and": "tf.math.logical_and({0}, {1})",
            "or": "tf.math.logical_or({0}, {1})",
            "<": "tf.math.less({0}, {1})",
            "<=": "tf.math.less_equal({0}, {1})",
            ">": "tf.math.greater({0}, {1})",
            ">=": "tf.math.greater_equal({0}, {1})",
            "==": "tf.math.equal({0}, {1})",
            "!=": "tf.math.not_equal({0}, {1})",
            "zeros_like": "tf.zeros_like({0})",
            "broadcast_like": "tf.broadcast_to({0}, tf.shape({1}))",
            "like_one_class": "tf.broadcast_to({0}, tf.shape({y_pred}[..., :1]))",
            "squeeze": "tf.squeeze({0}, axis=-1)",
            "expand": "tf.expand_dims({0}, -1)",
            "flatten": "tf.reshape({0}, [-1])",
            "unflatten": "tf.reshape({0}, [-1] + [1] * (len({y_pred}.shape) - 1))",
            "scalar_result": "tf.reshape(tf.cast({0}, {dtype}), [])",
            "scalar_of": "tf.reshape({0}, [])",
            "softmax": "tf.nn.softmax({0}, axis=-1)",
            "log_softmax": "tf.nn.log_softmax({0}, axis=-1)",
            "trigamma": "_trigamma({0})",
            "cumsum": "tf.math.cumsum({0}, axis=-1)",
            "class_counts": "tf.range(1, tf.shape({y_pred})[-1] + 1, dtype={dtype})",
            "class_of": "tf.expand_dims(tf.math.argmax({0}, axis=-1, output_type=tf.int32), -1)",
            "one_hot": "tf.one_hot({0}[..., 0], tf.shape({y_pred})[-1], dtype={dtype})",
            "classes_from": (
                "tf.cast(({0} >= 0) & ({0} <= tf.range(tf.shape({y_pred})[-1])), {dtype})"
            ),
            "vector_size": "tf.size({0})",
            "entries": "tf.gather({0}, {1})",
            "clip_index": "tf.clip_by_value({0}, 0, {1} - 1)",
            "take_class": "tf.gather({0}, {1}, axis=-1, batch_dims=len({y_pred}.shape) - 1)",
            "softmax_cross_entropy": (
                "tf.nn.softmax_cross_entropy_with_logits(labels={0}, logits={1})"
            ),
            "softmax_cross_entropy_kept": (
                "tf.expand_dims(tf.nn.softmax_cross_entropy_with_logits("
                "labels={0}, logits={1}), -1)"
            ),
            "sparse_softmax_cross_entropy": (
                "tf.expand_dims(tf.nn.sparse_softmax_cross_entropy_with_logits("
                "labels={0}[..., 0], logits={1}), -1)"
            ),
        }
    ),
)

JAX = Target(
    name="jax",
    title="JAX",
    imports=("import jax", "import jax.numpy as jnp"),
    keras_optional=True,
    helpers_module="lossdsl.codegen.jax_helpers",
    axis="axis",
    keepdims="keepdims",
    tensor_arguments=False,
    empty_axes_reduce_all=False,
    custom_gradient=True,
    always_compiled=True,
    num_classes_number=False,
    backward_depths=(1, 2, 2),
    helper_gradients=HELPER_GRADIENTS,
    kernels_slower=frozenset(),
    forms=MappingProxyType(
        {
            "prepare_pred": "jnp.asarray({0})",
            "is_floating": "jnp.issubdtype({0}.dtype, jnp.floating)",
            "default_float": "{0}.astype(jnp.result_type(float))",
            "rank": "{0}.ndim",
            "add_axis": "jnp.expand_dims({0}, -1)",
            "drop_axis": "jnp.squeeze({0}, -1)",
            "prepare_labels": "jnp.asarray({0})",
            "as_labels": "{0}.astype(jnp.int32)",
            "prepare_true": "jnp.asarray({0})",
            "set_mask": "keras.src.backend.set_keras_mask({0}, {1})",
            "constant": "jnp.asarray({0}, {dtype})",
            "scalar": "jnp.asarray({0}, {dtype})",
            "cast": "jnp.asarray({0}, {1})",
            "size": "{0}.shape[{1}]",
            "size_of_all": "{0}.size",
            "spatial_size": "math.prod({y_pred}.shape[1:-1])",
            "half": "{dtype} in (jnp.float16, jnp.bfloat16)",
            "float32": "jnp.float32",
            "spatial_axes": "tuple(range(1, {y_pred}.ndim - 1))",
            "all_axes": "None",
            "later_axes": "tuple(range(1, {y_pred}.ndim))",
            "sample_index": (
                "jnp.arange({y_pred}.shape[0]).reshape((-1,) + (1,) * ({y_pred}.ndim - 1))"
            ),
            "square": "jnp.square({0})",
            "sqrt": "jnp.sqrt({0})",
            "rsqrt": "jax.lax.rsqrt({0})",
            "any": "jnp.any",
            "pow": "jnp.power({0}, {1})",
            "where": "jnp.where({0}, {1}, {2})",
            "not": "jnp.logical_not({0})",
            "and": "jnp.logical_and({0}, {1})",
            "or": "jnp.logical_or({0}, {1})",
            "<": "jnp.less({0}, {1})",
            "<=": "jnp.less_equal({0}, {1})",
            ">": "jnp.greater({0}, {1})",
            ">=": "jnp.greater_equal({0}, {1})",
            "==": "jnp.equal({0}, {1})",
            "!=": "jnp.not_equal({0}, {1})",
            "zeros_like": "jnp.zeros_like({0})",
            "broadcast_like": "jnp.broadcast_to({0}, jnp.shape({1}))",
            "like_one_class": "jnp.broadcast_to({0}, {y_pred}[..., :1].shape)",
            "squeeze": "jnp.squeeze({0}, axis=-1)",
            "expand": "jnp.expand_dims({0}, -1)",
            "flatten": "jnp.reshape({0}, (-1,))",
            "unflatten": "jnp.reshape({0}, (-1,) + (1,) * ({y_pred}.ndim - 1))",
            "scalar_result": "jnp.reshape(jnp.asarray({0}, {dtype}), ())",
            "scalar_of": "jnp.reshape({0}, ())",
            "softmax": "jax.nn.softmax({0}, axis=-1)",
            "log_softmax": "jax.nn.log_softmax({0}, axis=-1)",
            "trigamma": "jax.scipy.special.polygamma(1, {0})",
            "cumsum": "jnp.cumsum({0}, axis=-1)",
            "class_counts": "jnp.arange(1, {y_pred}.shape[-1] + 1, dtype={dtype})",
            "class_of": "jnp.argmax({0}, axis=-1, keepdims=True)",
            "one_hot": "jax.nn.one_hot({0}[..., 0], {y_pred}.shape[-1], dtype={dtype})",
            "classes_from": (
                "(({0} >= 0) & ({0} <= jnp.arange({y_pred}.shape[-1]))).astype({dtype})"
            ),
            "vector_size": "{0}.size",
            "entries": "jnp.take({0}, {1})",
            "clip_index": "jnp.clip({0}, 0, {1} - 1)",
            "take_class": "jnp.take_along_axis({0}, {1}, axis=-1)",
            "softmax_cross_entropy": "jnp.squeeze(_softmax_cross_entropy({0}, {1}), axis=-1)",
            "softmax_cross_entropy_kept": "_softmax_cross_entropy({0}, {1})",
            "sparse_softmax_cross_entropy": "_sparse_softmax_cross_entropy({0}, {1})",
        }
    ),
)

_TORCH_DTYPE = "dtype={dtype}, device={y_pred}.device"

TORCH = Target(
    name="torch",
    title="PyTorch",
    imports=("import torch",),
    keras_optional=True,
    helpers_module="lossdsl.codegen.torch_helpers",
    axis="dim",
    keepdims="keepdim",
    tensor_arguments=True,
    empty_axes_reduce_all=True,
    custom_gradient=True,
    always_compiled=False,
    num_classes_number=True,
    backward_depths=(1, 2, 2),
    helper_gradients=HELPER_GRADIENTS,
    kernels_slower=frozenset(),
    forms=MappingProxyType(
        {
            "prepare_pred": "torch.as_tensor({0})",
            "is_floating": "{0}.is_floating_point()",
            "default_float": "{0}.to(torch.get_default_dtype())",
            "rank": "{0}.ndim",
            "add_axis": "torch.unsqueeze({0}, -1)",
            "drop_axis": "torch.squeeze({0}, -1)",
            "prepare_labels": "torch.as_tensor({0}, device={y_pred}.device)",
            "as_labels": "{0}.long()",
            "prepare_true": "torch.as_tensor({0}, device={y_pred}.device)",
            "set_mask": "{0}._keras_mask = {1}",
            "constant": f"torch.as_tensor({{0}}, {_TORCH_DTYPE})",
            "scalar": f"torch.as_tensor({{0}}, {_TORCH_DTYPE})",
            "cast": "torch.as_tensor({0}, dtype={1}, device={y_pred}.device)",
            "size": "{0}.shape[{1}]",
            "size_of_all": "{0}.numel()",
            "spatial_size": "math.prod({y_pred}.shape[1:-1])",
            "half": "{dtype} in (torch.float16, torch.bfloat16)",
            "float32": "torch.float32",
            "spatial_axes": "tuple(range(1, {y_pred}.ndim - 1))",
            "all_axes": "tuple(range({y_pred}.ndim))",
            "later_axes": "tuple(range(1, {y_pred}.ndim))",
            "sample_index": (
                "torch.arange({y_pred}.shape[0], device={y_pred}.device)"
                ".reshape((-1,) + (1,) * ({y_pred}.ndim - 1))"
            ),
            "square": "torch.square({0})",
            "sqrt": "torch.sqrt({0})",
            "rsqrt": "torch.rsqrt({0})",
            "any": "torch.any",
            "pow": "_power({0}, {1})",
            "where": "torch.where({0}, {1}, {2})",
            "not": "torch.logical_not({0})",
            "and": "torch.logical_and({0}, {1})",
            "or": "torch.logical_or({0}, {1})",
            "<": "({0} < {1})",
            "<=": "({0} <= {1})",
            ">": "({0} > {1})",
            ">=": "({0} >= {1})",
            "==": "({0} == {1})",
            "!=": "({0} != {1})",
            "zeros_like": "torch.zeros_like({0})",
            # contiguous: a gradient of expanded strides refuses writes in place
            "broadcast_like": "torch.broadcast_to({0}, {1}.shape).contiguous()",
            # a mask of fewer roles than the result, True itself for `mask 1 > 0`
            "like_one_class": (
                "torch.broadcast_to(torch.as_tensor({0}, device={y_pred}.device), "
                "{y_pred}[..., :1].shape)"
            ),
            "squeeze": "torch.squeeze({0}, -1)",
            "expand": "torch.unsqueeze({0}, -1)",
            "flatten": "torch.reshape({0}, (-1,))",
            "unflatten": "torch.reshape({0}, (-1,) + (1,) * ({y_pred}.ndim - 1))",
            "scalar_result": f"torch.reshape(torch.as_tensor({{0}}, {_TORCH_DTYPE}), ())",
            "scalar_of": "torch.reshape({0}, ())",
            "softmax": "torch.softmax({0}, dim=-1)",
            "log_softmax": "torch.log_softmax({0}, dim=-1)",
            "trigamma": "torch.polygamma(1, {0})",
            "cumsum": "torch.cumsum({0}, dim=-1)",
            "class_counts": (
                "torch.arange(1, {y_pred}.shape[-1] + 1, dtype={dtype}, device={y_pred}.device)"
            ),
            "class_of": "torch.argmax({0}, dim=-1, keepdim=True)",
            "one_hot": (
                "({0} == torch.arange({y_pred}.shape[-1], device={y_pred}.device)).to({dtype})"
            ),
            "classes_from": (
                "(({0} >= 0) & ({0} <= torch.arange({y_pred}.shape[-1], device={y_pred}.device)))"
                ".to({dtype})"
            ),
            "vector_size": "{0}.numel()",
            "entries": "torch.take({0}, {1})",
            "clip_index": "torch.clamp({0}, 0, {1} - 1)",
            "take_class": "torch.gather({0}, -1, {1})",
            "softmax_cross_entropy": "torch.squeeze(_softmax_cross_entropy({0}, {1}), -1)",
            "softmax_cross_entropy_kept": "_softmax_cross_entropy({0}, {1})",
            "sparse_softmax_cross_entropy": "_sparse_softmax_cross_entropy({0}, {1})",
            # the Huber loss of a residual a - b of two arrays, as F.huber_loss(a, b)
            # takes it: no pass writes the residual (a target without this form
            # passes the residual)
            "huber_of_difference": "_huber({0}, {2}, target={1})",
            # a softplus pair t * softplus(-x) + (1 - t) * softplus(x), as
            # F.binary_cross_entropy_with_logits(x, t) computes it (a target without
            # this form calls its softplus pair helper)
            "sigmoid_cross_entropy": "_sigmoid_cross_entropy({0}, {1})",
            # x * scale + shift for an array x and a scale and shift computed from
            # scalar params (label smoothing's y (1 - s) + s / C): a view of x for a param
            # at its neutral value, else one fresh tensor (a target without this form
            # prints the products and sums as they are)
            "affine": "_affine({0}, {1}, {2})",
            # a loss whose last step is the mean ({1} "mean") or sum ("sum") of its
            # terms {0} over the classes, with the function's `reduction` argument {2}
            # applied in the same reduction (a target without this form returns the
            # values per element)
            "class_reduced": "_class_reduced({0}, {1}, {2}, {dtype})",
            # {1} * {0} * (1 - {0}) and {1} * (1 - {0}^2) for a sigmoid's and a tanh's
            # value {0} and a {1} of its shape: ATen's one-kernel gradients
            "sigmoid_grad": "torch.ops.aten.sigmoid_backward({1}, {0})",
            "tanh_grad": "torch.ops.aten.tanh_backward({1}, {0})",
        }
    ),
)

TARGETS: Mapping[str, Target] = MappingProxyType(
    {target.name: target for target in (TENSORFLOW, JAX, TORCH)}
)
"""Every backend by its name; TensorFlow, the default, first."""

DEFAULT_TARGET = TENSORFLOW.name


def target_named(name: str) -> Target:
    """The target `name`, or a ValueError listing the names there are."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}: expected one of {', '.join(TARGETS)}")
    return TARGETS[name]
