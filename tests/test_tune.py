"""keras_skipae.tune: keras-tuner search scored by a linear probe, on small generated data."""

import json
import os
import socket
import subprocess
import sys
import time

import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_skipae import tune
from test_probe import make_images

SMALL = {"stages": [1, 2], "base_width": [4, 8], "convs_per_stage": [1], "skip_every": [1, 2]}


def small_config(**tuner):
    return tune.TuneConfig.model_validate({
        "model": {"preset": "tiny", "overrides": {"input_shape": [16, 16, 1]}},
        "space": SMALL,
        "tuner": {"algorithm": "random", "max_trials": 2, "epochs": 1, "strategy": "one_device", **tuner},
    })


def small_arrays():
    images, labels = make_images(300, seed=0)
    return images[:128], images[128:192], (images[192:246], labels[192:246]), (images[246:], labels[246:])


def assert_scores_are_each_trials_own(config, run_dir, arrays, result):
    """Reload the finished search and score every trial's saved model by hand: the recorded figures are exactly
    the linear probe and k-NN of that model's pooled features on the held-out images, and its validation MSE."""
    import warnings

    from keras_skipae.models import resolve_arch
    from keras_skipae.probe import features
    from keras_skipae.probe.reconstruction import normalise
    from keras_skipae.recipes.study import pretrain_batches

    _, val_images, (lab_images, lab_y), (test_images, test_y) = arrays
    t = config.tuner
    base = resolve_arch(config.model.preset, **config.model.overrides)
    x_lab, x_test = normalise(lab_images, base), normalise(test_images, base)
    hypermodel = tune.SkipAEHyperModel(base, config.space, probe_sets=((x_lab, lab_y), (x_test, test_y)),
                                       pooling=config.probe.pooling, knn_k=config.probe.knn_k, seed=t.seed)
    tuner = tune.make_tuner(hypermodel, t.algorithm, objective=t.objective, max_trials=t.max_trials,
                            max_epochs=t.epochs, hyperband_factor=t.hyperband_factor, directory=run_dir,
                            project_name="search", seed=t.seed)
    val = pretrain_batches(val_images, base, 256, training=False, seed=t.seed)
    rows = {row["trial_id"]: row for row in result.trials}
    assert set(rows) == set(tuner.oracle.trials)
    for trial_id, trial in tuner.oracle.trials.items():
        with warnings.catch_warnings():  # the rebuilt model's fresh optimizer does not match the saved one
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.load_model(trial)
        f_lab = features.extract_features(model, x_lab, config.probe.pooling)
        f_test = features.extract_features(model, x_test, config.probe.pooling)
        row = rows[trial_id]
        assert row["probe_accuracy"] == features.linear_probe_accuracy(f_lab, lab_y, f_test, test_y,
                                                                       seed=t.seed).accuracy, trial_id
        assert row["knn_accuracy"] == features.knn_accuracy(f_lab, lab_y, f_test, test_y,
                                                            k=config.probe.knn_k), trial_id
        assert row["val_reconstruction_loss"] == pytest.approx(model.evaluate(val, verbose=0), rel=1e-4), trial_id


def test_search_space_rejects_bad_ranges():
    with pytest.raises(ValueError, match="corruption_level"):
        tune.SearchSpace(corruption_level=(0.5, 0.1))
    with pytest.raises(ValueError, match="stages"):
        tune.SearchSpace(stages=[0, 1])
    with pytest.raises(ValueError):
        tune.SearchSpace(merge=["multiply"])


def test_hypermodel_builds_the_trial_architecture():
    hm = tune.SkipAEHyperModel("tiny", SMALL, overrides={"input_shape": (16, 16, 1)})
    hp = keras_tuner.HyperParameters()
    hp.Fixed("stages", 2)
    hp.Fixed("base_width", 8)
    hp.Fixed("skips", False)
    hp.Fixed("corruption", "gaussian")
    hp.Fixed("corruption_level", 0.2)
    model = hm.build(hp)
    assert model.arch.widths == (8, 16)
    assert model.arch.skips is False
    assert (model.arch.corruption, model.arch.corruption_level) == ("gaussian", 0.2)
    assert model.arch.input_shape == (16, 16, 1)
    assert model.optimizer is not None
    # a fresh search space draws every choice it has
    drawn = keras_tuner.HyperParameters()
    hm.build(drawn)
    assert {"stages", "base_width", "skips", "corruption", "learning_rate"} <= set(drawn.values)


