"""Shapes, skips, corruption and input handling of the three model kinds."""

import numpy as np
import pytest

import keras
import keras_skipae as ks
from keras_skipae.models.encoder import encoder_layers

PRESETS = ["tiny", "allconv-c", "rednet10", "rednet20", "rednet30"]


def test_presets_listed_with_descriptions():
    names = ks.presets()
    assert {"allconv-c", "rednet10", "rednet20", "rednet30", "tiny"} <= set(names)
    assert all(isinstance(d, str) and d for d in names.values())


@pytest.mark.parametrize("preset", PRESETS)
def test_output_shapes_for_each_kind_and_preset(preset):
    shape = (32, 32, 3)
    ae = ks.build("autoencoder", preset, input_shape=shape)
    clf = ks.build("classifier", preset, input_shape=shape, num_classes=7)
    seg = ks.build("segmenter", preset, input_shape=shape, num_classes=5)
    assert ae.output_shape == (None, 32, 32, 3)
    assert clf.output_shape == (None, 7)
    assert seg.output_shape == (None, 32, 32, 5)
    x = np.random.rand(2, *shape).astype("float32")
    probs = clf(x).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_rednet_depths_follow_the_paper():
    for preset, n in [("rednet10", 5), ("rednet20", 10), ("rednet30", 15)]:
        ae = ks.build("autoencoder", preset)
        convs = [l for l in ae.layers if isinstance(l, keras.layers.Conv2D) and not isinstance(l, keras.layers.Conv2DTranspose)]
        deconvs = [l for l in ae.layers if isinstance(l, keras.layers.Conv2DTranspose)]
        assert len(convs) == n and len(deconvs) == n
        assert all(l.kernel_size == (3, 3) for l in convs + deconvs)
        assert all(l.filters == 64 for l in convs)


def test_allconv_c_encoder_widths_and_strides():
    clf = ks.build("classifier", "allconv-c")
    convs = [l for l in encoder_layers(clf) if isinstance(l, keras.layers.Conv2D)]
    assert [l.filters for l in convs] == [96, 96, 96, 192, 192, 192]
    assert [l.strides for l in convs] == [(1, 1), (1, 1), (2, 2), (1, 1), (1, 1), (2, 2)]
    assert not any(isinstance(l, keras.layers.Dense) for l in clf.layers)


def test_unknown_kind_preset_or_field_names_the_valid_ones():
    with pytest.raises(ValueError, match="classifier"):
        ks.build("detector", "tiny")
    with pytest.raises(ValueError, match="rednet10"):
        ks.build("autoencoder", "resnet50")
    with pytest.raises(ValueError, match="widths"):
        ks.build("autoencoder", "tiny", widht=(4, 8))
    with pytest.raises(ValueError, match="merge"):
        ks.build("autoencoder", "tiny", merge="multiply")


def _merge_layers(model):
    return [l for l in model.layers if isinstance(l, (keras.layers.Add, keras.layers.Concatenate))]


def test_skips_change_the_graph_not_the_parameters_when_adding():
    with_skips = ks.build("autoencoder", "rednet10", input_shape=(16, 16, 3))
    without = ks.build("autoencoder", "rednet10", input_shape=(16, 16, 3), skips=False)
    # 5 conv layers, skip every 2 -> skips from conv2 and conv4
    assert sorted(l.name for l in _merge_layers(with_skips)) == ["decoder_skip2_add", "decoder_skip4_add"]
    assert _merge_layers(without) == []
    assert with_skips.count_params() == without.count_params()
    # the skip is wired from the mirrored encoder layer
    add = with_skips.get_layer("decoder_skip2_add")
    sources = {t._keras_history[0].name for t in add.input}
    assert "encoder_conv2_act" in sources


def test_concat_skips_add_parameters_and_skip_every_controls_spacing():
    add = ks.build("autoencoder", "rednet10", input_shape=(16, 16, 3))
    concat = ks.build("autoencoder", "rednet10", input_shape=(16, 16, 3), merge="concat")
    assert concat.count_params() > add.count_params()
    every1 = ks.build("autoencoder", "rednet10", input_shape=(16, 16, 3), skip_every=1)
    assert len(_merge_layers(every1)) == 4


def test_skips_change_what_the_network_computes():
    a = ks.build("autoencoder", "tiny", corruption="none")
    b = ks.build("autoencoder", "tiny", corruption="none", skips=False)
    b.set_weights(a.get_weights())  # same parameters, different wiring
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    assert np.abs(a(x).numpy() - b(x).numpy()).max() > 1e-4


