"""Python identifiers for spec names: keywords, builtins and our own names get a suffix."""

from __future__ import annotations

import builtins
import keyword
import re

from lossdsl.codegen.helpers import HELPER_NAMES

GENERATED_NAMES: frozenset[str] = HELPER_NAMES | frozenset(
    {
        "tf",
        "keras",
        "self",
        "y_true",
        "y_pred",
        "config",
        "kwargs",
        "math",
        "spatial_axes",
        "sum_dtype",
    }
)
"""Names the generated module uses itself, so spec names must not shadow them."""

_TEMPORARY = re.compile(r"t\d+")


def python_name(spec_name: str) -> str:
    """The identifier a spec name gets inside generated code (`lambda` -> `lambda_`).

    Spec names are already valid, NFKC-normalised identifiers; only clashes with
    Python keywords, builtins, the module's own names and CSE temporaries (`t0`...)
    are renamed, by appending underscores until the name is free.
    """
    name = spec_name
    while (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or hasattr(builtins, name)
        or name in GENERATED_NAMES
        or _TEMPORARY.fullmatch(name)
    ):
        name += "_"
    return name


def camel_case(loss_name: str) -> str:
    """The class name of a loss: `weighted_ce` -> `WeightedCe`, `focal` -> `Focal`."""
    parts = [part for part in loss_name.split("_") if part]
    name = "".join(part[:1].upper() + part[1:] for part in parts) or "Loss"
    if not name[0].isalpha():
        name = "Loss" + name
    return python_name(name)
