"""Vectorised image transforms on whole batches, in the TF graph.

Everything here takes a batch ``(B, H, W, C)`` (masks ``(B, H, W)``) and, where
random, a stateless seed of shape ``(2,)``: the same seed gives the same
result, so a seeded pipeline is reproducible. Geometric augmentation is one
``tf.image.crop_and_resize`` per batch: each example's box encodes its crop,
scale and horizontal flip, and masks take the same boxes with nearest-neighbour
sampling, so image and mask stay aligned.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..arch import Arch
from ..layers import corrupt_with_mask


def seeds(key, n: int):
    """``n`` independent stateless seeds from one ``(2,)`` key."""
    return tf.unstack(tf.random.experimental.stateless_split(key, num=n))


def match_channels(x, channels: int):
    """Grayscale -> RGB by repetition, RGB -> grayscale by luminance; float input."""
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return tf.repeat(x, 3, axis=-1)
    if have == 3 and channels == 1:
        return tf.image.rgb_to_grayscale(x)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels; expected 1 or 3 channels")


def normalise(x, arch: Arch):
    """Pixel values (0..255, float) -> the model's units: ``(pixel * pixel_scale - mean) / std``.

    A batch ``[B, H, W, C]`` is computed as rows of ``W * C`` values against the
    per-channel constants tiled ``W`` times: the same arithmetic on every
    value (bit for bit), but TensorFlow's broadcast over a last axis of 1 or 3
    is about 4x slower than over a row, and this step bounded the input
    pipelines' throughput (see benchmarks/input_scale.py).
    """
    x = tf.convert_to_tensor(x)  # numpy arrays too, as before
    mean = tf.constant(arch.channel_mean(), x.dtype)
    std = tf.constant(arch.channel_std(), x.dtype)
    scale = tf.cast(arch.pixel_scale, x.dtype)
    if x.shape.rank != 4 or x.shape[-1] != mean.shape[0]:
        return (x * scale - mean) / std
    shape = tf.shape(x)
    width = shape[2]
    rows = tf.reshape(x, [shape[0] * shape[1], width * shape[3]])
    out = tf.reshape((rows * scale - tf.tile(mean, [width])) / tf.tile(std, [width]), shape)
    out.set_shape(x.shape)
    return out


def resize(x, size):
    """Bilinear resize (anti-aliased when shrinking) to ``size`` = (height, width); no-op when equal."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return tf.image.resize(tf.cast(x, tf.float32), size, method="bilinear", antialias=True)


def resize_masks(masks, size):
    if tuple(masks.shape[1:3]) == tuple(size):
        return masks
    return tf.image.resize(masks[..., None], size, method="nearest")[..., 0]


def _boxes(top, left, box_h, box_w, height, width, flip, out_h=None, out_w=None):
    """Normalised crop_and_resize boxes; ``flip`` swaps x1 and x2 (a mirrored crop).

    The box ``[top, top + box_h) x [left, left + box_w)`` (source pixels) is
    sampled at ``out_h x out_w`` pixel centres (default: the box's own size),
    as ``tf.image.resize`` samples a whole image: a box of the whole image
    gives the resize's sampling grid, a box of the output's size a plain crop.
    """
    out_h = box_h if out_h is None else tf.cast(out_h, tf.float32)
    out_w = box_w if out_w is None else tf.cast(out_w, tf.float32)
    hm = tf.maximum(tf.cast(height, tf.float32) - 1.0, 1.0)
    wm = tf.maximum(tf.cast(width, tf.float32) - 1.0, 1.0)
    step_h, step_w = box_h / out_h, box_w / out_w  # source pixels per output pixel
    y1 = (top + 0.5 * step_h - 0.5) / hm
    y2 = (top + box_h - 0.5 * step_h - 0.5) / hm
    x1 = (left + 0.5 * step_w - 0.5) / wm
    x2 = (left + box_w - 0.5 * step_w - 0.5) / wm
    x1, x2 = tf.where(flip, x2, x1), tf.where(flip, x1, x2)
    return tf.stack([y1, x1, y2, x2], axis=1)


def random_crop_flip(x, seed, padding: int, flip: bool = True):
    """Random crop of the batch's own size from a zero-padded copy, and a random horizontal flip.

    The classic CIFAR augmentation (padding 4 at 32x32), done for the whole
    batch at once; the zero padding is in the units of ``x`` (after
    normalisation: the mean colour).
    """
    b = tf.shape(x)[0]
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    s1, s2, s3 = seeds(seed, 3)
    top = tf.cast(tf.random.stateless_uniform([b], s1, -padding, padding + 1, dtype=tf.int32), tf.float32)
    left = tf.cast(tf.random.stateless_uniform([b], s2, -padding, padding + 1, dtype=tf.int32), tf.float32)
    mirror = tf.random.stateless_uniform([b], s3) < 0.5 if flip else tf.zeros([b], tf.bool)
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    boxes = _boxes(top, left, hf, wf, h, w, mirror)
    out = tf.image.crop_and_resize(x, boxes, tf.range(b), tf.stack([h, w]), extrapolation_value=0.0)
    out.set_shape(x.shape)
    return out


def random_crop(x, seed, size):
    """A random ``size`` crop of every image in the batch (no padding, no flip)."""
    return _scale_crop(x, None, seed, size, (1.0, 1.0), False)[0]


