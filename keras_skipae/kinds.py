"""The model kinds, one registry: what every layer above needs to know about each kind.

Per kind: the model class, the input pipeline, the metrics the trainer
compiles and reports, the validation metric that picks the best epoch, the
outputs of the serving signatures, and the recipe stage kind that trains it.
The trainer, the runner, the exporters and the command line read this table;
adding a kind means adding one entry here (and its class, exported by
:mod:`keras_skipae.models`, its metric and loss factories in
:mod:`keras_skipae.train.metrics` and its pipeline in
:mod:`keras_skipae.data.pipeline`: the entry names them, and they are
imported on first use, so that reading the table never starts TensorFlow).

>>> kind_spec("classifier").monitor
('val_accuracy', 'max')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from .arch import MODEL_KINDS

# The model classes, metrics and losses need Keras (and so TensorFlow): the table names them and they are
# imported on first use, so that validating a recipe or printing a usage error never waits for TensorFlow.
_MODELS = "keras_skipae.models"
_METRICS = "keras_skipae.train.metrics"
_PIPELINES = "keras_skipae.data.pipeline"


def _resolve(module: str, name: str):
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class KindSpec:
    """What one model kind is made of and how it is trained, scored and served."""

    name: str
    model_class_name: str              # the model class in keras_skipae.models (imported on first use)
    pipeline_name: str                 # the input pipeline in keras_skipae.data.pipeline (imported on first use)
    metrics: tuple[str, ...]
    monitor: tuple[str, str]           # (validation metric, "min" or "max") that picks the best epoch
    serving_outputs: tuple[str, ...]   # named outputs of the exported signatures
    label_outputs: dict                # label output -> the scores it is the argmax of
    stage: str                         # the recipe stage kind that trains it
    metrics_factory: str               # in keras_skipae.train.metrics: arch -> the compiled metrics (named as in ``metrics``)
    loss_factory: str                  # in keras_skipae.train.metrics: () -> the training loss
    denoising: bool = False            # inputs corrupted in training, evaluated on fixed noise; a corruption record
    image_labels: bool = False         # needs one label per image (a classifier), so no unlabelled example
    any_size: bool = False             # takes any height and width (exports keep them dynamic; crops in training)

    @property
    def model_class(self) -> type:
        """The kind's model class (a :class:`~keras_skipae.models.SkipAEModel`)."""
        return _resolve(_MODELS, self.model_class_name)

    @property
    def make_metrics(self) -> Callable:
        """``arch`` -> the compiled metrics, named as in :attr:`metrics`."""
        return _resolve(_METRICS, self.metrics_factory)

    @property
    def make_loss(self) -> Callable:
        """``()`` -> the training loss."""
        return _resolve(_METRICS, self.loss_factory)

    def pipeline(self, *args, **kwargs):
        """The kind's input pipeline (:mod:`keras_skipae.data.pipeline`) applied to ``args``.

        Resolved on first use, so building or loading a model never imports the data pipelines.
        """
        return _resolve(_PIPELINES, self.pipeline_name)(*args, **kwargs)


KINDS: dict[str, KindSpec] = {
    "autoencoder": KindSpec("autoencoder", "SkipAutoEncoder", "pretrain_pipeline", ("mse", "psnr", "ssim"),
                            ("val_mse", "min"), ("reconstruction",), {}, "pretrain",
                            "reconstruction_metrics", "reconstruction_loss", denoising=True),
    "classifier": KindSpec("classifier", "SkipClassifier", "classification_pipeline", ("accuracy", "top5_accuracy"),
                           ("val_accuracy", "max"), ("probabilities", "class_id"), {"class_id": "probabilities"},
                           "finetune", "classification_metrics", "probabilities_loss",
                           image_labels=True),
    "segmenter": KindSpec("segmenter", "SkipSegmenter", "segmentation_pipeline", ("mean_iou", "pixel_accuracy"),
                          ("val_mean_iou", "max"), ("logits", "mask"), {"mask": "logits"}, "finetune",
                          "segmentation_metrics", "logits_loss", any_size=True),
}
assert tuple(KINDS) == MODEL_KINDS, "kinds.KINDS and arch.ModelKind must name the same kinds"

