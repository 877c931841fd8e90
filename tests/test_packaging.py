"""The wheel ships everything: built, installed into a fresh venv, `lossdsl check` runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DEPENDENCIES = ("lark", "sympy", "numpy", "tensorflow", "keras")
"""The top-level modules of lossdsl's runtime dependencies (pyproject's `dependencies`)."""


def dependency_dirs() -> list[str]:
    """The directories this interpreter imports lossdsl's dependencies from.

    Its own site-packages (purelib and platlib), and the directory of each dependency in
    case one lives elsewhere (a user site): never the *base* interpreter's, which a venv
    made with `system_site_packages=True` would see instead of the running venv's.
    """
    paths = sysconfig.get_paths()
    found = [paths["purelib"], paths["platlib"]]
    for name in DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        found.append(str(Path(spec.origin).parent.parent))
    return list(dict.fromkeys(found))


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
    # An isolated venv: the package comes only from the wheel, installed into its own
    # site-packages. The dependencies (TensorFlow is large) are not reinstalled: a .pth
    # file, written after the install, puts the running interpreter's directories for
    # them after that site-packages.
    # Plain paths in a .pth are not site dirs, so their own .pth files (this checkout's
    # editable install among them) are not run.
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    bin_dir = env_dir / "bin"
    site_packages = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    assert site_packages.is_dir(), site_packages
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(bin_dir / "python")),
            *("install", "-q", "--no-deps", "--no-index", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    # Only now the dependencies: pip run before would see this checkout's own lossdsl
    # through them (a plain install in CI) and call the wheel "already satisfied".
    (site_packages / "_lossdsl_test_dependencies.pth").write_text(
        "".join(f"{directory}\n" for directory in dependency_dirs()), encoding="utf-8"
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
    assert str(site_packages) in where.stdout, where.stdout
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
