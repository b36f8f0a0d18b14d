"""keras_skipae.probe.reconstruction: MSE / PSNR / SSIM on clean and corrupted images, in [0, 1] pixel units."""

import math

import numpy as np
import pytest

import keras_skipae as ks
from keras_skipae.probe import reconstruction
from test_probe import make_images


def test_image_quality_and_seeded_corruption():
    arch = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1)).arch
    images, _ = make_images(8)
    x = reconstruction.normalise(images, arch)
    perfect = reconstruction.image_quality(x, x, arch)
    assert perfect["mse"] == 0 and math.isinf(perfect["psnr"]) and perfect["ssim"] == pytest.approx(1.0)
    a = reconstruction.corrupt(x, arch, "masking", 0.3, seed=4)
    b = reconstruction.corrupt(x, arch, "masking", 0.3, seed=4)
    np.testing.assert_array_equal(a, b)
    masked = np.mean((a == 0) & (x != 0))
    assert 0.2 < masked < 0.4
    damaged = reconstruction.image_quality(x, a, arch)
    assert damaged["mse"] > 0 and damaged["psnr"] < 30 and damaged["ssim"] < 1


def test_normalise_converts_channels_and_size():
    arch = ks.build("autoencoder", "tiny").arch  # 32x32x3
    x = reconstruction.normalise(np.full((2, 16, 16), 255, "uint8"), arch)
    assert x.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(x, 1.0, atol=1e-6)


def test_normalise_is_the_pipelines_normalisation_and_to_unit_inverts_it():
    from keras_skipae.data import transforms

    arch = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), mean=(0.3,), std=(0.2,)).arch
    images, _ = make_images(8)
    x = reconstruction.normalise(images, arch)
    # bit for bit what the tf.data pipelines feed the model
    np.testing.assert_array_equal(x, transforms.normalise(images.astype("float32"), arch).numpy())
    np.testing.assert_allclose(reconstruction.to_unit(x, arch), images / 255.0, atol=1e-6)
