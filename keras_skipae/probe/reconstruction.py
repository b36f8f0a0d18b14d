"""Reconstruction quality of an auto-encoder on clean and on corrupted images.

All three numbers are measured in pixel units scaled to [0, 1] (a pixel of
255 is 1.0), whatever the model's input normalisation, so checkpoints with
different ``mean``/``std`` compare directly: ``mse`` (mean squared error),
``psnr`` (dB, peak 1.0) and ``ssim`` (``tf.image.ssim``), each averaged over
images. The reconstruction is clipped to [0, 1] for PSNR and SSIM (as the
trainer's metrics do), not for MSE.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..arch import Arch
from ..data import transforms
from ..train.metrics import PSNR, SSIM

RECONSTRUCTION_METRICS = ("mse", "psnr", "ssim")


def normalise(images: np.ndarray, arch: Arch) -> np.ndarray:
    """uint8 (or raw-pixel) images -> the model's normalised float32 input.

    The same transforms as :mod:`keras_skipae.data`'s pipelines: grayscale <->
    RGB to ``arch.channels``, bilinear resize to ``arch.input_shape[:2]`` when
    those are fixed and differ (:mod:`keras_skipae.data.transforms`), then
    :meth:`Arch.normalise`, ``(pixel * pixel_scale - mean) / std``.

    >>> x = normalise(images_uint8, model.arch)
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W[, C]); got {tuple(np.shape(images))}")
    h, w = arch.input_shape[0], arch.input_shape[1]
    resize = h is not None and w is not None and tuple(x.shape[1:3]) != (h, w)
    if x.shape[-1] != arch.channels or resize:
        x = transforms.match_channels(tf.cast(x, tf.float32), arch.channels)
        if resize:
            x = transforms.resize(x, (h, w))
        x = x.numpy()
    return arch.normalise(x)


def to_unit(x: np.ndarray, arch: Arch) -> np.ndarray:
    """Normalised model units -> pixels scaled to [0, 1] (not clipped)."""
    return arch.denormalise(x, clip=False) / np.float32(255.0)


def corrupt(x: np.ndarray, arch: Arch, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """Corrupt normalised images as the pipelines do (:func:`keras_skipae.data.transforms.corrupt`), seeded.

    The same ``seed`` gives the same corrupted images for every checkpoint.
    """
    spec = arch.replace(corruption=kind, corruption_level=float(level))
    key = tf.constant([seed, 0], tf.int64)
    return transforms.corrupt(tf.constant(x, tf.float32), spec, key).numpy()


def image_quality(reference: np.ndarray, output: np.ndarray, arch: Arch) -> dict:
    """MSE, PSNR and SSIM of ``output`` against ``reference``, both normalised for ``arch``.

    PSNR and SSIM are the trainer's metric classes (``keras_skipae.train.metrics``),
    so the numbers match the ``psnr``/``ssim`` a training run logs.
    """
    result = {"mse": float(np.mean(np.square(to_unit(output, arch) - to_unit(reference, arch))))}
    for name, cls in (("psnr", PSNR), ("ssim", SSIM)):
        metric = cls.from_arch(arch)
        metric.update_state(tf.constant(reference), tf.constant(output))
        result[name] = float(metric.result())
    return result


def reconstruction_metrics(
    model: keras.Model, clean: np.ndarray, corrupted: np.ndarray | None = None, batch_size: int = 256
) -> dict:
    """Reconstruction quality of auto-encoder ``model`` on normalised images.

    Returns ``mse``, ``psnr``, ``ssim`` on ``clean`` and, when ``corrupted`` is
    given, ``mse_corrupted``, ``psnr_corrupted``, ``ssim_corrupted``: how well
    the model restores the clean image from the corrupted one.

    >>> reconstruction_metrics(ae, x_clean, x_noisy)["psnr_corrupted"]
    """
    restored = model.predict(clean, batch_size=batch_size, verbose=0)
    restored_bad = None if corrupted is None else model.predict(corrupted, batch_size=batch_size, verbose=0)
    return reconstruction_scores(clean, restored, model.arch, restored_bad)


def reconstruction_scores(clean: np.ndarray, restored: np.ndarray, arch: Arch,
                          restored_corrupted: np.ndarray | None = None) -> dict:
    """:func:`reconstruction_metrics` from outputs already predicted (all normalised for ``arch``)."""
    result = image_quality(clean, restored, arch)
    if restored_corrupted is not None:
        result.update({k + "_corrupted": v for k, v in image_quality(clean, restored_corrupted, arch).items()})
    return result
