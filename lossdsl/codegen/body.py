"""`FunctionBody`: the TensorFlow statements of a per-sample loss function, as text."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from lossdsl.symbolic.loss import AppliedRewrite

REDUCTION = "reduction"
"""The PyTorch function's argument that takes `torch.nn`'s `reduction`."""


@dataclass(frozen=True)
class BackwardPass:
    """A loss's own backward pass (`symbolic.backward`), as the statements of a custom
    gradient: `forward` computes the result (which is `FunctionBody.result`), `statements`
    run in the backward function, whose argument `upstream` they first bring to keepdims
    form, and `gradient` is the gradient with respect to y_pred, `derivative` before
    printing. On TensorFlow, `constants` are the params the custom gradient holds
    constant: the vectors, converted before it, and those the mask reads before it; the
    others are arguments of its forward function, and get their gradients where they
    are given as tensors or tf.Variables (`_custom_gradient`)."""

    forward: tuple[str, ...]
    statements: tuple[str, ...]
    gradient: str
    derivative: sympy.Basic = sympy.S.Zero  # the gradient as SymPy, fused, for `explain`
    constants: tuple[str, ...] = ()


@dataclass(frozen=True)
class FunctionBody:
    """What the printer hands to the module writer.

    The statements refer to the inputs and params by their Python names
    (`codegen.names.python_names`) and assume the writer's prelude has bound them:
    y_true and y_pred converted, y_true brought to y_pred's rank and dtype (a `label`
    input as int32 in `[B, S..., 1]`), vector params as tensors of y_pred's dtype.
    `result` is an expression already squeezed to Keras's shape (`[B, S...]`, `[B]` or
    `[]`); `mask`, when the spec has one, is a boolean expression of the same shape.
    `helpers` names the module-level functions of `codegen.helpers` the statements call.
    `fusions` are the target fusions that fired (`codegen.fusions.FUSIONS`), `spellings`
    the names of the XLA spellings the statements use (`codegen.fusions.XLA_SPELLINGS`).
    With a `backward` pass, `statements` are what precedes the custom gradient (the locals
    and what the mask needs) and `result` is computed inside it. `reduced` says that
    `result` applies the PyTorch function's `reduction` argument (`REDUCTION`) itself.
    """

    statements: tuple[str, ...]
    result: str
    mask: str | None = None
    helpers: tuple[str, ...] = ()
    fusions: tuple[AppliedRewrite, ...] = ()
    spellings: tuple[str, ...] = ()
    backward: BackwardPass | None = None
    reduced: bool = False

    @property
    def target_rules(self) -> tuple[str, ...]:
        """The names of the fusions and spellings that fired, each once, in order."""
        return tuple(dict.fromkeys([*(step.rule for step in self.fusions), *self.spellings]))
