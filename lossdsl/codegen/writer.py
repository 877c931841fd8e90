"""The generated module's text: header, docstrings, the `@tf.function`s and the Keras class.

The printer supplies the TensorFlow statements of the loss (`FunctionBody`); this module
wraps them in a standalone module that imports only `keras` and `tensorflow`: a
per-sample function named after the loss (with a prelude that brings y_true and y_pred to
the shapes and dtypes the statements assume), and a `keras.losses.Loss` subclass written
the way Keras writes its own. A spec with a `mask` also gets a `<name>_mask` function, and
its statements go into a private `_<name>_with_mask` that returns the values and the mask
from one prelude: the class's `call` uses it once, `<name>` returns its values. A
TensorFlow module without XLA of a spec without a mask also gets `<name>_mean`, the mean of every
value with its own gradient, which the class's `__call__` returns for Keras's default
reduction where no sample weights, mask or replicas change it (`writes_a_mean`); both
functions bring their inputs to the body's conventions with `_<name>_inputs`.
Loading and running the module is left to `lossdsl.runtime`.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lossdsl.channels import requirements
from lossdsl.codegen.body import REDUCTION, BackwardPass, FunctionBody
from lossdsl.codegen.helpers import (
    AUTOGRAD_FUNCTION,
    CHECK_CHANNELS,
    CHECK_REDUCTION,
    CUSTOM_GRADIENT,
    DIFFERENTIATED_TWICE,
    HELD,
    OTHER_COTANGENTS,
    OTHER_GRADIENTS,
    PAIRED,
    PER_CLASS,
    REDUCED,
    WHERE_ZERO,
    target_helpers,
)
from lossdsl.codegen.names import function_names, mean_function_name, python_names
from lossdsl.codegen.printer import NON_ARRAY_LOCALS
from lossdsl.codegen.targets import (
    DEFAULT_TARGET,
    JAX,
    TENSORFLOW,
    TORCH,
    Target,
    target_named,
)
from lossdsl.codegen.text import (
    INDENT,
    LINE_LENGTH,
    bound_literal,
    char_escape,
    default_literal,
    doc_section,
    escape_docstring,
    free_name,
    function_summary,
    indent_block,
    indent_lines,
    names_in,
    statements_needed,
    string_literal,
    wrap,
    wrapped_call,
)
from lossdsl.kinds import KINDS, Argument
from lossdsl.source import printable_name
from lossdsl.symbolic.functions import nodes_of
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.typed import (
    PER_ELEMENT,
    CheckedSpec,
    InputInfo,
    ParamDomain,
    ParamInfo,
    Role,
    Roles,
)

REGISTRATION_PACKAGE = "lossdsl_generated"
"""The Keras registration package of generated classes: `lossdsl_generated>Focal`."""

KERAS_LOSS_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "call",
        "dtype",
        "from_config",
        "get_config",
        "name",
        "reduction",
        "_api_export_path",
        "_api_export_symbol_id",
        "_dtype",
        "_dtype_policy",
        "_obj_type",
        "_unpickle_model",
    }
)
"""Attributes of `keras.losses.Loss` a param's attribute must not overwrite."""

KERAS_ARGUMENT_DOCS = (
    'reduction: Type of reduction to apply to the loss: "sum_over_batch_size" (the '
    'default), "sum", "mean", "mean_with_sample_weight" or None, as for every Keras loss.',
    "name: Optional name for the loss instance.",
    "dtype: The dtype of the loss's computations. Defaults to `None`, which means "
    "`keras.backend.floatx()`.",
)

RESULT_DOCS: dict[Roles, tuple[str, str]] = {
    frozenset({Role.BATCH, Role.SPATIAL}): ("per element", "[batch, ...]"),
    frozenset({Role.BATCH}): ("per sample", "[batch]"),
    frozenset(): ("as a scalar", "[]"),
}
"""How each result shape is described: the result's roles -> (how many values, shape)."""


@dataclass(frozen=True)
class ParamCode:
    """How one param is spelled in generated code."""

    info: ParamInfo
    argument: str  # the Python parameter name (`lambda` -> `lambda_`)
    attribute: str  # the attribute on the Keras loss (never one of Keras's own)

    @property
    def spec_name(self) -> str:
        return self.info.name


def param_code(info: ParamInfo, argument: str) -> ParamCode:
    """A param's Python argument (from `python_names`) and attribute names."""
    attribute = argument
    while attribute in KERAS_LOSS_ATTRIBUTES:
        attribute += "_"
    return ParamCode(info, argument, attribute)


def with_mask_function_name(loss_name: str) -> str:
    """The private function of a masked loss that returns its values and its mask.

    Spec names never start with `_` in Python (`codegen.names`), so it clashes with none.
    """
    return f"_{function_names(loss_name)[0]}_with_mask"


def write_module(
    checked: CheckedSpec,
    symbolic: SymbolicLoss,
    body: FunctionBody,
    *,
    jit_compile: bool = False,
    target: str = DEFAULT_TARGET,
    mean_body: FunctionBody | None = None,
) -> str:
    """The text of the standalone module for a compiled loss on backend `target`, checked
    with `ast.parse`.

    The text is built from the checked tree and the printer's body; `symbolic` supplies
    the names of the stable rewrites that fired, listed in the module docstring with the
    target fusions the body records. With a `mean_body` (`print_body(..., mean=True)`),
    the module also has `<name>_mean`, which the Keras class calls for Keras's default
    reduction where no sample weights, mask or replicas change it (`writes_a_mean`).
    """
    rewrites = tuple(dict.fromkeys(rewrite.rule for rewrite in symbolic.rewrites))
    writer = ModuleWriter(checked, body, rewrites, jit_compile, target_named(target), mean_body)
    return writer.write()


MEAN_FUNCTION_NODES = 1_000
"""The most distinct nodes of a result whose module gets a `<name>_mean`: printing it
costs as much as printing the per-sample function, seconds for thousands of nodes."""


def writes_a_mean(symbolic: SymbolicLoss, target: str, jit_compile: bool) -> bool:
    """Whether the module of `symbolic` on `target` gets `<name>_mean`: on TensorFlow
    without XLA, for a result with a batch axis and no mask (a masked mean divides by the
    elements that count: Keras's), of at most `MEAN_FUNCTION_NODES` nodes. XLA fuses
    Keras's reduction into the loss's own computation, and on the CPU its reductions over
    every axis measured slower than the class sums it spells as products (a median of
    0.99 of hand-written TensorFlow on the literature specs with the mean, 0.88 without:
    benchmarks/README.md, "Eighteenth session")."""
    return (
        target_named(target) is TENSORFLOW
        and not jit_compile
        and symbolic.mask is None
        and bool(symbolic.checked.result.roles)
        and len(nodes_of([symbolic.result])) <= MEAN_FUNCTION_NODES
    )