def center_crop(x, size):
    h, w = x.shape[1], x.shape[2]
    th, tw = size
    if h is not None and w is not None and (h < th or w < tw):
        raise ValueError(f"images of {h}x{w} are smaller than the crop {th}x{tw}")
    dh = (tf.shape(x)[1] - th) // 2
    dw = (tf.shape(x)[2] - tw) // 2
    return x[:, dh : dh + th, dw : dw + tw]


def _scale_crop(images, masks, seed, size, scale_range, flip, eval_size=None):
    """One random scale, crop (of ``size``) and flip per example, shared by images and masks.

    ``size`` is in pixels of the evaluation resolution: the images resized to
    ``eval_size`` (height, width), or the images' own resolution when
    ``eval_size`` is None. At scale 1 the output shows the scene at that
    resolution; scale ``s`` zooms in by ``s``. So with ``size == eval_size``
    and scale 1 the box is the whole image, resized as evaluation resizes it.
    Outside the source image, images get 0 and masks -1 (scored as ignored).
    """
    b = tf.shape(images)[0]
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    out_h, out_w = size
    s_scale, s_top, s_left, s_flip = seeds(seed, 4)
    lo, hi = scale_range
    scale = tf.random.stateless_uniform([b], s_scale, lo, hi) if hi > lo else tf.fill([b], float(lo))
    if eval_size is None:  # evaluation sees the source resolution
        per_h = per_w = 1.0
    else:  # source pixels per pixel at the evaluation resolution
        per_h, per_w = hf / float(eval_size[0]), wf / float(eval_size[1])
    box_h = out_h * per_h / scale
    box_w = out_w * per_w / scale

    def start(extent, box, s):
        low = tf.minimum(0.0, extent - box)
        high = tf.maximum(0.0, extent - box)
        return tf.floor(low + tf.random.stateless_uniform([b], s) * (high - low + 1.0))

    top = tf.minimum(start(hf, box_h, s_top), tf.maximum(hf - box_h, 0.0))
    left = tf.minimum(start(wf, box_w, s_left), tf.maximum(wf - box_w, 0.0))
    mirror = tf.random.stateless_uniform([b], s_flip) < 0.5 if flip else tf.zeros([b], tf.bool)
    # sampled in a frame padded by one pixel of the outside values (image 0, mask -1): a sample that float32
    # rounding puts a hair outside the image (y = -1e-7 for row 0 of a plain shifted crop) still reads that
    # row, which crop_and_resize would otherwise replace by the outside value
    boxes = _boxes(top + 1.0, left + 1.0, box_h, box_w, h + 2, w + 2, mirror, out_h, out_w)
    ind = tf.range(b)
    crop = tf.constant([out_h, out_w], tf.int32)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    out_images = tf.image.crop_and_resize(padded, boxes, ind, crop, extrapolation_value=0.0)
    out_images.set_shape([images.shape[0], out_h, out_w, images.shape[-1]])
    out_masks = None
    if masks is not None:
        padded_masks = tf.pad(tf.cast(masks[..., None], tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]],
                              constant_values=-1.0)
        m = tf.image.crop_and_resize(padded_masks, boxes, ind, crop, method="nearest", extrapolation_value=-1.0)
        out_masks = tf.cast(tf.round(m[..., 0]), tf.int32)
        out_masks.set_shape([masks.shape[0], out_h, out_w])
    return out_images, out_masks


def augment_segmentation(images, masks, seed, size, scale_range=(0.75, 1.25), flip=True, eval_size=None):
    """Random scale, crop to ``size`` and horizontal flip, identical for images and masks.

    ``size`` and the scales are relative to the evaluation resolution: the
    images resized to ``eval_size``, or their own size when it is None (see
    :func:`_scale_crop`).
    """
    return _scale_crop(images, masks, seed, size, scale_range, flip, eval_size)


def sample_weights(masks, ignore_label: int | None):
    """(masks with ignored pixels set to 0, float32 weights that are 0 there and 1 elsewhere)."""
    ignore = masks < 0
    if ignore_label is not None:
        ignore = ignore | tf.equal(masks, ignore_label)
    weights = tf.cast(tf.logical_not(ignore), tf.float32)
    return tf.where(ignore, tf.zeros_like(masks), masks), weights


def corrupt(x, arch: Arch, seed):
    """Apply ``arch.corruption`` at ``arch.corruption_level`` to a normalised batch (stateless, seeded)."""
    return corrupt_and_mask(x, arch, seed)[0]


def corrupt_and_mask(x, arch: Arch, seed):
    """:func:`corrupt` and the (batch, height, width, 1) mask of the pixels it corrupted (None when none)."""
    low, high = arch.pixel_bounds()
    keys = iter(seeds(seed, 4))

    def uniform(shape):
        return tf.random.stateless_uniform(shape, next(keys), dtype=x.dtype)

    def normal(shape):
        return tf.random.stateless_normal(shape, next(keys), dtype=x.dtype)

    return corrupt_with_mask(
        x, arch.corruption, arch.corruption_level, np.asarray(low, "float32"), np.asarray(high, "float32"), uniform,
        normal, arch.corruption_block,
    )
