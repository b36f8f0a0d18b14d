"""Loading saved keras_skipae models."""

from __future__ import annotations

from pathlib import Path

import keras

from . import layers, models  # noqa: F401  (registers the serializable layers and model classes)
from .train import metrics, trainer  # noqa: F401  (registers the metrics and learning-rate schedules)


def load(path, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` file saved from any keras_skipae model (``safe_mode=True``).

    >>> model = load("runs/quickstart/pretrain/best.keras")
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}; expected a .keras file written by model.save()")
    if path.suffix != ".keras":
        raise ValueError(f"{path} is not a .keras file; keras_skipae saves and loads the Keras v3 format")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)
