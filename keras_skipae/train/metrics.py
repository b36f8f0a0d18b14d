"""Streaming metrics for the three model kinds, computed in-graph (no host sync).

Auto-encoder outputs are in normalised units; :class:`PSNR` and :class:`SSIM`
map both images back to pixels in [0, 1] (using the model's recorded
``pixel_scale``, ``mean`` and ``std``) before comparing, so the numbers are the
usual image-quality figures whatever the input normalisation.

Segmentation metrics take per-pixel ``sample_weight`` (0 on the ignore label,
as :func:`keras_skipae.data.segmentation_pipeline` produces) and skip those
pixels.

The model kinds' registry (:mod:`keras_skipae.kinds`) says which metrics and
loss each kind trains with: ``kinds.metrics_for(model)``, ``kinds.loss_for(model)``.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from ..layers import PACKAGE


class _ToUnitRange:
    """Maps normalised images back to pixels in [0, 1]: (x * std + mean) / (255 * pixel_scale)."""

    def __init__(self, mean, std, pixel_scale):
        self.mean = [float(m) for m in (mean if isinstance(mean, (list, tuple)) else [mean])]
        self.std = [float(s) for s in (std if isinstance(std, (list, tuple)) else [std])]
        self.pixel_scale = float(pixel_scale)

    def __call__(self, x):
        x = ops.cast(x, "float32")
        mean = ops.convert_to_tensor(self.mean, "float32")
        std = ops.convert_to_tensor(self.std, "float32")
        return ops.clip((x * std + mean) / (255.0 * self.pixel_scale), 0.0, 1.0)


class _ImageQuality(keras.metrics.Mean):
    """Mean over images of a per-image quality score, in pixel units [0, 1]."""

    def __init__(self, mean=(0.0,), std=(1.0,), pixel_scale=1.0 / 255.0, name=None, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self._unit = _ToUnitRange(mean, std, pixel_scale)
        self.mean_ = self._unit.mean
        self.std_ = self._unit.std
        self.pixel_scale = self._unit.pixel_scale

    @classmethod
    def from_arch(cls, arch, **kwargs):
        """The metric for a model built from ``arch`` (reads its input normalisation)."""
        return cls(mean=arch.channel_mean(), std=arch.channel_std(), pixel_scale=arch.pixel_scale, **kwargs)

    def score(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.score(self._unit(y_true), self._unit(y_pred))
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "mean": self.mean_, "std": self.std_,
                "pixel_scale": self.pixel_scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PSNR(_ImageQuality):
    """Peak signal-to-noise ratio in dB per image (peak = white), averaged over images."""

    def __init__(self, mean=(0.0,), std=(1.0,), pixel_scale=1.0 / 255.0, name="psnr", dtype="float32"):
        super().__init__(mean=mean, std=std, pixel_scale=pixel_scale, name=name, dtype=dtype)

    def score(self, y_true, y_pred):
        return tf.image.psnr(y_true, y_pred, max_val=1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SSIM(_ImageQuality):
    """Structural similarity per image (Gaussian window 11, sigma 1.5; small images use a smaller window)."""

    def __init__(self, mean=(0.0,), std=(1.0,), pixel_scale=1.0 / 255.0, name="ssim", dtype="float32"):
        super().__init__(mean=mean, std=std, pixel_scale=pixel_scale, name=name, dtype=dtype)

    def score(self, y_true, y_pred):
        size = y_true.shape[1] if y_true.shape[1] is not None else 11
        filter_size = min(11, size if size % 2 else size - 1)
        return tf.image.ssim(y_true, y_pred, max_val=1.0, filter_size=max(filter_size, 3))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanIoUIgnore(keras.metrics.MeanIoU):
    """Mean intersection-over-union from logits, skipping pixels whose ``sample_weight`` is 0.

    ``y_true``: (B, H, W) int labels; ``y_pred``: (B, H, W, num_classes) logits.
    Classes absent from both truth and prediction do not count in the mean.
    """

    def __init__(self, num_classes: int, name="mean_iou", dtype=None, ignore_class=None, **kwargs):
        kwargs.pop("sparse_y_pred", None)
        kwargs.pop("sparse_y_true", None)
        kwargs.pop("axis", None)
        super().__init__(num_classes=num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=True, sparse_y_pred=False, axis=-1)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:  # 0/1 pixel weights; the confusion matrix counts in self.dtype
            sample_weight = ops.cast(sample_weight, self.dtype)
        return super().update_state(y_true, y_pred, sample_weight)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Fraction of correctly labelled pixels, skipping pixels whose ``sample_weight`` is 0."""

    def __init__(self, name="pixel_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


def reconstruction_metrics(arch) -> list:
    """An auto-encoder's metrics: ``mse`` (normalised units), ``psnr`` and ``ssim`` (pixels)."""
    return [keras.metrics.MeanSquaredError(name="mse"), PSNR.from_arch(arch), SSIM.from_arch(arch)]


def classification_metrics(arch) -> list:
    """A classifier's metrics: ``accuracy`` and, with more than 5 classes, ``top5_accuracy``."""
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if arch.num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    return metrics


def segmentation_metrics(arch) -> list:
    """A segmenter's metrics: ``mean_iou`` and ``pixel_accuracy``, skipping ignored pixels."""
    return [MeanIoUIgnore(arch.num_classes), PixelAccuracy()]


def reconstruction_loss() -> keras.losses.Loss:
    """Mean squared error against the clean image, in the model's units."""
    return keras.losses.MeanSquaredError(name="mse_loss")


def probabilities_loss() -> keras.losses.Loss:
    """Sparse cross-entropy on a classifier's probabilities."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=False)


def logits_loss() -> keras.losses.Loss:
    """Per-pixel sparse cross-entropy on a segmenter's logits (ignored pixels weighted 0 by the pipeline)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
