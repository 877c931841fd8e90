"""A model compiled with a lossdsl loss saves to `.keras` and loads back in a new process with
no `custom_objects`: same predictions, same loss, params and spec intact; a saved spec that no
longer compiles fails with a LossSpecError naming the compiler version that saved it."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import pytest
from keras_harness import (
    BATCH,
    FOCAL,
    dense_classifier,
    last_json_line,
    make_dataset,
    run_python,
    subprocess_env,
    train,
)

import lossdsl
from lossdsl.cli import main

SQUARED = "input y: target\ninput p: real\nloss shared = mean(square(p - y))\n"
ABSOLUTE = "input y: target\ninput p: real\nloss shared = mean(abs(p - y))\n"

# The child imports only what `imports` says (lossdsl, or a generated module) before
# `keras.models.load_model`; for each saved NAME.keras it reads the batch NAME.npz (x, and y
# or y_OUTPUT per output) and reports predictions, `evaluate` and the reloaded loss's config.
RELOAD_AND_REPORT = """
import json, sys
import numpy as np
import keras
{imports}
report = {{}}
for path in sys.argv[1:]:
    model = keras.models.load_model(path)
    batch = np.load(path.removesuffix(".keras") + ".npz")
    outputs = {{k[2:]: batch[k] for k in batch.files if k.startswith("y_")}}
    targets = outputs or batch["y"]
    report[path] = {{
        "predictions": keras.tree.map_structure(
            lambda array: array.tolist(), model.predict(batch["x"], verbose=0)
        ),
        "evaluate": {{
            name: float(value)
            for name, value in model.evaluate(
                batch["x"], targets, verbose=0, return_dict=True
            ).items()
        }},
        "loss_config": keras.saving.serialize_keras_object(model.loss),
    }}
print(json.dumps(report))
"""

Targets = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Reloaded:
    """A saved model, the batch it was checked on, and what the new process reported."""

    model: keras.Model
    features: np.ndarray
    targets: Targets
    report: dict[str, Any]

    def assert_matches(self) -> None:
        """The reloaded model predicts and evaluates as the original does."""
        predictions = by_output(self.model.predict(self.features, verbose=0))
        reloaded_predictions = by_output(self.report["predictions"])
        assert reloaded_predictions.keys() == predictions.keys()
        for name, original in predictions.items():
            np.testing.assert_allclose(reloaded_predictions[name], original, rtol=1e-6, atol=1e-7)
        expected = self.model.evaluate(self.features, self.targets, verbose=0, return_dict=True)
        assert self.report["evaluate"].keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_allclose(self.report["evaluate"][name], value, rtol=1e-6)


def by_output(predictions: Any) -> dict[str, Any]:
    """A model's predictions by output name (`""` for a single output)."""
    return predictions if isinstance(predictions, dict) else {"": predictions}


def reload_in_new_process(
    folder: Path, models: dict[str, tuple[keras.Model, Targets]], imports: str
) -> dict[str, Reloaded]:
    """Save each model with its batch (the first BATCH samples), load them all in one fresh
    Python that runs only `imports` first, and pair each model with its report."""
    features = make_dataset().features[:BATCH]
    paths = {}
    for name, (model, targets) in models.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
        by_target = targets if isinstance(targets, dict) else {"": targets}
        np.savez(
            folder / f"{name}.npz",
            x=features,
            **{f"y_{output}".rstrip("_"): value for output, value in by_target.items()},
        )
    done = run_python(
        ["-c", RELOAD_AND_REPORT.format(imports=imports), *map(str, paths.values())],
        cwd=folder,
        env=subprocess_env(PYTHONPATH=str(folder)),
    )
    reports = last_json_line(done.stdout)
    return {
        name: Reloaded(model, features, targets, reports[str(paths[name])])
        for name, (model, targets) in models.items()
    }


