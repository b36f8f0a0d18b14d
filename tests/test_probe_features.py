"""keras_skipae.probe.features: pooled encoder features, the linear probe and k-NN."""

import numpy as np
import pytest

import keras_skipae as ks
from keras_skipae.probe import features


def test_linear_probe_scores_separable_and_uninformative_features_exactly(rng):
    y = rng.integers(0, 4, 400)
    # class c adds 10 to feature c over uniform noise in [-1, 1): every example is separable by a margin of 8
    separable = rng.uniform(-1, 1, size=(400, 6))
    separable[np.arange(400), y] += 10.0
    result = features.linear_probe_accuracy(separable[:200], y[:200], separable[200:], y[200:])
    assert result.accuracy == 1.0
    assert result.l2 == features.L2_GRID[0], "every penalty separates the validation fifth: the smallest is kept"
    assert features.knn_accuracy(separable[:200], y[:200], separable[200:], y[200:], k=5) == 1.0
    # features that say nothing (the same for every example): the probe can only predict the majority class of
    # the labelled set (class 2 here), so its accuracy is that class's share of the held-out labels, 3 of 8
    train_y = np.array([0] * 20 + [1] * 30 + [2] * 50)
    test_y = np.array([0, 1, 2, 2, 0, 1, 2, 1])
    constant = np.ones((100, 6))
    assert features.linear_probe_accuracy(constant, train_y, np.ones((8, 6)), test_y).accuracy == 3 / 8


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
