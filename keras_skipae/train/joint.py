"""Joint semi-supervised training: a task model and a denoising auto-encoder that share one encoder.

As in supervised networks augmented with reconstruction (Zhang, Lee, Lee,
ICML 2016) and ladder networks (Rasmus et al., 2015): each training step
takes a labelled batch and a batch of unlabelled images; the loss is the
task's (cross-entropy) plus ``weight`` x the auto-encoder's denoising loss on
the unlabelled batch, and both reach the encoder, whose layers are the task
model's own. ``ladder=True`` adds, for every decoder step, the squared
distance between the decoder's activations on the corrupted input and the
encoder's activations on the clean input (no gradient through the clean
path), times ``layer_weight``.

The :class:`JointModel` is a training device: calling it (and so validation,
evaluation and prediction) runs the task model alone, and every file the
trainer writes of it (checkpoints, ``model.keras``) is the plain task model
(:attr:`JointModel.task_model`), loadable with ``safe_mode=True``. The
resume backup holds the whole joint state (decoder and optimiser too).

>>> joint = build_joint(classifier, autoencoder=pretrained_ae, weight=1.0)
>>> ds = joint_dataset(labelled_batches, unlabelled_images)     # ((x_l, x_u), y_l)
>>> trainer.fit(joint, ds, val_ds, epochs=30)                    # writes the classifier
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from ..models.autoencoder import DECODER_PREFIX, corrupt_input, reconstruct
from ..models.encoder import EncoderGraph, build_encoder


class JointModel(keras.Model):
    """The task model trained together with a shared-encoder auto-encoder (see the module doc)."""

    def __init__(self, task_model, autoencoder, weight: float = 1.0, ladder: bool = False,
                 layer_weight: float = 1.0, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{task_model.name}_joint"), **kwargs)
        if weight <= 0:
            raise ValueError(f"JointModel: the unlabelled loss's weight must be > 0, got {weight}")
        self.task_model = task_model
        self.autoencoder = autoencoder
        self.weight = float(weight)
        self.ladder = bool(ladder)
        self.layer_weight = float(layer_weight)
        self.kind = task_model.kind
        self.arch = task_model.arch
        self._reconstruction = keras.losses.MeanSquaredError(name="unlabelled_mse")
        self.unlabelled_tracker = keras.metrics.Mean(name="unlabelled_loss")
        self.built = True  # both parts are built functional models: a resume can load weights before a step

    def call(self, inputs, training=False):
        if isinstance(inputs, (tuple, list)):  # a joint batch's (labelled, unlabelled): Keras builds with one
            inputs = inputs[0]
        return self.task_model(inputs, training=training)

    def unlabelled_loss(self, x_unlabelled, training=True):
        """The auto-encoder's denoising loss on a batch (plus the ladder's layer costs), before ``weight``."""
        outputs = self.autoencoder(x_unlabelled, training=training)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        loss = self._reconstruction(x_unlabelled, outputs[0])
        if self.ladder:
            pairs = (len(outputs) - 1) // 2
            for decoded, clean in zip(outputs[1:1 + pairs], outputs[1 + pairs:]):
                loss = loss + self.layer_weight * self._reconstruction(ops.stop_gradient(clean), decoded)
        return loss

    def train_step(self, data):
        (x_labelled, x_unlabelled), y = data[0], data[1]
        with tf.GradientTape() as tape:
            y_pred = self.task_model(x_labelled, training=True)
            task_loss = self._compute_loss(x=x_labelled, y=y, y_pred=y_pred, training=True)
            unlabelled = self.unlabelled_loss(x_unlabelled)
            loss = task_loss + self.weight * unlabelled
            self._loss_tracker.update_state(keras.src.losses.loss.unscale_loss_for_distribution(loss),
                                            sample_weight=tf.shape(x_labelled)[0])
            self.unlabelled_tracker.update_state(keras.src.losses.loss.unscale_loss_for_distribution(unlabelled))
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_weights
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        logs = self.compute_metrics(x_labelled, y, y_pred)
        logs["unlabelled_loss"] = self.unlabelled_tracker.result()
        return logs

    def test_step(self, data):
        logs = super().test_step(data)
        logs.pop("unlabelled_loss", None)  # validation runs the task model alone
        return logs

    @property
    def metrics(self):
        return super().metrics + [self.unlabelled_tracker]


def _encoder_taps(task_model, arch):
    """The encoder ops of ``arch`` and a model from the task's input to each op's output (layers shared)."""
    structure = build_encoder(keras.Input(shape=tuple(arch.input_shape)), arch)  # names and shapes only
    names = [op.name + "_act" if op.is_conv else op.name for op in structure.ops]
    for name in names:
        try:
            task_model.get_layer(name)
        except ValueError:
            raise ValueError(f"joint training: the task model {task_model.name!r} has no encoder layer {name!r}; "
                             "build the auto-encoder and the task model from the same architecture") from None
    outputs = [task_model.get_layer(n).output for n in names]
    padded = task_model.get_layer("encoder_pad").output if arch.total_stride > 1 and any(
        layer.name == "encoder_pad" for layer in task_model.layers) else None
    taps = keras.Model(task_model.inputs, outputs + ([padded] if padded is not None else []),
                       name=f"{task_model.name}_encoder_taps")
    return structure.ops, taps, padded is not None


def shared_autoencoder(task_model, arch, ladder: bool = False) -> keras.Model:
    """A denoising auto-encoder of ``arch`` whose encoder is ``task_model``'s own layers (new decoder layers).

    Outputs ``reconstruction``; with ``ladder`` also each decoder step's
    tensor and, after them, the matching encoder activations of the clean input.
    """
    ops_, taps, has_pad = _encoder_taps(task_model, arch)
    inputs = keras.Input(shape=tuple(arch.input_shape), name="unlabelled")
    x, mask = corrupt_input(inputs, arch)
    tapped = taps(x)
    tapped = tapped if isinstance(tapped, (list, tuple)) else [tapped]
    encoded = tapped[:len(ops_)]
    graph = EncoderGraph(input=tapped[-1] if has_pad else x, output=encoded[-1],
                         ops=[dataclasses.replace(op, output=t) for op, t in zip(ops_, encoded)])
    pairs: list = []
    y = reconstruct(graph, inputs, arch, mask, taps=pairs if ladder else None)
    outputs = [y]
    if ladder:
        if not pairs:
            raise ValueError("joint training: the ladder cost needs decoder steps whose shape matches the encoder's "
                             "(merge: add, or no skips); this architecture has none")
        clean = taps(inputs)
        clean = clean if isinstance(clean, (list, tuple)) else [clean]
        index = {op.name: i for i, op in enumerate(ops_)}
        outputs += [t for _, t in pairs] + [clean[index[op.name]] for op, _ in pairs]
    return keras.Model(inputs, outputs, name=f"{task_model.name}_autoencoder")


def build_joint(task_model, autoencoder=None, *, weight: float = 1.0, ladder: bool = False,
                layer_weight: float = 1.0, arch=None) -> JointModel:
    """A :class:`JointModel` of ``task_model`` and a shared-encoder auto-encoder.

    ``autoencoder``: a pre-trained auto-encoder (a model or a ``.keras`` path)
    whose decoder weights and corruption are taken over; None builds the
    decoder from random weights with ``arch`` (default the task's) corruption.
    """
    if isinstance(autoencoder, (str, bytes)) or hasattr(autoencoder, "__fspath__"):
        autoencoder = keras.saving.load_model(autoencoder, safe_mode=True)
    if autoencoder is not None and getattr(autoencoder, "kind", None) != "autoencoder":
        raise ValueError(f"joint training: the decoder comes from an auto-encoder; {autoencoder.name!r} is a "
                         f"{getattr(autoencoder, 'kind', type(autoencoder).__name__)}")
    ae_arch = autoencoder.arch if autoencoder is not None else (arch or task_model.arch)
    ae_arch = ae_arch.replace(input_shape=task_model.arch.input_shape)
    shared = shared_autoencoder(task_model, ae_arch, ladder=ladder)
    if autoencoder is not None:
        copied = 0
        for layer in shared.layers:
            if layer.name.startswith(DECODER_PREFIX) and layer.weights:
                try:
                    source = autoencoder.get_layer(layer.name)
                except ValueError:
                    raise ValueError(f"joint training: the pre-trained auto-encoder has no layer {layer.name!r}; "
                                     "it was built from another architecture") from None
                layer.set_weights(source.get_weights())
                copied += 1
        if not copied:
            raise ValueError("joint training: no decoder weights were copied from the pre-trained auto-encoder")
    joint = JointModel(task_model, shared, weight=weight, ladder=ladder, layer_weight=layer_weight)
    joint.autoencoder_arch = ae_arch
    return joint


def joint_dataset(labelled: tf.data.Dataset, unlabelled: tf.data.Dataset) -> tf.data.Dataset:
    """``((x_labelled, x_unlabelled), y)`` batches: each labelled batch beside the next unlabelled one.

    ``labelled`` yields ``(x, y)`` batches and sets the epoch's length;
    ``unlabelled`` yields image batches (or ``(x, x_clean)`` pairs, of which
    the first is taken) and is repeated as needed.
    """
    unlabelled = unlabelled.map(lambda *batch: batch[0])
    both = tf.data.Dataset.zip((labelled, unlabelled.repeat()))
    both = both.map(lambda pair, x_u: ((pair[0], x_u), pair[1]))
    n = int(labelled.cardinality())
    return both.apply(tf.data.experimental.assert_cardinality(n)) if n > 0 else both
