"""Harder pretext tasks: block corruption, a loss on the corrupted pixels only, skip dropout; the online probe."""

import numpy as np
import pytest
import keras
from keras import ops

import keras_skipae as ks
from keras_skipae.arch import Arch
from keras_skipae.kinds import monitor_mode
from keras_skipae.layers import CorruptedPixelsOnly, SkipDropout, corrupt_with_mask
from keras_skipae.probe.online import OnlineProbe
from keras_skipae.train import Trainer
from keras_skipae.train.callbacks import ModelCheckpoints


def _uniform(seed):
    gen = keras.random.SeedGenerator(seed)
    return lambda shape: keras.random.uniform(shape, seed=gen)


@pytest.mark.parametrize("kind", ["block_masking", "block_noise"])
def test_block_corruption_covers_whole_patches_at_the_asked_share(kind):
    x = np.full((64, 32, 32, 1), 0.5, np.float32)
    y, mask = corrupt_with_mask(x, kind, 0.5, [0.0], [1.0], _uniform(1), None, block=8)
    y, mask = ops.convert_to_numpy(y), ops.convert_to_numpy(mask)[..., 0]
    assert 0.4 < mask.mean() < 0.6
    # patches: along each row the mask changes value only at the grid's lines (8 pixels apart)
    changes = np.nonzero(np.diff(mask, axis=2))[2]
    assert len(changes) and len(set(changes % 8)) == 1
    # only covered pixels change, and they take the fill
    np.testing.assert_array_equal(y[mask == 0], 0.5)
    if kind == "block_masking":
        np.testing.assert_array_equal(y[mask == 1], 0.0)
    else:
        assert y[mask == 1].std() > 0.2


def test_pixel_masking_mask_marks_exactly_the_blackened_pixels():
    x = np.full((4, 16, 16, 3), 0.5, np.float32)
    y, mask = corrupt_with_mask(x, "masking", 0.3, [0.0] * 3, [1.0] * 3, _uniform(2), None)
    y, mask = ops.convert_to_numpy(y), ops.convert_to_numpy(mask)
    np.testing.assert_array_equal((y == 0).all(axis=-1), mask[..., 0] == 1)


def test_loss_on_corrupted_counts_only_the_corrupted_pixels():
    rec = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    clean = np.zeros_like(rec)
    mask = np.zeros_like(rec)
    mask[:, :4] = 1.0                                    # the top half corrupted
    out = ops.convert_to_numpy(CorruptedPixelsOnly()([rec, clean, mask], training=True))
    mse = np.mean((out - clean) ** 2)
    np.testing.assert_allclose(mse, np.mean(rec[:, :4] ** 2), rtol=1e-5)   # mean over corrupted pixels only
    # the error of an uncorrupted pixel does not reach the loss: changing it changes nothing
    rec2 = rec.copy()
    rec2[:, 6] += 100.0
    out2 = ops.convert_to_numpy(CorruptedPixelsOnly()([rec2, clean, mask], training=True))
    np.testing.assert_allclose(np.mean((out2 - clean) ** 2), mse, rtol=1e-5)
    np.testing.assert_array_equal(ops.convert_to_numpy(CorruptedPixelsOnly()([rec, clean, mask])), rec)