class ModuleWriter:
    """Builds one generated module; `write()` returns its text."""

    def __init__(
        self,
        checked: CheckedSpec,
        body: FunctionBody,
        rewrites: tuple[str, ...],
        jit_compile: bool,
        target: Target = TENSORFLOW,
        mean_body: FunctionBody | None = None,
    ) -> None:
        self.checked = checked
        self.body = body
        self.mean_body = mean_body
        self.rewrites = rewrites
        self.target = target
        self.jit_compile = jit_compile and target is TENSORFLOW
        self.helper_set = target_helpers(target.name)
        # The generated code branches only on static shapes (Python values at trace time),
        # so AutoGraph has nothing to convert; skipping it makes tracing much faster.
        options = "jit_compile=True, autograph=False" if self.jit_compile else "autograph=False"
        # JAX and PyTorch functions are plain: their callers trace them (jax.jit, Keras)
        self.decorators = [f"@tf.function({options})"] if target is TENSORFLOW else []
        names = python_names(checked)
        self.params = tuple(param_code(info, names[info.name]) for info in checked.params)
        self.y_true = names[checked.y_true.name]
        self.y_pred = names[checked.y_pred.name]
        self.function, self.mask_function, self.class_name = function_names(checked.loss_name)
        self.mean_function = mean_function_name(checked.loss_name)
        self.module_class_name = f"{self.class_name}Module"
        # where the Keras class's methods start: inside `if keras is not None:` when Keras
        # is optional
        self.class_depth = len(INDENT) * (2 if target.keras_optional else 1)
        self.with_mask_function = with_mask_function_name(checked.loss_name)
        self.spec_file = spec_file_name(checked.source.name)
        roots = [checked.result, *([checked.mask] if checked.mask is not None else [])]
        self.channels = requirements(roots, checked.source)
        self.docstrings: list[tuple[str, str]] = []  # (where, the literal's intended value)

    # ------------------------------------------------------------------ module

    def write(self) -> str:
        helpers = [
            self.helper_set.source(name, self.jit_compile).splitlines() for name in self.helpers()
        ]
        functions = [self.per_sample_function()]
        if self.mean_body is not None:
            functions.insert(0, self.inputs_function_lines())
            functions.append(self.mean_function_lines(self.mean_body))
        if self.body.mask is not None:
            functions = [
                self.with_mask_function_lines(),
                self.per_sample_function(),
                self.mask_function_lines(),
            ]
        if self.target is TORCH:
            functions.append(self.module_class())
            if self.body.backward is not None:
                functions.insert(0, self.torch_backward_class())
        code = "\n".join("\n".join(lines) for lines in helpers + functions)
        standard = [f"import {name}" for name, use in STANDARD_USES.items() if use.search(code)]
        imports = [*standard, *self.target.imports]
        head = [
            header_line(self.spec_file),
            *self.docstring(self.module_docstring(), "", "module"),
            "",
            *imports,
        ]
        if self.target.keras_optional:
            keras_part = [*OPTIONAL_KERAS, "", "", "if keras is not None:", ""]
            keras_part += indent_lines(self.loss_class(), INDENT)
            self.docstrings = [  # the class's docstring, its later lines indented with it
                (where, nested_docstring(text) if where == self.class_name else text)
                for where, text in self.docstrings
            ]
        else:
            keras_part = self.loss_class()
        sections = [head, *helpers, *functions, keras_part]
        text = "\n\n\n".join("\n".join(lines) for lines in sections) + "\n"
        self.check(text)
        return text

    def helpers(self) -> list[str]:
        """The helpers the module defines: the body's, `_per_class` for vector params,
        `_paired` for a spec that pairs samples and `_where_zero` for a mask's zeros."""
        needed = set(self.body.helpers).union(self.mean_body.helpers if self.mean_body else ())
        if any(param.info.is_vector for param in self.params):
            needed.add(PER_CLASS)
        if self.channels:
            needed.add(CHECK_CHANNELS)
        if self.checked.paired:
            needed.add(PAIRED)
        if self.body.mask is not None and "where_zero" in self.target.forms:
            needed.add(WHERE_ZERO)
        if self.target is TORCH:
            needed.update({REDUCED, *self.helper_set.dependencies(REDUCED, self.jit_compile)})
            if self.body.backward is not None:
                needed.add(AUTOGRAD_FUNCTION)
        return [name for name in self.helper_set.sources if name in needed]

    def check(self, text: str) -> None:
        """Parse the module as Python imports it and make sure every docstring is exact.

        Python reads a module as bytes: an encoding declaration on its first two lines
        would change what every later line means, so the module must read as UTF-8, and
        it is parsed from its UTF-8 bytes. Each docstring literal must hold exactly the
        value it was written for.
        """
        data = text.encode("utf-8")
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        if encoding != "utf-8":
            raise AssertionError(f"generated module reads as {encoding}, not UTF-8")
        tree = ast.parse(data)
        found: dict[str, str | None] = {"module": ast.get_docstring(tree, clean=False)}
        top_level = [*tree.body]  # and the Keras class, where Keras is optional
        top_level += [
            node for block in tree.body if isinstance(block, ast.If) for node in block.body
        ]
        for node in top_level:  # the helpers' nested functions may share a spec's names
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                found[node.name] = ast.get_docstring(node, clean=False)
        for where, intended in self.docstrings:
            if found.get(where) != intended:
                raise AssertionError(f"generated docstring of {where} is not the intended text")

    @property
    def summary(self) -> str:
        """The spec's docstring, or a one-line summary of the loss."""
        return self.checked.docstring.strip() or f"The `{self.checked.loss_name}` loss."

    def class_docstring(self, arguments: Sequence[str], depth: int) -> str:
        """A loss class's docstring: the summary, the params and `arguments` documented."""
        args = [param_doc(param.argument, param.info) for param in self.params]
        args += arguments
        return "\n".join([self.summary, "", *doc_section("Args", args, depth)])

    def module_docstring(self) -> str:
        usage = (
            f"`{self.class_name}` is a `keras.losses.Loss`; `{self.function}(y_true, y_pred, "
            "...)` computes the unreduced values."
        )
        if self.target is JAX:
            usage = (
                f"`{self.function}(y_true, y_pred, ...)` computes the unreduced values with JAX "
                "(per example, as optax's losses), under jax.jit and jax.grad; jax.vmap maps it "
                "over batches (a 1-D y_pred is a batch of one class, as in Keras). "
                f"Where Keras is installed, `{self.class_name}` is a `keras.losses.Loss` for "
                "Keras's JAX backend."
            )
        elif self.target is TORCH:
            usage = (
                f"`{self.module_class_name}` is a `torch.nn.Module` loss, called as "
                "`loss(input, target)` with `reduction=` and `weight=` as `torch.nn`'s losses; "
                f"`{self.function}(y_true, y_pred, ...)` computes the unreduced values, or "
                'with `reduction="mean"` or `"sum"` their mean or sum, as '
                "`torch.nn.functional`'s losses. Where "
                f"Keras is installed, `{self.class_name}` is a `keras.losses.Loss` for Keras's "
                "PyTorch backend."
            )
        if self.body.mask is not None:
            usage += f" `{self.mask_function}` gives the elements that count."
        if self.mean_body is not None:
            usage += (
                f" `{self.mean_function}(y_true, y_pred, ...)` computes their mean, with its "
                "own gradient."
            )
        paragraphs = [
            self.summary,
            "\n".join(wrap(usage, LINE_LENGTH)),
            f"Compiled from {self.spec_file}:",
            indent_block(spec_statements(self.checked.source.text), INDENT),
        ]
        if self.rewrites:
            rewrites = "Stable rewrites applied: " + ", ".join(self.rewrites) + "."
            paragraphs.append("\n".join(wrap(rewrites, LINE_LENGTH)))
        bodies = [self.body] if self.mean_body is None else [self.body, self.mean_body]
        rules = dict.fromkeys(rule for body in bodies for rule in body.target_rules)
        if rules:  # the mean function's too: a mean over everything meets other fusions
            fusions = "Target fusions applied: " + ", ".join(rules) + "."
            paragraphs.append("\n".join(wrap(fusions, LINE_LENGTH)))
        return "\n\n".join(paragraphs)

    # ------------------------------------------------------------------ functions

    def signature_arguments(self) -> list[str]:
        arguments = [self.y_true, self.y_pred]
        arguments.extend(
            f"{param.argument}={default_literal(param.info.default)}" for param in self.params
        )
        return arguments

    def per_sample_function(self) -> list[str]:
        """`<name>`: the prelude and the body; with a mask, the values of `_<name>_with_mask`.
        PyTorch's also takes `torch.nn`'s `reduction` (`REDUCTION`), "none" by default."""
        per, shape = RESULT_DOCS[self.checked.result.roles & PER_ELEMENT]
        returns = f"The loss {per}, shape {shape}."
        if self.body.mask is not None:
            returns += " Elements outside the mask are 0."
        if self.target is TORCH:
            returns += ' A scalar for `reduction` "mean" or "sum".'
        lines = self.function_head(
            self.function,
            f"The `{self.checked.loss_name}` loss {per}.",
            "Keras applies sample weights and the reduction to what this returns.",
            returns,
            reduction=self.target is TORCH,
        )
        if self.body.mask is None:
            lines += self.prelude()
            if self.target is not TORCH or self.body.reduced:
                return lines + self.body_lines("return")
            lines += self.body_lines("losses =")
            return [*lines, f"{INDENT}return {REDUCED}(losses, {REDUCTION})"]
        values = "losses, valid" if self.target is TORCH else "losses, _"
        # TensorFlow's: traced inside this tf.function rather than called as another,
        # which would keep a variable given as a param from its first trace
        with_mask = self.with_mask_function + (".python_function" if self.decorators else "")
        lines += wrapped_call(
            f"{INDENT}{values} = {with_mask}",
            self.argument_names(),
            "",
            INDENT,
            outer=len(INDENT),
        )
        if self.target is TORCH:
            return [*lines, f"{INDENT}return {REDUCED}(losses, {REDUCTION}, valid)"]
        lines.append(f"{INDENT}return losses")
        return lines

    def with_mask_function_lines(self) -> list[str]:
        """`_<name>_with_mask`: the values and the mask from one prelude, for `call`."""
        assert self.body.mask is not None
        per, shape = RESULT_DOCS[self.checked.result.roles & PER_ELEMENT]
        lines = self.function_head(
            self.with_mask_function,
            f"The `{self.checked.loss_name}` loss {per} and its mask, from one conversion of "
            "the inputs.",
            f"What `{self.function}` and `{self.mask_function}` return, computed together "
            "for the Keras class's `call`.",
            f"A pair: the loss {per}, shape {shape}, 0 outside the mask, and the mask, a "
            "boolean tensor of that shape.",
        )
        lines += self.prelude()
        taken = self.taken_names()
        losses = free_name("losses", taken)
        valid = free_name("valid", taken | {losses})
        lines += self.body_lines(f"{losses} =")
        if "where_zero" in self.target.forms:
            kept = self.form("where_zero", valid, losses)
        else:
            kept = self.form("where", valid, losses, self.form("zeros_like", losses))
        return [*lines, f"{INDENT}{valid} = {self.body.mask}", f"{INDENT}return {kept}, {valid}"]

    def body_lines(self, use: str, body: FunctionBody | None = None) -> list[str]:
        """The statements of `body` (the module's by default) and `use` (`return`,
        `losses =`) of its result; with a backward pass, the result comes from the
        target's custom gradient holding it."""
        body = body or self.body
        lines = indent_lines(body.statements, INDENT)
        backward = body.backward
        if backward is None:
            return [*lines, f"{INDENT}{use} {body.result}"]
        if self.target is TORCH:
            call = f"{INDENT}{use} {self.backward_class}.apply"
            return [*lines, *wrapped_call(call, self.torch_arguments(backward), "[0]", INDENT)]
        if self.target is TENSORFLOW:
            return lines + self.tensorflow_gradient(backward, body.result, use)
        return lines + self.jax_gradient(backward, use)

    def mean_function_lines(self, body: FunctionBody) -> list[str]:
        """`<name>_mean`: the prelude and the mean's body (`writes_a_mean`)."""
        lines = self.function_head(
            self.mean_function,
            f"The mean of the `{self.checked.loss_name}` loss over every element.",
            f"What `{self.class_name}` computes with its default reduction where no sample "
            "weights, mask or replicas change it: one reduction, whose gradient takes the "
            "upstream gradient as the scalar it is.",
            "The mean loss, a scalar.",
        )
        return lines + self.prelude() + self.body_lines("return", body)

    def tensorflow_gradient(self, backward: BackwardPass, result: str, use: str) -> list[str]:
        """One custom gradient whose backward function closes over the forward's
        temporaries. y_true and the params held before it are its constants (their
        gradient is None); the others are arguments of its forward function, and those
        given as tensors or tf.Variables get their gradients (`_custom_gradient`)."""
        inner = INDENT * 2
        held = [f"{INDENT}{self.y_true} = tf.stop_gradient({self.y_true})"]
        held += [f"{INDENT}{name} = {HELD}({name})" for name in backward.constants]
        arguments = [self.y_pred]
        arguments += [p.argument for p in self.params if p.argument not in backward.constants]
        learned = len(arguments) > 1
        return [
            *held,
            "",
            *([] if learned else [f"{INDENT}@tf.custom_gradient"]),
            *wrapped_call(f"{INDENT}def forward", arguments, ":", INDENT),
            *indent_lines(backward.forward, inner),
            *([""] if backward.forward else []),
            f"{inner}def backward(upstream):",
            *indent_lines(backward.statements, INDENT * 3),
            f"{INDENT * 3}return {backward.gradient}",
            "",
            f"{inner}return {result}, backward",
            "",
            *(
                wrapped_call(
                    f"{INDENT}{use} {CUSTOM_GRADIENT}", ["forward", *arguments], "", INDENT
                )
                if learned
                else [f"{INDENT}{use} forward({self.y_pred})"]
            ),
        ]

    @property
    def backward_class(self) -> str:
        return f"_{self.class_name}Backward"

    def torch_arguments(self, backward: BackwardPass) -> list[str]:
        """y_pred, then every name of the body the custom gradient reads (inputs, params,
        locals, the mask's temporaries): a module-level class closes over none."""
        inside = [*backward.forward, *backward.statements, self.body.result, backward.gradient]
        read = set().union(*map(names_in, inside))
        outer = assigned_names(self.body.statements)
        candidates = [self.y_true, *(param.argument for param in self.params), *outer]
        return [self.y_pred, *(name for name in candidates if name in read)]

    def jax_arguments(self, backward: BackwardPass) -> list[str]:
        """`torch_arguments` less the locals that hold no array (a custom VJP closes over
        those, and over no traced array)."""
        return [name for name in self.torch_arguments(backward) if name not in NON_ARRAY_LOCALS]

    def torch_backward_class(self) -> list[str]:
        """`_<Name>Backward`: the loss with its own backward pass, as torch.func asks
        (`setup_context`, a generated vmap rule). The forward pass also returns the
        temporaries the backward pass reads; `_save` keeps them with the inputs. The
        other inputs get their gradients, where autograd asks for them, from
        `_other_gradients`."""
        backward = self.body.backward
        assert backward is not None
        arguments = self.torch_arguments(backward)
        summary = "\n".join(
            [
                *function_summary(
                    f"The `{self.checked.loss_name}` loss per element with its own backward pass."
                ),
                "",
                *wrap(
                    "In torch.func's form (`setup_context`, a generated vmap rule). The forward "
                    "pass returns, after the value, the temporaries the backward pass reads.",
                    LINE_LENGTH - len(INDENT),
                ),
            ]
        )
        kept = kept_temporaries(backward)
        body = INDENT * 2
        saved = [*arguments, *kept]
        others = [self.backward_class, "ctx", "upstream"]
        return [
            f"class {self.backward_class}({AUTOGRAD_FUNCTION}):",
            *self.docstring(summary, INDENT, self.backward_class),
            "",
            f"{INDENT}@staticmethod",
            *wrapped_call(f"{INDENT}def forward", arguments, ":", INDENT),
            *indent_lines(backward.forward, body),
            *wrapped_call(f"{body}saved = ", kept, "", body, tuple_of=True),
            f"{body}return {self.body.result}, *saved",
            "",
            f"{INDENT}@staticmethod",
            f"{INDENT}def setup_context(ctx, inputs, output):",
            f"{body}_save(ctx, inputs, output[1:])",
            "",
            f"{INDENT}@staticmethod",
            f"{INDENT}def backward(ctx, upstream, *_):",
            f"{body}if {DIFFERENTIATED_TWICE}():",
            *wrapped_call(
                f"{body}{INDENT}return {OTHER_GRADIENTS}", [*others, "0"], "", body + INDENT
            ),
            *unpacking(saved, "_saved(ctx)", body),
            *wrapped_call(f"{body}others = {OTHER_GRADIENTS}", others, "", body),
            *indent_lines(backward.statements, body),
            f"{body}return {backward.gradient}, *others",
        ]

    def jax_gradient(self, backward: BackwardPass, use: str) -> list[str]:
        """One `jax.custom_vjp`, which may not close over traced arrays: y_true, the
        params and the body's arrays it reads are arguments too, whose cotangents come from
        jax.vjp of the forward function (`_other_cotangents`); the forward function
        returns those arguments and the temporaries the backward function reads as its
        residuals."""
        inner = INDENT * 2
        arguments = self.jax_arguments(backward)
        arrays = arguments[1:]
        residuals = [self.y_pred, *arrays, *kept_temporaries(backward)]
        others = ["forward_and_residuals", "upstream", self.y_pred, *arrays]
        return [
            "",
            f"{INDENT}@jax.custom_vjp",
            *wrapped_call(f"{INDENT}def forward", arguments, ":", INDENT),
            *wrapped_call(f"{inner}return forward_and_residuals", arguments, "[0]", inner),
            "",
            *wrapped_call(f"{INDENT}def forward_and_residuals", arguments, ":", INDENT),
            *indent_lines(backward.forward, inner),
            *wrapped_call(f"{inner}residuals = ", residuals, "", inner, tuple_of=True),
            f"{inner}return {self.body.result}, residuals",
            "",
            f"{INDENT}def backward(residuals, upstream):",
            *unpacking(residuals, "residuals", inner),
            *wrapped_call(f"{inner}others = {OTHER_COTANGENTS}", others, "", inner),
            *indent_lines(backward.statements, inner),
            f"{inner}return {backward.gradient}, *others",
            "",
            f"{INDENT}forward.defvjp(forward_and_residuals, backward)",
            *wrapped_call(f"{INDENT}{use} forward", arguments, "", INDENT),
        ]

    def function_head(
        self, name: str, summary: str, note: str, returns: str, reduction: bool = False
    ) -> list[str]:
        """A traced function's decorator, signature and docstring (its args documented);
        with `reduction`, the keyword argument that takes `torch.nn`'s `reduction`."""
        lines = [*self.decorators]
        arguments, docs = self.signature_arguments(), self.argument_docs()
        if reduction:
            arguments += ["*", f'{REDUCTION}="none"']
            docs.append(FUNCTION_REDUCTION_DOC)
        lines += wrapped_call(f"def {name}", arguments, ":", "")
        doc = [
            *function_summary(summary),
            "",
            *wrap(note, LINE_LENGTH - len(INDENT)),
            "",
            *doc_section("Args", docs, len(INDENT)),
            "",
            *doc_section("Returns", [returns], len(INDENT)),
        ]
        lines += self.docstring("\n".join(doc), INDENT, name)
        return lines

    def argument_names(self) -> list[str]:
        """The function's arguments, passed on in order to `_<name>_with_mask`."""
        return [self.y_true, self.y_pred, *(param.argument for param in self.params)]

    def mask_function_lines(self) -> list[str]:
        assert self.body.mask is not None
        lines = [*self.decorators]
        lines += wrapped_call(f"def {self.mask_function}", self.signature_arguments(), ":", "")
        summary = function_summary(
            f"The elements that count in the `{self.checked.loss_name}` loss (the spec's `mask`)."
        )
        doc = "\n".join(summary) + (
            "\n\nIn the shape of the loss's values; Keras leaves the others out of the mean."
        )
        lines += self.docstring(doc, INDENT, self.mask_function)
        statements = statements_needed(self.body.statements, self.body.mask)
        used = names_in(self.body.mask).union(*(names_in(text) for text in statements))
        lines += self.prelude(used)
        lines += indent_lines(statements, INDENT)
        lines.append(f"{INDENT}return {self.body.mask}")
        return lines

    def argument_docs(self) -> list[str]:
        checked = self.checked
        docs = [
            input_doc(self.y_true, checked.y_true, self.needed_channels("y_true")),
            input_doc(self.y_pred, checked.y_pred, self.needed_channels("y_pred")),
        ]
        docs += [param_doc(param.argument, param.info) for param in self.params]
        return docs

    def needed_channels(self, argument: Argument) -> int | None:
        requirement = self.channels.get(argument)
        return None if requirement is None else requirement.needed

    def prelude(self, used: set[str] | None = None) -> list[str]:
        """Statements that bring the inputs and vector params to the body's conventions:
        the inputs' own in `_<name>_inputs` where two functions share them.

        With `used`, only the vector params named there are converted and checked.
        """
        if self.mean_body is None:
            lines = self.input_lines()
        else:
            inputs = f"{self.y_true}, {self.y_pred}"
            lines = [f"{inputs} = {self.inputs_function}({inputs})"]
        for param in self.params:
            if param.info.is_vector and (used is None or param.argument in used):
                lines += self.vector_prelude(param)
        return [INDENT + line for line in lines]

    @property
    def inputs_function(self) -> str:
        return f"_{self.function}_inputs"

    def inputs_function_lines(self) -> list[str]:
        """`_<name>_inputs`: the statements of the prelude that bring y_true and y_pred to
        the body's conventions, for `<name>` and `<name>_mean`."""
        inputs = [self.y_true, self.y_pred]
        lines = wrapped_call(f"def {self.inputs_function}", inputs, ":", "")
        doc = (
            "y_true and y_pred brought to the shapes and dtypes that "
            f"`{self.function}` and `{self.mean_function}` compute with."
        )
        lines += self.docstring("\n".join(function_summary(doc)), INDENT, self.inputs_function)
        lines += [INDENT + line for line in self.input_lines()]
        return [*lines, f"{INDENT}return {', '.join(inputs)}"]

    def input_lines(self) -> list[str]:
        """The statements that bring y_true and y_pred to the body's conventions."""
        y_true, y_pred, form = self.y_true, self.y_pred, self.form
        true_rank, pred_rank = form("rank", y_true), form("rank", y_pred)
        lines = [
            f"{y_pred} = {form('prepare_pred', y_pred)}",
            f"if not {form('is_floating', y_pred)}:",
            f"{INDENT}{y_pred} = {form('default_float', y_pred)}",
            f"if {pred_rank} == 1:",
            f"{INDENT}{y_pred} = {form('add_axis', y_pred)}",
        ]
        if KINDS[self.checked.y_true.kind].class_ids:
            lines += [
                f"{y_true} = {form('prepare_labels', y_true)}",
                f"if {true_rank} == {pred_rank} - 1:",
                f"{INDENT}{y_true} = {form('add_axis', y_true)}",
                f"{y_true} = {form('as_labels', y_true)}",
            ]
        else:
            lines += [
                f"{y_true} = {form('prepare_true', y_true)}",
                f"if {true_rank} == {pred_rank} + 1 and {y_true}.shape[-1] == 1:",
                f"{INDENT}{y_true} = {form('drop_axis', y_true)}",
                # y_true's own channels: its last axis need not match y_pred's
                f"elif {true_rank} == {pred_rank} - 1"
                + ("" if "y_true" in self.channels else f" and {y_pred}.shape[-1] == 1")
                + ":",
                f"{INDENT}{y_true} = {form('add_axis', y_true)}",
                f"{y_true} = {form('cast', y_true, y_pred + '.dtype')}",
            ]
        for argument in ("y_true", "y_pred"):
            if argument not in self.channels:
                continue
            requirement = self.channels[argument]
            name, selection = getattr(self, argument), string_literal(requirement.written)
            lines.append(
                f"{name} = {CHECK_CHANNELS}({name}, {requirement.needed}, "
                f"{string_literal(argument)}, {selection})"
            )
        if self.checked.paired:
            lines += self.pairs_prelude()
        return lines

    def form(self, operation: str, *operands: str) -> str:
        """The target's code of `operation` (`codegen.targets`) on y_pred's conventions."""
        return self.target.form(operation, *operands, y_pred=self.y_pred)

    def pairs_prelude(self) -> list[str]:
        """A spec that pairs samples takes y_pred as [batch, C] and gives both inputs an
        axis of size 1 per partner role (LANGUAGE.md 6.5)."""
        y_true, y_pred = self.y_true, self.y_pred
        name = string_literal(self.checked.loss_name)
        partners = self.checked.partners
        return [f"{y_true}, {y_pred} = {PAIRED}({y_true}, {y_pred}, {partners}, {name})"]

    def vector_prelude(self, param: ParamCode) -> list[str]:
        name, spec_name = param.argument, string_literal(param.spec_name)
        return [f"{name} = {PER_CLASS}({name}, {self.y_pred}, {spec_name})"]

    def taken_names(self) -> set[str]:
        taken = {self.y_true, self.y_pred, *(param.argument for param in self.params)}
        for text in (*self.body.statements, self.body.result, self.body.mask or ""):
            taken |= names_in(text)
        return taken

    # ------------------------------------------------------------------ the class

    def loss_class(self) -> list[str]:
        lines = [
            f'@keras.saving.register_keras_serializable(package="{REGISTRATION_PACKAGE}")',
            f"class {self.class_name}(keras.losses.Loss):",
        ]
        lines += self.docstring(
            self.class_docstring(KERAS_ARGUMENT_DOCS, self.class_depth), INDENT, self.class_name
        )
        lines.append("")
        lines += indent_lines(self.init_method(), INDENT)
        lines.append("")
        lines += indent_lines(self.call_method(), INDENT)
        if self.mean_body is not None:
            lines.append("")
            lines += indent_lines(self.dunder_call_method(), INDENT)
        lines.append("")
        lines += indent_lines(self.get_config_method(), INDENT)
        renamed = [param for param in self.params if param.argument != param.spec_name]
        if renamed:
            lines.append("")
            lines += indent_lines(from_config_method(renamed), INDENT)
        lines.append("")
        lines += indent_lines(self.repr_method(), INDENT)
        lines += self.conversion_methods()
        return lines

    def init_method(self) -> list[str]:
        arguments = ["self"]
        arguments += [
            f"{param.argument}={default_literal(param.info.default)}" for param in self.params
        ]
        arguments += [
            'reduction="sum_over_batch_size"',
            f"name={string_literal(self.checked.loss_name)}",
            "dtype=None",
        ]
        lines = wrapped_call("def __init__", arguments, ":", "", outer=self.class_depth)
        lines += indent_lines(backend_check(self.target), INDENT)
        lines.append(f"{INDENT}super().__init__(name=name, reduction=reduction, dtype=dtype)")
        lines += indent_lines(self.param_checks(), INDENT)
        return lines

    def param_checks(self) -> list[str]:
        """A constructor's checks of the params' values, then their attributes."""
        lines: list[str] = []
        taken = {param.argument for param in self.params}
        entry = free_name("value", taken)
        values = free_name("values", taken | {entry})
        vectors = [param for param in self.params if param.info.is_vector]
        for param in self.params:
            if param.info.is_vector:
                lines += vector_check(param, entry, values)
            else:
                lines += scalar_check(param)
        for param in vectors[1:]:
            lines += vector_length_check(vectors[0], param)
        lines += [f"self.{param.attribute} = {param.argument}" for param in self.params]
        return lines

    def conversion_methods(self) -> list[str]:
        """`_number` and `_numbers`, which the params' checks call."""
        lines: list[str] = []
        if self.params:
            lines += ["", *indent_lines(NUMBER_METHOD, INDENT)]
        if any(param.info.is_vector for param in self.params):
            lines += ["", *indent_lines(NUMBERS_METHOD, INDENT)]
        return lines

    # ------------------------------------------------------------------ torch.nn.Module

    def module_class(self) -> list[str]:
        """`<Name>Module`: the loss as a `torch.nn` loss, `loss(input, target)`."""
        doc = self.class_docstring(TORCH_ARGUMENT_DOCS, len(INDENT))
        lines = [f"class {self.module_class_name}(torch.nn.Module):"]
        lines += self.docstring(doc, INDENT, self.module_class_name)
        arguments = ["self"]
        arguments += [
            f"{param.argument}={default_literal(param.info.default)}" for param in self.params
        ]
        arguments += ['reduction="mean"', "weight=None"]
        init = wrapped_call("def __init__", arguments, ":", "", outer=len(INDENT))
        init += [f"{INDENT}super().__init__()", f"{INDENT}{CHECK_REDUCTION}(reduction)"]
        init += indent_lines(self.param_checks(), INDENT)
        init += [f"{INDENT}self.reduction = reduction", f"{INDENT}self.weight = weight"]
        lines += ["", *indent_lines(init, INDENT), "", *indent_lines(self.forward(), INDENT)]
        lines += self.conversion_methods()
        return lines

    def forward(self) -> list[str]:
        """`forward(input, target)`: without a weight, the function reduces the values as
        `reduction` asks; with one, they are weighted first (`_reduced`)."""
        arguments = ["target", "input", *(f"self.{param.attribute}" for param in self.params)]
        lines = ["def forward(self, input, target):", f"{INDENT}if self.weight is None:"]
        lines += wrapped_call(
            f"{INDENT * 2}return {self.function}",
            [*arguments, f"{REDUCTION}=self.{REDUCTION}"],
            "",
            INDENT * 2,
            outer=len(INDENT),
        )
        if self.body.mask is None:
            values, function, mask = "losses", self.function, ""
        else:
            values, function, mask = "losses, mask", self.with_mask_function, ", mask"
        lines += wrapped_call(
            f"{INDENT}{values} = {function}", arguments, "", INDENT, outer=len(INDENT)
        )
        return [
            *lines,
            f"{INDENT}losses = losses * torch.as_tensor(",
            f"{INDENT * 2}self.weight, dtype=losses.dtype, device=losses.device",
            f"{INDENT})",
            f"{INDENT}return {REDUCED}(losses, self.{REDUCTION}{mask})",
        ]

    def call_method(self) -> list[str]:
        arguments = ["y_true", "y_pred", *(f"self.{param.attribute}" for param in self.params)]
        lines = ["def call(self, y_true, y_pred):"]
        if self.body.mask is None:
            lines += wrapped_call(
                f"{INDENT}return {self.function}", arguments, "", INDENT, outer=self.class_depth
            )
            return lines
        lines += wrapped_call(
            f"{INDENT}losses, mask = {self.with_mask_function}",
            arguments,
            "",
            INDENT,
            outer=self.class_depth,
        )
        lines += [
            f"{INDENT}# Keras reads this mask: masked elements are left out of the mean.",
            f"{INDENT}{self.form('set_mask', 'losses', 'mask')}",
            f"{INDENT}return losses",
        ]
        return lines

    def dunder_call_method(self) -> list[str]:
        """`__call__`: Keras's default reduction from `<name>_mean` where nothing else
        changes it; Keras's own `__call__` otherwise (`docs/KERAS.md`, "The mean")."""
        arguments = ["y_true", "y_pred", *(f"self.{param.attribute}" for param in self.params)]
        return [
            "def __call__(self, y_true, y_pred, sample_weight=None):",
            f"{INDENT}if (",
            f"{INDENT * 2}sample_weight is None",
            f'{INDENT * 2}and self.reduction in ("sum_over_batch_size", "mean")',
            f'{INDENT * 2}and getattr(y_pred, "_keras_mask", None) is None',
            f"{INDENT * 2}and tf.distribute.get_strategy().num_replicas_in_sync == 1",
            f"{INDENT}):",
            f"{INDENT * 2}# the mean of every value, as Keras's reduction would take it",
            f"{INDENT * 2}with keras.name_scope(self.name):",
            f"{INDENT * 3}y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)",
            f"{INDENT * 3}y_pred = keras.ops.convert_to_tensor(y_pred, dtype=self.dtype)",
            *wrapped_call(
                f"{INDENT * 3}return {self.mean_function}",
                arguments,
                "",
                INDENT * 3,
                outer=self.class_depth,
            ),
            f"{INDENT}return super().__call__(y_true, y_pred, sample_weight=sample_weight)",
        ]

    def get_config_method(self) -> list[str]:
        if not self.params:
            return ["def get_config(self):", f"{INDENT}return super().get_config()"]
        lines = ["def get_config(self):", f"{INDENT}config = super().get_config()"]
        entries = [
            f"{string_literal(param.spec_name)}: "
            + (
                f"list(self.{param.attribute})"
                if param.info.is_vector
                else f"self.{param.attribute}"
            )
            for param in self.params
        ]
        single = f"{INDENT}config.update({{{', '.join(entries)}}})"
        if len(single) + self.class_depth <= LINE_LENGTH:
            lines.append(single)
        else:
            lines.append(f"{INDENT}config.update(")
            lines.append(f"{INDENT * 2}{{")
            lines += [f"{INDENT * 3}{entry}," for entry in entries]
            lines.append(f"{INDENT * 2}}}")
            lines.append(f"{INDENT})")
        lines.append(f"{INDENT}return config")
        return lines

    def repr_method(self) -> list[str]:
        """`<Focal name=focal, gamma=2.0, alpha=0.25, reduction=sum_over_batch_size>`."""
        fields = [
            f"{param.spec_name}={{list(self.{param.attribute})}}"
            if param.info.is_vector
            else f"{param.spec_name}={{self.{param.attribute}}}"
            for param in self.params
        ]
        return [
            "def __repr__(self):",
            f"{INDENT}fields = [",
            *(f'{INDENT * 2}f"{field}",' for field in ["name={self.name}", *fields]),
            f'{INDENT * 2}f"reduction={{self.reduction}}",',
            f"{INDENT}]",
            f"{INDENT}return f\"<{{type(self).__name__}} {{', '.join(fields)}}>\"",
        ]

    # ------------------------------------------------------------------ docstrings

    def docstring(self, text: str, indent: str, where: str) -> list[str]:
        """A docstring's source lines; remembered so `check` can compare it after parsing.

        Tabs are expanded first (PEP 257: tools expand them anyway, and a tab's width
        would depend on the column the docstring is indented to).
        """
        lines = text.expandtabs().split("\n")
        indented = [lines[0], *(f"{indent}{line}" if line else "" for line in lines[1:])]
        if len(lines) > 1:
            indented.append(indent)  # the closing quotes' line
        self.docstrings.append((where, "\n".join(indented)))
        source = escape_docstring("\n".join(indented)).split("\n")
        source[0] = f'{indent}"""{source[0]}'
        source[-1] += '"""'
        return source


