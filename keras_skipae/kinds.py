"""The model kinds, one registry: what every layer above needs to know about each kind.

Per kind: the model class, the input pipeline, the metrics the trainer
compiles and reports, the validation metric that picks the best epoch, the
outputs of the serving signatures, and the recipe stage kind that trains it.
The trainer, the runner, the exporters and the command line read this table;
adding a kind means adding one entry here (and its class and pipeline).

>>> kind_spec("classifier").monitor
('val_accuracy', 'max')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .arch import MODEL_KINDS
from .data.pipeline import classification_pipeline, pretrain_pipeline, segmentation_pipeline
from .models.autoencoder import SkipAutoEncoder
from .models.base import SkipAEModel
from .models.classifier import SkipClassifier
from .models.segmenter import SkipSegmenter


@dataclass(frozen=True)
class KindSpec:
    """What one model kind is made of and how it is trained, scored and served."""

    name: str
    model_class: type[SkipAEModel]
    pipeline: Callable
    metrics: tuple[str, ...]
    monitor: tuple[str, str]           # (validation metric, "min" or "max") that picks the best epoch
    serving_outputs: tuple[str, ...]   # named outputs of the exported signatures
    label_outputs: dict                # label output -> the scores it is the argmax of
    stage: str                         # the recipe stage kind that trains it


KINDS: dict[str, KindSpec] = {
    "autoencoder": KindSpec("autoencoder", SkipAutoEncoder, pretrain_pipeline, ("mse", "psnr", "ssim"),
                            ("val_mse", "min"), ("reconstruction",), {}, "pretrain"),
    "classifier": KindSpec("classifier", SkipClassifier, classification_pipeline, ("accuracy", "top5_accuracy"),
                           ("val_accuracy", "max"), ("probabilities", "class_id"), {"class_id": "probabilities"},
                           "finetune"),
    "segmenter": KindSpec("segmenter", SkipSegmenter, segmentation_pipeline, ("mean_iou", "pixel_accuracy"),
                          ("val_mean_iou", "max"), ("logits", "mask"), {"mask": "logits"}, "finetune"),
}
assert tuple(KINDS) == MODEL_KINDS, "kinds.KINDS and arch.ModelKind must name the same kinds"


def kind_spec(kind: str) -> KindSpec:
    """The :class:`KindSpec` of ``kind``; an unknown kind is a ValueError listing the valid ones."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are: {', '.join(KINDS)}") from None
