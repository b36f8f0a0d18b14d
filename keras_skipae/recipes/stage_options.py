"""A stage's optional sections: the online probe of a pre-training stage, joint training of a fine-tuning stage."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..choices import Pooling
from .base import SUBSET, Count, Strict


class OnlineProbeConfig(Strict):
    """The online probe of a ``pretrain`` stage (:class:`keras_skipae.probe.online.OnlineProbe`).

    Every ``every`` epochs (and after the last) a linear probe and a k-NN
    classifier are fitted on the pooled encoder features of ``train_limit``
    images of ``train_on`` (class-stratified, seeded) and scored on
    ``test_limit`` images of ``test_on``; the stage logs ``val_probe_accuracy``
    and ``val_probe_knn_accuracy``, which ``monitor`` can pick the best epoch by.
    Keep both sets off the test split: the choice is made on validation data.
    """

    every: Count = Field(default=1, ge=1)
    train_on: str = Field(default="labelled", pattern=SUBSET)
    train_limit: Optional[Count] = Field(default=1000, ge=2)
    test_on: str = Field(default="val", pattern=SUBSET)
    test_limit: Optional[Count] = Field(default=1000, ge=1)
    pooling: Pooling = "avg"
    knn_k: Count = Field(default=10, ge=1)


class JointConfig(Strict):
    """Joint semi-supervised fine-tuning: the supervised loss plus ``weight`` x a denoising loss on unlabelled images.

    The auto-encoder's decoder comes from the stage's ``init`` model (a
    pre-training stage) or, with ``init: null``, starts from random weights;
    its encoder is the classifier's own, so the unlabelled loss trains the
    shared encoder. Each step draws ``batch_size`` images of ``train_on``
    beside the labelled batch, corrupted as the auto-encoder's architecture
    says. ``loss``: ``reconstruction`` (pixels) or ``ladder`` (also every
    decoder stage's activations of the corrupted input towards the encoder's
    activations of the clean one, no gradient through the clean path, as in
    ladder networks). The stage saves and exports the plain classifier.
    """

    weight: float = Field(default=1.0, gt=0)
    train_on: str = Field(default="unlabelled", pattern=SUBSET)
    limit: Optional[Count] = Field(default=None, ge=1)
    batch_size: Optional[Count] = Field(default=None, ge=1)
    loss: Literal["reconstruction", "ladder"] = "reconstruction"
    #: ladder only: the weight of each layer's activation cost relative to the pixels' (one value for all)
    layer_weight: float = Field(default=1.0, ge=0)