# ---------------------------------------------------------------------- checks in __init__


def assigned_names(statements: Sequence[str]) -> list[str]:
    """The name each printed statement (`name = value`) assigns, in order."""
    return [statement.split(" = ", 1)[0] for statement in statements]


def kept_temporaries(backward: BackwardPass) -> list[str]:
    """The forward pass's temporaries that the backward function reads, in order: what a
    JAX or PyTorch custom gradient keeps (TensorFlow's closure keeps them itself)."""
    read = names_in(backward.gradient).union(*map(names_in, backward.statements))
    return [name for name in assigned_names(backward.forward) if name in read]


def unpacking(names: Sequence[str], value: str, indent: str) -> list[str]:
    """`a, b = value` at `indent` (black's parenthesized form when too long; nothing for
    no names)."""
    if not names:
        return []
    single = f"{indent}{', '.join(names)}{',' if len(names) == 1 else ''} = {value}"
    if len(single) <= LINE_LENGTH:
        return [single]
    return [f"{indent}(", *(f"{indent}{INDENT}{name}," for name in names), f"{indent}) = {value}"]


def backend_check(target: Target) -> tuple[str, ...]:
    """The first lines of a generated class's `__init__`: its code runs on its target's
    Keras backend only, and under another it would fail deep inside Keras when first
    called."""
    return (
        f'if keras.backend.backend() != "{target.name}":',
        f"{INDENT}raise RuntimeError(",
        f'{INDENT * 2}f"{{type(self).__name__}} was generated by lossdsl for Keras\'s "',
        f'{INDENT * 2}f"{target.title} backend, but Keras uses {{keras.backend.backend()!r}}. "',
        f'{INDENT * 2}"Set the environment variable KERAS_BACKEND={target.name} before "',
        f'{INDENT * 2}"importing keras."',
        f"{INDENT})",
    )