def test_make_tuner_algorithms_and_objectives(tmp_path):
    hm = tune.SkipAEHyperModel("tiny", SMALL, probe_sets=((np.zeros((2, 32, 32, 3)), [0, 1]),) * 2)
    for algorithm, cls in (("random", keras_tuner.RandomSearch), ("hyperband", keras_tuner.Hyperband)):
        t = tune.make_tuner(hm, algorithm, directory=tmp_path, project_name=algorithm, max_trials=2)
        assert isinstance(t, cls)
        assert t.oracle.objective.name == "probe_accuracy" and t.oracle.objective.direction == "max"
    assert isinstance(tune.make_tuner(hm, "bayesian", directory=tmp_path, project_name="bayesian"),
                      keras_tuner.BayesianOptimization)
    t = tune.make_tuner(hm, objective="val_reconstruction_loss", directory=tmp_path, project_name="recon")
    assert t.oracle.objective.direction == "min"
    with pytest.raises(ValueError, match="unknown objective"):
        tune.make_tuner(hm, objective="loss", directory=tmp_path)
    with pytest.raises(ValueError, match="needs labelled data"):
        tune.make_tuner(tune.SkipAEHyperModel("tiny", SMALL), directory=tmp_path)


def test_result_summary_flags_disagreement():
    trials = [
        {"trial_id": "0", "status": "COMPLETED", "hyperparameters": {"skips": True}, "probe_accuracy": 0.60,
         "knn_accuracy": 0.5, "val_reconstruction_loss": 0.001},
        {"trial_id": "1", "status": "COMPLETED", "hyperparameters": {"skips": False}, "probe_accuracy": 0.75,
         "knn_accuracy": 0.6, "val_reconstruction_loss": 0.02},
    ]
    result = tune.TuneResult("probe_accuracy", trials)
    assert result.best()["trial_id"] == "1"
    assert result.best("val_reconstruction_loss")["trial_id"] == "0"
    assert result.disagree is True
    text = result.summary()
    assert "DISAGREE" in text and "0.1500" in text
    trials[0]["probe_accuracy"] = 0.8
    assert tune.TuneResult("probe_accuracy", trials).disagree is False


def test_search_records_both_objectives_and_hparams(tmp_path, monkeypatch):
    from keras_skipae import data

    fed = []  # training data: the uint8 images through data.pretrain_pipeline, not float32 copies
    pipeline = data.pretrain_pipeline
    monkeypatch.setattr(data, "pretrain_pipeline", lambda ds, *a, **kw: fed.append((ds, kw)) or pipeline(ds, *a, **kw))
    # every trial trains under the trainer's strategy: mirrored over the two logical CPUs of conftest
    result = tune.search(small_config(strategy="mirrored"), tmp_path / "tune", arrays=small_arrays())
    assert [(kw["training"], ds.element_spec[0].dtype) for ds, kw in fed] == [(True, tf.uint8), (False, tf.uint8)]
    assert [ds.info.num_examples for ds, _ in fed] == [128, 64]
    assert len(result.trials) == 2
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 2
    assert_scores_are_each_trials_own(small_config(strategy="mirrored"), tmp_path / "tune", small_arrays(), result)
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert saved["objective"] == "probe_accuracy" and len(saved["trials"]) == 2
    assert (tmp_path / "tune" / "trials.csv").read_text().startswith("trial_id,status,probe_accuracy")
    assert "best by probe accuracy" in (tmp_path / "tune" / "summary.txt").read_text()
    assert (tmp_path / "tune" / "best.keras").exists()
    events = list((tmp_path / "tune" / "logs" / "hparams").rglob("events.out.tfevents.*"))
    tags = {v.tag for e in events for ev in tf.compat.v1.train.summary_iterator(str(e)) for v in ev.summary.value}
    assert {"probe_accuracy", "val_reconstruction_loss", "_hparams_/session_start_info"} <= tags