def two_output_model() -> keras.Model:
    """A regression model with outputs `a` and `b`, fixed weights."""
    inputs = keras.Input(shape=(4,))
    outputs = {
        "a": keras.layers.Dense(3, name="a")(inputs),
        "b": keras.layers.Dense(3, name="b")(inputs),
    }
    model = keras.Model(inputs, outputs)
    model.set_weights(dense_classifier(None).get_weights() * 2)
    return model


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reloaded]:
    """Models compiled with lossdsl losses, reloaded together in one new process."""
    data = make_dataset()
    focal = dense_classifier("softmax")
    train(focal, lossdsl.load(FOCAL, gamma=3.0), data.features, data.onehot, epochs=1)
    both = two_output_model()
    both.compile(loss={"a": lossdsl.load(SQUARED), "b": lossdsl.load(ABSOLUTE)})
    squared, absolute = dense_classifier(None), dense_classifier(None)
    squared.compile(loss=lossdsl.load(SQUARED))
    absolute.compile(loss=lossdsl.load(ABSOLUTE))
    onehot, real = data.onehot[:BATCH], data.real[:BATCH]
    models: dict[str, tuple[keras.Model, Targets]] = {
        "focal": (focal, onehot),
        "both": (both, {"a": real, "b": real}),
        "squared": (squared, real),
        "absolute": (absolute, real),
    }
    return reload_in_new_process(tmp_path_factory.mktemp("reload"), models, "import lossdsl")


@pytest.mark.slow
def test_reloads_in_a_new_process_with_overridden_params(reloaded: dict[str, Reloaded]) -> None:
    focal = reloaded["focal"]
    focal.assert_matches()
    config = focal.report["loss_config"]["config"]
    assert (config["gamma"], config["alpha"], config["name"]) == (3.0, 0.25, "focal")
    # gamma=3 is what the reloaded loss computes, not the spec's default gamma=2.
    default_gamma = lossdsl.load(FOCAL)(focal.targets, focal.model(focal.features))
    assert not np.isclose(focal.report["evaluate"]["loss"], default_gamma, rtol=1e-3)


@pytest.mark.slow
def test_specs_sharing_a_loss_name_do_not_clash(reloaded: dict[str, Reloaded]) -> None:
    assert lossdsl.load(SQUARED).name == lossdsl.load(ABSOLUTE).name == "shared"
    for name in ("both", "squared", "absolute"):
        reloaded[name].assert_matches()
    both = reloaded["both"]
    predictions = both.model.predict(both.features, verbose=0)
    real = both.targets["a"]
    np.testing.assert_allclose(
        both.report["evaluate"]["a_loss"], np.mean(np.square(predictions["a"] - real)), rtol=1e-5
    )
    np.testing.assert_allclose(
        both.report["evaluate"]["b_loss"], np.mean(np.abs(predictions["b"] - real)), rtol=1e-5
    )
    squared, absolute = reloaded["squared"].report, reloaded["absolute"].report
    assert squared["loss_config"]["config"]["spec"] == SQUARED
    assert absolute["loss_config"]["config"]["spec"] == ABSOLUTE


@pytest.fixture
def standalone_module(tmp_path: Path) -> Iterator[tuple[ModuleType, Path]]:
    """`lossdsl compile focal.loss -o focal_standalone.py`, imported from a temp folder."""
    spec = tmp_path / "focal.loss"
    spec.write_text(FOCAL, encoding="utf-8")
    assert main(["compile", str(spec), "-o", str(tmp_path / "focal_standalone.py")]) == 0
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("focal_standalone"), tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("focal_standalone", None)


@pytest.mark.slow
def test_standalone_module_class_reloads_once_imported(
    standalone_module: tuple[ModuleType, Path],
) -> None:
    module, folder = standalone_module
    data = make_dataset()
    model = dense_classifier("softmax")
    train(model, module.Focal(gamma=3.0), data.features, data.onehot, epochs=1)
    # The child imports the generated module only, not lossdsl.
    standalone = reload_in_new_process(
        folder, {"standalone": (model, data.onehot[:BATCH])}, "import focal_standalone"
    )["standalone"]
    standalone.assert_matches()
    assert standalone.report["loss_config"]["config"]["gamma"] == 3.0