def test_autoencoder_with_loss_on_corrupted_gets_no_gradient_from_clean_pixels():
    import tensorflow as tf
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8), corruption="block_masking",
                  corruption_level=0.5, corruption_block=4, loss_on="corrupted")
    x = tf.constant(np.random.default_rng(0).random((4, 16, 16, 1)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ae(x, training=True)
        mask = tf.cast(tf.reduce_any(tf.not_equal(y, x), axis=-1), tf.float32)
    # the uncorrupted pixels are the clean input (zero error), the corrupted ones the network's output
    assert 0.3 < float(tf.reduce_mean(mask)) < 0.7
    np.testing.assert_array_equal(y.numpy()[mask.numpy() == 0], x.numpy()[mask.numpy() == 0])


def test_loss_on_corrupted_with_pipeline_corruption_weights_the_corrupted_pixels():
    from keras_skipae import data
    images = np.random.default_rng(0).integers(1, 255, (16, 12, 12, 1)).astype("uint8")   # no black pixel
    labels = np.zeros(16, np.int32)
    arch = Arch(input_shape=(12, 12, 1), widths=(4,), corruption="block_masking", corruption_level=0.5,
                corruption_block=3, loss_on="corrupted", mean=(0.0,), std=(1.0,))
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    noisy, clean, weights = next(iter(data.pretrain_pipeline(ds, arch, 8, seed=0, corruption="pipeline")))
    changed = (noisy.numpy() != clean.numpy())[..., 0]
    assert weights.shape == (8, 12, 12)
    np.testing.assert_array_equal(weights.numpy() > 0, changed)
    np.testing.assert_allclose(weights.numpy().mean(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("per", ["example", "batch"])
def test_skip_dropout_drops_whole_skips_in_training_only(per):
    layer = SkipDropout(0.5, per=per, seed=3)
    x = np.ones((64, 4, 4, 2), np.float32)
    y = ops.convert_to_numpy(layer(x, training=True))
    kept = y.reshape(64, -1).max(axis=1)
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert all((y[i] == kept[i]).all() for i in range(64))       # a whole example's skip, not single units
    if per == "example":
        assert 10 < kept.sum() < 54
    else:
        assert kept.min() == kept.max()
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)


def test_skip_dropout_makes_the_reconstruction_depend_on_the_deep_path_only_when_dropped():
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8), corruption="none",
                  skip_dropout=0.999, skip_dropout_per="batch")
    drop = [layer for layer in ae.layers if isinstance(layer, SkipDropout)]
    assert drop, "skip_dropout built no SkipDropout layer"
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    a = ops.convert_to_numpy(ae(x, training=True))
    no_skip = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8), corruption="none", skips=False)
    for layer in no_skip.layers:
        if layer.weights:
            layer.set_weights(ae.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(a, ops.convert_to_numpy(no_skip(x, training=False)), atol=1e-5)
    assert not np.allclose(ops.convert_to_numpy(ae(x, training=False)), a)      # at inference the skips are back
    clf = ks.build("classifier", "tiny", input_shape=(16, 16, 1), widths=(4, 8), encoder=ae)
    assert not [layer for layer in clf.layers if isinstance(layer, SkipDropout)]


def test_pretext_options_round_trip_through_a_keras_file(tmp_path):
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8), corruption="block_noise",
                  corruption_level=0.4, corruption_block=3, loss_on="corrupted", skip_dropout=0.3)
    path = tmp_path / "ae.keras"
    ae.save(path)
    back = ks.load(path)
    assert (back.arch.corruption, back.arch.corruption_block, back.arch.loss_on, back.arch.skip_dropout) == \
        ("block_noise", 3, "corrupted", 0.3)
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(back.predict(x, verbose=0), ae.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("bad, field", [({"corruption_block": 0}, "corruption_block"),
                                        ({"skip_dropout": 1.0}, "skip_dropout"),
                                        ({"loss_on": "some"}, "loss_on"),
                                        ({"corruption": "gaussian", "corruption_level": 0.1,
                                          "loss_on": "corrupted"}, "loss_on"),
                                        ({"corruption": "none", "loss_on": "corrupted"}, "loss_on"),
                                        ({"corruption_level": 0.0, "loss_on": "corrupted"}, "loss_on")])
def test_bad_pretext_options_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        Arch(**bad)


@pytest.mark.parametrize("monitor, mode", [("val_accuracy", "max"), ("val_mean_iou", "max"), ("val_auc", "max"),
                                           ("val_loss", "min"), ("val_mse", "min"), ("val_psnr", "max"),
                                           ("val_probe_accuracy", "max"), ("val_thing:max", "max")])
def test_monitor_mode_comes_from_the_metric_not_a_substring(monitor, mode):
    assert monitor_mode(monitor)[1] == mode


def test_unknown_monitor_without_a_mode_is_refused():
    with pytest.raises(ValueError, match="val_thing:max"):
        monitor_mode("val_thing")


def test_probe_monitor_picks_the_epoch_with_the_best_probe_on_a_scripted_history(tmp_path):
    model = ks.build("autoencoder", "tiny", input_shape=(8, 8, 1), widths=(2,))
    scripted = {0: 0.5, 1: 0.9, 2: None, 3: 0.7}           # epoch 3 is not probed
    checkpoints = ModelCheckpoints(tmp_path, *monitor_mode("val_probe_accuracy"))
    checkpoints.set_model(model)
    checkpoints.on_train_begin()
    for epoch, value in scripted.items():
        logs = {"loss": 1.0 / (epoch + 1), "val_loss": 1.0 / (epoch + 1)}   # reconstruction improves throughout
        if value is not None:
            logs["val_probe_accuracy"] = value
        checkpoints.on_epoch_end(epoch, logs)
    assert checkpoints.best_epoch == 2 and checkpoints.best_value == 0.9


def test_online_probe_logs_feature_quality_and_picks_the_best_epoch(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(160) % 2
    images = rng.normal(size=(160, 8, 8, 1)).astype("float32") + labels[:, None, None, None] * 1.5
    probe = OnlineProbe(images[:80], labels[:80], images[80:], labels[80:], every=2)
    trainer = Trainer(seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", "tiny", input_shape=(8, 8, 1), widths=(4,))
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((images, images)).batch(40)
    history = trainer.fit(model, ds, None, epochs=3, run_dir=tmp_path / "stage", monitor="val_probe_accuracy",
                          callbacks=[probe], verbose=0)
    probed = [v for v in history.history.get("val_probe_accuracy", [])]
    assert len(probed) == 2                                # epochs 2 and 3 (every 2, and the last)
    assert all(0.5 <= v <= 1.0 for v in probed)
    assert history.best_epoch in (2, 3)
    assert len(probe.seconds) == 2
