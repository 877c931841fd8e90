"""How long lossdsl takes to compile each example spec, stage by stage, and a 2,000-term spec.

The front end is parse -> check -> domain checks -> lower (rewrite, simplify) -> print ->
write the module's text to a file, timed through the stage functions of
docs/ARCHITECTURE.md with no TensorFlow involved. The full compile is
`lossdsl.compiler.compile_source(..., verify=True)`, which adds loading the generated
module and verifying it against SymPy; TensorFlow is imported and warmed up before any
timing. SymPy's caches are cleared before every run, so no run profits from the one
before. Run `python benchmarks/compile_speed.py --help`; benchmarks/README.md explains
the columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sympy.core.cache import clear_cache

import lossdsl
from lossdsl.analysis.checks import check_domains
from lossdsl.checker import check
from lossdsl.codegen.printer import print_body
from lossdsl.codegen.writer import write_module
from lossdsl.parser import parse, read_source
from lossdsl.source import SourceFile
from lossdsl.symbolic.lower import lower

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLES = ROOT / "examples"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "compile_speed.json"
FRONT_END_TARGET_S = 0.100  # median parse .. write per example
VERIFY_TARGET_S = 2.0  # verification per spec, beyond the TensorFlow import
LARGE_SPEC_REPEATS = 3  # front-end runs of the many-term spec (its full compile runs once)
STAGES = ("parse", "check", "domains", "lower", "print", "write")
TERM_FUNCTIONS = ("square", "abs", "softplus", "tanh")


def many_terms_spec(terms: int) -> SourceFile:
    """A regression loss that is a sum of `terms` distinct small terms, none combinable.

    Term i is c_i * f(p - k_i * y), f cycling through square, abs, softplus and tanh.
    """
    parts = []
    for index in range(terms):
        factor = 1 + (index + 1) / 4096
        weight = 0.5 + index / (2 * terms)
        function = TERM_FUNCTIONS[index % len(TERM_FUNCTIONS)]
        parts.append(f"{weight:.6g} * {function}(p - {factor:.6g} * y)")
    text = (
        f"# A sum of {terms} small terms, to time the compiler on a large spec.\n\n"
        "input y: target\ninput p: real\n\n"
        f"loss many_terms = mean({' + '.join(parts)})\n"
    )
    return SourceFile.from_text(text, f"many_terms_{terms}.loss")


def front_end(source: SourceFile, directory: Path) -> dict[str, float]:
    """Seconds spent in each stage from parsing to the module written to a file."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    spec = parse(source)
    lap("parse")
    checked = check(spec)
    lap("check")
    check_domains(checked)
    lap("domains")
    symbolic = lower(checked)
    lap("lower")
    body = print_body(symbolic)
    lap("print")
    text = write_module(checked, symbolic, body)
    (directory / "generated.py").write_text(text, encoding="utf-8")
    lap("write")
    return seconds


def full_compile(source: SourceFile) -> float:
    """Seconds for the whole pipeline, verification included."""
    from lossdsl.compiler import compile_source

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossdsl.LossSpecWarning)
        compile_source(source, verify=True)
    return time.perf_counter() - start


def repeated(run: Callable[[], Any], repeats: int) -> list[Any]:
    """`run()` `repeats` times, with SymPy's caches cleared before each."""
    results = []
    for _ in range(repeats):
        clear_cache()
        results.append(run())
    return results


@dataclass(frozen=True)
class SpecTiming:
    """Median seconds of one spec's compile: per front-end stage, the front end, the whole."""

    spec: str
    characters: int
    stages: dict[str, float]
    front_end: float
    full: float | None  # None when full compiles were not timed
    front_end_ok: bool
    verification: float | None  # full - front_end
    verification_ok: bool | None


@dataclass(frozen=True)
class SpecFailure:
    """A spec whose compile raised: the benchmark records it and goes on with the next."""

    spec: str
    characters: int
    error: str


def time_spec(source: SourceFile, repeats: int, full_repeats: int, directory: Path) -> SpecTiming:
    runs = repeated(lambda: front_end(source, directory), repeats)
    stages = {stage: statistics.median(run[stage] for run in runs) for stage in STAGES}
    front = statistics.median(sum(run.values()) for run in runs)
    full = (
        statistics.median(repeated(lambda: full_compile(source), full_repeats))
        if full_repeats
        else None
    )
    verification = None if full is None else full - front
    return SpecTiming(
        spec=source.name,
        characters=len(source.text),
        stages=stages,
        front_end=front,
        full=full,
        front_end_ok=front < FRONT_END_TARGET_S,
        verification=verification,
        verification_ok=None if verification is None else verification < VERIFY_TARGET_S,
    )


