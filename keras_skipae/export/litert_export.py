"""LiteRT (TFLite) export: the serving graph converted by ``tf.lite.TFLiteConverter``, verified by the LiteRT interpreter.

The ``.tflite`` file holds one signature of the serving graph (default
``serving_default``: uint8 ``images`` ``[batch, H, W, C]``, the model's
normalisation inside; outputs named as in every format). LiteRT graphs have a
fixed height and width: the model's ``input_shape`` or ``input_size=``
(required for a segmenter built for any size). The batch axis stays dynamic:
:class:`LiteRTSession` resizes the interpreter's input for each batch size.

Float exports pass the same parity check as the SavedModel and ONNX ones,
run by the ``ai-edge-litert`` interpreter before anything is written.
Quantized exports cannot match to 1e-4 by design: their
:class:`AccuracyChange` (label agreement, score differences) is measured on
the same images and reported instead; non-finite outputs are refused.

- ``quantize="int8"``: weights and activations in int8 (full-integer
  post-training quantization; the interface stays uint8/float32), activation
  ranges calibrated on ``calibration_images`` (default: ``sample_images``),
  images of the data the model will see. LiteRT runs every layer, the
  transposed convolutions included, in its int8 kernels: as fast as the
  float32 file or faster (``benchmarks/inference.py``).
- ``quantize="dynamic_int8"``: int8 weights only, no calibration; activations
  stay float and LiteRT quantizes them at run time, which its convolution
  kernels do slowly on CPUs (the ``allconv-c`` auto-encoder ran about 10x slower
  than float32). Prefer ``int8`` when images to calibrate on exist. The ``ai-edge-litert`` package loads only when a LiteRT
export or session runs.

Example::

    result = litert(ks.build("classifier", "tiny"), "models")        # models/classifier/1/model.tflite
    session = LiteRTSession(result.path)
    session.run(images_uint8)                                        # {"probabilities": ..., "class_id": ...}
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..atomic import write_json_atomic
from ..extras import require
from ..kinds import KINDS as REGISTRY
from .parity import ParityRunner, check_images, prepare_samples, spread
from .reports import ExportError, ExportResult, ParityError, export_report, report_beside
from .serving import INPUT_NAME, SIGNATURE_PIXELS, SIGNATURES, ServingModule, model_info, signature_spec
from .staging import Staging, check_name, check_version, next_version, recover_directory, refuse_existing

QUANTIZE_MODES = ("int8", "dynamic_int8")
CALIBRATION_LIMIT = 256  # images fed to the int8 calibration (the first ones given)
MODEL_FILE = "model.tflite"
RUNTIME = "ai-edge-litert interpreter"



def litert_report_path(path: str | os.PathLike) -> Path:
    """Where :func:`litert` writes the report of ``path``: ``model.tflite`` -> ``model.export_report.json``."""
    return report_beside(path)


def _interpreter_class():
    return require("ai_edge_litert.interpreter", "litert", "LiteRT").Interpreter


def _litert_version() -> str:
    return getattr(require("ai_edge_litert", "litert", "LiteRT"), "__version__", "unknown")


class LiteRTSession:
    """A ``.tflite`` model (a path or its bytes) in the LiteRT interpreter, called like its signature.

    :meth:`run` takes a batch of any size: the interpreter's input is resized
    (``resize_tensor_input``) and its tensors re-allocated whenever the batch
    size changes; height, width and channels must be the model's.

    >>> session = LiteRTSession("exported/litert/classifier/1/model.tflite", num_threads=2)
    >>> session.run(images_uint8)["class_id"]
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None):
        Interpreter = _interpreter_class()
        if isinstance(model, bytes):
            self.interpreter = Interpreter(model_content=model, num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ExportError(f"expected a LiteRT model with one signature, found {sorted(signatures) or 'none'}")
        (self.signature,) = signatures
        runner = self.interpreter.get_signature_runner(self.signature)
        self._input = runner.get_input_details()[INPUT_NAME]
        self._outputs = runner.get_output_details()
        del runner  # it holds views of the interpreter's tensors, which allocate_tensors refuses
        self.interpreter.allocate_tensors()
        self._shape = tuple(self._input["shape"])  # the shape the tensors are allocated for

    def spec(self) -> dict:
        """``{"inputs": {name: {dtype, shape}}, "outputs": {...}}`` with None for the dynamic axes."""

        def describe(details):
            shape = [None if d < 0 else int(d) for d in details["shape_signature"]]
            return {"dtype": np.dtype(details["dtype"]).name, "shape": shape}

        return {"inputs": {INPUT_NAME: describe(self._input)}, "outputs": {k: describe(v) for k, v in self._outputs.items()}}

    def run(self, images: np.ndarray) -> dict:
        """``{output name: array}`` for a batch ``[batch, H, W, C]`` of the model's input dtype."""
        images = check_images(images, {self.signature: self.spec()}, self.signature)
        if images.shape != self._shape:
            self.interpreter.resize_tensor_input(self._input["index"], list(images.shape), strict=True)
            self.interpreter.allocate_tensors()
            self._shape = images.shape
        self.interpreter.set_tensor(self._input["index"], np.ascontiguousarray(images))
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(details["index"]) for name, details in self._outputs.items()}


