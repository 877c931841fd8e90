"""The `lossdsl` command line: `compile`, `check`, `explain` and `plot`."""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import sympy

from lossdsl import plot
from lossdsl.api import compile_file
from lossdsl.checker import check
from lossdsl.codegen.body import BackwardPass, FunctionBody
from lossdsl.codegen.fusions import FUSIONS_BY_NAME
from lossdsl.codegen.names import mean_function_name
from lossdsl.codegen.printer import print_body
from lossdsl.codegen.targets import DEFAULT_TARGET, TARGETS
from lossdsl.codegen.writer import writes_a_mean
from lossdsl.codes import INTERNAL_ERROR
from lossdsl.compiler import CompiledLoss, domain_warnings, generate, load_generated, unique
from lossdsl.desugar import DESUGARINGS
from lossdsl.diagnostics import Diagnostic, LossSpecError, LossSpecWarning, render_all
from lossdsl.diagnostics import error as error_diagnostic
from lossdsl.parser import parse, read_source
from lossdsl.source import SourceFile, printable_name
from lossdsl.symbolic.display import spec_text
from lossdsl.symbolic.gradient import latex
from lossdsl.symbolic.loss import AppliedRewrite, SymbolicLoss
from lossdsl.symbolic.lower import lower
from lossdsl.symbolic.rewrites import RULES_BY_NAME
from lossdsl.unparse import unparse_spec
from lossdsl.version import __version__

EXIT_OK = 0
EXIT_SPEC_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

REPORT_HELP = (
    "this is a bug in lossdsl, not in your spec; please report it "
    "with the spec and the command that triggered it"
)
REPORT_HINT = f"  = help: {REPORT_HELP}"

STDOUT = "-"
"""`-o -`: the module goes to standard output."""

TRACEBACK_VARIABLE = "LOSSDSL_TRACEBACK"
"""Set (non-empty) to print the traceback of an internal error after its message."""

MISSING_MATPLOTLIB = (
    "error: `lossdsl plot` needs matplotlib, which is not installed\n"
    "  = help: install the plot extra: pip install 'lossdsl[plot]'"
)


class UsageError(Exception):
    """A command line that cannot run: the message is what the user sees."""


class ParserExit(Exception):
    """argparse finished early (`--help`, `--version`) with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` returns every status."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage()}{self.prog}: error: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="lossdsl",
        description="Compile `.loss` specs into verified, numerically stable Keras losses.",
    )
    parser.add_argument("--version", action="version", version=f"lossdsl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    compile_parser = commands.add_parser(
        "compile",
        help="write the standalone Keras module of a spec",
        description="Compile a spec to a standalone module for one Keras backend (for "
        "TensorFlow it imports only tensorflow and keras), written to OUT.py (atomically) "
        "or to stdout.",
    )
    compile_parser.add_argument("spec", type=Path, metavar="SPEC.loss")
    compile_parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT.py",
        help="write the module here (through a symlink to its target; `-` is stdout)",
    )
    compile_parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip checking the generated code against SymPy's exact gradients",
    )
    compile_parser.add_argument(
        "--xla", action="store_true", help="compile the generated functions with XLA"
    )
    add_target_argument(compile_parser, "the backend the module is written for")
    compile_parser.set_defaults(handler=run_compile)

    check_parser = commands.add_parser(
        "check",
        help="report the diagnostics of specs, verification included",
        description="Check specs: every diagnostic to stderr, verification included.",
    )
    check_parser.add_argument("specs", type=Path, nargs="+", metavar="SPEC.loss")
    add_target_argument(check_parser, "the backend whose generated code is verified")
    check_parser.set_defaults(handler=run_check)

    explain_parser = commands.add_parser(
        "explain",
        help="show how a spec is read, simplified, rewritten and differentiated",
        description="Show the parsed form, the simplified form, the rewrites that fired, "
        "the per-element gradient and the LaTeX of a spec.",
    )
    explain_parser.add_argument("spec", type=Path, metavar="SPEC.loss")
    explain_parser.set_defaults(handler=run_explain)

    add_plot_parser(commands).set_defaults(handler=run_plot)
    return parser


def add_target_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--target tensorflow|jax|torch`, TensorFlow by default."""
    parser.add_argument(
        "--target",
        choices=tuple(TARGETS),
        default=DEFAULT_TARGET,
        help=f"{what} (default: {DEFAULT_TARGET})",
    )


