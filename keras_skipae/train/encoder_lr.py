"""Fine-tuning protocols for a transferred encoder: its own learning-rate scale, and epochs held frozen.

Keras optimisers apply one learning rate to every variable. Fine-tuning a
pre-trained encoder under a new, randomly initialised head often wants less:
the encoder moves at ``encoder_lr_scale`` times the schedule's rate, and for the
first ``frozen_steps`` optimiser steps not at all, while the head trains alone.

The classes here are Keras's own SGD, Adam and AdamW with that one change,
registered for serialisation so that checkpoints (which hold the compiled
optimiser) load again. Which variables are "the encoder" is fixed when the
optimiser is made: the paths of the variables of the model's ``encoder_*``
layers (:func:`encoder_variable_paths`).

While frozen, the encoder's weights do not move, but its batch-norm layers
still run in training mode: their moving statistics adapt to the new data (a
``trainable=False`` freeze in Keras would also fix those).
"""

from __future__ import annotations

import keras
from keras import ops

from ..models.encoder import ENCODER_PREFIX


def encoder_variable_paths(model: keras.Model) -> list[str]:
    """The paths of the trainable variables of ``model``'s ``encoder_*`` layers."""
    model = getattr(model, "task_model", model)  # a joint model's encoder is its task model's
    return sorted(
        v.path for layer in model.layers if layer.name.startswith(ENCODER_PREFIX)
        for v in layer.trainable_weights
    )


class _EncoderScaled:
    """Mixin: scale the learning rate of the encoder's variables (see module doc)."""

    def __init__(self, *args, encoder_paths=(), encoder_lr_scale=1.0, frozen_steps=0, **kwargs):
        super().__init__(*args, **kwargs)
        if encoder_lr_scale < 0:
            raise ValueError(f"encoder_lr_scale must be >= 0, got {encoder_lr_scale}")
        if frozen_steps < 0:
            raise ValueError(f"frozen_steps must be >= 0, got {frozen_steps}")
        self.encoder_paths = sorted(encoder_paths)
        self.encoder_lr_scale = float(encoder_lr_scale)
        self.frozen_steps = int(frozen_steps)
        self._encoder_indices: set[int] = set()

    def build(self, variables):
        super().build(variables)
        wanted = set(self.encoder_paths)
        self._encoder_indices = {i for i, v in enumerate(variables) if v.path in wanted}
        missing = wanted - {v.path for v in variables}
        if missing:
            raise ValueError(
                f"the optimiser was made for encoder variables the model does not train: {sorted(missing)[:4]}; "
                "make the optimiser from the model it trains (Trainer.compile does) and do not freeze the "
                "encoder (freeze_encoder) together with an encoder learning-rate scale"
            )

    def _is_encoder(self, variable) -> bool:
        return self._get_variable_index(variable) in self._encoder_indices

    def encoder_scale(self):
        """The factor on the encoder's learning rate at the current step (0 while frozen)."""
        scale = ops.cast(self.encoder_lr_scale, "float32")
        if self.frozen_steps:
            scale = ops.where(ops.less(self.iterations, self.frozen_steps), ops.cast(0.0, "float32"), scale)
        return scale

    def update_step(self, gradient, variable, learning_rate):
        if self._is_encoder(variable):
            learning_rate = ops.multiply(ops.cast(learning_rate, "float32"), self.encoder_scale())
            if self.weight_decay is not None and self._use_weight_decay(variable):
                # decoupled decay at the encoder's own rate (the base class decays the other variables)
                lr = ops.cast(learning_rate, variable.dtype)
                variable.assign_sub(variable * ops.cast(self.weight_decay, variable.dtype) * lr)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        return super()._apply_weight_decay([v for v in variables if not self._is_encoder(v)])

    def get_config(self):
        return {**super().get_config(), "encoder_paths": list(self.encoder_paths),
                "encoder_lr_scale": self.encoder_lr_scale, "frozen_steps": self.frozen_steps}


@keras.saving.register_keras_serializable(package="keras_skipae")
class EncoderScaledSGD(_EncoderScaled, keras.optimizers.SGD):
    """:class:`keras.optimizers.SGD` with the encoder's learning rate scaled (module doc)."""


@keras.saving.register_keras_serializable(package="keras_skipae")
class EncoderScaledAdam(_EncoderScaled, keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` with the encoder's learning rate scaled (module doc)."""


@keras.saving.register_keras_serializable(package="keras_skipae")
class EncoderScaledAdamW(_EncoderScaled, keras.optimizers.AdamW):
    """:class:`keras.optimizers.AdamW` with the encoder's learning rate scaled (module doc)."""


SCALED = {"sgd": EncoderScaledSGD, "adam": EncoderScaledAdam, "adamw": EncoderScaledAdamW}
