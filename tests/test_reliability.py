"""Nothing lost, nothing mixed: stage commits, self-describing checkpoints, strict resume, reproducible stages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_recipes import tiny_recipe, write_tiny_data

import keras_skipae as ks
from keras_skipae import recipes, train
from keras_skipae.runs import RunDir
from keras_skipae.train import callbacks as cb


def write_recipe(directory: Path, **changes) -> Path:
    raw = tiny_recipe(write_tiny_data(directory))
    raw["trainer"] = {"deterministic": True}
    raw.update(changes)
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_kill_between_the_last_epoch_and_the_commit_retrains_nothing(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path)
    run_dir = tmp_path / "run"
    original = RunDir.commit_stage

    def killed(self, stage, entry, worker=None):
        raise KeyboardInterrupt(f"killed before committing {stage}")

    monkeypatch.setattr(RunDir, "commit_stage", killed)
    with pytest.raises(KeyboardInterrupt):
        recipes.run(recipe, run_dir=run_dir, only=["pretrain"], echo=lambda line: None)
    history_before = (run_dir / "pretrain" / "history.csv").read_text()
    assert (run_dir / "pretrain" / "backup" / "state.json").exists(), "the backup outlives training until the commit"
    monkeypatch.setattr(RunDir, "commit_stage", original)

    epochs_trained = []
    original_fit = train.Trainer._fit

    def counting_fit(model, train_ds, val_ds, epochs, steps_per_epoch, callbacks, verbose):
        history = original_fit(model, train_ds, val_ds, epochs, steps_per_epoch, callbacks, verbose)
        epochs_trained.append(len(history.epoch))
        return history

    monkeypatch.setattr(train.Trainer, "_fit", staticmethod(counting_fit))
    results = recipes.run(recipe, run_dir=run_dir, only=["pretrain"], echo=lambda line: None)
    assert epochs_trained == [0], "every epoch had been trained: the rerun only evaluates and commits"
    assert (run_dir / "pretrain" / "history.csv").read_text() == history_before
    entry = results["stages"]["pretrain"]
    rows = RunDir(run_dir).history("pretrain")
    assert entry["val_metrics"]["mse"] == pytest.approx(rows[max(rows)]["val_mse"])
    assert (run_dir / "pretrain" / "stage.json").exists() and not (run_dir / "pretrain" / "backup").exists()


def test_best_checkpoint_carries_its_own_epoch_so_weights_and_metadata_never_disagree(tmp_path):
    model = ks.build("autoencoder", "tiny", input_shape=(8, 8, 1), widths=(4,))
    model.compile("adam", "mse")
    directory = tmp_path / "checkpoints"
    saver = cb.ModelCheckpoints(directory, monitor="val_loss", mode="min")
    saver.set_model(model)
    saver.on_train_begin()
    saver.on_epoch_end(0, {"val_loss": 0.5})
    saver.on_epoch_end(1, {"val_loss": 0.2})
    assert cb.checkpoint_info(directory / "best.keras")["epoch"] == 2
    # a kill between best.keras and best.json: the sidecar still names epoch 1
    (directory / "best.json").write_text(json.dumps({"monitor": "val_loss", "mode": "min", "value": 0.5, "epoch": 1}))
    resumed = cb.ModelCheckpoints(directory, monitor="val_loss", mode="min")
    resumed.set_model(model)
    resumed.on_train_begin()
    assert (resumed.best_epoch, resumed.best_value) == (2, 0.2), "the file's own record wins"
    assert json.loads((directory / "best.json").read_text())["epoch"] == 2, "and the sidecar is repaired"
    assert ks.load(directory / "best.keras").count_params() == model.count_params(), "still a loadable model"


def test_a_resume_that_would_restore_only_part_of_the_state_is_an_error(tmp_path):
    images = np.random.default_rng(0).random((32, 8, 8, 1)).astype("float32")
    ds = __import__("tensorflow").data.Dataset.from_tensor_slices((images, images)).batch(8)
    trainer = train.Trainer(strategy="auto", seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", "tiny", input_shape=(8, 8, 1), widths=(4,))
        other = ks.build("autoencoder", "tiny", input_shape=(8, 8, 1), widths=(4,))
    trainer.fit(model, ds, None, epochs=1, optimizer={"name": "adam"}, run_dir=tmp_path / "stage", keep_backup=True,
                verbose=0)
    with pytest.raises(ValueError, match=r"cannot resume from the backup .*stage.*backup"):
        # SGD with momentum has other optimizer variables than the Adam state in the backup: Keras only warns
        trainer.fit(other, ds, None, epochs=2, optimizer={"name": "sgd", "momentum": 0.9}, run_dir=tmp_path / "stage",
                    verbose=0)


def _metrics(run_dir: Path) -> dict:
    stages = json.loads((run_dir / "metrics.json").read_text())["stages"]
    return {name: stage["metrics"] for name, stage in stages.items()}


@pytest.mark.slow
def test_one_process_or_several_give_the_same_figures(tmp_path):
    recipe = write_recipe(tmp_path)
    recipes.run(recipe, run_dir=tmp_path / "one", echo=lambda line: None)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for command in ("pretrain", "finetune"):
        done = subprocess.run([sys.executable, "-m", "keras_skipae.cli", command, str(recipe), "--run-dir",
                               str(tmp_path / "several")], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    one, several = _metrics(tmp_path / "one"), _metrics(tmp_path / "several")
    assert set(one) == set(several) == {"pretrain", "finetune", "scratch"}
    for stage in one:
        for metric, value in one[stage].items():
            assert several[stage][metric] == pytest.approx(value, rel=1e-6, abs=1e-7), (stage, metric)
