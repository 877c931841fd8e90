"""Smoke runs of the benchmark scripts at tiny sizes: they run and write complete JSON.

The benchmarks' numbers are not checked here (timings are not tests); benchmarks/README.md
says how to run them for real.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_library.py imports bench_losses.py's helpers, as it does when run as a script."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_bench_losses_runs_both_modes_and_writes_every_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_script("bench_losses")
    out = tmp_path / "bench.json"
    arguments = ["--cases", "ce_logits", "--shapes", "8x4", "--repeats", "2", "--warmup", "1"]
    assert bench.main([*arguments, "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    variants = {(row["variant"], row["jit_compile"]) for row in report["timings"]}
    for jit_compile in (False, True):
        for variant in ("lossdsl", "keras", "fused", "hand-written", "floor"):
            assert (variant, jit_compile) in variants
    assert ("lossdsl-plain", True) in variants and ("lossdsl-plain", False) not in variants
    assert all(row["median_ms"] > 0 for row in report["timings"])
    assert len(report["summary"]) == 2
    assert {row["variant"] for row in report["accuracy"]} == {"lossdsl", "keras"}
    assert all(math.isfinite(row["value_error"]) for row in report["accuracy"])
    assert {row["dtype"] for row in report["finiteness"]} == {"float32", "float16"}
    assert "Compiled loss against its peers" in capsys.readouterr().out


def test_bench_losses_rejects_an_unknown_case() -> None:
    bench = load_script("bench_losses")
    with pytest.raises(SystemExit):
        bench.parse_arguments(["--cases", "nope"])


def test_compile_speed_times_stages_and_a_generated_spec(tmp_path: Path) -> None:
    compile_speed = load_script("compile_speed")
    out = tmp_path / "speed.json"
    spec = BENCHMARKS.parent / "examples" / "mean_squared_error.loss"
    arguments = [str(spec), "--repeats", "1", "--full-repeats", "1", "--terms", "4"]
    assert compile_speed.main([*arguments, "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    names = [row["spec"] for row in report["specs"]]
    assert names == ["mean_squared_error.loss", "many_terms_4.loss"]
    for row in report["specs"]:
        assert set(row["stages"]) == {"parse", "check", "domains", "lower", "print", "write"}
        # One run each on a loaded CI machine: the times are checked for shape, not size.
        assert row["full"] > 0 and row["front_end"] > 0
        assert row["verification"] == pytest.approx(row["full"] - row["front_end"])


def test_many_terms_spec_has_the_requested_number_of_terms() -> None:
    compile_speed = load_script("compile_speed")
    source = compile_speed.many_terms_spec(12)
    assert source.text.count(" * ") == 2 * 12


def test_bench_library_times_each_peer_in_both_modes_and_writes_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_script("bench_library")
    out = tmp_path / "library.json"
    cases = "huber,sparse_categorical_crossentropy_ignore,circle,margin_ranking"
    arguments = ["--quick", "--cases", cases, "--shapes", "8x4", "--repeats", "2"]
    assert bench.main([*arguments, "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    groups = {(row["case"], row["jit_compile"]): row for row in report["groups"]}
    assert len(groups) == 8 == len(report["groups"])
    assert groups["margin_ranking", False]["shape"] == [8, 2]  # the spec's two channels
    assert groups["margin_ranking", False]["ratio_to_keras"] is None  # no Keras built-in
    for row in groups.values():
        assert {"lossdsl", "hand-written"} <= set(row["median_ms"])
        assert row["ratio_to_hand_written"] > 0
        assert max(row["value_error"].values()) <= 1e-4
        assert max(row["gradient_error"].values()) <= 1e-4
    for mode in ("graph", "xla"):
        assert report["summary"][mode]["hand-written"]["groups"] == 4
        assert report["summary"][mode]["keras"]["groups"] == 3
    assert "lossdsl time / peer time" in capsys.readouterr().out


def test_bench_library_reports_the_literature_set_apart(tmp_path: Path) -> None:
    """The specs of benchmarks/specs/literature/ (losses the compiler was not tuned for)
    are timed like the examples and summarised again on their own."""
    bench = load_script("bench_library")
    out = tmp_path / "library.json"
    arguments = ["--quick", "--cases", "wing,huber", "--shapes", "8x4", "--repeats", "2"]
    assert bench.main([*arguments, "--modes", "graph", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert {row["case"]: row["literature"] for row in report["groups"]} == {
        "wing": True,
        "huber": False,
    }
    assert report["summary"]["graph"]["hand-written"]["groups"] == 2
    assert report["summary"]["graph"]["literature"]["groups"] == 1


def test_every_example_spec_has_a_hand_written_version() -> None:
    bench = load_script("bench_library")
    missing = bench.missing_cases()
    assert not missing, (
        f"benchmarks/bench_library.py has no hand-written version of {', '.join(missing)}: "
        "write one (a function named after the spec) and add a Case to CASES"
    )
    assert set(bench.CASES) <= set(bench.example_specs()), "a case whose spec is gone"


@pytest.mark.parametrize(
    "spec", sorted((BENCHMARKS / "specs" / "literature").glob("*.loss")), ids=lambda p: p.stem
)
def test_every_literature_spec_compiles_and_agrees_with_its_hand_written_version(
    spec: Path,
) -> None:
    """The literature set is timed, not otherwise tested: its specs compile with
    verification, and each hand-written version computes the spec's value and gradient
    (bench_library.check_agreement, in graph mode), at a small shape."""
    bench = load_script("bench_library")
    bench.check_agreement(bench.CASES[spec.stem], spec, (8, 4))


def test_bench_library_stops_on_a_spec_without_a_case(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_script("bench_library")
    monkeypatch.delitem(bench.CASES, "poisson")
    with pytest.raises(SystemExit, match=r"no hand-written version .* examples/poisson\.loss"):
        bench.main(["--quick"])


def test_bench_library_rejects_a_hand_written_version_that_disagrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_script("bench_library")

    def huber(y: Any, p: Any, delta: float) -> Any:
        return 1.001 * bench.huber(y, p, delta)

    monkeypatch.setitem(
        bench.CASES, "huber", dataclasses.replace(bench.CASES["huber"], hand_written=huber)
    )
    arguments = ["--cases", "huber", "--shapes", "8x4", "--modes", "xla", "--repeats", "1"]
    assert bench.main([*arguments, "--out", str(tmp_path / "library.json")]) == 1
    error = capsys.readouterr().err
    assert "huber at 8x4: the hand-written version does not compute" in error


@pytest.mark.parametrize(
    ("backend", "framework", "case", "mode"),
    [
        ("jax", "optax", "huber", "xla"),  # JAX runs under jax.jit only
        ("torch", "torch", "sparse_ce_logits", "graph"),  # eager; torch.compile takes minutes
        ("tensorflow", "tensorflow", "bce_logits", "graph"),
    ],
)
def test_bench_backends_times_one_case_in_a_backend_process(
    backend: str, framework: str, case: str, mode: str, tmp_path: Path
) -> None:
    pytest.importorskip(framework)
    bench = load_script("bench_backends")
    out = tmp_path / "backends.json"
    arguments = ["--quick", "--backends", backend, "--cases", case, "--modes", mode]
    arguments += ["--shapes", "8x4", "--repeats", "2"]
    assert bench.main([*arguments, "--out", str(out)]) == 0
    (report,) = json.loads(out.read_text(encoding="utf-8"))["backends"]
    assert report["backend"] == backend
    (summary,) = report["summary"]
    assert summary["compiled_to_native"] > 0 and summary["compiled_to_keras"] > 0
    assert max(summary["value_error"].values()) <= bench.TOLERANCE
    assert {row["variant"] for row in report["timings"]} == {
        "lossdsl",
        "lossdsl-keras",
        "native",
        "keras",
    }
    compiled = [row for row in report["finiteness"] if row["variant"] == "lossdsl"]
    assert {row["dtype"] for row in compiled} == {"float32", "float16", "bfloat16"}
    assert all(row["non_finite"] == 0 and not row["error"] for row in compiled)


def test_bench_backends_stops_when_a_native_loss_disagrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_script("bench_backends")
    framework_native = bench.TensorFlowFramework.native

    def native(self: Any, case: Any) -> Any:
        name, loss = framework_native(self, case)
        return name, lambda y, p: 1.001 * loss(y, p)

    monkeypatch.setattr(bench.TensorFlowFramework, "native", native)
    arguments = ["--worker", "tensorflow", "--cases", "huber", "--shapes", "8x4", "--no-edge"]
    assert bench.main([*arguments, "--out", str(tmp_path / "tensorflow.json")]) == 1
    error = capsys.readouterr().err
    assert "tensorflow huber at 8x4 (graph): native does not compute" in error
