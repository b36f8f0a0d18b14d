"""Building models by kind: the one entry point behind :func:`keras_skipae.build`."""

from __future__ import annotations

from typing import Any

import keras

from .arch import Arch
from .kinds import kind_spec
from .models import SkipAEModel, resolve_arch
from .transfer import transfer


def build(
    kind: str,
    preset: str | Arch | None = None,
    *,
    encoder: keras.Model | str | None = None,
    freeze_encoder: bool = False,
    strict: bool = True,
    name: str | None = None,
    **overrides: Any,
) -> SkipAEModel:
    """Build a model of ``kind`` from one encoder definition, so weights carry over by name.

    Args:
        kind: ``"autoencoder"``, ``"classifier"`` or ``"segmenter"``.
        preset: an architecture's name (see :func:`keras_skipae.presets`;
            default ``"allconv-c"``) or an :class:`~keras_skipae.Arch`.
        encoder: a model or a ``.keras`` path whose encoder weights are copied
            in (see :func:`keras_skipae.transfer`); the report is kept on
            ``model.transfer_report``.
        freeze_encoder: make the encoder's layers non-trainable (see
            :func:`keras_skipae.unfreeze_encoder`).
        strict: with ``encoder``, refuse (copying nothing) when any encoder
            layer is missing or of another shape.
        name: the model's name (default: the kind).
        **overrides: any :class:`~keras_skipae.Arch` field, e.g.
            ``widths=(32, 64)``, ``num_classes=100``, ``skips=False``.

    Returns:
        A functional Keras model (:class:`~keras_skipae.models.SkipAEModel`)
        whose config is its architecture.

    Raises:
        ValueError: an unknown kind, preset or field, or a field's invalid value
            (the message names it and what is allowed).
        keras_skipae.TransferError: with ``strict``, an encoder that does not fit.

    Examples:
        >>> ae = build("autoencoder", "tiny")
        >>> clf = build("classifier", "tiny", encoder=ae, num_classes=10)
    """
    spec = kind_spec(kind)
    arch = resolve_arch(preset, **overrides)
    model = spec.model_class(arch=arch, freeze_encoder=freeze_encoder, name=name)
    if encoder is not None:
        model.transfer_report = transfer(encoder, model, strict=strict)
    return model
