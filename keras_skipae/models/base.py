"""The Keras model class all keras_skipae networks share.

A :class:`SkipAEModel` is a functional Keras model that builds its own graph
from an :class:`~keras_skipae.arch.Arch` (the pattern of KerasHub backbones):
its config is the architecture, so saving and loading rebuild exactly the same
layers, and exporters can read the recorded input normalisation from
``model.arch``.
"""

from __future__ import annotations

import keras

from ..arch import Arch
from ..presets import DEFAULT_PRESET, get_preset
from .encoder import encoder_layers, set_encoder_trainable


class SkipAEModel(keras.Model):
    """Base class; use :func:`keras_skipae.build` rather than constructing one."""

    kind = ""

    def __init__(self, arch=None, freeze_encoder: bool = False, name=None, **kwargs):
        if arch is None:
            arch = get_preset(DEFAULT_PRESET)
        elif isinstance(arch, dict):
            arch = Arch.from_dict(arch)
        inputs = keras.Input(shape=tuple(arch.input_shape), name="image")
        outputs = self.build_graph(inputs, arch)
        super().__init__(inputs=inputs, outputs=outputs, name=name or self.kind, **kwargs)
        self.arch = arch
        self.transfer_report = None
        if freeze_encoder:
            set_encoder_trainable(self, False)

    def build_graph(self, inputs, arch: Arch):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder layer is trainable."""
        return not any(layer.trainable for layer in encoder_layers(self))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "arch": self.arch.to_dict(),
            "freeze_encoder": self.encoder_frozen,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