@pytest.mark.parametrize("corruption,level", [("gaussian", 0.2), ("masking", 0.3), ("salt_pepper", 0.3)])
def test_corruption_acts_only_in_training(corruption, level):
    ae = ks.build("autoencoder", "tiny", corruption=corruption, corruption_level=level)
    layer = ae.get_layer("corruption")
    x = np.random.rand(4, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    y = layer(x, training=True).numpy()
    changed = np.mean(np.any(np.abs(y - x) > 1e-6, axis=-1))
    if corruption == "gaussian":
        assert changed > 0.99
        assert abs(np.std(y - x) - level) < 0.02  # std in units of the pixel range [0, 1]
    else:
        assert abs(changed - level) < 0.05
        hit = np.any(np.abs(y - x) > 1e-6, axis=-1)
        assert set(np.unique(y[hit])) <= {0.0, 1.0}
    # inference through the whole model is deterministic
    np.testing.assert_array_equal(ae(x, training=False).numpy(), ae(x, training=False).numpy())


def test_corruption_none_builds_no_layer():
    ae = ks.build("autoencoder", "tiny", corruption="none")
    assert "corruption" not in [l.name for l in ae.layers]


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (7, 9), (64, 50)])
@pytest.mark.parametrize("channels", [1, 3])
def test_segmenter_takes_any_size(size, channels):
    seg = ks.build("segmenter", "tiny", input_shape=(None, None, channels), num_classes=4)
    x = np.random.rand(1, *size, channels).astype("float32")
    assert seg(x).shape == (1, *size, 4)


def test_autoencoder_takes_odd_sizes():
    ae = ks.build("autoencoder", "tiny", input_shape=(None, None, 1))
    assert ae(np.random.rand(1, 31, 45, 1).astype("float32")).shape == (1, 31, 45, 1)


def test_bilinear_upsampling_is_bilinear_at_init():
    seg = ks.build("segmenter", "tiny", num_classes=3)
    up = seg.get_layer("seg_up0")
    x = np.ones((1, 5, 5, 3), "float32")
    y = up(x).numpy()
    np.testing.assert_allclose(y[0, 1:-1, 1:-1], 1.0, atol=1e-6)  # constant stays constant
    ramp = np.tile(np.arange(5, dtype="float32")[None, :, None, None], (1, 1, 5, 3)).transpose(0, 1, 2, 3)
    out = up(ramp).numpy()[0, 2:-2, 2, 0]
    assert np.all(np.diff(out) > 0)  # monotone interpolation, no checkerboard


def test_input_normalisation_is_recorded():
    ae = ks.build("autoencoder", "tiny", mean=(0.5, 0.4, 0.3), std=(0.2,), pixel_scale=1 / 255)
    assert ae.arch.channel_mean() == [0.5, 0.4, 0.3]
    assert ae.arch.channel_std() == [0.2, 0.2, 0.2]
    assert ae.get_config()["arch"]["mean"] == [0.5, 0.4, 0.3]
    with pytest.raises(ValueError, match="channels"):
        ks.build("autoencoder", "tiny", mean=(0.5, 0.4))


def test_freeze_and_unfreeze_encoder():
    clf = ks.build("classifier", "tiny", freeze_encoder=True)
    assert clf.encoder_frozen
    frozen_trainable = len(clf.trainable_weights)
    ks.unfreeze_encoder(clf)
    assert not clf.encoder_frozen
    assert len(clf.trainable_weights) > frozen_trainable


def test_encoder_model_gives_features():
    ae = ks.build("autoencoder", "tiny")
    enc = ks.encoder_model(ae)
    assert enc.output_shape == (None, 8, 8, 16)
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    clf = ks.build("classifier", "tiny", encoder=ae)
    np.testing.assert_allclose(enc(x).numpy(), ks.encoder_model(clf)(x).numpy(), atol=1e-6)


def test_autoencoder_learns_to_reconstruct():
    x = np.random.rand(64, 32, 32, 3).astype("float32")
    ae = ks.build("autoencoder", "tiny", corruption="none")
    ae.compile(keras.optimizers.Adam(3e-3), "mse")
    before = ae.evaluate(x, x, verbose=0)
    ae.fit(x, x, epochs=15, batch_size=16, verbose=0)
    assert ae.evaluate(x, x, verbose=0) < 0.5 * before


def test_corruption_specs_parse_in_one_place():
    from keras_skipae.arch import parse_corruption

    assert parse_corruption("masking:0.5") == ("masking", 0.5)
    assert parse_corruption("gaussian") == ("gaussian", 0.25)
    assert parse_corruption("none") is None and parse_corruption("") is None
    with pytest.raises(ValueError, match="the kind must be one of gaussian, masking, salt_pepper"):
        parse_corruption("blur:0.1")
    with pytest.raises(ValueError, match="the level 'x' is not a number"):
        parse_corruption("masking:x")
