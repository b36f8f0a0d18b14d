"""The model classes: one encoder, three kinds of model (built with :func:`keras_skipae.build`)."""

from __future__ import annotations

import keras

from ..presets import resolve_arch
from .autoencoder import SkipAutoEncoder
from .base import SkipAEModel
from .classifier import SkipClassifier
from .encoder import encoder_layers, encoder_model, set_encoder_trainable
from .segmenter import SkipSegmenter


def unfreeze_encoder(model: keras.Model, trainable: bool = True) -> keras.Model:
    """Make the encoder layers of ``model`` trainable again (recompile afterwards).

    Args:
        model: a keras_skipae model (built with ``freeze_encoder=True``, say).
        trainable: ``False`` freezes the encoder instead.

    Returns:
        ``model`` itself.
    """
    set_encoder_trainable(model, trainable)
    return model


__all__ = [
    "SkipAEModel",
    "SkipAutoEncoder",
    "SkipClassifier",
    "SkipSegmenter",
    "encoder_layers",
    "encoder_model",
    "resolve_arch",
    "unfreeze_encoder",
]
