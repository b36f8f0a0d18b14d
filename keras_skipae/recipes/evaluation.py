"""Evaluating models as the runner does: the kind's pipeline, fixed noise for auto-encoders.

:func:`pipeline_for` is the one mapping from a model kind to its input
pipeline with a stage's settings; :func:`evaluate_model` evaluates a saved
model or a run directory's stage on a data split exactly as the run's own
evaluation did (same corruption, same seed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tensorflow as tf

from .. import data
from ..arch import BLOCK_CORRUPTIONS
from ..data import transforms
from ..kinds import kind_spec
from ..runs import RunDir, resolve_model
from ..saving import load
from ..train import Trainer
from .schema import Recipe, RecipeError


def corrupted_for_evaluation(batches: tf.data.Dataset, arch, seed: int) -> tf.data.Dataset:
    """Corrupt the inputs of ``(x, x_clean)`` batches with ``arch.corruption``, the same noise every pass.

    Validation and test of a denoising auto-encoder compare its output on
    corrupted images with the clean ones; a fixed seed per batch keeps the
    figures comparable across epochs and runs.
    """
    if arch.corruption == "none" or arch.corruption_level == 0:
        return batches

    def corrupt(index, batch):
        x, clean = batch[0], batch[1]
        key = tf.stack([tf.constant(seed, tf.int64), index])
        return (transforms.corrupt(x, arch, key), clean) + tuple(batch[2:])

    return batches.enumerate().map(corrupt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE)


def pipeline_for(kind: str, ds, arch, batch_size: int, *, training: bool, seed: int, augment: bool = False,
                 corruption: str = "model", crop_size=None, cache: bool = True) -> tf.data.Dataset:
    """``ds`` as batches for a model of ``kind``, with a stage's settings.

    Auto-encoders: in training the corruption is in the model or, with
    ``corruption="pipeline"``, in the pipeline; validation and test inputs are
    corrupted with fixed noise (:func:`corrupted_for_evaluation`).
    """
    spec = kind_spec(kind)
    kwargs: dict[str, Any] = {"training": training, "seed": seed, "cache": cache}
    if training:
        kwargs["augment"] = augment
    if spec.denoising:
        kwargs["corruption"] = corruption if training else "none"
        kwargs["drop_remainder"] = training
    if spec.any_size and training and crop_size:
        kwargs["crop_size"] = tuple(crop_size)
    batches = spec.pipeline(ds, arch, batch_size, **kwargs)
    if spec.denoising and not training:
        # validation and test measure denoising: corrupted input, clean target, fixed noise
        batches = corrupted_for_evaluation(batches, arch, seed)
    return batches


def corruption_record(arch, where: str) -> dict:
    """What corrupted a pre-training stage's inputs: ``{"kind", "level", "where": "model"|"pipeline"}``.

    Stored in the stage's entry of ``metrics.json``; its validation and test
    figures are on inputs corrupted this way, and an ``evaluate`` stage of that
    model uses the same corruption so the two are comparable.
    """
    record = {"kind": str(arch.corruption), "level": float(arch.corruption_level), "where": where}
    if arch.corruption in BLOCK_CORRUPTIONS:
        record["block"] = int(arch.corruption_block)
    return record


def with_recorded_corruption(arch, record: dict | None):
    """``arch`` with the corruption of a stage's :func:`corruption_record` (unchanged without one)."""
    if not record:
        return arch
    changes = {"corruption": record["kind"], "corruption_level": record["level"]}
    if "block" in record:
        changes["corruption_block"] = int(record["block"])
    if record["kind"] == "gaussian":
        changes["loss_on"] = "all"  # evaluation counts every pixel anyway
    return arch.replace(**changes)


def evaluate_model(
    target: str | os.PathLike,
    source: str | None = None,
    split: str | None = None,
    *,
    stage: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """Evaluate a saved model (or a run directory's stage) on a data split: ``{metric: value}``.

    Data defaults to the run's recipe (``data.source`` and ``data.eval_split``).
    A run directory's stage is evaluated as the run evaluated it: the stage's
    batch size and the run's evaluation seed (the recipe's ``seed`` + 2), so an
    auto-encoder sees the same fixed noise and reproduces the run's figures.
    ``batch_size`` overrides the stage's (for a model file: default 256).

    >>> evaluate_model("runs/quickstart", stage="finetune")       # test accuracy
    >>> evaluate_model("model.keras", "idx:", "test")
    """
    model_path = resolve_model(target, stage)
    run = RunDir(target) if Path(target).is_dir() else None
    entry = run.stage(stage) if run is not None else None
    raw = run.recipe() if run is not None else None
    cfg = Recipe.model_validate(raw).data if raw is not None else None
    if source is None:
        if cfg is None:
            raise RecipeError("give the data to evaluate on (--data SOURCE), e.g. --data idx: --split test")
        source = cfg.source
    split = split or (cfg.eval_split if cfg is not None else "test")
    recipe = Recipe.model_validate(raw) if raw is not None else None
    stage_cfg = recipe.stages.get(entry.name if entry is not None else "") if recipe is not None else None
    seed = recipe.seed + 2 if recipe is not None else 0  # the runner's evaluation seed (see runner._run_stage)
    batch_size = batch_size or (stage_cfg.batch_size if stage_cfg is not None else 256)
    trainer = Trainer(strategy="auto")
    with trainer.scope():
        model = load(model_path)
    ds = data.load(data.resolve_source(source), split, **(cfg.load_options() if cfg is not None else {}))
    arch = model.arch
    if kind_spec(model.kind).denoising and entry is not None:
        # as the run's stages: inputs corrupted as recorded for that stage (comparable figures)
        arch = with_recorded_corruption(arch, entry.corruption)
    pipeline = pipeline_for(model.kind, ds, arch, batch_size, training=False, seed=seed)
    trainer.compile(model, "adam", steps_per_epoch=1, epochs=1)
    return trainer.evaluate(model, pipeline)
