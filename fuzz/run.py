"""The long fuzz run: many front-end inputs and many valid specs compiled with verification.

Usage (from the checkout's root, with the project's virtualenv):

    .venv/bin/python fuzz/run.py front-end --inputs 300000 --seconds 1500
    .venv/bin/python fuzz/run.py valid --inputs 1000 --seconds 1500
    .venv/bin/python fuzz/run.py valid --target torch --inputs 1000 --seconds 1500

`front-end` feeds grammar-built text and mutations of it and of `examples/*.loss` to the
parser, the checks and the domain analysis (what `lossdsl check` runs before TensorFlow).
`valid` compiles well-typed random specs (`fuzz/specgen.py`) with verification, for
`--target` (TensorFlow by default; `jax` and `torch` verify that backend's module).

Counted as failures:

- an internal error: any exception other than `LossSpecError`;
- a malformed diagnostic: one without a code, or without a location (other than the
  whole-file ones, E100 and E117);
- for `valid`, an E9xx diagnostic ("a bug in lossdsl") on a spec the generator knows to be
  valid; other diagnostics there (E4xx, E5xx...) are counted by code, not as failures;
- an input that takes longer than `--timeout` seconds.

Failures are deduplicated by class: the exception type and the innermost lossdsl frame
(file, function, line), or the E9xx code and the first words of its message. The smallest
reproducer of each class is written to `fuzz/crashes/` (not committed), with its
traceback. The run stops after `--inputs` inputs or `--seconds` seconds, whichever comes
first, and prints a JSON summary: inputs tried, rate, outcomes, and each class.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fuzz.specgen import (  # noqa: E402
    RandomChooser,
    grammar_spec,
    mutate,
    paired_spec,
    typed_spec,
)
from lossdsl.codegen.targets import DEFAULT_TARGET, TARGETS  # noqa: E402
from lossdsl.compiler import check_source, compile_source, domain_warnings  # noqa: E402
from lossdsl.diagnostics import LossSpecError  # noqa: E402
from lossdsl.parser import read_source  # noqa: E402

FILE_NAME = "fuzz.loss"
UNLOCATED_CODES = frozenset({"E100", "E117"})
EXAMPLE_SPECS = tuple(path.read_text("utf-8") for path in sorted(ROOT.glob("examples/*.loss")))
LOSSDSL_DIR = str(ROOT / "lossdsl")
# What varies between failures of one class in an E9xx message: names, shapes, numbers.
MAX_SEEDS = 20
"""How many seeds of each failure class the summary lists (to regenerate them)."""
VARYING_TEXT = re.compile(r"`[^`]*`|\[[^\]]*\]|'[^']*'|\d[\d.]*(e[+-]?\d+)?")


class SlowInput(Exception):
    """An input ran past the per-input time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise SlowInput in this (main) thread after `seconds`."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise SlowInput(f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class FailureClass:
    """One deduplicated failure: how often, and its smallest reproducer."""

    key: str
    count: int = 0
    reproducer: bytes = b""
    detail: str = ""
    seeds: list[int] = field(default_factory=list)  # the inputs' seeds, at most MAX_SEEDS


@dataclass
class Tally:
    """What a run found."""

    mode: str
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    failures: dict[str, FailureClass] = field(default_factory=dict)

    def fail(self, key: str, data: bytes, detail: str, seed: int) -> None:
        found = self.failures.setdefault(key, FailureClass(key))
        found.count += 1
        if len(found.seeds) < MAX_SEEDS:
            found.seeds.append(seed)
        if not found.reproducer or len(data) < len(found.reproducer):
            found.reproducer, found.detail = data, detail


def innermost_lossdsl_frame(failure: BaseException) -> str:
    """`file:function:line` of the deepest traceback frame inside the lossdsl package."""
    frames = [f for f in traceback.extract_tb(failure.__traceback__) if LOSSDSL_DIR in f.filename]
    if not frames:
        return "outside lossdsl"
    frame = frames[-1]
    return f"{Path(frame.filename).relative_to(ROOT)}:{frame.name}:{frame.lineno}"


def diagnostic_problems(failure: LossSpecError, valid_spec: bool) -> list[str]:
    """Failure keys for the malformed or E9xx diagnostics of an error."""
    problems = []
    if not failure.diagnostics:
        problems.append("LossSpecError without diagnostics")
    for diagnostic in failure.diagnostics:
        if not re.fullmatch(r"[EW]\d{3}", diagnostic.code):
            problems.append(f"diagnostic without a code: {diagnostic.code!r}")
        if diagnostic.span is None and diagnostic.code not in UNLOCATED_CODES:
            problems.append(f"{diagnostic.code} without a location")
        if valid_spec and diagnostic.code.startswith("E9"):
            # Names, shapes and numbers vary within a class; what was raised does not.
            general = VARYING_TEXT.sub("_", diagnostic.message)
            words = " ".join(general.split()[:20])
            problems.append(f"{diagnostic.code} on a valid spec: {words}")
    return problems


