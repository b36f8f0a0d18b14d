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
    """Build a model of ``kind`` ("autoencoder", "classifier", "segmenter").

    ``preset`` names an architecture (see :func:`keras_skipae.presets`; default
    ``"allconv-c"``); keyword ``overrides`` change any of its fields, e.g.
    ``widths=(32, 64)``, ``num_classes=100``, ``skips=False``. With
    ``encoder=`` (a model or a ``.keras`` path) the encoder weights are copied
    in (see :func:`keras_skipae.transfer`) and the report is kept on
    ``model.transfer_report``. ``freeze_encoder=True`` makes the encoder
    layers non-trainable (see :func:`keras_skipae.unfreeze_encoder`).

    >>> ae = build("autoencoder", "tiny")
    >>> clf = build("classifier", "tiny", encoder=ae, num_classes=10)
    """
    spec = kind_spec(kind)
    arch = resolve_arch(preset, **overrides)
    model = spec.model_class(arch=arch, freeze_encoder=freeze_encoder, name=name)
    if encoder is not None:
        model.transfer_report = transfer(encoder, model, strict=strict)
    return model