FUNCTION_REDUCTION_DOC = (
    f'{REDUCTION}: "none" (the default) for the values as Keras takes them, "mean" or '
    '"sum" for their mean or sum, as `torch.nn.functional`\'s losses take it. With a '
    "mask, the mean is over the elements that count, as with `ignore_index`."
)
"""The PyTorch function's `reduction` argument, documented."""

TORCH_ARGUMENT_DOCS = (
    'reduction: "mean" (the default), "sum" or "none", as for `torch.nn` losses. With '
    "a mask, the mean is over the elements that count, as with `ignore_index`.",
    "weight: Optional weights multiplied into the loss's values before the reduction "
    "(broadcast to their shape), as `torch.nn.BCELoss`'s `weight`.",
)
"""The `torch.nn` arguments of a PyTorch module's class, documented."""


def nested_docstring(text: str) -> str:
    """A docstring's value once its definition is indented one level further."""
    first, *rest = text.split("\n")
    return "\n".join([first, *(INDENT + line if line else "" for line in rest)])


OPTIONAL_KERAS = (
    "try:",
    f"{INDENT}import keras",
    "except ImportError:  # the native API above needs no Keras",
    f"{INDENT}keras = None",
)
"""How a JAX or PyTorch module imports Keras: its Keras class is defined where Keras is
installed, and its native API works without."""

