"""ONNX export: the serving graph converted by tf2onnx, checked, verified with onnxruntime.

tf2onnx, onnx and onnxruntime load only when an ONNX export runs (``import
keras_skipae.export`` does not import them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from .parity import ParityRunner, prepare_samples
from .reports import ExportError, ExportResult, ParityError, export_report, report_beside
from .serving import INPUT_NAME, SIGNATURE_PIXELS, SIGNATURES, ServingModule, model_info, signature_spec
from .staging import Staging, recover_directory, refuse_existing
from ..extras import require

DEFAULT_OPSET = 17

_ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64"}


def onnx_report_path(path: str | os.PathLike) -> Path:
    """Where :func:`onnx` writes the report of ``path``: ``model.onnx`` -> ``model.export_report.json``."""
    return report_beside(path)


def onnx(
    model,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    sample_images: np.ndarray | None = None,
    *,
    signature: str = SIGNATURE_PIXELS,
    seed: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> ExportResult:
    """Convert ``model`` to ONNX with tf2onnx, check it, verify it with onnxruntime, write ``path``.

    The graph is the SavedModel's ``signature`` (default ``serving_default``:
    uint8 input ``images``; ``"normalised"`` for float32), with a dynamic batch
    axis, and dynamic height and width for the segmenter. The report goes to
    ``<stem>.export_report.json`` beside the file.

    Examples:
        >>> result = onnx(ks.build("segmenter", "tiny"), "segmenter.onnx")
        >>> result.signatures["serving_default"]["inputs"]["images"]["shape"]
        [None, None, None, 3]
    """
    model_info(model)  # a clear error for anything but a keras_skipae model
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"ONNX path {path} should end in .onnx")
    if signature not in SIGNATURES:
        raise ValueError(f"unknown signature {signature!r}; choose one of {', '.join(SIGNATURES)}")
    recover_directory(path.parent)
    refuse_existing(path, overwrite, "another path")
    samples = prepare_samples(sample_images, signature_spec(model))
    with Staging(overwrite) as staging:
        tmp, tmp_report = staging.stage(path), staging.stage(onnx_report_path(path))
        result = stage_onnx(model, tmp, tmp_report, path, opset, signature, samples, seed, providers)
        staging.commit()
    return result


def stage_onnx(model, tmp: Path, tmp_report: Path, final: Path, opset, signature, samples, seed, providers) -> ExportResult:
    """Convert, check and verify the ONNX model into ``tmp`` (its report into ``tmp_report``); moves nothing."""
    onnx_lib = require("onnx", "onnx", "ONNX export")
    onnxruntime = require("onnxruntime", "onnx", "ONNX export")
    tf2onnx = require("tf2onnx", "onnx", "ONNX export")
    require("tf2onnx.convert", "onnx", "ONNX export")

    kind, arch = model_info(model)
    module = ServingModule(model, validate=False)  # ONNX has no assert op
    fn = module.function(signature)
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    except Exception as exc:
        raise ExportError(f"tf2onnx could not convert the {kind}'s '{signature}' graph at opset {opset}: {exc}") from exc
    finally:
        logger.setLevel(level)
    proto.doc_string = f"keras_skipae {kind} '{model.name}', signature '{signature}'"
    try:
        onnx_lib.checker.check_model(proto, full_check=True)
    except onnx_lib.checker.ValidationError as exc:
        raise ExportError(f"the converted ONNX model of the {kind} is invalid (onnx.checker): {exc}") from exc

    tmp.write_bytes(proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(tmp), providers=list(providers))
    names = [o.name for o in session.get_outputs()]
    with ParityRunner(model, "onnx", str(final), seed) as parity:
        parity.run(
            signature,
            lambda images: dict(zip(names, session.run(names, {INPUT_NAME: images}))),
            samples,
            runtime="onnxruntime",
        )
    if not parity.report.passed:
        raise ParityError(parity.report)
    signatures = {signature: describe_onnx(session)}
    versions = {"tf2onnx": tf2onnx.__version__, "onnxruntime": onnxruntime.__version__}
    report = export_report("onnx", model, kind, arch, signatures, parity.report, versions=versions, opset=opset,
                           signature=signature)
    write_json_atomic(tmp_report, report)
    return ExportResult("onnx", final, kind, final.stem, None, signatures, parity.report, onnx_report_path(final))


def describe_onnx(session) -> dict:
    """Inputs and outputs of an onnxruntime session as dtype and shape (None = any size)."""

    def describe(arg):
        shape = [d if isinstance(d, int) else None for d in arg.shape]
        return {"dtype": _ORT_TYPES.get(arg.type, arg.type), "shape": shape}

    return {
        "inputs": {a.name: describe(a) for a in session.get_inputs()},
        "outputs": {a.name: describe(a) for a in session.get_outputs()},
    }
