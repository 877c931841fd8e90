"""`# lossdsl: allow CODE ...` comments: a spec acknowledges warnings it means."""

from __future__ import annotations

import pytest

from lossdsl.compiler import check_source, domain_warnings
from lossdsl.diagnostics import Diagnostic, LossSpecError
from lossdsl.pragmas import allowed_warnings, without_allowed
from lossdsl.source import SourceFile

BATCH_DICE = """\
# Dice over the batch.
input y: binary
input p: prob
let overlap = sum(y * p, axis=all)
loss dice = 1 - 2 * overlap / (sum(y, axis=all) + sum(p, axis=all) + eps)
"""


def reported(text: str) -> list[str]:
    source = SourceFile.from_text(text)
    checked = check_source(source)
    found: list[Diagnostic] = [*checked.warnings, *domain_warnings(checked)]
    return [d.code for d in without_allowed(found, source)]


def test_without_a_pragma_the_warnings_are_reported() -> None:
    assert reported(BATCH_DICE) == ["W301", "W302"]


def test_a_pragma_on_the_loss_line_or_above_it_covers_the_whole_spec() -> None:
    trailing = BATCH_DICE.replace(" + eps)\n", " + eps)  # lossdsl: allow W301 W302\n")
    above = BATCH_DICE.replace("loss dice", "# lossdsl: allow W301, W302: as Keras\nloss dice")
    assert reported(trailing) == []
    assert reported(above) == []


def test_a_pragma_in_the_header_covers_the_whole_spec() -> None:
    assert reported("# lossdsl: allow W302\n" + BATCH_DICE) == ["W301"]


def test_a_pragma_on_another_line_covers_only_that_line() -> None:
    # W301 is located at the `let overlap` line, W302 at the loss.
    on_let = BATCH_DICE.replace("axis=all)\nloss", "axis=all)  # lossdsl: allow W301 W302\nloss")
    assert reported(on_let) == ["W302"]


def test_errors_cannot_be_allowed_and_other_words_end_the_codes() -> None:
    allowed = allowed_warnings(SourceFile.from_text("# lossdsl: allow E402 W401 because W403\n"))
    assert allowed.everywhere == {"W401"}
    text = "loss = mean(sqrt(p - y))  # lossdsl: allow E404 W401\n"
    checked = check_source(SourceFile.from_text(text))
    with pytest.raises(LossSpecError) as failure:
        domain_warnings(checked)
    assert [d.code for d in failure.value.diagnostics] == ["E404"]


def test_a_comment_that_only_mentions_lossdsl_is_not_a_pragma() -> None:
    assert (
        allowed_warnings(SourceFile.from_text("# lossdsl allows W301 here\n")).everywhere == set()
    )
