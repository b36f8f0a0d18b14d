"""keras_skipae.recipes: schema validation, --set overrides, and a whole tiny run."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import keras_skipae as ks
from keras_skipae import atomic, recipes
from keras_skipae.recipes import runner


def write_tiny_data(directory: Path, n_train: int = 96, n_test: int = 32, size: int = 16, seed: int = 0) -> Path:
    """A 4-class npz of small grayscale images whose class sets the brightness of one quadrant."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = np.arange(n) % 4
        images = rng.integers(0, 60, size=(n, size, size, 1))
        half = size // 2
        for i, c in enumerate(labels):
            r, q = divmod(int(c), 2)
            images[i, r * half:(r + 1) * half, q * half:(q + 1) * half] += 180
        return images.astype("uint8"), labels.astype("int32")

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    path = Path(directory) / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def tiny_recipe(data_path: Path, pretrain_epochs: int = 2, finetune_epochs: int = 2) -> dict:
    """A three-stage recipe that trains in seconds."""
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"source": f"npz:{data_path}", "labels_per_class": 8, "val_fraction": 0.25},
        "model": {"preset": "tiny", "overrides": {"widths": [4, 8], "head_width": 8}},
        "stages": {
            "pretrain": {"kind": "pretrain", "train_on": "all", "epochs": pretrain_epochs, "batch_size": 16,
                         "checkpoint_every": 1},
            "finetune": {"kind": "finetune", "init": "pretrain", "train_on": "labelled", "epochs": finetune_epochs,
                         "batch_size": 8},
            "scratch": {"kind": "finetune", "init": None, "train_on": "labelled", "epochs": finetune_epochs,
                        "batch_size": 8},
        },
        "summary": ["finetune", "scratch"],
    }


def write_tiny_recipe(directory: Path, **kwargs) -> Path:
    directory = Path(directory)
    data = write_tiny_data(directory)
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(data, **kwargs), sort_keys=False))
    return path


@pytest.fixture
def raw(tmp_path):
    return tiny_recipe(write_tiny_data(tmp_path))


def _error(raw) -> str:
    with pytest.raises(recipes.RecipeError) as info:
        recipes.validate(raw, origin="tiny.yaml")
    return str(info.value)


def test_a_typo_in_a_key_names_the_path_and_the_allowed_keys(raw):
    raw["stages"]["pretrain"]["epoch"] = 3
    message = _error(raw)
    assert "stages.pretrain.epoch: unknown key (did you mean 'epochs'?)" in message
    assert "allowed keys here: kind, model, init" in message


def test_a_negative_learning_rate_fails_with_its_path(raw):
    raw["stages"]["finetune"]["optimizer"] = {"learning_rate": -0.1}
    assert "stages.finetune.optimizer.learning_rate: Input should be greater than 0 (got -0.1)" in _error(raw)


def test_a_missing_data_path_fails_before_anything_runs(raw, tmp_path):
    raw["data"]["source"] = f"folder:{tmp_path / 'nowhere'}"
    message = _error(raw)
    assert message.startswith("data.source: no usable source")
    assert "nowhere' does not exist" in message


def test_wrong_types_ranges_and_references_are_reported(raw):
    raw["stages"]["pretrain"]["batch_size"] = "lots"
    raw["data"]["val_fraction"] = 1.5
    raw["trainer"] = {"strategy": "gpu"}
    message = _error(raw)
    assert "stages.pretrain.batch_size: Input should be a valid integer" in message
    assert "data.val_fraction: Input should be less than 1" in message
    assert "trainer.strategy: Input should be 'auto', 'mirrored', 'multi_worker', 'tpu' or 'one_device'" in message
    bad = tiny_recipe(Path("x.npz"))
    bad["stages"]["scratch"]["init"] = "pretrian"
    with pytest.raises(recipes.RecipeError, match="stages.scratch.init: 'pretrian' is not an earlier stage"):
        recipes.validate(bad, check_paths=False)
    bad = tiny_recipe(Path("x.npz"))
    bad["model"]["overrides"]["widthz"] = [4]
    with pytest.raises(recipes.RecipeError, match=r"unknown architecture field\(s\) \['widthz'\]"):
        recipes.validate(bad, check_paths=False)


