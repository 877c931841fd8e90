"""The wheel ships everything: built, installed into a fresh venv, `lossdsl check` runs."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv_and_checks_an_example(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("lossdsl-*.whl")
    env_dir = tmp_path / "venv"
    # The dependencies (TensorFlow is large) come from this interpreter's site-packages;
    # the package itself comes only from the wheel.
    venv.create(env_dir, with_pip=True, system_site_packages=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    spec = tmp_path / "weighted_ce.loss"
    spec.write_text(
        "input y: onehot\n"
        "input p: prob\n"
        "param w: nonneg = [1.0, 2.5, 4.0]\n"
        "loss weighted_ce = mean(w[class(y)] * -sum(y * log(clip(p))))\n",
        encoding="utf-8",
    )
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import lossdsl; print(lossdsl.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert str(env_dir) in where.stdout, where.stdout
    checked = subprocess.run(
        [str(bin_dir / "lossdsl"), "check", str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    grammar = subprocess.run(
        [str(bin_dir / "lossdsl"), "check", str(tmp_path / "missing.loss")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert grammar.returncode == 2