STANDARD_USES = {name: re.compile(rf"(?<![\w.]){name}\.") for name in ("math",)}
"""The standard modules a generated module imports where its code calls them: `math`
for a JAX or PyTorch module's spatial sizes."""


def condition(domain: ParamDomain, value: str) -> str:
    """A Python comparison chain true exactly when `value` is in the domain."""
    low = bound_literal(domain.low)
    high = bound_literal(domain.high)
    low_op = "<=" if domain.low_closed else "<"
    high_op = "<=" if domain.high_closed else "<"
    return f"{low} {low_op} {value} {high_op} {high}"


NUMBER_METHOD = (
    "@staticmethod",
    "def _number(value):",
    f'{INDENT}"""`value` as a float; NaN, outside every domain, if not one number."""',
    f"{INDENT}if isinstance(value, (bool, str, bytes)):",
    f'{INDENT * 2}return float("nan")',
    f"{INDENT}try:",
    f"{INDENT * 2}return float(value)",
    f"{INDENT}except (TypeError, ValueError, OverflowError):",
    f'{INDENT * 2}return float("nan")',
)
"""A generated class's conversion of a param value: a string, a bool, None or a list given
for a number fails the domain check, whose message shows the value received."""

NUMBERS_METHOD = (
    "def _numbers(self, values):",
    f'{INDENT}"""A vector param\'s entries (`_number` each); (NaN,) for a non-sequence."""',
    f"{INDENT}if not isinstance(values, (str, bytes, dict)):",
    f"{INDENT * 2}try:",
    f"{INDENT * 3}return tuple(self._number(value) for value in values)",
    f"{INDENT * 2}except TypeError:  # not iterable",
    f"{INDENT * 3}pass",
    f'{INDENT}return (float("nan"),)',
)
"""The same for a vector param: a string (`"123"`), a number or a nested list fails."""


