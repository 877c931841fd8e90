"""Python identifiers for spec names.

A generated module binds a spec's inputs and params as Python arguments, next to its own
names (`tf`, `keras`, the helpers, CSE temporaries `t0`..., Keras's arguments and
attributes, the loss's function and class). `python_names` gives every input and param
an identifier that clashes with none of them nor with another spec name: a name that is
free keeps its spelling, any other gets the first free candidate among `name_`,
`name__`, ... (`lambda` -> `lambda_`, or `lambda__` when the spec also has a `lambda_`).

A name that TensorFlow would not accept as a `tf.function` argument (one starting with
`_`, or with a character that is not a letter, digit or `_`) is first spelled as
TensorFlow spells it (`_g` -> `arg__g`), so `tf.function` never renames an argument
behind the module's back. The inputs, which the module takes by position, are spelled
in ASCII too (`ascii_spelling`: `ŷ` -> `y`, `λ` -> `lamda`): TensorFlow names a traced
argument's placeholder after it, and its node names are ASCII (it logs a warning for
any other). A param keeps its spelling, its keyword in the module's API.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
from collections.abc import Iterable

from lossdsl.codegen.helpers import HELPER_NAMES
from lossdsl.typed import CheckedSpec

GENERATED_NAMES: frozenset[str] = HELPER_NAMES | frozenset(
    {
        "tf",
        "keras",
        "self",
        "cls",
        "y_true",
        "y_pred",
        "config",
        "kwargs",
        "math",
        "spatial_axes",
        "sum_dtype",
        "losses",
        "renamed",
        # the custom gradient of a loss's own backward pass
        "forward",
        "backward",
        "upstream",
        "forward_and_residuals",
        "residuals",
        "saved",
        "others",
        "ctx",
        "inputs",
        "output",
        # Keras's own arguments and the public attributes of `keras.losses.Loss`
        "call",
        "dtype",
        "from_config",
        "get_config",
        "name",
        "reduction",
    }
)
"""Names the generated module uses itself, so spec names must not shadow them."""

_TEMPORARY = re.compile(r"t\d+")


def is_reserved(name: str) -> bool:
    """A Python keyword or builtin, a name of the generated module, or a CSE temporary."""
    return (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or hasattr(builtins, name)
        or name in GENERATED_NAMES
        or _TEMPORARY.fullmatch(name) is not None
    )


def tf_argument_name(name: str) -> str:
    """The name `tf.function` gives an argument (its `sanitize_arg_name`): `_g` -> `arg__g`."""
    swapped = "".join(c if c.isalnum() else "_" for c in name)
    return swapped if swapped[:1].isalpha() else "arg_" + swapped


def python_name(spec_name: str) -> str:
    """The identifier of a module-level name derived from one spec name (the loss's function).

    Appends underscores while the name is reserved. For the inputs and params of a spec,
    which must also be distinct from each other, use `python_names`.
    """
    name = spec_name
    while is_reserved(name):
        name += "_"
    return name


def ascii_spelling(name: str) -> str:
    """`name` in ASCII letters: accents dropped (`ŷ` -> `y`), any other letter by the last
    word of its Unicode name (`λ` -> `lamda`), anything else `_`."""
    spelled = []
    for character in unicodedata.normalize("NFKD", name):
        if character.isascii():
            spelled.append(character)
        elif not unicodedata.combining(character):
            word = unicodedata.name(character, "").rsplit(" ", 1)[-1].lower()
            spelled.append(word if word.isascii() and word.isalpha() else "_")
    return "".join(spelled)


def python_names(checked: CheckedSpec) -> dict[str, str]:
    """The Python identifier of every input and param of a spec, one-to-one."""
    function, mask_function, class_name = function_names(checked.loss_name)
    inputs = [checked.y_true.name, checked.y_pred.name]
    spec_names = [*inputs, *(p.name for p in checked.params)]
    return unique_identifiers(spec_names, {function, mask_function, class_name}, inputs)


def unique_identifiers(
    spec_names: Iterable[str], module_names: Iterable[str], positional: Iterable[str] = ()
) -> dict[str, str]:
    """Distinct identifiers for distinct spec names, none reserved nor in `module_names`.

    Names that are free keep their spelling; the others, in order, take the first free
    candidate among `base`, `base_`, `base__`, ... where `base` is the name as
    `tf.function` accepts it, for the `positional` names in ASCII (`ascii_spelling`).
    """
    names = list(dict.fromkeys(spec_names))
    ascii_only = set(positional)

    def base(name: str) -> str:
        return tf_argument_name(ascii_spelling(name) if name in ascii_only else name)

    taken = set(module_names)
    keeps = [
        name for name in names if name not in taken and not is_reserved(name) and base(name) == name
    ]
    identifiers = {name: name for name in keeps}
    taken.update(keeps)
    for name in names:
        if name in identifiers:
            continue
        candidate = base(name)
        while candidate in taken or is_reserved(candidate):
            candidate += "_"
        identifiers[name] = candidate
        taken.add(candidate)
    return {name: identifiers[name] for name in names}


def function_names(loss_name: str) -> tuple[str, str, str]:
    """The per-sample function, the mask function and the class name of a loss."""
    function = python_name(loss_name)
    class_name = camel_case(loss_name)
    if class_name == function:
        class_name += "Loss"
    return function, f"{function}_mask", class_name


def mean_function_name(loss_name: str) -> str:
    """The function of a loss's mean over every element (`codegen.writer.writes_a_mean`)."""
    return f"{python_name(loss_name)}_mean"


def camel_case(loss_name: str) -> str:
    """The class name of a loss: `weighted_ce` -> `WeightedCe`, `focal` -> `Focal`."""
    parts = [part for part in loss_name.split("_") if part]
    name = "".join(part[:1].upper() + part[1:] for part in parts) or "Loss"
    if not name[0].isalpha():
        name = "Loss" + name
    return python_name(name)
