"""`SymbolicLoss`: a checked spec lowered to SymPy, rewritten and simplified."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from lossdsl.diagnostics import Diagnostic
from lossdsl.typed import CheckedSpec, Roles


@dataclass(frozen=True)
class AppliedRewrite:
    """One named rewrite that fired: its rule name, the law, and where."""

    rule: str
    before: sympy.Expr
    after: sympy.Expr


@dataclass(frozen=True)
class SymbolicLoss:
    """The loss as SymPy expressions over per-element symbols.

    `result` is what the Keras `call` returns (see `CheckedSpec.result`), after the
    stable rewrites and simplification; `loss` is the whole loss as written, simplified
    (what `c.sympy` and `c.latex` show). `symbols` maps each spec name of an input or
    param to its SymPy symbol, `roles` gives each symbol's roles. `mask` is a SymPy
    relational (or None). `gradient` is the per-element derivative of `result` with
    respect to y_pred's symbol, for `lossdsl explain`.
    """

    checked: CheckedSpec
    result: sympy.Expr
    loss: sympy.Expr
    mask: sympy.Basic | None
    symbols: dict[str, sympy.Symbol]
    roles: dict[sympy.Symbol, Roles]
    rewrites: tuple[AppliedRewrite, ...]
    gradient: sympy.Expr
    warnings: tuple[Diagnostic, ...] = ()