def litert_input_size(model, input_size: tuple | None = None) -> tuple:
    """The fixed ``(height, width)`` of the LiteRT graph of ``model``, or a ValueError saying what to pass.

    ``input_size`` when given (any size for the fully convolutional segmenter;
    the model's own for the others), else the model's ``input_shape``.
    """
    kind, arch = model_info(model)
    own = tuple(arch.input_shape[:2])
    if input_size is not None:
        size = tuple(input_size)
        if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in size):
            raise ValueError(f"input_size={input_size!r}: expected (height, width), two positive ints")
        size = (int(size[0]), int(size[1]))
        if not REGISTRY[kind].any_size and None not in own and size != own:
            raise ValueError(f"input_size={size}: the {kind} takes {own[0]}x{own[1]} images (its input_shape)")
        return size
    if None in own:
        raise ValueError(
            f"LiteRT graphs have a fixed height and width, and this {kind} takes any size (input_shape "
            f"{tuple(arch.input_shape)}); pass input_size=(height, width)"
        )
    return own


def convert(model, signature: str = SIGNATURE_PIXELS, input_size: tuple | None = None, quantize: str | None = None,
            calibration_images: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` bytes of the serving graph's ``signature`` at ``input_size``, float32 or quantized.

    Converted from the SavedModel the serving graph writes (with its variables,
    which the converter freezes into constants), without the graph's input
    asserts (LiteRT has no assert op). ``quantize="int8"`` needs
    ``calibration_images`` (uint8 pixels at ``input_size``), fed one at a time
    through ``signature`` to set the activation ranges.
    """
    kind, _ = model_info(model)
    size = litert_input_size(model, input_size)
    calibration = _calibration_inputs(model, signature, quantize, calibration_images)
    module = ServingModule(model, validate=False, input_size=size)
    with tempfile.TemporaryDirectory(prefix="skipae-litert-") as workdir:
        module.write(workdir)
        converter = tf.lite.TFLiteConverter.from_saved_model(workdir, signature_keys=[signature])
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # without representative data: dynamic-range int8
        if calibration is not None:
            converter.representative_dataset = lambda: ({INPUT_NAME: image[None]} for image in calibration)
        try:
            return converter.convert()
        except Exception as exc:
            raise ExportError(f"the TFLite converter could not convert the {kind}'s '{signature}' graph: {exc}") from exc


def _calibration_inputs(model, signature: str, quantize: str | None, calibration_images) -> np.ndarray | None:
    """The ``int8`` calibration inputs as ``signature`` takes them (None for the other modes)."""
    if quantize != "int8":
        return None
    if calibration_images is None or len(calibration_images) == 0:
        raise ValueError(
            "quantize='int8' sets its activation ranges from images of your data: pass calibration_images= "
            "(or sample_images=; on the command line --samples), a few hundred uint8 images [N, H, W, C]; "
            "or use quantize='dynamic_int8', which needs none and runs slower"
        )
    images = np.asarray(calibration_images)
    images = images[spread(len(images), CALIBRATION_LIMIT)]  # evenly spaced: every class, not the first
    if images.dtype != np.uint8:
        raise ValueError(f"calibration_images must be uint8 pixels 0..255, got {images.dtype}")
    _, arch = model_info(model)
    return images if signature == SIGNATURE_PIXELS else np.asarray(arch.normalise(images), np.float32)


def litert(
    model,
    path_or_dir: str | os.PathLike,
    name: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    sample_images: np.ndarray | None = None,
    *,
    signature: str = SIGNATURE_PIXELS,
    input_size: tuple | None = None,
    quantize: str | None = None,
    calibration_images: np.ndarray | None = None,
    seed: int | None = None,
) -> ExportResult:
    """Convert ``model`` to LiteRT (``.tflite``), verify it with the LiteRT interpreter, write it.

    ``path_or_dir`` ending in ``.tflite``: that file (the report beside it as
    ``<stem>.export_report.json``). Otherwise a base directory, versioned as
    for TF Serving: ``<dir>/<name>/<version>/model.tflite`` (``name``: the
    model's kind; ``version``: the next integer). ``input_size=(height,
    width)`` for a segmenter that takes any size. ``quantize="int8"`` (weights
    and activations, calibrated on ``calibration_images``, default
    ``sample_images``) or ``"dynamic_int8"`` (weights only) reports the
    accuracy change instead of parity.
    Raises :class:`ParityError` (nothing written) when a float export
    disagrees with the Keras model.

    Examples:
        >>> result = litert(ks.build("segmenter", "tiny"), "models")       # models/segmenter/1/model.tflite
        >>> result.signatures["serving_default"]["inputs"]["images"]["shape"]
        [None, 32, 32, 3]
    """
    kind, _ = model_info(model)
    _check_options(signature, quantize)
    size = litert_input_size(model, input_size)
    target = Path(path_or_dir)
    if target.suffix == ".tflite":
        if name is not None or version is not None:
            raise ValueError(f"name and version are for a base directory; {target} is a file path")
        final, name, version, what = target, target.stem, None, "another path"
        recover_directory(target.parent)
    else:
        name = check_name(name or kind)
        recover_directory(target / name)
        version = next_version(target / name) if version is None else check_version(version)
        final, what = target / name / str(version), "another version"
    refuse_existing(final, overwrite, what)
    samples = litert_samples(model, sample_images, size)
    calibration, calibrated_on = litert_calibration(model, quantize, calibration_images, samples, size)
    with Staging(overwrite) as staging:
        if final.suffix == ".tflite":
            tmp, tmp_report = staging.stage(final), staging.stage(litert_report_path(final))
            model_file = final
        else:
            tmp_dir = staging.stage(final)
            tmp_dir.mkdir()
            model_file = final / MODEL_FILE
            tmp, tmp_report = tmp_dir / MODEL_FILE, tmp_dir / litert_report_path(model_file).name
        result = stage_litert(model, tmp, tmp_report, model_file, signature, size, quantize, samples, seed,
                              calibration, calibrated_on)
        result.name, result.version = name, version
        staging.commit()
    return result


def litert_samples(model, sample_images, input_size: tuple):
    """``sample_images`` checked against the LiteRT graph's fixed size (None stays None)."""
    try:
        return prepare_samples(sample_images, signature_spec(model, input_size))
    except ValueError as exc:
        raise ValueError(f"{exc}; the LiteRT graph takes {input_size[0]}x{input_size[1]} images (input_size=)") from None


def litert_calibration(model, quantize: str | None, calibration_images, samples, input_size: tuple):
    """The images ``int8`` calibrates on (``calibration_images``, else the checked ``samples``), checked against
    the LiteRT graph's size, and where they came from; ``(None, None)`` for the other modes. Refused before
    anything is staged when missing, or when given for a mode that does not calibrate."""
    if quantize != "int8":
        if calibration_images is not None:
            raise ValueError(f"calibration_images are for quantize='int8'; quantize={quantize!r} does not calibrate")
        return None, None
    if calibration_images is None:
        images, source = samples, "sample_images (the accuracy change is measured on images the calibration saw)"
    else:
        images, source = litert_samples(model, calibration_images, input_size), "calibration_images"
    _calibration_inputs(model, SIGNATURE_PIXELS, quantize, images)  # raises when there are none
    return images, source


def _check_options(signature: str, quantize: str | None) -> None:
    if signature not in SIGNATURES:
        raise ValueError(f"unknown signature {signature!r}; choose one of {', '.join(SIGNATURES)}")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantize={quantize!r}; choose one of {', '.join(QUANTIZE_MODES)} (or None for float32)")


def stage_litert(model, tmp: Path, tmp_report: Path, final: Path, signature: str, input_size: tuple,
                 quantize: str | None, samples, seed, calibration=None, calibrated_on: str | None = None
                 ) -> ExportResult:
    """Convert and verify the LiteRT model into ``tmp`` (its report into ``tmp_report``); moves nothing."""
    kind, arch = model_info(model)
    content = convert(model, signature, input_size, quantize, calibration)
    session = LiteRTSession(content)
    with ParityRunner(model, "litert", str(final), seed, input_size=input_size) as parity:
        if quantize is None:
            parity.run(signature, session.run, samples, runtime=RUNTIME)
            change = None
        else:
            change = parity.measure(signature, session.run, samples, runtime=RUNTIME, quantize=quantize)
    if quantize is None and not parity.report.passed:
        raise ParityError(parity.report)
    tmp.write_bytes(content)
    signatures = {signature: session.spec()}
    versions = {"ai-edge-litert": _litert_version()}
    report = export_report(
        "litert", model, kind, arch, signatures, parity.report if quantize is None else None,
        versions=versions, accuracy_change=change, signature=signature, input_size=list(input_size),
        quantize=quantize, size_bytes=len(content),
        calibration_images=None if calibration is None else min(len(calibration), CALIBRATION_LIMIT),
        calibrated_on=calibrated_on,
    )
    write_json_atomic(tmp_report, report)
    return ExportResult(
        "litert", final, kind, final.stem, None, signatures, parity.report if quantize is None else None,
        litert_report_path(final), accuracy_change=change,
    )
