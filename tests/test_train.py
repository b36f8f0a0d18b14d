"""keras_skipae.train: the Trainer on small in-memory datasets, one device and mirrored."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import train


def _images(rng, n=64, size=16, channels=1):
    return rng.random((n, size, size, channels)).astype("float32")


def _ae_data(rng, n=64, batch=16):
    x = _images(rng, n)
    return tf.data.Dataset.from_tensor_slices((x, x)).batch(batch, drop_remainder=True)


def _clf_data(rng, n=64, batch=16):
    x = _images(rng, n)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)


SMALL = dict(input_shape=(16, 16, 1), widths=(4, 8), head_width=8)


def test_fit_writes_the_stage_directory(tmp_path, rng):
    trainer = train.Trainer(seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", "tiny", **SMALL)
    data = _ae_data(rng)
    history = trainer.fit(model, data, data, epochs=3, run_dir=tmp_path / "pretrain", checkpoint_every=2,
                          optimizer={"name": "adam", "learning_rate": 1e-2, "schedule": "cosine"},
                          sample_images=(next(iter(data))[1].numpy(),), hparams={"lr": 0.01}, verbose=0)
    stage = tmp_path / "pretrain"
    for path in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/epoch_002.keras",
                 "history.csv", "logs/train", "logs/validation", "logs/images", "logs/hparams"):
        assert (stage / path).exists(), path
    assert not (stage / "checkpoints/epoch_001.keras").exists()
    assert not (stage / "backup").exists(), "the resume backup is removed once training completes"
    with open(stage / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "mse", "psnr", "ssim", "val_mse", "learning_rate"} <= set(rows[0])
    best = json.loads((stage / "checkpoints/best.json").read_text())
    assert best["value"] == pytest.approx(min(history.history["val_mse"]), rel=1e-6)
    restored = ks.load(stage / "model.keras")
    x = _images(np.random.default_rng(1), 4)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


class ScriptedValidation(keras.callbacks.Callback):
    """Puts ``val_scripted`` into each epoch's logs from a fixed list: the test decides which epoch is best."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_scripted"] = self.values[epoch]


