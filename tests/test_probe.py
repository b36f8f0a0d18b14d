"""keras_skipae.probe: reconstruction vs feature quality, end to end on small generated data.

The probe's parts have their own files: test_probe_checkpoints, _features,
_reconstruction, _statistics, _verdict. This one trains a small run and probes it.
"""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import probe, runs
from keras_skipae.probe import features, measure, reconstruction


def make_images(n, seed=0, size=16, classes=3):
    """Noisy grey images whose class is a bright horizontal band at one of `classes` heights."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.normal(60, 25, (n, size, size, 1))
    band = size // classes
    for c in range(classes):
        images[labels == c, c * band : (c + 1) * band] += 120
    return images.clip(0, 255).astype("uint8"), labels.astype("int32")


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    """A run directory in the trainer's layout with checkpoints at epochs 1, 2, 3."""
    from keras_skipae import train

    run = tmp_path_factory.mktemp("runs") / "ae"
    images, _ = make_images(256, seed=1)
    arch = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1)).arch
    x = reconstruction.normalise(images, arch)
    ds = tf.data.Dataset.from_tensor_slices((x, x)).batch(64)
    trainer = train.Trainer(strategy="one_device", seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", arch)
    trainer.fit(model, ds, ds, epochs=3, run_dir=run / "pretrain", checkpoint_every=1, verbose=0)
    (run / "metrics.json").write_text(json.dumps(
        {"stages": {"pretrain": {"kind": "autoencoder", "model": "pretrain/model.keras", "metrics": {}}}}
    ))
    return run


# ----------------------------------------------------------- run end to end
def test_find_checkpoints_reads_the_trainer_layout(pretrain_run):
    found = probe.find_checkpoints(pretrain_run)
    assert [c.epoch for c in found] == [1, 2, 3]
    assert all(c.run == "ae" and c.val_loss is not None for c in found)
    assert found[0].name == "ae@e001"
    assert probe.find_checkpoints(found[1].source)[0].epoch == 2
    with pytest.raises(FileNotFoundError, match="no auto-encoder checkpoints"):
        probe.find_checkpoints(pretrain_run / "pretrain" / "logs")
    history = runs.read_history(pretrain_run / "pretrain" / "history.csv")  # the trainer's history.csv
    assert sorted(history) == [1, 2, 3]
    assert {c.epoch: c.val_loss for c in found} == {e: r["val_loss"] for e, r in history.items()}


def test_probe_run_writes_table_plots_and_tensorboard(pretrain_run, tmp_path):
    labelled = make_images(150, seed=2)
    heldout = make_images(150, seed=3)
    out = tmp_path / "probe"
    table = probe.probe_run(pretrain_run, labelled, heldout, out_dir=out, n_boot=100)

    kinds = [r["kind"] for r in table.rows]
    assert kinds.count("checkpoint") == 3 and kinds.count("untrained") == 1 and kinds.count("raw_pixels") == 1
    for r in table.checkpoints():
        assert r["psnr"] > 0 and "psnr_corrupted" in r and r["val_loss"] > 0
    raw = next(r for r in table.rows if r["kind"] == "raw_pixels")
    # the class is a bright band 120 levels above noise of 25: linearly visible, and the nearest neighbours agree
    assert raw["probe_accuracy"] == 1.0 and raw["knn_accuracy"] == 1.0
    assert raw["feature_dim"] == 256
    untrained = next(r for r in table.rows if r["kind"] == "untrained")
    # every model's scores are the probe and k-NN of its own pooled features on these very images and labels
    arch = ks.load(table.checkpoints()[0]["checkpoint"]).arch
    keras.utils.set_random_seed(0)  # probe_run's seed: the untrained baseline is this model
    models = [(untrained, ks.build("autoencoder", arch.replace(corruption="none", corruption_level=0.0)))]
    models += [(r, ks.load(r["checkpoint"])) for r in table.checkpoints()]
    for row, model in models:
        f_lab = features.extract_features(model, reconstruction.normalise(labelled[0], arch))
        f_test = features.extract_features(model, reconstruction.normalise(heldout[0], arch))
        probe_result = features.linear_probe_accuracy(f_lab, labelled[1], f_test, heldout[1], seed=0)
        assert row["probe_accuracy"] == probe_result.accuracy and row["probe_l2"] == probe_result.l2, row["name"]
        assert row["knn_accuracy"] == features.knn_accuracy(f_lab, labelled[1], f_test, heldout[1], k=10), row["name"]
    # training for three epochs improves reconstruction over the untrained model
    assert table.checkpoints()[-1]["psnr"] > untrained["psnr"]
    assert table.correlation("checkpoints", "psnr", "probe_accuracy").n == 3
    assert {r.criterion for r in table.regrets} == {"psnr", "psnr_corrupted", "val_loss"}
    assert table.verdict

    saved = json.loads((out / "probe.json").read_text())  # strict JSON: inf/nan become null
    assert len(saved["rows"]) == 5 and saved["verdict"] == table.verdict
    with open(out / "probe.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    assert (out / "probe_correlations.csv").exists()
    for png in ("recon_vs_probe.png", "over_epochs.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events[0])) for v in e.summary.value}
    assert {"features/probe_accuracy", "reconstruction/psnr"} <= tags
    assert "verdict:" in str(table)
    reread = probe.ProbeTable.from_json(out / "probe.json", recompute=True)
    assert reread.verdict == table.verdict and len(reread.correlations) == len(table.correlations)


def test_probe_run_rejects_classifier_checkpoints(tmp_path):
    clf = ks.build("classifier", "tiny", input_shape=(16, 16, 1), num_classes=3)
    data = make_images(20)
    with pytest.raises(ValueError, match="not a keras_skipae autoencoder"):
        probe.probe_run({"clf": [clf]}, data, data, baselines=False, n_boot=0)


def test_probe_run_rejects_heldout_classes_missing_from_labelled():
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1))
    images, labels = make_images(30)
    with pytest.raises(ValueError, match="never occur in the labelled set"):
        probe.probe_run(ae, (images[labels == 0], labels[labels == 0]), (images, labels), n_boot=0)


# ------------------------------------------------------------- study and CLI
def test_study_recipe_validates_with_clear_errors(tmp_path):
    from keras_skipae.recipes.study import load_study

    config = load_study("recipes/pitfall_fashion_mnist.yaml")
    assert [name for name, _ in config.runs()] == [
        "skips-on_none", "skips-on_moderate", "skips-on_strong", "skips-off_none", "skips-off_moderate",
        "skips-off_strong"]
    quick = config.quick_version()
    assert quick.train.epochs < config.train.epochs and quick.model == config.model
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: study\ntrain: {epochs: 0, optimiser: adam}\n")
    # the same key-path, did-you-mean errors as a run recipe
    with pytest.raises(ValueError, match=r"invalid recipe .*bad.yaml:\n  train.epochs: [^\n]*\n"
                                         r"  train.optimiser: unknown key \(did you mean 'optimizer'\?\)"):
        load_study(bad)
    with pytest.raises(ValueError, match=r"train.epochs: Input should be a valid integer"):
        load_study("recipes/pitfall_fashion_mnist.yaml", ["train.epochs=true"])
    assert load_study("recipes/pitfall_fashion_mnist.yaml", ["train.epochs=3"], quick=True).train.epochs == 3


@pytest.mark.slow
def test_study_and_probe_commands_end_to_end(tmp_path):
    """`skipae study` trains a small grid and probes it; `skipae probe` re-probes one run."""
    from click.testing import CliRunner

    from keras_skipae.cli import main

    images, labels = make_images(400, seed=5)
    npz = tmp_path / "bands.npz"
    np.savez(npz, x_train=images[:300], y_train=labels[:300], x_test=images[300:], y_test=labels[300:])
    recipe = tmp_path / "study.yaml"
    recipe.write_text(json.dumps({
        "kind": "study", "name": "bands",
        "data": {"source": f"npz:{npz}", "pretrain_images": 160, "val_images": 30, "labels_per_class": 20,
                 "heldout_images": 100},
        "model": {"preset": "tiny", "overrides": {"input_shape": [16, 16, 1], "widths": [4, 8]}},
        "grid": {"skips": [True, False], "corruption": [{"name": "moderate", "kind": "masking", "level": 0.25}]},
        "train": {"epochs": 2, "checkpoint_every": 1, "batch_size": 32, "strategy": "one_device"},
        "probe": {"n_boot": 50},
    }))
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["study", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "verdict:" in result.output
    report = (out / "study.md").read_text()
    assert "| skips-on_moderate | 2 |" in report and "Verdict:" in report
    saved = json.loads((out / "probe" / "probe.json").read_text())
    assert sum(r["kind"] == "checkpoint" for r in saved["rows"]) == 4
    assert saved["settings"]["study"]["timings"]["total_s"] > 0
    assert json.loads((out / "skips-off_moderate" / "metrics.json").read_text())["stages"]["pretrain"]["kind"] \
        == "autoencoder"

    result = CliRunner().invoke(main, ["probe", str(out / "skips-on_moderate"), "--data", f"npz:{npz}",
                                       "--labels-per-class", "10", "--max-heldout", "60", "--n-boot", "20",
                                       "--corruption", "none", "--out", str(tmp_path / "reprobe")])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "reprobe" / "probe.json").read_text())
    assert table["settings"]["corruption"] is None and table["settings"]["heldout"] == 60
    assert not any("psnr_corrupted" in r for r in table["rows"])


