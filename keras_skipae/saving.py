"""Loading saved keras_skipae models."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import keras

from . import layers, models  # noqa: F401  (registers the serializable layers and model classes)
# register what a compiled model's file names: its metrics, learning-rate schedules and optimisers (the trainer and
# the data pipelines are not needed to load a model)
from .train import encoder_lr, metrics, schedules  # noqa: F401


def load(path, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` file saved from any keras_skipae model, with ``safe_mode=True``.

    Args:
        path: the ``.keras`` file (a model, or a checkpoint of a run).
        compile: restore the optimiser, loss and metrics it was compiled with.

    Returns:
        The model, of its own class (auto-encoder, classifier or segmenter).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a ``.keras`` zip archive, or a layer keras_skipae does
            not know (the message names it).

    Examples:
        >>> model = load("runs/quickstart/seed_0/pretrain/model.keras")
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}; expected a .keras file written by model.save()")
    if path.suffix != ".keras":
        raise ValueError(f"{path} is not a .keras file; keras_skipae saves and loads the Keras v3 format")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model file: a .keras file is a zip archive written by "
                         "model.save(); this one is not (a text file or a truncated copy?)")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (TypeError, ValueError) as exc:
        unknown = _UNKNOWN_CLASS.search(str(exc))
        if unknown:
            name = unknown.group(1)
            registered = re.search(r"'registered_name': '([^']*>" + re.escape(name) + r")'", str(exc))
            shown = f"{name!r}" + (f" (registered as {registered.group(1)!r})" if registered else "")
            raise ValueError(
                f"{path} uses a layer or object keras_skipae does not know: {shown}. Only models "
                "built by keras_skipae (ks.build) load here, with safe_mode=True; for another custom model use "
                "keras.saving.load_model with its custom_objects"
            ) from exc
        raise


_UNKNOWN_CLASS = re.compile(r"Could not (?:locate|deserialize) (?:class|function|object)\s*'?([\w.>]+)'?")