def scalar_check(param: ParamCode) -> list[str]:
    name, spec_name = param.argument, param.spec_name
    return [
        f"if not {condition(param.info.domain, f'self._number({name})')}:",
        f"{INDENT}raise ValueError(",
        f'{INDENT * 2}"Invalid value for argument `{spec_name}`. "',
        f'{INDENT * 2}"Expected a value in {param.info.domain.describe()}. "',
        f'{INDENT * 2}f"Received: {spec_name}={{{name}!r}}"',
        f"{INDENT})",
        f"{name} = float({name})",
    ]


def vector_check(param: ParamCode, entry: str, values: str) -> list[str]:
    name, spec_name = param.argument, param.spec_name
    return [
        f"{values} = self._numbers({name})",
        f"if not {values} or not all({condition(param.info.domain, entry)} for {entry} in "
        f"{values}):",
        f"{INDENT}raise ValueError(",
        f'{INDENT * 2}"Invalid value for argument `{spec_name}`. "',
        f'{INDENT * 2}"Expected one value in {param.info.domain.describe()} per class. "',
        f'{INDENT * 2}f"Received: {spec_name}={{{name}!r}}"',
        f"{INDENT})",
        f"{name} = {values}",
    ]


def vector_length_check(first: ParamCode, other: ParamCode) -> list[str]:
    return [
        f"if len({other.argument}) != len({first.argument}):",
        f"{INDENT}raise ValueError(",
        f'{INDENT * 2}"Invalid value for argument `{other.spec_name}`. "',
        f'{INDENT * 2}"Expected one entry per class, as many as `{first.spec_name}` has. "',
        f'{INDENT * 2}f"Received: {other.spec_name}={{{other.argument}}} '
        f'and {first.spec_name}={{{first.argument}}}"',
        f"{INDENT})",
    ]