@pytest.mark.slow
def test_bayesian_search_runs_trials(tmp_path):
    config = small_config(algorithm="bayesian", max_trials=3)
    result = tune.search(config, tmp_path / "bayes", arrays=small_arrays())
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 3
    assert_scores_are_each_trials_own(config, tmp_path / "bayes", small_arrays(), result)


@pytest.mark.slow
def test_hyperband_search_runs_trials_and_records_both_objectives(tmp_path):
    """Hyperband with at most 2 epochs and factor 2: a bracket of two 1-epoch trials whose better one goes on to
    epoch 2 (a trial of its own, from the first one's weights), and a bracket of two 2-epoch trials."""
    config = small_config(algorithm="hyperband", epochs=2, hyperband_factor=2)
    result = tune.search(config, tmp_path / "hyperband", arrays=small_arrays())
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 5
    for t in result.trials:
        assert t["probe_accuracy"] is not None and t["knn_accuracy"] is not None
        assert t["val_reconstruction_loss"] is not None
    schedule = sorted((t["hyperparameters"]["tuner/bracket"], t["hyperparameters"]["tuner/round"],
                       t["hyperparameters"]["tuner/epochs"]) for t in result.trials)
    assert schedule == [(0, 0, 2), (0, 0, 2), (1, 0, 1), (1, 0, 1), (1, 1, 2)]
    promoted = next(t for t in result.trials if t["hyperparameters"]["tuner/round"] == 1)
    parent = next(t for t in result.trials if t["trial_id"] == promoted["hyperparameters"]["tuner/trial_id"])
    assert parent["hyperparameters"]["tuner/epochs"] == 1
    assert parent["probe_accuracy"] == max(t["probe_accuracy"] for t in result.trials
                                           if t["hyperparameters"]["tuner/bracket"] == 1
                                           and t["hyperparameters"]["tuner/round"] == 0)
    assert_scores_are_each_trials_own(config, tmp_path / "hyperband", small_arrays(), result)
    saved = json.loads((tmp_path / "hyperband" / "tune.json").read_text())
    assert len(saved["trials"]) == 5 and (tmp_path / "hyperband" / "best.keras").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_worker_processes_share_one_search(tmp_path):
    """keras-tuner's chief/worker mode: the chief hands out trials, the worker trains them."""
    images, labels = make_images(300, seed=0)
    np.savez(tmp_path / "data.npz", x_train=images[:240], y_train=labels[:240], x_test=images[240:],
             y_test=labels[240:])
    recipe = tmp_path / "tune.yaml"
    recipe.write_text(yaml.safe_dump({
        "kind": "tune", "name": "distributed",
        "data": {"source": f"npz:{tmp_path / 'data.npz'}", "pretrain_images": 128, "val_images": 24,
                 "labels_per_class": 10, "heldout_images": 60},
        "model": {"preset": "tiny", "overrides": {"input_shape": [16, 16, 1]}},
        "space": {"stages": [1], "base_width": [4, 8], "convs_per_stage": [1]},
        "tuner": {"algorithm": "random", "max_trials": 2, "epochs": 1, "strategy": "one_device"},
    }))
    run_dir = tmp_path / "run"
    port = _free_port()
    cmd = [sys.executable, "-m", "keras_skipae.cli", "tune", str(recipe), "--run-dir", str(run_dir)]
    procs = {}
    for tuner_id in ("chief", "tuner0"):
        env = {**os.environ, **tune.chief_worker_env(tuner_id, port), "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs[tuner_id] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if tuner_id == "chief":
            time.sleep(1)  # let the chief open its port first
    outputs = {k: p.communicate(timeout=240)[0] for k, p in procs.items()}
    for k, p in procs.items():
        assert p.returncode == 0, f"{k} failed:\n{outputs[k][-3000:]}"
    assert "trials done" in outputs["tuner0"]
    assert "best by probe accuracy" in outputs["chief"]
    saved = json.loads((run_dir / "tune.json").read_text())
    assert len(saved["trials"]) == 2
    assert all(t["probe_accuracy"] is not None and t["val_reconstruction_loss"] is not None for t in saved["trials"])
    # the worker trained the trials: they live under its tuner id in the shared search directory
    assert list((run_dir / "search").glob("trial_*"))
