"""keras_skipae.probe.features: pooled encoder features, the linear probe and k-NN."""

import numpy as np
import pytest

import keras_skipae as ks
from keras_skipae.probe import features


def test_linear_probe_separates_separable_features_and_not_random_labels(rng):
    y = rng.integers(0, 4, 400)
    informative = rng.normal(size=(400, 6))
    informative[np.arange(400), y] += 4.0
    result = features.linear_probe_accuracy(informative[:200], y[:200], informative[200:], y[200:])
    assert result.accuracy > 0.9
    assert result.l2 in features.L2_GRID
    noise = rng.normal(size=(400, 6))
    assert features.linear_probe_accuracy(noise[:200], y[:200], noise[200:], y[200:]).accuracy < 0.45


def test_knn_votes_by_cosine_neighbours():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    test = np.array([[0.8, 0.05], [0.05, 0.7]])
    # centred on the training mean, the two test points point towards their class
    assert features.knn_accuracy(train, labels, test, np.array([0, 1]), k=1) == 1.0
    assert features.knn_accuracy(train, labels, test, np.array([1, 0]), k=1) == 0.0


def test_feature_model_pools_the_encoder_output():
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1))
    x = np.zeros((3, 16, 16, 1), "float32")
    assert features.extract_features(ae, x).shape == (3, 16)
    assert features.extract_features(ae, x, pooling="avgmax").shape == (3, 32)
    with pytest.raises(ValueError, match="unknown pooling"):
        features.feature_model(ae, "median")


def test_probe_rejects_mismatched_inputs(rng):
    with pytest.raises(ValueError, match="differ in length"):
        features.linear_probe_accuracy(rng.normal(size=(5, 2)), np.zeros(4, int), rng.normal(size=(2, 2)), [0, 1])
