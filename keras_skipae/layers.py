"""Serializable layers and initialisers used by keras_skipae's models.

Every class here is registered with Keras under the ``keras_skipae`` package
and has a complete ``get_config``, so saved ``.keras`` files load with
``safe_mode=True`` and no ``custom_objects``.

Corruption layers act only when called with ``training=True``; at inference
they return their input unchanged. Their noise is measured in units of the
pixel range: a ``level`` of 0.1 for Gaussian noise is a standard deviation of a
tenth of the range from black to white, whatever the input normalisation.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

PACKAGE = "keras_skipae"


def _per_channel(values):
    return [float(v) for v in np.ravel(values)]


def apply_corruption(x, mode, level, low, high, uniform, normal, block=4):
    """Corrupt a batch ``x`` of shape (batch, height, width, channels).

    ``low``/``high`` are per-channel values of a black and a white pixel in the
    input's units; ``uniform(shape)`` and ``normal(shape)`` draw random tensors.
    ``block`` is the side of the square patches of ``block_masking`` and
    ``block_noise``. Shared by the corruption layers and by input pipelines that
    corrupt data outside the model.
    """
    return corrupt_with_mask(x, mode, level, low, high, uniform, normal, block)[0]


def corrupt_with_mask(x, mode, level, low, high, uniform, normal, block=4):
    """:func:`apply_corruption` that also returns which pixels it corrupted: ``(corrupted, mask)``.

    ``mask`` is (batch, height, width, 1) in ``x``'s dtype, 1 where a pixel was
    corrupted (every pixel for gaussian noise), 0 elsewhere; None when nothing
    was corrupted (``mode="none"`` or ``level=0``).

    Pixel kinds (``masking``, ``salt_pepper``) hit single pixels, all channels
    together; block kinds cover a fraction ``level`` of a grid of
    ``block`` x ``block`` patches whose origin moves by a random offset every
    batch, and fill them with black (``block_masking``) or uniform noise
    between black and white (``block_noise``).
    """
    if mode == "none" or level == 0:
        return x, None
    dtype = x.dtype
    low = ops.cast(ops.convert_to_tensor(low), dtype)
    high = ops.cast(ops.convert_to_tensor(high), dtype)
    shape = ops.shape(x)
    if mode == "gaussian":
        noisy = x + ops.cast(level, dtype) * (high - low) * ops.cast(normal(shape), dtype)
        return noisy, ops.ones((shape[0], shape[1], shape[2], 1), dtype)
    pixel_shape = (shape[0], shape[1], shape[2], 1)
    if mode in ("block_masking", "block_noise"):
        hit = _block_mask(shape, int(block), level, uniform, dtype)
    elif mode in ("masking", "salt_pepper"):
        hit = ops.cast(uniform(pixel_shape) < level, dtype)
    else:
        raise ValueError(f"unknown corruption {mode!r}; expected none, gaussian, masking, salt_pepper, "
                         "block_masking or block_noise")
    if mode in ("masking", "block_masking"):
        value = low
    elif mode == "salt_pepper":
        salt = ops.cast(uniform(pixel_shape) < 0.5, dtype)
        value = salt * high + (1 - salt) * low
    else:  # block_noise: every channel of a covered pixel uniform between black and white
        value = low + (high - low) * ops.cast(uniform(shape), dtype)
    return x * (1 - hit) + hit * value, hit


def _block_mask(shape, block, level, uniform, dtype):
    """(batch, height, width, 1): whole ``block`` x ``block`` cells of a randomly offset grid, each on with odds ``level``."""
    batch, height, width = shape[0], shape[1], shape[2]
    rows = height // block + 2
    cols = width // block + 2
    cells = ops.cast(uniform((batch, rows, cols, 1)) < level, dtype)
    grid = ops.repeat(ops.repeat(cells, block, axis=1), block, axis=2)
    offset = ops.cast(ops.floor(ops.cast(uniform((2,)), "float32") * block), "int32")
    return ops.slice(grid, ops.stack([0, offset[0], offset[1], 0]), ops.stack([batch, height, width, 1]))


class _Corruption(keras.layers.Layer):
    kind = "none"

    def __init__(self, level, low=(0.0,), high=(1.0,), seed=None, block=4, **kwargs):
        super().__init__(**kwargs)
        self.level = float(level)
        self.block = int(block)
        self.low = _per_channel(low)
        self.high = _per_channel(high)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.level == 0:
            return inputs
        return self.corrupt(inputs)[0]

    def corrupt(self, inputs):
        """``(corrupted, mask)`` of a batch, as :func:`corrupt_with_mask` (always corrupts)."""
        return corrupt_with_mask(
            inputs,
            self.kind,
            self.level,
            self.low,
            self.high,
            uniform=lambda s: keras.random.uniform(s, seed=self.seed_generator),
            normal=lambda s: keras.random.normal(s, seed=self.seed_generator),
            block=self.block,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"level": self.level, "low": self.low, "high": self.high, "seed": self.seed,
                       "block": self.block})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class GaussianCorruption(_Corruption):
    """Adds Gaussian noise of std ``level`` x (white - black) in training."""

    kind = "gaussian"


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskingCorruption(_Corruption):
    """Sets a fraction ``level`` of pixels (all channels) to black in training."""

    kind = "masking"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SaltPepperCorruption(_Corruption):
    """Sets a fraction ``level`` of pixels to black or white (even odds) in training."""

    kind = "salt_pepper"


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlockMaskingCorruption(_Corruption):
    """Blanks (sets to black) random ``block`` x ``block`` patches covering a fraction ``level`` in training."""

    kind = "block_masking"


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlockNoiseCorruption(_Corruption):
    """Fills random ``block`` x ``block`` patches covering a fraction ``level`` with uniform noise in training."""

    kind = "block_noise"


CORRUPTION_LAYERS = {
    "gaussian": GaussianCorruption,
    "masking": MaskingCorruption,
    "salt_pepper": SaltPepperCorruption,
    "block_masking": BlockMaskingCorruption,
    "block_noise": BlockNoiseCorruption,
}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CorruptionWithMask(keras.layers.Layer):
    """Training-time corruption that also says which pixels it corrupted: ``call(x) -> [corrupted, mask]``.

    Wraps one of :data:`CORRUPTION_LAYERS` (by ``kind``); ``mask`` is
    (batch, height, width, 1), 1 on corrupted pixels. At inference the input
    passes unchanged and the mask is all zeros. Used by auto-encoders whose
    reconstruction loss counts only the corrupted pixels (``loss_on="corrupted"``).
    """

    def __init__(self, kind, level, low=(0.0,), high=(1.0,), seed=None, block=4, **kwargs):
        super().__init__(**kwargs)
        if kind not in CORRUPTION_LAYERS:
            raise ValueError(f"CorruptionWithMask: unknown kind {kind!r}; expected one of {', '.join(CORRUPTION_LAYERS)}")
        self.kind = kind
        self.inner = CORRUPTION_LAYERS[kind](level, low=low, high=high, seed=seed, block=block, name=f"{kind}_noise")

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, inputs, training=False):
        zeros = ops.zeros_like(inputs[..., :1])
        if not training or self.inner.level == 0:
            return [inputs, zeros]
        corrupted, mask = self.inner.corrupt(inputs)
        return [corrupted, mask]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape), tuple(input_shape[:-1]) + (1,)]

    def get_config(self):
        config = super().get_config()
        inner = self.inner.get_config()
        config.update({"kind": self.kind, **{k: inner[k] for k in ("level", "low", "high", "seed", "block")}})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class CorruptedPixelsOnly(keras.layers.Layer):
    """Restricts a reconstruction's training error to the corrupted pixels: ``call([reconstruction, clean, mask])``.

    In training, pixels outside ``mask`` take the clean target's value (so
    their error, and its gradient, is 0) and the error on the corrupted ones
    is scaled by ``sqrt(pixels / corrupted pixels)``: a mean squared error
    against ``clean`` is then the mean over the corrupted pixels alone, as
    masked auto-encoders train. At inference the reconstruction passes
    unchanged. The training-time metrics (``mse``, ``psnr``, ``ssim`` of the
    fit's logs) see this training output, so they measure the corrupted pixels'
    error only; the validation and test figures count every pixel.
    """

    def call(self, inputs, training=False):
        reconstruction, clean, mask = inputs
        if not training:
            return reconstruction
        mask = ops.cast(mask, reconstruction.dtype)
        clean = ops.cast(clean, reconstruction.dtype)
        share = ops.maximum(ops.mean(mask), ops.cast(1e-6, mask.dtype))
        return clean + (reconstruction - clean) * mask / ops.sqrt(share)

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])


@keras.saving.register_keras_serializable(package=PACKAGE)
class SkipDropout(keras.layers.Layer):
    """Drops a symmetric skip in training: with probability ``rate`` the skip's tensor becomes zeros.

    ``per="example"`` draws for each example, ``per="batch"`` once for the
    whole batch. A kept skip is not rescaled, so at inference (where nothing is
    dropped) the decoder sees the skip exactly as in the training steps that
    kept it. Forces the deep path to carry the image's content.
    """

    def __init__(self, rate, per="example", seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"SkipDropout: rate must be in [0, 1), got {rate}")
        if per not in ("example", "batch"):
            raise ValueError(f"SkipDropout: per must be 'example' or 'batch', got {per!r}")
        self.rate = float(rate)
        self.per = per
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        shape = (ops.shape(inputs)[0], 1, 1, 1) if self.per == "example" else (1, 1, 1, 1)
        keep = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) >= self.rate, inputs.dtype)
        return inputs * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "per": self.per, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Pads height and width at the bottom/right up to a multiple of ``multiple``.

    Lets a network with total stride ``multiple`` take any input size; pair it
    with :class:`CropToReference` to cut the output back.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        if self.multiple == 1:
            return inputs
        shape = ops.shape(inputs)
        m = self.multiple
        pad_h = (m - shape[1] % m) % m
        pad_w = (m - shape[2] % m) % m
        return ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def up(d):
            return None if d is None else int(math.ceil(d / self.multiple) * self.multiple)

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config["multiple"] = self.multiple
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropToReference(keras.layers.Layer):
    """Crops ``x`` to the height and width of ``reference``: ``call([x, reference])``."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package=PACKAGE)
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialises a ``Conv2DTranspose`` kernel to bilinear interpolation.

    For a kernel of size ``2 * factor`` and stride ``factor`` with ``"same"``
    padding, channel ``c`` of the output is channel ``c`` of the input
    up-sampled bilinearly; other channel pairs start at zero (as in FCN).
    """

    def __call__(self, shape, dtype=None):
        kh, kw, out_ch, in_ch = shape
        kernel = np.zeros(shape, dtype="float32")
        filt = np.outer(_bilinear_1d(kh), _bilinear_1d(kw))
        for c in range(min(out_ch, in_ch)):
            kernel[:, :, c, c] = filt
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


def _bilinear_1d(size):
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(size) - center) / factor