def from_config_method(renamed: Sequence[ParamCode]) -> list[str]:
    pairs = ", ".join(
        f"{string_literal(param.spec_name)}: {string_literal(param.argument)}" for param in renamed
    )
    return [
        "@classmethod",
        "def from_config(cls, config):",
        f"{INDENT}# Params keep their spec names in the config; Python renames some of them.",
        f"{INDENT}renamed = {{{pairs}}}",
        f"{INDENT}return cls(**{{renamed.get(key, key): value for key, value in config.items()}})",
    ]


# ---------------------------------------------------------------------- text helpers


CODING_DECLARATION = re.compile(r"(?<=coding)[:=]")
"""What makes a comment on a module's first two lines an encoding declaration (PEP 263)."""


def header_line(spec_file: str) -> str:
    """The module's first line, naming the spec file so that nothing in the name counts.

    Python reads `coding:` or `coding=` in a comment on the first two lines as the
    module's encoding: a file named `coding:utf-7 x.loss` would make the whole module
    UTF-7. Its `:` or `=` is written as a string literal's escape (`coding\\x3autf-7`),
    as are characters that are not printable (a newline would end the comment).
    """
    name = CODING_DECLARATION.sub(lambda found: char_escape(found[0]), printable_name(spec_file))
    return f"# Generated by lossdsl from {name}. Do not edit."


