"""Learning-rate schedules, registered for serialisation: a compiled model's file names them, so loading
one needs this module (and nothing of the trainer)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_skipae")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 over ``warmup_steps``, then constant, step or cosine decay.

    Step decay multiplies by ``step_factor`` at each step in ``boundaries``;
    cosine decays to 0 at ``total_steps``.
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0, kind="constant", boundaries=(),
                 step_factor=0.1):
        if kind not in _DECAYS:
            raise ValueError(f"WarmupSchedule: unknown kind {kind!r}; expected one of {', '.join(_DECAYS)}")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.boundaries = [int(b) for b in boundaries]
        self.step_factor = float(step_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = _DECAYS[self.kind](self, step, tf.constant(self.learning_rate, tf.float32))
        if self.warmup_steps > 0:
            lr = tf.where(step < self.warmup_steps, self.learning_rate * (step + 1) / self.warmup_steps, lr)
        return lr

    def _step_decay(self, step, lr):
        for b in self.boundaries:
            lr = tf.where(step >= b, lr * self.step_factor, lr)
        return lr

    def _cosine_decay(self, step, lr):
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        return lr * 0.5 * (1.0 + tf.cos(np.pi * progress))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "kind": self.kind, "boundaries": self.boundaries,
                "step_factor": self.step_factor}


#: the decay after warm-up, by the schedule's ``kind``
_DECAYS = {"constant": lambda schedule, step, lr: lr, "step": WarmupSchedule._step_decay,
           "cosine": WarmupSchedule._cosine_decay}