def add_plot_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the `plot` sub-command to an argparse sub-parsers object."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "plot",
        help="plot a loss and its gradient across the prediction's range (needs matplotlib)",
        description=(
            "Plot the loss and its gradient with respect to the prediction, one curve per "
            "target value: y = 0 and 1 for binary targets, the true class's probability "
            "for categorical specs, the residual y_pred - y_true for regression. A spec "
            "that selects channels gets the channels it selects: x moves y_pred's first, "
            "its others stay 0, and y_true's others hold 1."
        ),
    )
    parser.add_argument("spec", type=Path, metavar="SPEC.loss", help="the spec to plot")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="the PNG to write (default: SPEC's name with .png; `-` is stdout)",
    )
    parser.add_argument(
        "--vs", type=Path, metavar="OTHER.loss", help="a second spec, drawn beside the first"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (never raises, never a traceback).

    Diagnostics are rendered to stderr; generated modules and explanations go to stdout or
    a file (`-o -` is stdout). Exit status: 0 success (warnings allowed), 1 a spec has
    errors, 2 a usage error (unknown option, missing or unreadable file, an output that is
    not a regular file); 70 an internal error, 130 interrupted. With several specs the worst
    status wins (70, then 2, then 1). No input ends in a traceback (set `LOSSDSL_TRACEBACK=1`
    to see one after an internal error).

    The compiler's own process runs Keras on the command's target (`--target`, else
    TensorFlow) whatever `KERAS_BACKEND` says: the generated module is that backend's code,
    and checking needs no other backend.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved_backend = os.environ.get("KERAS_BACKEND")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return run(argv)
    except KeyboardInterrupt:
        print("lossdsl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_SPEC_ERROR
    except Exception as failure:  # the last resort: a bug, reported without a traceback
        print(f"lossdsl: internal error: {failure_summary(failure)}", file=sys.stderr)
        print(REPORT_HINT, file=sys.stderr)
        print_traceback_if_asked(failure)
        return EXIT_INTERNAL
    finally:
        restore_keras_backend(saved_backend)


def pin_keras_backend(target: str) -> None:
    """Make Keras use `target` in this process, if Keras is not imported yet.

    The generated module is that backend's code, and checking and compiling run it there;
    the backend a user's training runs on (`KERAS_BACKEND=jax`, or the one in
    `~/.keras/keras.json`, which the variable overrides) does not matter here, and Keras
    would fail to import without that backend installed. `main` restores the variable.
    """
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = target


def restore_keras_backend(saved: str | None) -> None:
    """Give the process back the `KERAS_BACKEND` it had (for `main` called in-process)."""
    if saved is None:
        os.environ.pop("KERAS_BACKEND", None)
    else:
        os.environ["KERAS_BACKEND"] = saved


def failure_summary(failure: BaseException) -> str:
    """`TypeError: first line of the message`, printable."""
    summary = (str(failure).strip().splitlines() or [""])[0]
    return printable_name(f"{type(failure).__name__}: {summary}")


def print_traceback_if_asked(failure: BaseException) -> None:
    if os.environ.get(TRACEBACK_VARIABLE):
        traceback.print_exception(failure, file=sys.stderr)


def report_internal_error(source_name: str, failure: Exception) -> None:
    """An internal error while handling one spec, as a diagnostic of that file."""
    diagnostic = error_diagnostic(
        INTERNAL_ERROR, f"internal error: {failure_summary(failure)}", None, "", REPORT_HELP
    )
    print(render_all([diagnostic], SourceFile(source_name, "")), file=sys.stderr)
    print_traceback_if_asked(failure)


def run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as usage:
        print(usage, file=sys.stderr)
        return EXIT_USAGE
    except ParserExit as early:
        return early.status
    pin_keras_backend(getattr(args, "target", DEFAULT_TARGET))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as usage:
        print(usage, file=sys.stderr)
        return EXIT_USAGE


# ---------------------------------------------------------------------- commands


def run_compile(args: argparse.Namespace) -> int:
    output: Path | None = None if args.output is None or str(args.output) == STDOUT else args.output
    if output is not None:
        output_target(output)  # fail before the compile, which can take a while
    try:
        source = read_spec(args.spec)
        compiled = compile_spec(
            source, verify=not args.no_verify, jit_compile=args.xla, target=args.target
        )
    except LossSpecError as failure:
        print(failure, file=sys.stderr)
        return EXIT_SPEC_ERROR
    except (UsageError, BrokenPipeError):
        raise
    except Exception as failure:
        report_internal_error(str(args.spec), failure)
        return EXIT_INTERNAL
    report_warnings(compiled.diagnostics, source)
    if output is None:
        sys.stdout.write(compiled.python_source)
        sys.stdout.flush()
        return EXIT_OK
    target = output_target(output)  # again: the path may have changed during the compile
    try:
        write_atomically(target, compiled.python_source.encode("utf-8"))
    except OSError as failure:
        raise UsageError(
            f"error: cannot write {shown(output)}: {describe_os_error(failure)}"
        ) from None
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    """Check every spec, whatever happens to the others; the worst status wins."""
    statuses = [check_one(path, args.target) for path in args.specs]
    for status in (EXIT_INTERNAL, EXIT_USAGE, EXIT_SPEC_ERROR):
        if status in statuses:
            return status
    return EXIT_OK


def check_one(path: Path, target: str = DEFAULT_TARGET) -> int:
    try:
        source = read_spec(path)
        compiled = compile_spec(source, verify=True, jit_compile=False, target=target)
        report_warnings(compiled.diagnostics, source)
    except UsageError as usage:
        print(usage, file=sys.stderr)
        return EXIT_USAGE
    except LossSpecError as failure:
        print(failure, file=sys.stderr)
        return EXIT_SPEC_ERROR
    except BrokenPipeError:
        raise
    except Exception as failure:  # a bug: reported for this spec, and the others still run
        report_internal_error(str(path), failure)
        return EXIT_INTERNAL
    return EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    try:
        source = read_spec(args.spec)
        spec = parse(source)
        checked = check(spec)
        found = unique([*checked.warnings, *domain_warnings(checked)])
        symbolic = lower(checked, with_gradient=True)
        body = print_body(symbolic)
        mean = writes_a_mean(symbolic, DEFAULT_TARGET, jit_compile=False)
        mean_body = print_body(symbolic, mean=True) if mean else None
    except LossSpecError as failure:
        print(failure, file=sys.stderr)
        return EXIT_SPEC_ERROR
    except (UsageError, BrokenPipeError):
        raise
    except Exception as failure:
        report_internal_error(str(args.spec), failure)
        return EXIT_INTERNAL
    report_warnings(found, source)
    parsed = ("Parsed", unparse_spec(spec).rstrip("\n").split("\n"))
    sections = explained_sections(symbolic, body, mean_body)
    write_sections(sys.stdout, [parsed, *sections])
    return EXIT_OK


def run_plot(args: argparse.Namespace) -> int:
    """Run `lossdsl plot`: 0 if the image was written, 1 spec errors or no matplotlib, 2 usage.

    The image is written as `compile -o` writes a module (`output_target`): atomically,
    through symlinks, never over a special file; `-o -` is stdout.
    """
    specs = [args.spec] if args.vs is None else [args.spec, args.vs]
    unreadable = [path for path in specs if not (path.is_file() and os.access(path, os.R_OK))]
    for path in unreadable:
        print(f"error: cannot read {shown(path)}: not a readable file", file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    output = args.output or Path("_vs_".join(path.stem for path in specs) + ".png")
    to_stdout = str(output) == STDOUT
    if not to_stdout:
        output_target(output)  # a usage error before the slow part
    image_format = "png" if to_stdout else output.suffix.lstrip(".").lower() or "png"
    try:
        formats = plot.image_formats()
    except ImportError:
        print(MISSING_MATPLOTLIB, file=sys.stderr)
        return EXIT_SPEC_ERROR
    if image_format not in formats:
        raise UsageError(f"error: cannot write {shown(output)}: no image format {image_format}")
    import_tensorflow_quietly()
    try:
        compiled = [compile_file(path, target=DEFAULT_TARGET) for path in specs]  # plot runs TF
    except LossSpecError as failure:
        print(failure, file=sys.stderr)
        return EXIT_SPEC_ERROR
    image = plot.render(compiled, image_format)
    if to_stdout:
        sys.stdout.buffer.write(image)
        sys.stdout.flush()
        return EXIT_OK
    try:
        write_atomically(output_target(output), image)
    except OSError as failure:
        print(f"error: cannot write {shown(output)}: {failure.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {shown(output)}")
    return EXIT_OK


def explained_sections(
    symbolic: SymbolicLoss, body: FunctionBody, mean_body: FunctionBody | None = None
) -> list[tuple[str, list[str]]]:
    """What `explain` shows after the parsed spec, in the spec's own notation: the checker's
    desugarings (`desugar`), the stable rewrites and the target fusions (`codegen.fusions`)
    that fired, each with its law, and the backward pass the module computes; with a
    `mean_body` (the module's `<name>_mean`), its own fusions and backward pass too."""
    checked = symbolic.checked

    def text(expr: sympy.Basic) -> str:
        return spec_text(expr, symbolic.roles)

    simplified = [f"loss {checked.loss_name} = {text(symbolic.loss)}"]
    if symbolic.result != symbolic.loss:
        simplified.append(f"call returns {text(symbolic.result)}  (Keras takes the outer mean)")
    if symbolic.mask is not None:
        simplified.append(
            f"mask {text(symbolic.mask)}  (call returns 0 outside it, and Keras's reduction "
            "counts only the elements inside)"
        )

    def steps(applied: Sequence[AppliedRewrite], laws: dict[str, str]) -> list[str]:
        lines: list[str] = []
        for step in applied:
            law = " ".join(laws[step.rule].split("\n\n")[0].split())  # its first paragraph
            lines += [
                f"{step.rule}: {text(step.before)} -> {text(step.after)}",
                f"    law: {law}",
            ]
        return lines

    rewrites = steps(symbolic.rewrites, {rule.name: rule.law for rule in RULES_BY_NAME.values()})
    laws = {fusion.name: fusion.law for fusion in FUSIONS_BY_NAME.values()}
    fused = steps(body.fusions, laws)
    desugared = [f"{name}: {DESUGARINGS[name].law}" for name in checked.desugarings]
    y_pred = checked.y_pred.name
    backward = backward_lines(body.backward, text, y_pred)
    if mean_body is not None:
        mean_name = mean_function_name(checked.loss_name)
        if only_mean := [f for f in mean_body.fusions if f not in body.fusions]:
            fused += [f"in {mean_name}:", *steps(only_mean, laws)]
        if mean_body.backward is not None:
            backward += mean_backward_lines(mean_body.backward, text, y_pred, mean_name)
    return [
        ("Simplified (one element)", simplified),
        ("Desugarings", desugared or ["none fired"]),
        ("Rewrites", rewrites or ["none fired"]),
        ("Target fusions", fused or ["none fired"]),
        (f"Gradient with respect to {y_pred} (one element)", [text(symbolic.gradient)]),
        ("Backward pass", backward),
        ("LaTeX", [f"loss: {latex(symbolic.loss)}", f"gradient: {latex(symbolic.gradient)}"]),
    ]


def backward_lines(
    backward: BackwardPass | None, text: Callable[[sympy.Basic], str], y_pred: str
) -> list[str]:
    """The backward pass the module computes: the loss's own, or the framework's autodiff."""
    if backward is None:
        return [
            "TensorFlow's autodiff: the compiler's backward pass has no rule for a node of "
            "this loss (values at other samples or positions: other, cumsum; a derivative "
            "outside the vocabulary; a mean over a slice of channels)"
        ]
    return [
        "the loss's own (a custom gradient, verified like the value):",
        f"d sum(upstream * loss) / d {y_pred} = {text(backward.derivative)}",
    ]


def mean_backward_lines(
    backward: BackwardPass, text: Callable[[sympy.Basic], str], y_pred: str, name: str
) -> list[str]:
    """The mean function's backward pass: the gradient of Keras's default reduction."""
    return [
        f"Keras's default reduction, the mean of every value ({name}, its own custom gradient):",
        f"d (upstream * mean(loss)) / d {y_pred} = {text(backward.derivative)}",
    ]


# ---------------------------------------------------------------------- helpers


def compile_spec(
    source: SourceFile, *, verify: bool, jit_compile: bool, target: str = DEFAULT_TARGET
) -> CompiledLoss:
    """The whole pipeline for `target`, each stage once.

    The stages before loading need no backend, so a spec with errors is reported without
    importing one; then TensorFlow (for its target) is imported quietly, and the module
    loaded and verified.
    """
    generated = generate(source, jit_compile=jit_compile, target=target)
    if target == "tensorflow":
        import_tensorflow_quietly()
    return load_generated(generated, verify=verify)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up chatter (oneDNN, CUDA stubs) kept off stderr.

    TensorFlow's C++ logging writes those lines before `TF_CPP_MIN_LOG_LEVEL` takes effect,
    so the process's stderr is pointed at a temporary file during the import; if the import
    fails, what it wrote is passed on, so no real error is hidden.

    Two optional imports of that import are kept out of it (`_not_imported`), for
    features the CLI never uses: TensorFlow Lite's converter imports JAX where it is
    installed, for its JAX models (`tensorflow.lite.python.util`; with jaxlib's native
    libraries, about 3 s of `lossdsl check examples/*.loss`), and Keras's image gallery
    imports matplotlib's pyplot (`keras.src.visualization`; about 0.6 s). A JAX target, or
    `lossdsl plot`, imports them afterwards as usual.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured, _not_imported("jax", "matplotlib"):
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved_stderr, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)


@contextlib.contextmanager
def _not_imported(*modules: str) -> Iterator[None]:
    """Within the block, importing one of `modules` raises ImportError, as if it were not
    installed (unless it is imported already); afterwards it imports as before."""
    kept_out = [module for module in modules if module not in sys.modules]
    for module in kept_out:
        sys.modules[module] = None  # type: ignore[assignment]  # the import system's "absent"
    try:
        yield
    finally:
        for module in kept_out:
            if sys.modules.get(module) is None:
                sys.modules.pop(module, None)


def read_spec(path: Path) -> SourceFile:
    """A spec file's source; unreadable files are usage errors, bad UTF-8 a spec error."""
    try:
        data = path.read_bytes()
    except OSError as failure:
        raise UsageError(
            f"error: cannot read {shown(path)}: {describe_os_error(failure)}"
        ) from None
    return read_source(data, str(path))


def shown(path: Path) -> str:
    """A path as messages show it: newlines, control characters and bytes that are not
    UTF-8 escaped (`lossdsl.source.printable_name`)."""
    return printable_name(str(path))


FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)
"""What `compile -o` refuses to replace, by the test on its mode."""


def output_target(output: Path) -> Path:
    """The regular file `compile -o OUT.py` writes: OUT.py, or the file its symlinks name.

    A symlink is followed to its final target, which is replaced, not the link; a
    dangling one names the file to create. A usage error when the target is not a
    regular file (a directory, device, FIFO or socket is never replaced) or its
    directory does not exist.
    """
    target = Path(os.path.realpath(output))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise UsageError(
                f"error: cannot write {shown(output)}: no directory {shown(target.parent)}"
            ) from None
        return target
    except OSError as failure:  # a symlink loop, a path through a file, no permission
        raise UsageError(
            f"error: cannot write {shown(output)}: {describe_os_error(failure)}"
        ) from None
    for is_kind, kind in FILE_KINDS:
        if is_kind(mode):
            raise UsageError(f"error: cannot write {shown(output)}: it is {kind}")
    if not stat.S_ISREG(mode):
        raise UsageError(f"error: cannot write {shown(output)}: it is not a regular file")
    return target


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory and `os.replace` it into place.

    `path` is a regular file or a new one (`output_target`). On any failure the existing
    file is untouched and the temporary file removed.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, existing_mode(path))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def existing_mode(path: Path) -> int:
    """The file's mode if it exists, else what a new file gets under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def describe_os_error(failure: OSError) -> str:
    return (failure.strerror or str(failure)).lower()


def report_warnings(diagnostics: Sequence[Diagnostic], source: SourceFile) -> None:
    if diagnostics:
        print(render_all(diagnostics, source), file=sys.stderr)


def write_sections(stream: TextIO, sections: Sequence[tuple[str, Sequence[str]]]) -> None:
    blocks = [
        f"{title}:\n" + "\n".join(f"    {line}".rstrip() for line in lines)
        for title, lines in sections
    ]
    stream.write("\n\n".join(blocks) + "\n")


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings as the command line shows them: a `LossSpecWarning` is its rendered text."""
    del filename, lineno, line
    stream = file or sys.stderr
    if issubclass(category, LossSpecWarning):
        print(message, file=stream)
    else:
        print(f"warning: {message}", file=stream)


def silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter exits quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