def spec_file_name(source_name: str) -> str:
    """The spec's file name without its directory (`<string>` for source text)."""
    if source_name.startswith("<"):
        return source_name
    return Path(source_name).name


def spec_statements(text: str) -> str:
    """The spec without its leading comment block: the statements, as written."""
    lines = text.split("\n")
    start = 0
    while start < len(lines) and (
        not lines[start].strip() or lines[start].lstrip().startswith("#")
    ):
        start += 1
    body = [line.rstrip() for line in lines[start:]]
    while body and not body[-1]:
        body.pop()
    return "\n".join(body)


def input_doc(argument: str, info: InputInfo, channels: int | None = None) -> str:
    """An input's line in the docstring's Args; `channels`: the fewest its selections need."""
    spatial = "" if info.paired else ", ..."
    shape = f"[batch{spatial}]" if KINDS[info.kind].class_ids else f"[batch{spatial}, C]"
    if channels is not None:
        noun = "channel" if channels == 1 else "channels"
        shape = f"[batch{spatial}, channels], at least {channels} {noun}"
    return f"{argument}: {info.argument}, `{info.kind}` values of shape {shape}."


def param_doc(argument: str, info: ParamInfo) -> str:
    domain = info.domain.describe()
    if info.is_vector:
        return (
            f"{argument}: One value in {domain} per class. "
            f"Defaults to {default_literal(info.default)}."
        )
    return f"{argument}: A value in {domain}. Defaults to {default_literal(info.default)}."
