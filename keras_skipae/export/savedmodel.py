"""TF Serving SavedModel export, verified as TF2 and as TF Serving load it.

:func:`saved_model` writes ``base_dir/<name>/<version>/`` with the two
signatures of the serving graph (:mod:`.serving`), loads it back with
``tf.saved_model.load`` and in a TF1 session (as TF Serving does), checks
parity, writes the report to ``<version>/assets.extra/export_report.json`` and
only then renames it into place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..atomic import write_json_atomic
from .parity import ParityRunner, prepare_samples, serving_session
from .reports import REPORT_NAME, ExportResult, ParityError, export_report
from .serving import INPUT_NAME, SIGNATURE_PIXELS, SIGNATURES, ServingModule, model_info, signature_spec
from .staging import Staging, check_name, check_version, next_version, recover_directory, refuse_existing

log = logging.getLogger(__name__)


def saved_model(
    model,
    base_dir: str | os.PathLike,
    name: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    sample_images: np.ndarray | None = None,
    *,
    seed: int | None = None,
) -> ExportResult:
    """Write ``model`` as a TF Serving SavedModel at ``base_dir/<name>/<version>/`` and verify it.

    ``name`` defaults to the model's kind; ``version`` to the next integer.
    Signatures ``serving_default`` (uint8 pixels) and ``normalised`` (float32);
    see :mod:`keras_skipae.export.serving` for outputs. The parity report goes to
    ``<version>/assets.extra/export_report.json``. Raises :class:`ParityError`
    (nothing written) when the loaded artefact disagrees with the Keras model,
    ``FileExistsError`` when the version exists and ``overwrite`` is False.

    >>> result = saved_model(ks.build("classifier", "tiny"), "models")   # models/classifier/1
    >>> result.parity.passed
    True
    """
    kind, _ = model_info(model)
    name = check_name(name or kind)
    model_dir = Path(base_dir) / name
    recover_directory(model_dir)  # finish or clean up what a killed export left, before counting versions
    version = next_version(model_dir) if version is None else check_version(version)
    final = model_dir / str(version)
    refuse_existing(final, overwrite)
    samples = prepare_samples(sample_images, signature_spec(model))
    with Staging(overwrite) as staging:
        result = stage_saved_model(model, staging.stage(final), final, name, version, samples, seed)
        staging.commit()
    log.info("exported %s to %s", kind, final)
    return result


def stage_saved_model(model, tmp: Path, final: Path, name: str, version: int, samples, seed) -> ExportResult:
    """Write the SavedModel to ``tmp`` and verify it; raises :class:`ParityError`. Moves nothing."""
    kind, arch = model_info(model)
    module = ServingModule(model, forward_deconv=True)  # TensorFlow's transposed convolutions are slow on CPUs
    module.write(tmp)
    loaded = tf.saved_model.load(str(tmp))
    with ParityRunner(model, "savedmodel", str(final), seed) as parity:
        for signature in SIGNATURES:
            fn = loaded.signatures[signature]
            parity.run(
                signature,
                lambda images, fn=fn: {k: v.numpy() for k, v in fn(**{INPUT_NAME: tf.constant(images)}).items()},
                samples,
                runtime="tf.saved_model.load",
            )
        with serving_session(tmp) as run_signature:  # the way TF Serving loads it
            parity.run(SIGNATURE_PIXELS, lambda images: run_signature(SIGNATURE_PIXELS, images), samples, runtime="TF1 session")
    if not parity.report.passed:
        raise ParityError(parity.report)
    signatures = describe_signatures(loaded)
    del loaded
    report = export_report("savedmodel", model, kind, arch, signatures, parity.report, name=name, version=version)
    write_json_atomic(tmp / "assets.extra" / REPORT_NAME, report)
    return ExportResult("savedmodel", final, kind, name, version, signatures, parity.report, final / "assets.extra" / REPORT_NAME)


def describe_signatures(loaded) -> dict:
    """``{signature: {"inputs": {name: {dtype, shape}}, "outputs": {...}}}`` of a loaded SavedModel."""
    described = {}
    for key, fn in loaded.signatures.items():
        inputs = fn.structured_input_signature[1]
        described[key] = {
            "inputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()} for k, v in inputs.items()},
            "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()} for k, v in fn.structured_outputs.items()},
        }
    return described
