"""Module-level functions a generated module defines when its printed code calls them."""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lossdsl.codegen.targets import TARGETS

SOFTPLUS_PAIR = "_softplus_pair"
"""a * softplus(-x) + b * softplus(x) with a hand-written exact gradient."""

SOFTPLUS_PAIR_SAME_SHAPE = "_softplus_pair_same_shape"
"""`_softplus_pair` of tensors of one shape, called directly when the printer knows it."""

SUM_OVER_CLASSES = "_sum_over_classes"
"""A sum over the last axis as a product with a vector of ones (XLA modules only)."""

MEAN_OVER_CLASSES = "_mean_over_classes"
"""A mean over the last axis as a product with a vector of ones (XLA modules only)."""

SOFTMAX_CROSS_ENTROPY = "_softmax_cross_entropy"
"""Categorical cross-entropy on logits from two class sums (XLA modules only)."""

CLIP = "_clip"
"""A clip between numbers, minimum(maximum(x, lo), hi), its gradient written out."""

CLIPPED_LOG = "_clipped_log"
"""The log of `_clip`, its gradient written out: cross-entropy on probabilities."""

WHERE_ZERO = "_where_zero"
"""tf.where(condition, x, 0.0) as a product that ignores x where the condition fails:
TensorFlow's CPU select of a number is several times slower."""

HUBER = "_huber"
"""The Huber loss of a residual, its gradient (a clip) written out."""

LOG1P = "_log1p"
"""tf.math.log1p in the form XLA on the CPU computes fastest (XLA modules only)."""

POWER = "_power"
"""x ** exponent where TensorFlow's and PyTorch's pow are slow: exp(exponent * log(x)) for
a number that is not whole or +-0.5, products for a whole one (`_power_form`)."""

CHECK_CHANNELS = "_check_channels"
"""An input checked to have the channels the spec selects (LANGUAGE.md 6.2)."""

PER_CLASS = "_per_class"
"""A vector param as a tensor of y_pred's dtype, its length checked against the classes."""

CPU_ONLY = "_cpu_only"
"""Whether the module runs on the CPU alone, where the XLA helpers' forms pay off."""

CLASS_BLOCK = "_class_block"
"""How many classes one matrix-vector product of `_sum_over_classes` adds up."""

OTHER = "_other"
"""x at the other sample of each pair: its batch axis moved to a partner axis."""

PAIR_DOT = "_pair_dot"
"""The sums over the classes of the products of every pair of samples' rows: a matmul."""

PAIR_SQUARED_DISTANCE = "_pair_squared_distance"
"""The sums over the classes of the squared differences of every pair of samples' rows:
a matmul and two row norms."""

PAIRED = "_paired"
"""The inputs of a loss that pairs samples, y_pred's rank checked, partner axes added."""

CLASS_OF = "_class_of"
"""The index of each row's largest entry, from two fast reductions (XLA modules only)."""

SAVE = "_save"
"""A PyTorch loss's inputs and temporaries kept for its own backward pass."""

SAVED = "_saved"
"""What `_save` kept."""

OTHER_GRADIENTS = "_other_gradients"
"""A PyTorch loss's gradients with respect to its inputs after y_pred, where asked for, or
all of them by autograd for a second derivative."""

DIFFERENTIATED_TWICE = "_differentiated_twice"
"""Whether PyTorch runs a backward pass to differentiate it again (`create_graph=True`)."""

OTHER_COTANGENTS = "_other_cotangents"
"""A JAX loss's cotangents of its arguments after y_pred, by jax.vjp of its forward pass."""

HELD = "_held"
"""A param as a constant of the loss's own backward pass (a tensor's gradient is None)."""

CUSTOM_GRADIENT = "_custom_gradient"
"""A TensorFlow loss's own backward pass that also gives the params given as tensors or
tf.Variables their gradients."""