def test_set_overrides_reach_stages_and_sections(raw):
    recipes.apply_overrides(raw, ["pretrain.epochs=5", "finetune.optimizer.name=sgd", "data.val_fraction=0.5",
                                  "seed=3", "model.overrides.skips=false"])
    recipe = recipes.validate(raw)
    assert recipe.stages["pretrain"].epochs == 5
    assert recipe.stages["finetune"].optimizer.name == "sgd"
    assert recipe.data.val_fraction == 0.5 and recipe.seed == 3
    assert recipe.model.overrides["skips"] is False
    with pytest.raises(recipes.RecipeError, match="expected KEY.PATH=VALUE"):
        recipes.apply_overrides(raw, ["pretrain.epochs"])
    with pytest.raises(recipes.RecipeError, match="stages.pretrain.epochs is a value, not a section"):
        recipes.apply_overrides(raw, ["pretrain.epochs.x=1"])


def test_every_shipped_recipe_is_valid():
    shipped = sorted(recipes.RECIPES_DIR.glob("*.yaml"))
    assert {"quickstart", "ablation_noskip"} <= {p.stem for p in shipped}
    kinds = {}
    for path in shipped:
        kind = yaml.safe_load(path.read_text()).get("kind", "run")
        kinds[path.stem] = kind
        recipe = recipes.load_recipe(path, check_paths=False, kind=kind)  # study and tune recipes too
        if kind != "run":
            assert recipe.quick_version().name == recipe.name, f"{path.name}: its quick: section validates"
        assert recipe.name == path.stem
        header = path.read_text().splitlines()[0]
        assert header.startswith(f"# {path.stem} "), f"{path.name} starts with a '# name — purpose' header"
        assert "Expected cost" in path.read_text(), f"{path.name} states its expected cost"
    assert kinds["pitfall_fashion_mnist"] == "study" and kinds["tune_fashion_mnist"] == "tune"


def test_a_tiny_run_writes_the_run_directory_and_resumes_finished_stages(tmp_path):
    recipe_path = write_tiny_recipe(tmp_path)
    lines = []
    results = recipes.run(recipe_path, run_dir=tmp_path / "run", echo=lines.append)
    run = tmp_path / "run"
    assert list(results["stages"]) == ["pretrain", "finetune", "scratch"]
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    pre = on_disk["stages"]["pretrain"]
    assert pre["kind"] == "autoencoder" and pre["model"] == "pretrain/model.keras"
    assert {"mse", "psnr", "ssim"} <= set(pre["metrics"])
    fine = on_disk["stages"]["finetune"]
    assert fine["kind"] == "classifier" and {"accuracy"} <= set(fine["metrics"])
    assert fine["encoder_from"]["copied"] == 4
    for path in ("recipe.yaml", "environment.json", "pretrain/model.keras", "pretrain/checkpoints/best.keras",
                 "pretrain/checkpoints/last.keras", "pretrain/checkpoints/epoch_001.keras",
                 "pretrain/checkpoints/epoch_002.keras", "pretrain/history.csv", "pretrain/logs",
                 "finetune/model.keras", "scratch/history.csv"):
        assert (run / path).exists(), path
    env = json.loads((run / "environment.json").read_text())
    assert env["seed"] == 0 and env["versions"]["tensorflow"] and "git" in env
    threads = env["threads"]  # what TensorFlow's pools run with, recorded (auto: one thread per usable CPU)
    assert threads["requested"] == {"intra_op": "auto", "inter_op": "auto"} and threads["intra_op_threads"] >= 1
    from tensorflow.python.util import _pywrap_util_port  # whether this process runs TensorFlow's oneDNN kernels

    assert threads["onednn"] is bool(_pywrap_util_port.IsMklEnabled())
    resolved = recipes.validate(yaml.safe_load((run / "recipe.yaml").read_text()))
    assert resolved.stages["pretrain"].epochs == 2
    model = ks.load(run / "finetune/model.keras")
    assert model.arch.input_shape == (16, 16, 1) and model.arch.num_classes == 4
    assert model.arch.mean != (0.0,), "the dataset's statistics are recorded in the model"
    assert any("metric" in line and "finetune" in line and "scratch" in line for line in lines)

    lines.clear()
    again = recipes.run(recipe_path, run_dir=run, echo=lines.append)
    assert again["stages"] == results["stages"]
    assert sum("already complete" in line for line in lines) == 3

    metrics = recipes.evaluate_model(run, stage="scratch")
    assert metrics["accuracy"] == pytest.approx(results["stages"]["scratch"]["metrics"]["accuracy"])
    # the auto-encoder's figures depend on the fixed evaluation noise: the run's seed and batch size reproduce them
    ae = recipes.evaluate_model(run, stage="pretrain")
    assert ae["mse"] == pytest.approx(results["stages"]["pretrain"]["metrics"]["mse"], rel=1e-5)