def test_probe_command_needs_data_without_a_recipe(tmp_path):
    from click.testing import CliRunner

    from keras_skipae.cli import main

    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(main, ["probe", str(tmp_path / "run")])
    assert result.exit_code != 0 and "--data SOURCE" in result.output


def test_probe_run_can_fine_tune_each_encoder():
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1))
    labelled, heldout = make_images(64, seed=6), make_images(64, seed=7)
    table = probe.probe_run({"fresh": [ae]}, labelled, heldout, baselines=False, finetune_epochs=1, n_boot=0,
                            corruption=None)
    (row,) = table.rows
    assert row["name"] == "fresh@e001"
    # exactly the accuracy on the held-out set of a classifier fine-tuned from this encoder on the labelled set
    keras.utils.set_random_seed(0)
    clf = ks.build("classifier", ae.arch, encoder=ae, num_classes=3)
    clf.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    clf.fit(reconstruction.normalise(labelled[0], ae.arch), labelled[1], epochs=1, batch_size=64, verbose=0)
    x_test = reconstruction.normalise(heldout[0], ae.arch)
    expected = float(np.mean(clf.predict(x_test, verbose=0).argmax(-1) == heldout[1]))
    assert row["finetune_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert "psnr_corrupted" not in row and "finetune_accuracy" in str(table)


# ------------------------------------------------------ subsets of class-ordered data
def class_ordered(n_per_class=40, classes=3, size=8):
    """Images sorted by class (as a folder: tree loads them): pixel (0, 0) is 50 * label, (1, 1) the index."""
    labels = np.repeat(np.arange(classes), n_per_class).astype("int32")
    images = np.broadcast_to((labels * 50).astype("uint8")[:, None, None, None], (len(labels), size, size, 1)).copy()
    images[:, 1, 1, 0] = np.arange(len(labels))
    return images, labels


def test_probe_data_and_arrays_draw_every_class_from_class_ordered_data(tmp_path):
    from keras_skipae import data

    images, labels = class_ordered()
    npz = tmp_path / "ordered.npz"
    np.savez(npz, x_train=images, y_train=labels, x_test=images, y_test=labels)
    # the first 30 held-out images are all class 0; a seeded stratified draw takes 10 of each class
    labelled, (x_held, y_held) = probe.probe_data(f"npz:{npz}", labels_per_class=5, max_heldout=30, seed=0)
    assert np.bincount(y_held).tolist() == [10, 10, 10]
    assert np.array_equal(x_held[:, 0, 0, 0], (y_held * 50).astype("uint8"))  # images stay with their labels
    assert np.bincount(data.to_numpy(labelled)[1]).tolist() == [5, 5, 5]
    _, (x_again, _) = probe.probe_data(f"npz:{npz}", labels_per_class=5, max_heldout=30, seed=0)
    assert np.array_equal(x_held, x_again)  # seeded: the same images
    _, (x_other, _) = probe.probe_data(f"npz:{npz}", labels_per_class=5, max_heldout=30, seed=1)
    assert not np.array_equal(x_held, x_other)

    x, y = measure._arrays((images, labels), "heldout_ds", 30, seed=1)  # probe_run(max_heldout=...) on arrays
    assert sorted(set(y.tolist())) == [0, 1, 2] and len(y) == 30
    assert np.array_equal(x[:, 0, 0, 0], (y * 50).astype("uint8"))
    _, y = measure._arrays(data.load((images, labels)), "heldout_ds", 30, seed=1)  # ... and on a dataset
    assert np.bincount(y).tolist() == [10, 10, 10]
    unlabelled = data.load((images, np.full(len(labels), -1)))  # no class labels: a seeded random draw
    assert data.to_numpy(data.sample(unlabelled, 30, seed=0))[0].shape[0] == 30
    assert len(set(data.to_numpy(data.sample(unlabelled, 30, seed=0))[0][:, 0, 0, 0])) > 1
    mixed = data.load((images, np.where(labels == 2, -1, labels)))  # a pool with unlabelled images in it
    assert 100 in data.to_numpy(data.sample(mixed, 60, seed=0))[0][:, 0, 0, 0]  # they are drawn too


def test_study_data_draws_every_class_from_class_ordered_data(tmp_path):
    from keras_skipae.recipes.study import StudyData, load_study_data

    images, labels = class_ordered()
    npz = tmp_path / "ordered.npz"
    np.savez(npz, x_train=images, y_train=labels, x_test=images, y_test=labels)
    d = StudyData(source=f"npz:{npz}", pretrain_images=30, val_images=12, labels_per_class=5, heldout_images=30)
    pretrain, val, (_, y_lab), (_, y_held) = load_study_data(d)
    assert len(pretrain) == 30 and len(val) == 12 and len(y_held) == 30
    assert sorted(set(pretrain[:, 0, 0, 0] // 50)) == [0, 1, 2]  # the pixel value names the class
    assert sorted(set(val[:, 0, 0, 0] // 50)) == [0, 1, 2]
    assert np.bincount(y_held).tolist() == [10, 10, 10]
    assert np.bincount(y_lab).tolist() == [5, 5, 5]


def test_study_training_data_comes_from_the_uint8_pipeline():
    from keras_skipae.recipes.study import pretrain_batches

    images, _ = make_images(70, seed=8)
    arch = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), mean=(0.3,), std=(0.2,)).arch
    val = pretrain_batches(images, arch, 32, training=False, seed=0)
    x = np.concatenate([b[0] for b in val.as_numpy_iterator()])
    np.testing.assert_allclose(x, reconstruction.normalise(images, arch), rtol=1e-5, atol=1e-5)
    train_batches = [b for b in pretrain_batches(images, arch, 32, training=True, seed=3).as_numpy_iterator()]
    assert [b[0].shape[0] for b in train_batches] == [32, 32]  # whole batches only
    for noisy, clean in train_batches:
        np.testing.assert_array_equal(noisy, clean)  # the model's corruption layer corrupts, not the data
    again = [b for b in pretrain_batches(images, arch, 32, training=True, seed=3).as_numpy_iterator()]
    np.testing.assert_array_equal(train_batches[0][0], again[0][0])  # seeded: the same order


# ------------------------------------------------------------------ imports
def test_importing_the_package_leaves_the_probe_and_the_probe_leaves_the_runner_and_pyplot():
    """keras_skipae does not import the probe; the probe imports neither the runner nor matplotlib.

    (Keras itself imports matplotlib; what matters is that the probe draws only when asked.)
    """
    code = (
        "import sys, types; import keras_skipae; "
        "assert not [m for m in sys.modules if m.startswith('keras_skipae.probe')]; "
        "import keras_skipae.probe as p; "
        "assert 'keras_skipae.recipes' not in sys.modules, 'the probe imported the runner'; "
        "mods = [m for n, m in sys.modules.items() if n.startswith('keras_skipae.probe')]; "
        "bad = [(m.__name__, k) for m in mods for k, v in vars(m).items() "
        "       if isinstance(v, types.ModuleType) and v.__name__.startswith('matplotlib')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_probe_run_can_probe_every_encoder_stage_with_grid_pooling(tmp_path):
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8))
    fm, names = features.stage_feature_model(ae, grid=2)
    assert names == ["stage1", "stage1_grid2", "stage2", "stage2_grid2"]
    shapes = [tuple(o.shape[1:]) for o in fm.outputs]
    assert shapes == [(4,), (16,), (8,), (32,)]                       # a 2x2 grid keeps 4 cells per channel
    labelled, heldout = make_images(96, seed=6), make_images(60, seed=7)
    table = probe.probe_run({"fresh": [ae]}, labelled, heldout, baselines=True, n_boot=0, corruption=None,
                            stages=True, grid=2)
    for row in table.rows:
        if row["kind"] == "raw_pixels":
            continue
        for name in names:
            assert 0.0 <= row[f"probe_accuracy_{name}"] <= 1.0
    # the band's height is where the class is: keeping a 2x2 layout beats global pooling on the first stage
    untrained = next(r for r in table.rows if r["kind"] == "untrained")
    assert untrained["probe_accuracy_stage1_grid2"] >= untrained["probe_accuracy_stage1"]
    # what was measured is shown and written, not only kept in probe.json
    printed = str(table)
    assert "linear probe of each encoder stage" in printed and "probe_accuracy_stage2_grid2" in printed
    header = table.to_csv(tmp_path / "probe.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == [f"probe_accuracy_{name}" for name in names]
