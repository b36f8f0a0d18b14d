"""Batch transforms: channel conversion, exact crops and flips, sample weights, corruption."""

import numpy as np
import pytest
import tensorflow as tf

from keras_skipae.arch import Arch
from keras_skipae.data import transforms as T


def test_channel_conversion_both_ways():
    grey = tf.constant(np.arange(8, dtype="float32").reshape(1, 2, 2, 2)[..., :1])
    rgb = T.match_channels(grey, 3)
    assert rgb.shape == (1, 2, 2, 3) and np.all(rgb.numpy() == grey.numpy())
    back = T.match_channels(rgb, 1)
    np.testing.assert_allclose(back.numpy(), grey.numpy(), rtol=1e-3)  # luminance weights sum to 0.9999


def test_crop_without_padding_and_flip_is_the_identity_or_a_mirror():
    x = tf.constant(np.random.default_rng(0).random((8, 6, 7, 3)).astype("float32"))
    out = T.random_crop_flip(x, tf.constant([1, 2], tf.int64), padding=0).numpy()
    for o, i in zip(out, x.numpy()):
        assert np.allclose(o, i, atol=1e-5) or np.allclose(o, i[:, ::-1], atol=1e-5)


def test_scale_crop_uses_the_same_boxes_for_image_and_mask():
    mask = np.tile(np.arange(10, dtype="int32")[None, :], (10, 1))[None].repeat(4, axis=0)
    image = tf.constant(mask[..., None].astype("float32"))
    x, m = T.augment_segmentation(image, tf.constant(mask), tf.constant([3, 4], tf.int64), (6, 6), (1.0, 1.0))
    np.testing.assert_array_equal(x.numpy()[..., 0].astype(int), m.numpy())


def test_sample_weights_and_masks_outside_the_image():
    masks = tf.constant([[0, 11, -1, 3]])
    fixed, w = T.sample_weights(masks, 11)
    assert fixed.numpy().tolist() == [[0, 0, 0, 3]] and w.numpy().tolist() == [[1, 0, 0, 1]]
    fixed, w = T.sample_weights(masks, None)
    assert w.numpy().tolist() == [[1, 1, 0, 1]]


def test_salt_and_pepper_uses_black_and_white_of_the_normalisation():
    arch = Arch(input_shape=(32, 32, 1), corruption="salt_pepper", corruption_level=0.5, mean=(0.5,), std=(0.25,))
    x = tf.zeros((4, 32, 32, 1))
    out = T.corrupt(x, arch, tf.constant([0, 0], tf.int64)).numpy()
    values = set(np.unique(out).tolist())
    assert values == {-2.0, 0.0, 2.0}  # black (0 - 0.5)/0.25, untouched, white (1 - 0.5)/0.25
    hit = out != 0
    assert 0.4 < hit.mean() < 0.6 and 0.4 < (out[hit] > 0).mean() < 0.6


@pytest.mark.parametrize("channels,shape", [(3, (5, 7, 9)), (1, (4, 28, 28)), (3, (2, 31, 17))])
def test_normalise_is_the_formula_bit_for_bit_on_batches_and_keeps_the_static_shape(channels, shape):
    from keras_skipae.models import resolve_arch

    arch = resolve_arch("tiny", input_shape=(None, None, channels), mean=[0.3, 0.5, 0.2][:channels],
                        std=[0.2, 0.25, 0.3][:channels])  # fmt: skip
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (*shape, channels)).astype("float32"))
    mean, std = tf.constant(arch.channel_mean()), tf.constant(arch.channel_std())
    expected = (x * tf.cast(arch.pixel_scale, tf.float32) - mean) / std
    np.testing.assert_array_equal(T.normalise(x, arch).numpy(), expected.numpy())
    np.testing.assert_array_equal(T.normalise(x[0], arch).numpy(), expected[0].numpy())  # one image
    np.testing.assert_array_equal(T.normalise(x.numpy(), arch).numpy(), expected.numpy())  # a numpy batch
    graph = tf.function(lambda v: T.normalise(v, arch)).get_concrete_function(
        tf.TensorSpec([None, shape[1], shape[2], channels]))
    assert graph.structured_outputs.shape.as_list() == [None, shape[1], shape[2], channels]