#: the recipe's stage kinds: a ``pretrain`` stage trains an auto-encoder, a ``finetune`` stage the recipe's
#: classifier or segmenter (each :attr:`KindSpec.stage`), an ``evaluate`` stage scores a model and trains nothing
StageKind = Literal["pretrain", "finetune", "evaluate"]
STAGE_KINDS = get_args(StageKind)
assert {spec.stage for spec in KINDS.values()} < set(STAGE_KINDS), "every model kind is trained by a stage kind"


def is_pretrain_stage(kind: str) -> bool:
    """Whether a recipe stage of ``kind`` pre-trains an auto-encoder."""
    return kind == "pretrain"


def is_finetune_stage(kind: str) -> bool:
    """Whether a recipe stage of ``kind`` trains the recipe's classifier or segmenter."""
    return kind == "finetune"


def is_evaluate_stage(kind: str) -> bool:
    """Whether a recipe stage of ``kind`` only evaluates a model."""
    return kind == "evaluate"


#: names written to metrics.json, per model kind
METRIC_NAMES = {name: spec.metrics for name, spec in KINDS.items()}
#: the validation metric that picks the best checkpoint, and whether higher is better
MONITOR = {name: spec.monitor for name, spec in KINDS.items()}


#: whether each metric the package logs is better higher ("max") or lower ("min"): what picks a best epoch
METRIC_MODES: dict[str, str] = {
    "loss": "min", "mse": "min", "mae": "min",
    "accuracy": "max", "top5_accuracy": "max", "mean_iou": "max", "pixel_accuracy": "max",
    "psnr": "max", "ssim": "max", "auc": "max",
    "probe_accuracy": "max", "probe_knn_accuracy": "max",
}


def monitor_mode(monitor: str) -> tuple[str, str]:
    """``(metric, mode)`` for a best-epoch monitor: ``"val_accuracy"`` -> ("val_accuracy", "max").

    The direction comes from :data:`METRIC_MODES` (the ``val_`` prefix
    ignored), never from a guess at the name; ``"NAME:max"`` or ``"NAME:min"``
    states it for any other metric. An unknown metric without one is a
    ValueError that lists the known ones.

    >>> monitor_mode("val_probe_accuracy")
    ('val_probe_accuracy', 'max')
    >>> monitor_mode("val_my_score:max")
    ('val_my_score', 'max')
    """
    name, _, mode = monitor.partition(":")
    if mode:
        if mode not in ("min", "max"):
            raise ValueError(f"monitor {monitor!r}: the mode after ':' must be 'min' or 'max'")
        return name, mode
    bare = name[4:] if name.startswith("val_") else name
    if bare not in METRIC_MODES:
        raise ValueError(
            f"monitor {monitor!r}: unknown metric, so whether higher is better is not known; use one of "
            f"{', '.join('val_' + m for m in METRIC_MODES)} or say it: '{name}:max' or '{name}:min'"
        )
    return name, METRIC_MODES[bare]


def kind_spec(kind: str) -> KindSpec:
    """The :class:`KindSpec` of ``kind``; an unknown kind is a ValueError listing the valid ones."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are: {', '.join(KINDS)}") from None


def _spec_of(model) -> KindSpec:
    kind = getattr(model, "kind", "")
    if kind not in KINDS:
        raise ValueError(f"model {getattr(model, 'name', model)!r} has kind {kind!r}; expected a keras_skipae "
                         f"{', '.join(KINDS)} (build it with keras_skipae.build)")
    return KINDS[kind]


def metrics_for(model) -> list:
    """The compiled metrics for a keras_skipae model, by its kind (:attr:`KindSpec.make_metrics`).

    Auto-encoder: ``mse``, ``psnr``, ``ssim``; classifier: ``accuracy`` and,
    with more than 5 classes, ``top5_accuracy``; segmenter: ``mean_iou``,
    ``pixel_accuracy``.

    >>> model.compile("adam", loss_for(model), metrics=metrics_for(model))
    """
    return _spec_of(model).make_metrics(model.arch)


def loss_for(model):
    """The training loss of a keras_skipae model, by its kind (:attr:`KindSpec.make_loss`)."""
    return _spec_of(model).make_loss()
