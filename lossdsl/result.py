"""The loss's result: what the Keras `call` returns (the outer mean lifted), its roles,
batch coupling (W301, W302) and the mask (E310-E314)."""

from __future__ import annotations

from lossdsl import nodes
from lossdsl.codes import (
    BATCH_COUPLED,
    MASK_HAS_CLASS_ROLE,
    MASK_ON_SCALAR_RESULT,
    MASK_ROLES_NOT_IN_RESULT,
    RESULT_HAS_CLASS_ROLE,
    RESULT_HAS_PARTNER_ROLE,
    RESULT_SPATIAL_WITHOUT_BATCH,
    SCALAR_NOT_LIFTED,
)
from lossdsl.desugar import lift_outer_mean
from lossdsl.diagnostics import Report, error, warning
from lossdsl.typed import PARTNER_ROLES, Role, TCall, TCondition, TExpr, describe_roles, walk


def check_result(
    report: Report,
    loss_decl: nodes.LossDecl,
    loss: TExpr,
    mask_decl: nodes.MaskDecl | None,
    mask: TCondition | None,
) -> tuple[TExpr, bool, bool] | None:
    """What the Keras `call` returns, whether the outer mean was lifted, batch coupling;
    None where the result's roles are an error (reported)."""
    lifted_result = lift_outer_mean(loss)
    result = lifted_result or loss
    lifted = lifted_result is not None
    where = loss_decl.value.span
    if Role.CLASS in result.roles:
        report(
            error(
                RESULT_HAS_CLASS_ROLE,
                "the loss still has the class role",
                where,
                f"roles {describe_roles(result.roles)}",
                "reduce it with sum(...) or mean(...)",
            )
        )
        return None
    if result.roles & PARTNER_ROLES:
        report(
            error(
                RESULT_HAS_PARTNER_ROLE,
                "the loss still has a partner role: each sample's loss must be one value",
                where,
                f"roles {describe_roles(result.roles)}",
                "reduce over the partners inside the mean, as in "
                "`mean(max(d, axis=partner))` or `mean(sum(x, axis=partner, where=c))`",
            )
        )
        return None
    if Role.SPATIAL in result.roles and Role.BATCH not in result.roles:
        report(
            error(
                RESULT_SPATIAL_WITHOUT_BATCH,
                "the loss has the spatial role without the batch role",
                where,
                f"roles {describe_roles(result.roles)}",
                "Keras needs per-sample values or a scalar; reduce the spatial role too",
            )
        )
        return None
    coupling = [
        t
        for t in walk([result])
        if isinstance(t, TCall) and (Role.BATCH in t.reduced or t.builtin == "other")
    ]
    if coupling:
        pairs = coupling[0].builtin == "other"
        report(
            warning(
                BATCH_COUPLED,
                "each sample's loss depends on the whole batch",
                coupling[0].span,
                "pairs samples within the batch" if pairs else "reduces over the batch",
                "pairs are formed within the batch that each replica sees, as in TensorFlow "
                "Addons' triplet losses; acknowledge it with `# lossdsl: allow W301`"
                if pairs
                else "sample_weight still weighs each sample's value; to keep samples "
                "independent, reduce without axis=0 or axis=all and let an outer "
                "`mean(...)` be Keras's reduction",
            )
        )
    if not lifted and not result.roles:
        report(
            warning(
                SCALAR_NOT_LIFTED,
                "the loss is a scalar that cannot be lifted; sample_weight then scales it "
                "as Keras scales a scalar loss",
                where,
                "a scalar",
                "write the loss as `mean(x)` of a per-sample or per-element x, or a sum "
                "of such means times constants",
            )
        )
    if mask_decl is not None and mask is not None:
        check_mask(report, mask_decl, mask, result)
    return result, lifted, bool(coupling)


def check_mask(report: Report, mask_decl: nodes.MaskDecl, mask: TCondition, result: TExpr) -> None:
    """A mask selects among the per-sample or per-element values `call` returns (a lifted
    mean's or not, LANGUAGE.md 6.4), never classes."""
    span = mask_decl.condition.span
    if Role.CLASS in mask.roles:
        report(
            error(
                MASK_HAS_CLASS_ROLE,
                "the mask has the class role",
                span,
                f"roles {describe_roles(mask.roles)}",
                "a mask selects elements, not classes: compare a `label` or a "
                "per-element value, as in `mask y != -1`; to leave classes out, give "
                "their reduction `where=`, as in `mean(x, where=y != -1)`",
            )
        )
    elif not result.roles:
        report(
            error(
                MASK_ON_SCALAR_RESULT,
                "a `mask` needs per-sample or per-element values, but the loss is a scalar",
                span,
                "the loss returns one value for the batch",
                "the mask marks which of the values `call` returns count; keep the loss "
                "per-sample (a reduction without axis=0 or axis=all) or write it as "
                "`mean(x)` of a per-element x",
            )
        )
    elif not mask.roles <= result.roles:
        report(
            error(
                MASK_ROLES_NOT_IN_RESULT,
                f"the mask has roles {describe_roles(mask.roles)}, but the loss returns "
                f"{describe_roles(result.roles)}",
                span,
                "more roles than the loss",
                "the mask must select among the values the loss returns; keep the "
                "loss per-element (drop an inner mean) or mask per sample",
            )
        )