def _weights_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_restore_best_ends_on_the_best_epoch_not_the_last(tmp_path, rng):
    trainer = train.Trainer(seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", "tiny", **SMALL)
    data = _ae_data(rng)
    # epoch 2 of 3 is the best by the monitored value; the weights keep changing in epoch 3
    history = trainer.fit(model, data, data, epochs=3, run_dir=tmp_path / "pretrain", monitor="val_scripted:min",
                          callbacks=[ScriptedValidation([0.5, 0.1, 0.3])],
                          optimizer={"name": "adam", "learning_rate": 1e-2}, verbose=0)
    checkpoints = tmp_path / "pretrain/checkpoints"
    assert history.best_epoch == 2
    assert json.loads((checkpoints / "best.json").read_text())["epoch"] == 2
    best, last = ks.load(checkpoints / "best.keras"), ks.load(checkpoints / "last.keras")
    assert not _weights_equal(best, last), "epoch 3 changed the weights: the best epoch is not the last"
    assert _weights_equal(model, best), "the model ends with the best epoch's weights"
    assert not _weights_equal(model, last)
    assert _weights_equal(ks.load(tmp_path / "pretrain/model.keras"), best), "model.keras holds the best epoch"
    # without restore_best the model keeps its last epoch
    with trainer.scope():
        again = ks.build("autoencoder", "tiny", **SMALL)
    trainer.fit(again, data, data, epochs=3, run_dir=tmp_path / "no_restore", monitor="val_scripted:min",
                callbacks=[ScriptedValidation([0.5, 0.1, 0.3])], restore_best=False,
                optimizer={"name": "adam", "learning_rate": 1e-2}, verbose=0)
    assert _weights_equal(again, ks.load(tmp_path / "no_restore/checkpoints/last.keras"))


def test_interrupted_fit_resumes_after_the_last_complete_epoch(tmp_path, rng):
    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt("simulated crash during epoch 3")

    data = _clf_data(rng)
    trainer = train.Trainer(seed=0)
    with trainer.scope():
        model = ks.build("classifier", "tiny", num_classes=2, **SMALL)
    trainer.compile(model, "adam", steps_per_epoch=4, epochs=4)
    original_fit = model.fit

    def crashing_fit(*args, **kwargs):
        kwargs["callbacks"] = kwargs["callbacks"] + [Crash()]
        return original_fit(*args, **kwargs)

    model.fit = crashing_fit
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(model, data, data, epochs=4, run_dir=tmp_path / "clf", verbose=0)
    state = json.loads((tmp_path / "clf/backup/state.json").read_text())
    assert state["epoch"] == 2
    with trainer.scope():
        again = ks.build("classifier", "tiny", num_classes=2, **SMALL)
    history = trainer.fit(again, data, data, epochs=4, run_dir=tmp_path / "clf", verbose=0)
    assert len(history.history["loss"]) == 2, "only epochs 3 and 4 run again"
    assert int(again.optimizer.iterations.numpy()) == 4 * 4, "optimizer state was restored with the weights"
    with open(tmp_path / "clf/history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_mirrored_over_two_logical_cpus(tmp_path, rng):
    trainer = train.Trainer(strategy="mirrored", seed=0)
    assert trainer.num_replicas == 2
    assert trainer.per_replica_batch(16) == 8
    with pytest.raises(ValueError, match="does not divide over 2 replicas"):
        trainer.per_replica_batch(15)
    with trainer.scope():
        model = ks.build("classifier", "tiny", num_classes=2, **SMALL)
    history = trainer.fit(model, _clf_data(rng), epochs=2, run_dir=tmp_path / "m", verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert (tmp_path / "m/model.keras").exists()
    assert trainer.describe(16).startswith("strategy mirrored (2 replica(s)), global batch 16 = 8 per replica")


def test_mixed_bfloat16_keeps_outputs_and_loss_in_float32(rng):
    trainer = train.Trainer(mixed_precision="mixed_bfloat16", seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", "tiny", **SMALL)
    assert keras.config.dtype_policy().name == "float32", "the policy applies inside scope() only"
    assert model.get_layer("encoder_conv1").compute_dtype == "bfloat16"
    assert model.output.dtype == "float32"
    history = trainer.fit(model, _ae_data(rng), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_nan_loss_stops_with_a_clear_error(rng):
    x = _images(rng, 32)
    x[0, 0, 0, 0] = np.nan
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(16)
    trainer = train.Trainer(seed=0)
    model = ks.build("autoencoder", "tiny", **SMALL)
    with pytest.raises(train.TrainingDiverged, match="pretrain: the loss became nan in epoch 1. Lower the learning"):
        trainer.fit(model, data, epochs=3, stage="pretrain", verbose=0)


def test_unknown_dataset_length_needs_steps_per_epoch(rng):
    data = _ae_data(rng).filter(lambda x, y: True)
    with pytest.raises(ValueError, match="pass steps_per_epoch") as info:
        train.Trainer().fit(ks.build("autoencoder", "tiny", **SMALL), data, epochs=1, stage="pretrain")
    message = str(info.value)
    assert message.startswith("pretrain: the training dataset (train_ds) has an unknown number of batches")
    assert "In a recipe, use a data source of known size or give the stage a limit" in message


def test_a_backup_that_no_longer_fits_names_its_folder(tmp_path, rng):
    trainer = train.Trainer(seed=0)
    with trainer.scope():
        old = ks.build("autoencoder", "tiny", **SMALL)
    trainer.compile(old, "adam", steps_per_epoch=4, epochs=2)
    old.optimizer.build(old.trainable_variables)
    backup = tmp_path / "pretrain/backup"
    backup.mkdir(parents=True)
    old.save_weights(backup / "epoch_0001.weights.h5")
    (backup / "state.json").write_text(json.dumps({"epoch": 1, "weights": "epoch_0001.weights.h5"}))
    with trainer.scope():
        edited = ks.build("autoencoder", "tiny", **{**SMALL, "widths": (4, 8, 16)})
    with pytest.raises(ValueError, match="cannot resume from the backup") as info:
        trainer.fit(edited, _ae_data(rng), epochs=2, run_dir=tmp_path / "pretrain", verbose=0)
    message = str(info.value)
    assert f"Delete the folder {backup} to start this stage afresh, or use a new --run-dir" in message
    assert "weights do not fit this model" in message


def test_schedules_warm_up_then_decay():
    step = train.WarmupSchedule(0.1, total_steps=100, warmup_steps=10, kind="step", boundaries=[50], step_factor=0.1)
    assert float(step(0)) == pytest.approx(0.01)
    assert float(step(9)) == pytest.approx(0.1)
    assert float(step(49)) == pytest.approx(0.1)
    assert float(step(50)) == pytest.approx(0.01)
    cosine = train.WarmupSchedule(0.1, total_steps=100, kind="cosine")
    assert float(cosine(0)) == pytest.approx(0.1)
    assert float(cosine(50)) == pytest.approx(0.05, abs=1e-6)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
    constant = train.WarmupSchedule(0.1, total_steps=100, warmup_steps=10, kind="constant")
    assert float(constant(5)) == pytest.approx(0.06) and float(constant(99)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown kind 'linear'; expected one of constant, step, cosine"):
        train.WarmupSchedule(0.1, total_steps=100, kind="linear")
    opt = train.make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                "schedule": "cosine", "warmup_epochs": 1}, steps_per_epoch=10, epochs=5)
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.9 and opt.weight_decay == 5e-4
    assert isinstance(train.make_optimizer("adamw", 1, 1), keras.optimizers.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train.make_optimizer("rmsprop", 1, 1)


def test_strategy_and_precision_names():
    assert isinstance(train.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(ValueError, match="unknown strategy 'gpu'; choose one of: auto, mirrored"):
        train.make_strategy("gpu")
    assert train.resolve_mixed_precision(None) == "float32"
    expected = "mixed_bfloat16" if train.cpu_supports_bfloat16() else "float32"
    assert train.resolve_mixed_precision("auto") == expected
    with pytest.raises(ValueError, match="unknown mixed_precision"):
        train.resolve_mixed_precision("fp8")
