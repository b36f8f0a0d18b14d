"""Export keras_skipae models for serving, and prove the export computes what the model computes.

Three formats, one serving graph (:mod:`.serving`):

- :func:`saved_model` writes TF Serving's layout ``base_dir/<name>/<version>/``
  with two signatures. ``serving_default`` takes raw ``uint8`` pixels
  ``[batch, height, width, channels]`` and applies the model's recorded
  normalisation (``model.arch``: ``pixel_scale``, ``mean``, ``std``) inside the
  graph; ``normalised`` takes already-normalised ``float32`` images, exactly
  what the Keras model takes.
- :func:`onnx` converts the same graph with tf2onnx (in-process), with a
  dynamic batch axis (and dynamic height and width for the segmenter), and
  checks it with ``onnx.checker``.
- :func:`litert` converts the same graph with ``tf.lite.TFLiteConverter`` to a
  ``.tflite`` file (fixed height and width, dynamic batch), verified by the
  ai-edge-litert interpreter; ``quantize="int8"`` (weights and activations,
  calibrated on images of your data) or ``"dynamic_int8"`` (weights only)
  reports the accuracy change instead of parity.

Outputs are named for what they are: classifier ``probabilities`` and
``class_id``; segmenter ``logits`` and ``mask`` (the per-pixel argmax);
auto-encoder ``reconstruction`` (pixel units 0..255 from ``serving_default``,
normalised units from ``normalised``).

Every export is verified before it is moved into place (:mod:`.parity`): the
artefact is loaded back (``tf.saved_model.load``, a TF1 session, an onnxruntime
session or the LiteRT interpreter) and run on fresh random images and on
``sample_images`` when given; probabilities, logits and reconstructions must
agree with the Keras model to :data:`FLOAT_TOLERANCE` (in the model's output
units) and labels to :data:`LABEL_AGREEMENT`, or the export fails with the
figures (:class:`ParityError`). The report is written next to the artefact. Writes are
atomic (:mod:`.staging`): each artefact is built and verified under a hidden
name beside its destination and renamed into place only once it passed
(:func:`export_model` renames its formats only once all of them passed), so a
failed export leaves no version behind. An existing version is never replaced
unless ``overwrite=True``; then it is swapped out and deleted only after the
new one is in place, and restored if the move fails. A commit killed half-way
leaves a journal: the next export into those folders, or :func:`recover`,
finishes it, so every format ends up holding the same version. Graphs are float32
whatever the model's dtype policy: a mixed-precision model is re-built in
float32 with its weights.

Modules: ``reports`` (errors, parity figures, results, the report JSON),
``serving`` (the serving graph), ``parity`` (reference outputs and the parity
runner), ``staging`` (versioned layout, the atomic commit), ``savedmodel``,
``onnx_export``, ``litert_export``, ``multiformat`` (:func:`export_model`). The
format modules are not named after their functions (``onnx``, ``litert``) so
that ``keras_skipae.export.onnx`` is always the function.

Example::

    import keras_skipae as ks
    from keras_skipae import export

    clf = ks.build("classifier", "tiny")
    result = export.saved_model(clf, "serving/models")       # serving/models/classifier/1/
    print(result.parity.summary())
    export.onnx(clf, "serving/classifier.onnx")
    export.litert(clf, "serving/litert")                      # serving/litert/classifier/1/model.tflite
"""

from .litert_export import CALIBRATION_LIMIT, QUANTIZE_MODES, LiteRTSession, litert, litert_input_size, litert_report_path
from .multiformat import DEFAULT_FORMATS, FORMATS, export_model
from .onnx_export import DEFAULT_OPSET, onnx, onnx_report_path
from .parity import (
    PARITY_BATCH,
    ParityRunner,
    check_images,
    denormalise,
    load_sample_images,
    normalise,
    reference_outputs,
)
from .reports import (
    FLOAT_TOLERANCE,
    LABEL_AGREEMENT,
    REPORT_NAME,
    AccuracyChange,
    ChangeMeasure,
    ExportError,
    ExportResult,
    ParityCheck,
    ParityError,
    ParityReport,
)
from .savedmodel import saved_model
from .serving import (
    INPUT_NAME,
    KINDS,
    LABEL_OUTPUTS,
    OUTPUTS,
    SIGNATURE_NORMALISED,
    SIGNATURE_PIXELS,
    SIGNATURES,
    ServingModule,
    float32_model,
    is_float32,
    model_info,
    signature_spec,
)
from .staging import next_version, recover

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_OPSET",
    "FLOAT_TOLERANCE",
    "FORMATS",
    "INPUT_NAME",
    "KINDS",
    "LABEL_AGREEMENT",
    "LABEL_OUTPUTS",
    "OUTPUTS",
    "PARITY_BATCH",
    "QUANTIZE_MODES",
    "CALIBRATION_LIMIT",
    "REPORT_NAME",
    "SIGNATURES",
    "SIGNATURE_NORMALISED",
    "SIGNATURE_PIXELS",
    "AccuracyChange",
    "ChangeMeasure",
    "ExportError",
    "ExportResult",
    "LiteRTSession",
    "ParityCheck",
    "ParityError",
    "ParityReport",
    "ParityRunner",
    "ServingModule",
    "check_images",
    "denormalise",
    "export_model",
    "float32_model",
    "is_float32",
    "litert",
    "litert_input_size",
    "litert_report_path",
    "load_sample_images",
    "model_info",
    "next_version",
    "normalise",
    "onnx",
    "onnx_report_path",
    "recover",
    "reference_outputs",
    "saved_model",
    "signature_spec",
]