@pytest.mark.slow  # MirroredStrategy itself is covered in CI by test_train.py and test_joint.py
def test_a_recipe_runs_mirrored_over_two_logical_cpus(tmp_path):
    recipe_path = write_tiny_recipe(tmp_path, pretrain_epochs=1, finetune_epochs=1)
    results = recipes.run(recipe_path, run_dir=tmp_path / "run", strategy="mirrored", only=["pretrain", "scratch"],
                          echo=lambda line: None)
    assert list(results["stages"]) == ["pretrain", "scratch"]
    env = json.loads((tmp_path / "run/environment.json").read_text())
    assert env["replicas"] == 2 and env["strategy"] == "mirrored"


@pytest.mark.slow  # a known limitation pinned as a strict xfail: make test-slow checks it still fails
@pytest.mark.xfail(strict=True, reason=(
    "train.Trainer.fit: under an explicit strategy (one_device, mirrored) Keras's symbolic build draws one batch "
    "from the training pipeline before epoch 1 (TensorFlowTrainer._maybe_symbolic_build), so the pipeline's "
    "reshuffling and per-batch noise start one iteration later than under the default strategy (auto on a CPU) "
    "or multi_worker (where the trainer unsets the model's strategy): the same recipe trains on other batches"))
def test_the_strategy_does_not_change_what_a_stage_trains_on(tmp_path):
    recipe_path = write_tiny_recipe(tmp_path, pretrain_epochs=1)
    weights = {}
    for strategy in ("auto", "one_device"):
        recipes.run(recipe_path, run_dir=tmp_path / strategy, strategy=strategy, only=["pretrain"],
                    echo=lambda line: None)
        weights[strategy] = ks.load(tmp_path / strategy / "pretrain/model.keras").get_weights()
    for a, b in zip(weights["auto"], weights["one_device"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_finetune_without_its_pretrain_stage_says_what_to_run(tmp_path):
    recipe_path = write_tiny_recipe(tmp_path)
    with pytest.raises(recipes.RecipeError, match="stage 'pretrain' has no model at .*run that stage first"):
        recipes.run(recipe_path, run_dir=tmp_path / "run", only=["finetune"], echo=lambda line: None)


def test_find_recipe_lists_the_shipped_ones():
    assert recipes.find_recipe("quickstart") == recipes.RECIPES_DIR / "quickstart.yaml"
    with pytest.raises(recipes.RecipeError, match="shipped recipes: .*quickstart"):
        recipes.find_recipe("quickstrat")


def _one_stage_recipe(tmp_path, stage: dict, **data) -> Path:
    raw = tiny_recipe(write_tiny_data(tmp_path))
    raw["stages"] = {"pretrain": {**raw["stages"]["pretrain"], **stage}}
    raw["data"].update(data)
    raw["summary"] = []
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_resumed_run_without_restore_best_reports_its_last_epoch(tmp_path, monkeypatch):
    import csv

    import keras

    from keras_skipae.train import Trainer

    recipe = _one_stage_recipe(tmp_path, {"epochs": 3, "restore_best": False, "checkpoint_every": None})
    original_fit = Trainer._fit

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt("simulated crash during epoch 3")

    def crashing_fit(model, train_ds, val_ds, epochs, steps_per_epoch, callbacks, verbose):
        return original_fit(model, train_ds, val_ds, epochs, steps_per_epoch, callbacks + [Crash()], verbose)

    monkeypatch.setattr(Trainer, "_fit", staticmethod(crashing_fit))
    with pytest.raises(KeyboardInterrupt):
        recipes.run(recipe, run_dir=tmp_path / "run", echo=lambda line: None)
    monkeypatch.setattr(Trainer, "_fit", staticmethod(original_fit))

    calls = []
    original_pipeline = runner.pipeline_for

    def spy(kind, ds, arch, batch_size, *, training, seed, cache=True, **kwargs):
        calls.append({"training": training, "cache": cache})
        return original_pipeline(kind, ds, arch, batch_size, training=training, seed=seed, cache=cache, **kwargs)

    monkeypatch.setattr(runner, "pipeline_for", spy)
    results = recipes.run(recipe, run_dir=tmp_path / "run", echo=lambda line: None)
    with open(tmp_path / "run/pretrain/history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    entry = results["stages"]["pretrain"]
    assert entry["best_epoch"] is None
    assert entry["val_metrics"]["mse"] == pytest.approx(float(rows[2]["val_mse"])), "epoch 3's row, not epoch 1's"
    # the TensorBoard sample images come from an uncached view (take(1) would drop a partial cache)
    assert {"training": False, "cache": False} in calls
    assert all(c["cache"] for c in calls if c["training"])


def test_evaluate_uses_the_recipes_label_map(tmp_path):
    from click.testing import CliRunner

    from keras_skipae.cli import main

    raw = tiny_recipe(write_tiny_data(tmp_path))
    raw["stages"] = {"scratch": {**raw["stages"]["scratch"], "epochs": 1}}
    raw["summary"] = []
    raw["data"]["label_map"] = {0: 0, 1: 0, 2: 1, 3: 1}
    path = tmp_path / "mapped.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    results = recipes.run(path, run_dir=tmp_path / "run", echo=lambda line: None)
    assert ks.load(tmp_path / "run/scratch/model.keras").arch.num_classes == 2
    shown = CliRunner().invoke(main, ["evaluate", str(tmp_path / "run")])
    assert shown.exit_code == 0, shown.output
    accuracy = float(shown.output.split("accuracy")[1].split()[0])
    assert accuracy == pytest.approx(results["stages"]["scratch"]["metrics"]["accuracy"], abs=1e-4)


def test_pipeline_corruption_is_recorded_and_used_by_the_evaluate_stage(tmp_path):
    raw = tiny_recipe(write_tiny_data(tmp_path))
    raw["stages"] = {
        "pretrain": {**raw["stages"]["pretrain"], "epochs": 1, "corruption": "pipeline", "checkpoint_every": None},
        "check": {"kind": "evaluate", "init": "pretrain", "batch_size": 16},
    }
    raw["summary"] = []
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    results = recipes.run(path, run_dir=tmp_path / "run", echo=lambda line: None)
    arch = ks.load(tmp_path / "run/pretrain/model.keras").arch
    assert arch.corruption == "none", "with corruption: pipeline the model itself does not corrupt"
    pre, check = results["stages"]["pretrain"], results["stages"]["check"]
    assert pre["corruption"]["where"] == "pipeline" and pre["corruption"]["kind"] != "none"
    assert pre["corruption"]["level"] > 0
    assert check["corruption"] == pre["corruption"]
    # same data, same noise, same model: the evaluate stage measures what the pretrain stage measured
    assert check["metrics"]["mse"] == pytest.approx(pre["metrics"]["mse"], rel=1e-5)
    assert json.loads((tmp_path / "run/metrics.json").read_text())["stages"]["pretrain"]["corruption"] == \
        pre["corruption"]


def test_resuming_a_run_directory_with_a_changed_recipe_is_refused(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    recorded = recipes.load_recipe(recipe)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recorded.model_dump(mode="json"), sort_keys=False))
    with pytest.raises(recipes.RecipeError) as info:
        recipes.run(recipe, overrides=["pretrain.epochs=3", "seed=1"], run_dir=run, echo=lambda line: None)
    message = str(info.value)
    assert "differing keys: seed: 0 -> 1; stages.pretrain.epochs: 2 -> 3" in message
    assert "new --run-dir" in message
    assert not (run / "metrics.json").exists(), "nothing ran"
    assert recipes.validate(yaml.safe_load((run / "recipe.yaml").read_text())).stages["pretrain"].epochs == 2


def test_the_recorded_recipe_is_written_atomically(tmp_path, monkeypatch):
    recipe = write_tiny_recipe(tmp_path)
    run = tmp_path / "run"
    replaced = []
    original = atomic.os.replace

    def spy(src, dst):
        replaced.append(Path(dst).name)
        return original(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    with pytest.raises(recipes.RecipeError):
        recipes.run(recipe, run_dir=run, only=["finetune"], echo=lambda line: None)
    assert "recipe.yaml" in replaced
    assert recipes.validate(yaml.safe_load((run / "recipe.yaml").read_text())) == recipes.load_recipe(recipe)
    assert not list(run.glob(".*.tmp"))


def test_a_recipe_trains_a_segmenter_on_drive_as_distributed(tmp_path):
    """The user's own layout through documented recipe keys: mask-name patterns, binary masks -> 2 classes."""
    from keras_skipae.data.testing import write_drive

    root = write_drive(tmp_path / "DRIVE", {"training": 6, "test": 2})
    recipe = recipes.validate({
        "name": "drive", "seed": 0,
        "data": {"source": f"segfolder:{root}", "train_split": "training", "eval_split": "test",
                 "val_fraction": 0.0, "images": "{split}/images/{stem}_{split}.tif",
                 "masks": "{split}/1st_manual/{stem}_manual1.gif", "label_map": {255: 1}},
        "model": {"preset": "tiny", "overrides": {"widths": [4, 8]}},
        "stages": {"seg": {"kind": "finetune", "train_on": "all", "val_on": "none", "epochs": 1, "batch_size": 2}},
    })
    results = recipes.run(recipe, run_dir=tmp_path / "run", echo=lambda line: None)
    seg = results["stages"]["seg"]
    assert seg["kind"] == "segmenter" and set(seg["metrics"]) >= {"mean_iou", "pixel_accuracy"}
    assert ks.load(tmp_path / "run" / "seg" / "model.keras").arch.num_classes == 2, "vessel / background, not 256"


def test_a_stage_without_evaluation_says_so_and_shows_its_validation(tmp_path):
    raw = tiny_recipe(write_tiny_data(tmp_path), pretrain_epochs=1)
    raw["stages"] = {"pretrain": {**raw["stages"]["pretrain"], "eval_on": "none"}}
    raw["summary"] = []
    path = tmp_path / "noeval.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    lines = []
    recipes.run(path, run_dir=tmp_path / "run", echo=lines.append)
    (line,) = [line for line in lines if line.startswith("[pretrain] autoencoder")]
    assert "not evaluated (eval_on: none); validation loss" in line and "psnr" in line