INTO_CHANNELS = "_into_channels"
"""Values put at some channels of a last axis, zeros at the others (a channel
selection's backward pass)."""

CHANNELS_JOINED = "_channels_joined"
"""The gradients of several channel selections put back in one concatenation."""

AUTOGRAD_FUNCTION = "_AutogradFunction"
"""The base of a PyTorch module's autograd.Functions: torch.func's form, applied without
binding the arguments anew on each call."""

CHECK_REDUCTION = "_check_reduction"
"""`torch.nn`'s check of a `reduction` argument, with its message (PyTorch)."""

REDUCED = "_reduced"
"""A PyTorch loss's values reduced as `torch.nn`'s `reduction` asks."""

OVER_SPATIAL = "_over_spatial"
"""A reduction over the spatial axes, none when there are none (PyTorch, where a
reduction over no axes reduces them all)."""


def module_functions(module: str) -> dict[str, str]:
    """The source of each top-level function (and class) of a package module,
    decorators included, in the module's order.

    Read from the module's file, not imported (`inspect.getsource` would import it, and
    with it TensorFlow, which compiling a spec never does).
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no source for {module}")
    text = Path(spec.origin).read_text(encoding="utf-8")
    lines = text.splitlines()
    functions = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            functions[node.name] = "\n".join(lines[first - 1 : node.end_lineno])
    return functions


@dataclass(frozen=True)
class HelperSet:
    """The helpers of one target's generated modules.

    `sources` holds each helper's source, from the target's helpers module (formatted by
    ruff, lines of at most 88 columns), in that module's order: a generated module
    defines the helpers its printed code calls (`FunctionBody.helpers`) after its
    imports, in this order, and the helpers they call (`dependencies`). `xla_forms`
    holds the forms a TensorFlow module compiled with XLA defines instead (measured
    faster there, slower without XLA), from `codegen.xla_helpers`.
    """

    sources: dict[str, str]
    xla_forms: dict[str, str]

    def source(self, name: str, jit_compile: bool) -> str:
        """The source of helper `name` as a module compiled with XLA, or without, defines
        it."""
        return self.xla_forms.get(name, self.sources[name]) if jit_compile else self.sources[name]

    def called(self, source: str) -> set[str]:
        """The helpers a helper's source names (calls), itself left out."""
        tree = ast.parse(source)
        defined = {
            node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
        }
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        return (names & set(self.sources)) - defined

    def dependencies(self, name: str, jit_compile: bool) -> tuple[str, ...]:
        """Every helper that helper `name` calls in a module compiled with XLA, or
        without, directly or through another, in the order of `sources`."""
        found: set[str] = set()
        waiting = [name]
        while waiting:
            for called in self.called(self.source(waiting.pop(), jit_compile)) - found:
                found.add(called)
                waiting.append(called)
        found.discard(name)
        return tuple(helper for helper in self.sources if helper in found)


COMMON_HELPERS_MODULE = "lossdsl.codegen.common_helpers"
"""Where the helpers that use no framework are written, once for every target."""


@functools.cache
def target_helpers(target: str) -> HelperSet:
    """The helpers of `target`'s modules (`codegen.targets.TARGETS`), its own and the
    common ones, read once."""
    xla_forms = module_functions("lossdsl.codegen.xla_helpers") if target == "tensorflow" else {}
    own = module_functions(TARGETS[target].helpers_module)
    return HelperSet({**own, **module_functions(COMMON_HELPERS_MODULE)}, xla_forms)


HELPERS: dict[str, str] = target_helpers("tensorflow").sources
"""Each TensorFlow helper's source, from `codegen.tensorflow_helpers` (it uses only `tf`)
and `codegen.common_helpers`."""

HELPER_NAMES: frozenset[str] = frozenset().union(
    *(target_helpers(name).sources for name in TARGETS)
)
"""Every module-level name the helpers of any target define (kept out of spec names by
`codegen.names`); a helper of one meaning has one name in every target."""