def test_standalone_class_refuses_another_keras_backend_at_construction(
    standalone_module: tuple[ModuleType, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = standalone_module
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError) as failure:
        module.Focal(gamma=3.0)
    assert str(failure.value) == (
        "Focal was generated by lossdsl for Keras's TensorFlow backend, but Keras uses 'jax'. "
        "Set the environment variable KERAS_BACKEND=tensorflow before importing keras."
    )
    monkeypatch.undo()
    assert module.Focal(gamma=3.0).gamma == 3.0


@pytest.mark.parametrize("gamma", ["2.0", None, [2.0], True, float("nan"), 10**400])
def test_standalone_class_refuses_a_param_that_is_not_one_number(
    standalone_module: tuple[ModuleType, Path], gamma: object
) -> None:
    module, _ = standalone_module
    with pytest.raises(ValueError) as failure:
        module.Focal(gamma=gamma)
    assert str(failure.value) == (
        "Invalid value for argument `gamma`. Expected a value in [0, inf). "
        f"Received: gamma={gamma!r}"
    )


def test_standalone_class_repr_shows_name_params_and_reduction(
    standalone_module: tuple[ModuleType, Path],
) -> None:
    module, _ = standalone_module
    loss = module.Focal(gamma=3.0, name="mine", reduction="sum")
    assert repr(loss) == "<Focal name=mine, gamma=3.0, alpha=0.25, reduction=sum>"


def replace_in_keras_file(source: Path, target: Path, replacements: dict[str, str]) -> int:
    """Copy a `.keras` zip, replacing string values of its config.json (exact match after
    stripping); returns how many values were replaced."""
    replaced = 0

    def edit(value: object) -> object:
        nonlocal replaced
        match value:
            case dict():
                return {key: edit(item) for key, item in value.items()}
            case list():
                return [edit(item) for item in value]
            case str() if value.strip() in replacements:
                replaced += 1
                return replacements[value.strip()]
        return value

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as edited:
        for entry in original.infolist():
            content = original.read(entry)
            if entry.filename == "config.json":
                content = json.dumps(edit(json.loads(content))).encode()
            edited.writestr(entry, content)
    return replaced


def test_saved_spec_that_no_longer_compiles_names_the_saving_version(tmp_path: Path) -> None:
    model = dense_classifier("softmax")
    model.compile(loss=lossdsl.load(FOCAL))
    saved, edited = tmp_path / "saved.keras", tmp_path / "edited.keras"
    model.save(saved)
    version = importlib.metadata.version("lossdsl")
    bad_spec = FOCAL.replace("log(q)", "lg(q)")
    replaced = replace_in_keras_file(
        saved, edited, {FOCAL.strip(): bad_spec, version: "0.0.1.dev7"}
    )
    assert replaced == 2, "the saved config holds the spec text and the lossdsl version"
    with (
        pytest.raises(lossdsl.LossSpecError, match=r"0\.0\.1\.dev7") as failure,
        pytest.warns(lossdsl.LossSpecWarning, match="edited after saving"),
    ):
        keras.models.load_model(edited)
    assert "lg" in str(failure.value)


def test_a_saved_model_with_an_edited_spec_warns_and_a_malformed_one_is_a_value_error(
    tmp_path: Path,
) -> None:
    spec_path = tmp_path / "focal.loss"
    spec_path.write_text(FOCAL, encoding="utf-8")
    model = dense_classifier("softmax")
    model.compile(loss=lossdsl.load(spec_path))
    saved, edited, malformed = (tmp_path / f"{name}.keras" for name in ("saved", "e", "m"))
    model.save(saved)
    stronger = FOCAL.replace("alpha * (1 - q)^gamma", "alpha * (1 - q)^(2 * gamma)")
    assert stronger != FOCAL
    assert replace_in_keras_file(saved, edited, {FOCAL.strip(): stronger}) == 1
    with pytest.warns(lossdsl.LossSpecWarning, match="`focal` was edited after saving"):
        reloaded = keras.models.load_model(edited)
    assert reloaded.loss.spec == stronger
    assert replace_in_keras_file(saved, malformed, {"focal.loss": "focal\n.loss"}) == 1
    with pytest.raises(ValueError, match=r"`spec_file`.*Received: spec_file='focal\\n\.loss'"):
        keras.models.load_model(malformed)
