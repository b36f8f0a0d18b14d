"""Exact rewrites of the serving graph's transposed convolutions into forward convolutions.

TensorFlow runs a ``Conv2DTranspose`` as ``Conv2DBackpropInput``, a gradient
kernel that Grappler does not fuse with its bias and activation; on CPUs it is
markedly slower than a forward ``Conv2D``, which oneDNN fuses with both. Both
rewrites below compute the same function, only the summation order differs
(float32 rounding, about 1e-6 of the output's scale):

- stride 1, ``padding="same"``, odd kernel: a ``Conv2D`` with the kernel
  flipped in space and its two channel axes swapped;
- stride ``s`` > 1, ``padding="same"``: a sub-pixel convolution
  (:class:`SubPixelConvTranspose`): a stride-1 convolution on the input that
  produces the ``s * s`` output phases as channels, then ``depth_to_space``.
  Each output phase reads only the taps that land on it, so no zeros are
  multiplied in (Shi et al. 2016, "Is the deconvolution layer the same as a
  convolutional layer?").

:func:`forward_convolutions` applies them to a built keras_skipae model and
returns a plain functional model that shares every other layer (and so its
weights) with it. :class:`~keras_skipae.export.serving.ServingModule` uses it
for the SavedModel and ONNX graphs; every export still checks parity against
the Keras model before it is written.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..layers import PACKAGE


def same_padding_before(kernel: int, stride: int) -> int:
    """Rows of padding before the input of a ``padding="same"`` convolution that the transposed one mirrors."""
    return max(kernel - stride, 0) // 2


def phase_taps(kernel: int, stride: int) -> tuple[list[tuple[int, int, int]], int, int]:
    """``([(phase, tap, offset)], lowest offset, highest offset)`` along one axis.

    Output ``p = stride * j + phase`` of a same-padded transposed convolution
    sums ``input[j - offset] * w[tap]`` over the listed taps of its phase.
    """
    before = same_padding_before(kernel, stride)
    taps = [(r, t, (t - r - before) // stride) for r in range(stride) for t in range(kernel)
            if (t - r - before) % stride == 0]
    offsets = [d for _, _, d in taps]
    return taps, min(offsets), max(offsets)


def subpixel_kernel(kernel: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """A ``Conv2DTranspose`` kernel ``(kh, kw, out, in)`` as the sub-pixel convolution's ``(lh, lw, in, sh*sw*out)``."""
    kh, kw, out, inp = kernel.shape
    (sh, sw) = stride
    rows, low_h, high_h = phase_taps(kh, sh)
    cols, low_w, high_w = phase_taps(kw, sw)
    result = np.zeros((high_h - low_h + 1, high_w - low_w + 1, inp, sh, sw, out), kernel.dtype)
    for rh, th, dh in rows:
        for rw, tw, dw in cols:
            result[high_h - dh, high_w - dw, :, rh, rw, :] = kernel[th, tw].T
    return result.reshape(result.shape[0], result.shape[1], inp, sh * sw * out)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SubPixelConvTranspose(keras.layers.Layer):
    """A same-padded strided transposed convolution computed as convolution + ``depth_to_space``.

    Built from a ``Conv2DTranspose``'s configuration; its weights come from
    that layer's through :func:`subpixel_kernel`. Output shape is the
    transposed convolution's: ``(batch, h * s, w * s, filters)``.

    Args:
        filters: output channels of the transposed convolution.
        kernel_size: its ``(kh, kw)``.
        strides: its ``(sh, sw)``, equal (``depth_to_space`` takes one block size).
        use_bias: whether it adds a bias.
        activation: applied after the phases are interleaved, as the transposed convolution applies it.
    """

    def __init__(self, filters: int, kernel_size, strides, use_bias: bool = True, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        if self.strides[0] != self.strides[1] or self.strides[0] < 2:
            raise ValueError(f"layer {self.name!r}: SubPixelConvTranspose needs equal strides of 2 or more, got {self.strides}")
        self.use_bias = bool(use_bias)
        (_, low_h, high_h), (_, low_w, high_w) = (phase_taps(k, s) for k, s in zip(self.kernel_size, self.strides))
        # tap r + before < kernel always exists for phase 0, so the offsets span 0: low <= 0 <= high
        self.pads = [[0, 0], [high_h, -low_h], [high_w, -low_w], [0, 0]]
        self.window = (high_h - low_h + 1, high_w - low_w + 1)

    def build(self, input_shape):
        phases = self.strides[0] * self.strides[1]
        self.kernel = self.add_weight(shape=(*self.window, input_shape[-1], phases * self.filters), name="kernel")
        self.bias = self.add_weight(shape=(phases * self.filters,), name="bias", initializer="zeros") if self.use_bias else None

    def call(self, x):
        x = tf.pad(x, self.pads)
        y = tf.nn.conv2d(x, self.kernel, 1, "VALID")
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return self.activation(tf.nn.depth_to_space(y, self.strides[0]))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides[0]
        return (b, None if h is None else h * s, None if w is None else w * s, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                      use_bias=self.use_bias, activation=keras.activations.serialize(self.activation))
        return config


def rewritable(layer) -> str | None:
    """``"conv"``, ``"subpixel"`` or None: how :func:`forward_convolutions` rewrites ``layer``."""
    if not isinstance(layer, keras.layers.Conv2DTranspose) or layer.padding != "same":
        return None
    if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "output_padding", None) is not None:
        return None
    strides = tuple(layer.strides)
    if strides == (1, 1):
        return "conv" if all(k % 2 == 1 for k in layer.kernel_size) else None
    if strides[0] == strides[1]:
        return "subpixel"
    return None


def forward_convolutions(model: keras.Model) -> keras.Model:
    """A functional copy of ``model`` whose rewritable transposed convolutions are forward convolutions.

    Layers other than the rewritten ones are shared with ``model`` (their
    weights too); the rewritten layers keep their names and get the
    transformed weights. A model with nothing to rewrite is returned as is.

    >>> fast = forward_convolutions(ks.build("autoencoder", "tiny"))
    """
    if not any(rewritable(layer) for layer in model.layers):
        return model
    replaced = {}

    def clone(layer):
        how = rewritable(layer)
        if how is None:
            return layer
        if how == "conv":
            new = keras.layers.Conv2D(layer.filters, layer.kernel_size, padding="same", use_bias=layer.use_bias,
                                      activation=layer.activation, name=layer.name, dtype=layer.dtype_policy)
        else:
            new = SubPixelConvTranspose(layer.filters, layer.kernel_size, layer.strides, layer.use_bias,
                                        activation=layer.activation, name=layer.name, dtype=layer.dtype_policy)
        replaced[layer.name] = (layer, new, how)
        return new

    twin = keras.models.clone_model(model, clone_function=clone)
    for source, new, how in replaced.values():
        weights = source.get_weights()
        if how == "conv":
            weights[0] = np.transpose(weights[0][::-1, ::-1], (0, 1, 3, 2))
        else:
            weights[0] = subpixel_kernel(weights[0], tuple(source.strides))
            if source.use_bias:
                weights[1] = np.tile(weights[1], source.strides[0] * source.strides[1])
        new.set_weights(weights)
    return twin
