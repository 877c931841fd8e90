"""The table of input kinds (`lossdsl.kinds`) against LANGUAGE.md and the stages reading it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lossdsl.checker import check
from lossdsl.diagnostics import LossSpecError
from lossdsl.kinds import KINDS, KINDS_HELP, draw_floats, kinds_for
from lossdsl.parser import parse
from lossdsl.source import SourceFile
from lossdsl.typed import Role

LANGUAGE = Path("/work/shared/LANGUAGE.md")
KIND_ROW = re.compile(r"^\| `(\w+)` \| (y_true|y_pred|either) \| [^|]+ \| (.*) \|$", re.MULTILINE)


@pytest.mark.skipif(not LANGUAGE.exists(), reason="the contract is not in this checkout")
def test_the_table_is_the_contracts_table() -> None:
    rows = KIND_ROW.findall(LANGUAGE.read_text(encoding="utf-8"))
    expected = {
        name: (("y_true", "y_pred") if side == "either" else (side,), values)
        for name, side, values in rows
    }
    assert {name: (kind.arguments, kind.doc) for name, kind in KINDS.items()} == expected


@pytest.mark.parametrize("name", [name for name, kind in KINDS.items() if kind.draw is not None])
@pytest.mark.parametrize("edge", [False, True])
def test_draws_and_witnesses_lie_in_the_range(name: str, edge: bool) -> None:
    kind = KINDS[name]
    values = draw_floats(name, np.random.default_rng(0), (4, 3, 5), edge)
    assert values.shape == (4, 3, 5)
    assert np.all((values >= kind.low) & (values <= kind.high))
    if kind.rows_sum_to_one:
        np.testing.assert_allclose(values.sum(axis=-1), 1.0, rtol=1e-12)
    assert all(kind.low <= value <= kind.high for value in kind.witnesses)
    assert kind.assumptions.get("nonnegative", False) == (kind.low >= 0.0)


def test_class_ids_are_drawn_from_the_layout() -> None:
    assert [name for name, kind in KINDS.items() if kind.draw is None] == ["label"]
    with pytest.raises(ValueError, match="class ids"):
        draw_floats("label", np.random.default_rng(0), (2, 3), False)


def test_the_help_lists_every_kind_once() -> None:
    assert sorted(re.findall(r"\w+(?= \(|,)", KINDS_HELP)) == sorted(KINDS)


def test_the_readme_lists_the_table() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    either = [name for name, kind in KINDS.items() if len(kind.arguments) == 2]
    true_only = [name for name in kinds_for("y_true") if name not in either]
    pred_only = [name for name in kinds_for("y_pred") if name not in either]
    assert (
        f"Kinds: `{' '.join(true_only)}` (y_true), `{' '.join(pred_only)}` (y_pred), "
        f"`{' '.join(either)}` (either). Default: `input y: target`, `input p: prob`."
    ) in readme


def _inputs(true_kind: str, pred_kind: str) -> SourceFile:
    return SourceFile("kinds.loss", f"input y: {true_kind}\ninput p: {pred_kind}\nloss = mean(p)\n")


@pytest.mark.parametrize("true_kind", list(KINDS))
@pytest.mark.parametrize("pred_kind", list(KINDS))
def test_the_checker_binds_what_the_table_allows(true_kind: str, pred_kind: str) -> None:
    spec = parse(_inputs(true_kind, pred_kind))
    if true_kind in kinds_for("y_true") and pred_kind in kinds_for("y_pred"):
        checked = check(spec)
        assert (checked.y_true.kind, checked.y_pred.kind) == (true_kind, pred_kind)
        assert (Role.CLASS in checked.y_true.roles) != KINDS[true_kind].class_ids
    else:
        with pytest.raises(LossSpecError) as raised:
            check(spec)
        assert {d.code for d in raised.value.diagnostics} == {"E207"}