def warm_up_tensorflow() -> float:
    """Import TensorFlow and Keras and run one verified compile; returns the seconds taken."""
    start = time.perf_counter()
    full_compile(SourceFile.from_text("loss warm_up = mean(square(p - y))", "warm_up.loss"))
    return time.perf_counter() - start


def table(timings: Sequence[SpecTiming]) -> str:
    stage_header = " ".join(f"{stage:>8}" for stage in STAGES)
    lines = [
        f"{'spec':<46} {stage_header} {'front ms':>9} {'<100ms':>6} {'full s':>7} "
        f"{'verify s':>8} {'<2s':>4}"
    ]
    for timing in timings:
        stages = " ".join(f"{1e3 * timing.stages[stage]:>8.1f}" for stage in STAGES)
        full = "-" if timing.full is None else f"{timing.full:.2f}"
        verification = "-" if timing.verification is None else f"{timing.verification:.2f}"
        verification_ok = {None: "-", True: "yes", False: "NO"}[timing.verification_ok]
        lines.append(
            f"{timing.spec:<46} {stages} {1e3 * timing.front_end:>9.1f} "
            f"{'yes' if timing.front_end_ok else 'NO':>6} {full:>7} {verification:>8} "
            f"{verification_ok:>4}"
        )
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the lossdsl compiler per example spec: the front end stage by "
        "stage (parse .. write, no TensorFlow) and the full compile with verification."
    )
    parser.add_argument(
        "specs",
        nargs="*",
        type=Path,
        help=f"spec files to time (default: every {DEFAULT_EXAMPLES.name}/*.loss)",
    )
    parser.add_argument("--repeats", type=int, help="front-end runs per spec (default 10)")
    parser.add_argument(
        "--full-repeats", type=int, help="full compiles per spec; 0 skips them (default 3)"
    )
    parser.add_argument(
        "--terms",
        type=int,
        help="size of the generated many-term spec, timed with at most 3 front-end runs and "
        "1 full compile; 0 skips it (default 2000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two examples, 2 front-end runs, 1 full compile, 10 terms: proves the script runs",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file ({DEFAULT_OUT})")
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    if not arguments.specs:
        arguments.specs = sorted(DEFAULT_EXAMPLES.glob("*.loss"))
        if quick:
            arguments.specs = arguments.specs[:2]
    arguments.repeats = arguments.repeats or (2 if quick else 10)
    if arguments.full_repeats is None:
        arguments.full_repeats = 1 if quick else 3
    if arguments.terms is None:
        arguments.terms = 10 if quick else 2000
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    warm_up = warm_up_tensorflow() if arguments.full_repeats else 0.0
    sources = [read_source(path.read_bytes(), path.name) for path in arguments.specs]
    if arguments.terms:
        sources.append(many_terms_spec(arguments.terms))
    timings: list[SpecTiming] = []
    failures: list[SpecFailure] = []
    with tempfile.TemporaryDirectory() as directory:
        for source in sources:
            large = source.name.startswith("many_terms_")
            try:
                timing = time_spec(
                    source,
                    min(arguments.repeats, LARGE_SPEC_REPEATS) if large else arguments.repeats,
                    min(arguments.full_repeats, 1) if large else arguments.full_repeats,
                    Path(directory),
                )
            except Exception as raised:  # a compiler bug is a finding, not the end of the run
                failures.append(
                    SpecFailure(source.name, len(source.text), f"{type(raised).__name__}: {raised}")
                )
                print(f"{source.name}: compile failed: {failures[-1].error}", flush=True)
                continue
            timings.append(timing)
            print(table([timing]).splitlines()[-1], flush=True)
    examples = [timing for timing in timings if not timing.spec.startswith("many_terms_")]
    print()
    print(table(timings))
    for failure in failures:
        print(f"{failure.spec}: compile failed: {failure.error}")
    print()
    print(
        f"front end < {1e3 * FRONT_END_TARGET_S:.0f} ms median: "
        f"{sum(t.front_end_ok for t in examples)}/{len(examples)} examples"
    )
    if arguments.full_repeats:
        print(
            f"verification < {VERIFY_TARGET_S:.0f} s beyond the TensorFlow import: "
            f"{sum(bool(t.verification_ok) for t in examples)}/{len(examples)} examples "
            f"(TensorFlow import and first compile took {warm_up:.1f} s, not counted)"
        )
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    report = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "lossdsl": lossdsl.__version__,
        },
        "settings": {
            "repeats": arguments.repeats,
            "full_repeats": arguments.full_repeats,
            "terms": arguments.terms,
        },
        "targets": {"front_end_s": FRONT_END_TARGET_S, "verification_s": VERIFY_TARGET_S},
        "tensorflow_warm_up_s": warm_up,
        "seconds": elapsed,
        "specs": [asdict(timing) for timing in timings],
        "failures": [asdict(failure) for failure in failures],
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {arguments.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
