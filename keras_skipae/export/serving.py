"""The serving graph: what every export format computes.

A keras_skipae model becomes a :class:`ServingModule` with two signatures.
``serving_default`` takes raw ``uint8`` pixels ``[batch, height, width,
channels]`` and applies the model's recorded normalisation (``model.arch``:
``pixel_scale``, ``mean``, ``std``) inside the graph; ``normalised`` takes
already-normalised ``float32`` images, exactly what the Keras model takes.
Outputs are named for what they are (:data:`OUTPUTS`): classifier
``probabilities`` and ``class_id``; segmenter ``logits`` and ``mask`` (the
per-pixel argmax); auto-encoder ``reconstruction`` (pixel units 0..255 from
``serving_default``, normalised units from ``normalised``). Graphs are float32
whatever the model's dtype policy: a mixed-precision model is re-built in
float32 with its weights (:func:`float32_model`).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from ..arch import Arch
from ..kinds import KINDS as REGISTRY
from .reports import ExportError
from .rewrite import forward_convolutions

KINDS = tuple(REGISTRY)
SIGNATURE_PIXELS = "serving_default"
SIGNATURE_NORMALISED = "normalised"
SIGNATURES = (SIGNATURE_PIXELS, SIGNATURE_NORMALISED)
INPUT_NAME = "images"
OUTPUTS = {name: spec.serving_outputs for name, spec in REGISTRY.items()}
# label -> the scores it is the argmax of
LABEL_OUTPUTS = {label: scores for spec in REGISTRY.values() for label, scores in spec.label_outputs.items()}


def model_info(model) -> tuple[str, Arch]:
    """The ``(kind, arch)`` of a keras_skipae model, or a clear error for anything else."""
    kind = getattr(model, "kind", None)
    arch = getattr(model, "arch", None)
    if kind not in KINDS or not isinstance(arch, Arch):
        raise TypeError(
            f"cannot export {type(model).__name__} {getattr(model, 'name', '')!r}: the exporter needs a "
            "keras_skipae model (built with keras_skipae.build or loaded with keras_skipae.load), whose "
            "`kind` and `arch` give the outputs and the input normalisation"
        )
    return kind, arch


def is_float32(model) -> bool:
    """True when every layer of ``model`` computes in float32 (no mixed precision)."""
    return all(getattr(layer, "compute_dtype", "float32") == "float32" for layer in model.layers)


def float32_model(model, *, dynamic_spatial: bool = False, input_size: tuple | None = None) -> keras.Model:
    """A float32 copy of a keras_skipae ``model`` with the same weights.

    Mixed-precision models are exported as float32 graphs; ``dynamic_spatial``
    re-builds with ``input_shape=(None, None, channels)`` so the copy takes any
    height and width (the convolutions' weights do not depend on them);
    ``input_size=(height, width)`` re-builds it for that one size.

    >>> twin = float32_model(ks.build("segmenter", "tiny"), dynamic_spatial=True)
    """
    kind, arch = model_info(model)
    if input_size is not None:
        arch = arch.replace(input_shape=(*input_size, arch.channels))
    elif dynamic_spatial:
        arch = arch.replace(input_shape=(None, None, arch.channels))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        twin = type(model)(arch=arch, name=model.name)
    finally:
        keras.config.set_dtype_policy(previous)
    for layer in twin.layers:
        if not layer.weights:
            continue
        try:
            source = model.get_layer(layer.name)
        except ValueError as exc:
            raise ExportError(f"layer {layer.name!r} of the re-built {kind} has no counterpart in {model.name!r}") from exc
        layer.set_weights([np.asarray(w, dtype=np.float32) for w in source.get_weights()])
    return twin


def signature_spec(model, input_size: tuple | None = None) -> dict:
    """Inputs and outputs of each serving signature, as dtype and shape (None = any size).

    The segmenter takes any height and width, unless ``input_size=(height,
    width)`` fixes them (as LiteRT needs).

    >>> signature_spec(ks.build("classifier", "tiny"))["serving_default"]["inputs"]
    {'images': {'dtype': 'uint8', 'shape': [None, 32, 32, 3]}}
    """
    kind, arch = model_info(model)
    if input_size is not None:
        h, w = (int(d) for d in input_size)
    else:
        h, w = (None, None) if REGISTRY[kind].any_size else tuple(arch.input_shape[:2])
    c = arch.channels
    spec = {}
    for signature, dtype in ((SIGNATURE_PIXELS, "uint8"), (SIGNATURE_NORMALISED, "float32")):
        outputs = {}
        for name, (out_dtype, shape) in _output_specs(REGISTRY[kind], arch, h, w).items():
            outputs[name] = {"dtype": out_dtype, "shape": shape}
        spec[signature] = {"inputs": {INPUT_NAME: {"dtype": dtype, "shape": [None, h, w, c]}}, "outputs": outputs}
    return spec


def _output_specs(kind, arch, h, w) -> dict:
    """``{output: (dtype name, shape)}`` of a kind's serving outputs (see :class:`keras_skipae.kinds.KindSpec`).

    A kind with label outputs serves its scores (per pixel for a kind that takes
    any size, per image otherwise) and, for each label output, their argmax
    (the mask's dtype per pixel, int32 per image); an auto-encoder serves its
    reconstruction at the input's shape.
    """
    if not kind.label_outputs:
        return {kind.serving_outputs[0]: ("float32", [None, h, w, arch.channels])}
    per_pixel = kind.any_size
    score_shape = [None] + ([h, w] if per_pixel else []) + [arch.num_classes]
    specs = {}
    for name in kind.serving_outputs:
        if name in kind.label_outputs:
            specs[name] = (mask_dtype(arch).name if per_pixel else "int32", score_shape[:-1])
        else:
            specs[name] = ("float32", score_shape)
    return specs


def mask_dtype(arch: Arch) -> tf.DType:
    """The segmenter's ``mask`` dtype: uint8 up to 256 classes, else int32."""
    return tf.uint8 if arch.num_classes <= 256 else tf.int32


def describe_input(signature: str, spec: dict) -> str:
    """What ``signature`` expects, as every error about a bad input starts."""
    inp = spec[signature]["inputs"][INPUT_NAME]
    dims = ", ".join(["batch"] + ["any" if d is None else str(d) for d in inp["shape"][1:]])
    what = "raw pixels 0..255" if signature == SIGNATURE_PIXELS else "normalised as (pixel * pixel_scale - mean) / std"
    return f"signature {signature} expects {INPUT_NAME}: {inp['dtype']} [{dims}] ({what})"


class ServingModule(tf.Module):
    """The serving graph of a keras_skipae model: two ``tf.function`` signatures.

    ``serving_default`` (uint8 pixels, normalised inside the graph) and
    ``normalised`` (float32, as the Keras model takes). Both check the rank and
    channel count (and, for ``normalised``, that values look normalised rather
    than raw pixels) with ``tf.debugging`` asserts whose messages name the
    expected signature. ``validate=False`` leaves the asserts out (ONNX and
    LiteRT have no assert op). ``input_size=(height, width)`` fixes the
    spatial size of the graph (LiteRT's needs it; see :func:`signature_spec`).
    ``forward_deconv=True`` computes the transposed convolutions as the
    forward convolutions that give the same result (:mod:`.rewrite`), which
    TensorFlow fuses and runs faster on CPUs; the SavedModel export uses it
    (ONNX Runtime and LiteRT ran the two graphs at the same speed, so their
    exports keep the transposed convolutions).

    >>> module = ServingModule(ks.build("classifier", "tiny"))
    >>> module.write("models/classifier/1")      # a SavedModel with both signatures
    """

    def __init__(self, model, *, validate: bool = True, input_size: tuple | None = None, forward_deconv: bool = False):
        super().__init__(name="keras_skipae_serving")
        kind, arch = model_info(model)
        self.kind = kind
        self.validate = validate
        self.spec = signature_spec(model, input_size)
        self.model = float32_model(model, dynamic_spatial=REGISTRY[kind].any_size, input_size=input_size)
        if forward_deconv:
            self.model = forward_convolutions(self.model)
        self._scale = float(arch.pixel_scale)
        self._mean = [float(m) for m in arch.channel_mean()]
        self._std = [float(s) for s in arch.channel_std()]
        self._mask_dtype = mask_dtype(arch)
        low, high = arch.normalised_range()
        span = high - low
        # generous bounds: reject raw pixels sent as floats, accept noisy or augmented inputs
        self._accept = (low - span, high + span)
        shape = self.spec[SIGNATURE_PIXELS]["inputs"][INPUT_NAME]["shape"]
        self.serving_default = tf.function(
            self._serve_pixels, input_signature=[tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)]
        )
        self.normalised = tf.function(
            self._serve_normalised, input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
        )

    def signatures(self) -> dict:
        """``{signature name: tf.function}``."""
        return {SIGNATURE_PIXELS: self.serving_default, SIGNATURE_NORMALISED: self.normalised}

    def write(self, path: str | os.PathLike) -> None:
        """Write the SavedModel with :class:`keras.export.ExportArchive`.

        The archive tracks the Keras variables so that the SavedModel also
        loads in a TF1-style session, which is how TF Serving and
        ``saved_model_cli run`` load it (a plain ``tf.saved_model.save`` of
        this module loads in TF2 but not there).
        """
        archive = keras.export.ExportArchive()
        archive.track(self.model)
        for name, fn in self.signatures().items():
            archive.add_endpoint(name, fn.python_function, input_signature=fn.input_signature)
        archive.write_out(str(path), verbose=False)

    def function(self, signature: str):
        """The ``tf.function`` of ``signature`` (``serving_default`` or ``normalised``)."""
        if signature not in SIGNATURES:
            raise ValueError(f"unknown signature {signature!r}; the serving graph has {', '.join(SIGNATURES)}")
        return self.serving_default if signature == SIGNATURE_PIXELS else self.normalised

    # ---------------------------------------------------------------- graph
    def _check(self, images, signature):
        if not self.validate:
            return images
        expected = describe_input(signature, self.spec)
        shape = self.spec[signature]["inputs"][INPUT_NAME]["shape"]
        # TF Serving feeds tensors without checking them against the placeholder's static shape, and
        # tf.rank or Grappler would fold a rank check into a constant from it: read the runtime shape,
        # padded with -1 so that indexing never fails before the asserts can speak
        dynamic = tf.concat([tf.raw_ops.Shape(input=images), tf.constant([-1, -1, -1, -1, -1])], axis=0)
        rank_is_4 = tf.logical_and(dynamic[3] >= 0, dynamic[4] < 0)
        checks = [tf.debugging.Assert(rank_is_4, [f"{expected}; got a tensor of another rank, shape:",
                                                  tf.raw_ops.Shape(input=images)])]
        with tf.control_dependencies(checks):  # dimensions are checked once the rank is right
            for axis, name in ((1, "height"), (2, "width"), (3, "channel count")):
                if shape[axis] is None:
                    checks.append(
                        tf.debugging.assert_positive(dynamic[axis], message=f"{expected}; got an empty {name} axis")
                    )
                else:
                    checks.append(
                        tf.debugging.assert_equal(
                            dynamic[axis], shape[axis], message=f"{expected}; got a different {name}"
                        )
                    )
        if signature == SIGNATURE_NORMALISED:
            low, high = self._accept
            message = (
                f"{expected}; got values outside [{low:.4g}, {high:.4g}] or not finite: raw pixels "
                f"go to signature {SIGNATURE_PIXELS} as uint8"
            )
            checks.append(tf.debugging.assert_greater_equal(tf.reduce_min(images), tf.constant(low, tf.float32), message=message))
            checks.append(tf.debugging.assert_less_equal(tf.reduce_max(images), tf.constant(high, tf.float32), message=message))
        with tf.control_dependencies([c for c in checks if c is not None]):
            return tf.ensure_shape(images, shape)  # the static shape the model is traced with

    def _serve_pixels(self, images):
        images = self._check(images, SIGNATURE_PIXELS)
        scaled = tf.cast(images, tf.float32) * tf.constant(self._scale, tf.float32)
        x = (scaled - tf.constant(self._mean, tf.float32)) / tf.constant(self._std, tf.float32)
        return self._outputs(x, pixel_units=True)

    def _serve_normalised(self, images):
        return self._outputs(self._check(images, SIGNATURE_NORMALISED), pixel_units=False)

    def _outputs(self, x, pixel_units):
        y = self.model(x, training=False)
        kind = REGISTRY[self.kind]
        if kind.label_outputs:
            scores = next(name for name in kind.serving_outputs if name not in kind.label_outputs)
            out = {scores: y}
            for label, of in kind.label_outputs.items():
                ids = tf.argmax(out[of], axis=-1, output_type=tf.int32)
                out[label] = tf.cast(ids, self._mask_dtype) if kind.any_size else ids
            return out
        if pixel_units:
            y = y * tf.constant(self._std, tf.float32) + tf.constant(self._mean, tf.float32)
            y = tf.clip_by_value(y / tf.constant(self._scale, tf.float32), 0.0, 255.0)
        return {"reconstruction": y}
