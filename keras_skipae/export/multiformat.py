"""Export a model in several formats under one version number, all or none.

:func:`export_model` is what ``skipae export`` calls: it takes a model, a
``.keras`` file or a run directory, builds and verifies every format beside
its destination, and renames them into place together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from ..runs import resolve_model
from ..saving import load
from .litert_export import MODEL_FILE as LITERT_FILE
from .litert_export import (QUANTIZE_MODES, litert_calibration, litert_input_size, litert_report_path,
                            litert_samples, stage_litert)
from .onnx_export import DEFAULT_OPSET, onnx_report_path, stage_onnx
from .parity import prepare_samples
from .savedmodel import stage_saved_model
from .serving import SIGNATURE_PIXELS, model_info, signature_spec
from .staging import Staging, check_name, check_version, next_version, recover_directory, refuse_existing

FORMATS = ("savedmodel", "onnx", "litert")
DEFAULT_FORMATS = ("savedmodel", "onnx")

log = logging.getLogger(__name__)


def _model_path(target: str | os.PathLike, stage: str | None) -> Path:
    """The ``.keras`` file of ``target``: itself, or a run directory's last stage or ``stage``."""
    return resolve_model(target, stage)


def export_model(
    source: str | os.PathLike | keras.Model,
    out: str | os.PathLike,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    stage: str | None = None,
    name: str | None = None,
    version: int | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    sample_images: np.ndarray | None = None,
    input_size: tuple | None = None,
    quantize: str | None = None,
    calibration_images: np.ndarray | None = None,
) -> list:
    """Export a model, a ``.keras`` file or a run directory's stage in each of ``formats``.

    A run directory (``metrics.json`` listing its stages) resolves to its last
    stage, or to ``stage``.

    Layout (same version number for every format)::

        OUT/savedmodel/<name>/<version>/            TF Serving's model base path is OUT/savedmodel/<name>
        OUT/onnx/<name>/<version>/model.onnx        (and model.export_report.json)
        OUT/litert/<name>/<version>/model.tflite    (and model.export_report.json); only when asked for

    ``input_size``, ``quantize`` and ``calibration_images`` apply to LiteRT
    (see :func:`litert`).

    Every format is built and verified before any is moved into place: when
    one fails (a :class:`ParityError`, say), no version of any format is
    written and the next export gets the same version number.

    >>> results = export_model("runs/quickstart", "exported")     # last stage of the run
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        hint = " (TFLite is 'litert')" if "tflite" in unknown else ""
        raise ValueError(f"unknown export format(s) {unknown or formats}; choose from {', '.join(FORMATS)}{hint}")
    if quantize is not None and (quantize not in QUANTIZE_MODES or "litert" not in formats):
        raise ValueError(f"quantize={quantize!r}: LiteRT's {', '.join(QUANTIZE_MODES)}, with the litert format")
    if isinstance(source, keras.Model):
        model = source
    else:
        model_path = _model_path(source, stage)
        if not model_path.is_file():
            raise FileNotFoundError(f"{source}: the model file {model_path} listed in metrics.json does not exist")
        model = load(model_path, compile=False)
    kind, _ = model_info(model)
    name = check_name(name or kind)
    out = Path(out)
    for fmt in formats:  # finish or clean up what a killed export left, before counting versions
        recover_directory(out / fmt / name)
    if version is None:
        version = max(next_version(out / fmt / name) for fmt in formats)
    version = check_version(version)
    finals = {fmt: out / fmt / name / str(version) for fmt in formats}
    for final in finals.values():
        refuse_existing(final, overwrite)
    samples = prepare_samples(sample_images, signature_spec(model))
    if "litert" in formats:
        litert_size = litert_input_size(model, input_size)
        litert_images = litert_samples(model, sample_images, litert_size)
        calibration, calibrated_on = litert_calibration(model, quantize, calibration_images, litert_images,
                                                        litert_size)
    elif calibration_images is not None:
        raise ValueError("calibration_images are for the litert format with quantize='int8'")
    # every format is built and verified beside its destination first; only when all passed are they
    # renamed into place, together (a failure anywhere leaves no new version of any format)
    results = []
    with Staging(overwrite) as staging:
        for fmt, final in finals.items():
            tmp = staging.stage(final)
            if fmt == "savedmodel":
                results.append(stage_saved_model(model, tmp, final, name, version, samples, None))
                continue
            tmp.mkdir()
            if fmt == "onnx":
                model_file = final / "model.onnx"
                result = stage_onnx(
                    model, tmp / model_file.name, tmp / onnx_report_path(model_file).name, model_file,
                    opset, SIGNATURE_PIXELS, samples, None, ("CPUExecutionProvider",),
                )
            else:
                model_file = final / LITERT_FILE
                result = stage_litert(
                    model, tmp / model_file.name, tmp / litert_report_path(model_file).name, model_file,
                    SIGNATURE_PIXELS, litert_size, quantize, litert_images, None, calibration, calibrated_on,
                )
            result.version, result.name = version, name
            results.append(result)
        staging.commit()
    for result in results:
        log.info("exported %s to %s", result.kind, result.path)
    return results