def run_one(
    tally: Tally, data: bytes, action: Callable[[], object], timeout: float, seed: int
) -> None:
    """Run one input (made from `seed`) and record its outcome."""
    valid_spec = tally.mode == "valid"
    tally.inputs += 1
    try:
        with time_limit(timeout):
            action()
    except LossSpecError as failure:
        problems = diagnostic_problems(failure, valid_spec)
        for problem in problems:
            tally.fail(problem, data, str(failure), seed)
        tally.outcomes["bad diagnostics" if problems else "diagnostics"] += 1
        tally.codes.update({d.code for d in failure.diagnostics if d.is_error})
    except SlowInput as failure:
        tally.outcomes["slow"] += 1
        tally.fail(f"slow input ({failure})", data, "", seed)
    except Exception as failure:
        tally.outcomes["internal error"] += 1
        key = f"{type(failure).__name__} at {innermost_lossdsl_frame(failure)}"
        tally.fail(key, data, "".join(traceback.format_exception(failure)), seed)
    else:
        tally.outcomes["ok"] += 1


def front_end_input(seed: int) -> bytes:
    """Grammar-built text, or a mutation of it, of an example spec or of a well-typed spec
    (one that pairs samples, or not)."""
    chooser = RandomChooser(seed)
    match chooser.integer(0, 4):
        case 0:
            return grammar_spec(chooser).encode("utf-8", errors="surrogatepass")
        case 1:
            return mutate(chooser, chooser.choice(EXAMPLE_SPECS))
        case 2:
            return mutate(chooser, grammar_spec(chooser))
        case 3:
            return mutate(chooser, paired_spec(chooser))
        case _:
            return mutate(chooser, typed_spec(chooser))


def front_end(data: bytes) -> None:
    checked = check_source(read_source(data, FILE_NAME))
    domain_warnings(checked)


def make_input(mode: str, seed: int, target: str) -> tuple[bytes, Callable[[], object]]:
    """Input `seed` of a run in `mode`, and what to do with it."""
    if mode == "front-end":
        data = front_end_input(seed)
        return data, lambda: front_end(data)
    chooser = RandomChooser(seed)
    generator = paired_spec if seed % 5 == 4 else typed_spec  # one in five pairs samples
    data = generator(chooser).encode("utf-8")
    source = read_source(data, FILE_NAME)
    return data, lambda: compile_source(source, target=target)


def run(mode: str, inputs: int, seconds: float, seed: int, timeout: float, target: str) -> Tally:
    tally = Tally(mode)
    start = time.monotonic()
    next_report = start + 60
    for index in range(inputs):
        if time.monotonic() - start > seconds:
            break
        data, action = make_input(mode, seed + index, target)
        run_one(tally, data, action, timeout, seed + index)
        if time.monotonic() > next_report:
            next_report += 60
            elapsed = time.monotonic() - start
            print(
                f"[{elapsed:7.0f} s] {tally.inputs} inputs, {tally.inputs / elapsed:.1f}/s, "
                f"{dict(tally.outcomes)}, {len(tally.failures)} failure classes",
                file=sys.stderr,
                flush=True,
            )
    tally.outcomes["seconds"] = round(time.monotonic() - start)
    return tally


def save_reproducers(tally: Tally, directory: Path) -> dict[str, str]:
    """Each failure class's smallest input as a `.loss` file, its detail beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    saved = {}
    for key, found in tally.failures.items():
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        path = directory / f"{tally.mode}-{digest}.loss"
        path.write_bytes(found.reproducer)
        path.with_suffix(".txt").write_text(f"{key}\n\n{found.detail}", encoding="utf-8")
        saved[key] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("front-end", "valid"))
    parser.add_argument("--inputs", type=int, default=300_000, help="most inputs to try")
    parser.add_argument("--seconds", type=float, default=1500, help="most wall time to run")
    parser.add_argument("--seed", type=int, default=0, help="first seed (input i uses seed + i)")
    parser.add_argument("--timeout", type=float, default=0, help="per-input limit (s)")
    parser.add_argument("--crashes", type=Path, default=ROOT / "fuzz" / "crashes")
    parser.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET, help="`valid`'s")
    options = parser.parse_args(argv)
    timeout = options.timeout or (20.0 if options.mode == "front-end" else 180.0)
    tally = run(
        options.mode, options.inputs, options.seconds, options.seed, timeout, options.target
    )
    saved = save_reproducers(tally, options.crashes.resolve())
    seconds = tally.outcomes.pop("seconds")
    summary = {
        "mode": tally.mode,
        "target": options.target,
        "seeds": [options.seed, options.seed + tally.inputs - 1],
        "inputs": tally.inputs,
        "seconds": seconds,
        "inputs_per_second": round(tally.inputs / max(seconds, 1), 2),
        "outcomes": dict(tally.outcomes),
        "error_codes": dict(tally.codes.most_common()),
        "failure_classes": [
            {"class": key, "count": found.count, "reproducer": saved[key], "seeds": found.seeds}
            for key, found in sorted(tally.failures.items(), key=lambda item: -item[1].count)
        ],
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
