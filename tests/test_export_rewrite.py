"""The serving graph's transposed convolutions rewritten as forward convolutions compute the same function.

The SavedModel export runs them as ``Conv2D`` (stride 1) or a sub-pixel
convolution (strided), which TensorFlow fuses and runs faster on CPUs
(``benchmarks/inference.py``); every other format keeps ``Conv2DTranspose``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import export
from keras_skipae.export.rewrite import SubPixelConvTranspose, forward_convolutions, subpixel_kernel


def _one_layer(kernel, stride, activation=None, use_bias=True, channels=3):
    inputs = keras.Input((None, None, channels))
    layer = keras.layers.Conv2DTranspose(5, kernel, strides=stride, padding="same", activation=activation,
                                         use_bias=use_bias, name="up")
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(kernel * 10 + stride)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("kernel,stride", [(3, 1), (5, 1), (1, 1), (3, 2), (2, 2), (4, 2), (5, 2), (3, 3), (6, 3),
                                           (8, 4), (16, 8)])
@pytest.mark.parametrize("size", [(7, 9), (4, 4), (1, 3)])
def test_each_rewrite_computes_the_transposed_convolution(kernel, stride, size):
    model = _one_layer(kernel, stride, activation="relu")
    fast = forward_convolutions(model)
    layer = fast.get_layer("up")
    assert type(layer) is (keras.layers.Conv2D if stride == 1 else SubPixelConvTranspose)
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    want, got = model(x).numpy(), fast(x).numpy()
    assert got.shape == want.shape == (2, size[0] * stride, size[1] * stride, 5)
    np.testing.assert_allclose(got, want, atol=2e-5 * max(1.0, np.abs(want).max()))


def test_the_subpixel_kernel_places_each_tap_on_its_phase():
    """3x3, stride 2: even outputs read taps 0 and 2 (two input rows), odd outputs tap 1 (one row)."""
    k = np.arange(9, dtype="float32").reshape(3, 3, 1, 1)  # tap (i, j) holds 3i + j
    sub = subpixel_kernel(k, (2, 2)).reshape(2, 2, 2, 2)  # (window row, window col, phase row, phase col)
    # window position 0 reads input j-1, position 1 input j; phase (0, 0) uses taps 2 (at j-1) and 0 (at j)
    assert sub[:, :, 0, 0].tolist() == [[8, 6], [2, 0]]
    assert sub[:, :, 1, 1].tolist() == [[0, 0], [0, 4]]
    assert sub[:, :, 0, 1].tolist() == [[0, 7], [0, 1]]


def test_layers_without_a_rewrite_stay_and_everything_else_is_shared():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(4, 2, padding="same", name="even_kernel")(x)  # stride 1, even: no exact twin
    x = keras.layers.Conv2DTranspose(4, 3, strides=(2, 1), padding="same", name="unequal")(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="valid", name="valid")(x)
    model = keras.Model(inputs, x)
    assert forward_convolutions(model) is model, "nothing to rewrite: the model itself"
    x = keras.layers.Conv2DTranspose(2, 3, padding="same", name="rewritten")(model.output)
    bigger = keras.Model(inputs, x)
    fast = forward_convolutions(bigger)
    for name in ("conv", "even_kernel", "unequal", "valid"):
        assert fast.get_layer(name) is bigger.get_layer(name)
    assert type(fast.get_layer("rewritten")) is keras.layers.Conv2D
    sample = np.random.default_rng(1).normal(size=(1, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(fast(sample).numpy(), bigger(sample).numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["autoencoder", "segmenter"])
def test_the_savedmodel_graph_runs_no_transposed_convolution(kind, tmp_path):
    """The exported serving functions hold forward convolutions only, and still match the Keras model."""
    keras.utils.set_random_seed(3)
    model = ks.build(kind, "tiny", **({"num_classes": 4} if kind == "segmenter" else {}))
    result = export.saved_model(model, tmp_path, seed=0)
    assert result.parity.passed
    loaded = tf.saved_model.load(str(result.path))
    graph = loaded.signatures["normalised"].graph
    ops = {node.op for fn in graph.as_graph_def().library.function for node in fn.node_def} | {
        op.type for op in graph.get_operations()}
    assert "Conv2D" in ops and "Conv2DBackpropInput" not in ops
    plain = export.ServingModule(model, validate=False)  # the graph ONNX and LiteRT get
    plain_ops = {op.type for op in plain.normalised.get_concrete_function().graph.get_operations()}
    assert "Conv2DBackpropInput" in plain_ops
    h, w = (24, 40) if kind == "segmenter" else model.arch.input_shape[:2]
    x = np.random.default_rng(2).random((2, h, w, 3)).astype("float32")  # in the [0, 1] the tiny preset takes
    want = plain.normalised(tf.constant(x))
    got = loaded.signatures["normalised"](images=tf.constant(x))
    for name, value in want.items():
        np.testing.assert_allclose(got[name].numpy(), value.numpy(), atol=1e-4)
