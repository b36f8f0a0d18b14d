"""How a stage's models and helpers are set up: continuing a saved auto-encoder, checking a transferred
encoder's input normalisation, the online probe of a pre-training stage and joint semi-supervised fine-tuning.

Used by :mod:`keras_skipae.recipes.runner`; ``run`` is its per-run state (data subsets, trainer, model paths).
"""

from __future__ import annotations

import numpy as np

from ..kinds import kind_spec
from ..probe.online import OnlineProbe
from ..saving import load
from ..train.joint import build_joint, joint_dataset
from .evaluation import pipeline_for, with_recorded_corruption
from .schema import RecipeError, StageConfig


def copy_network_weights(source, target, where: str) -> None:
    """Copy every encoder_/decoder_ layer's weights of ``source`` into ``target`` by name (shapes must match)."""
    for layer in target.layers:
        if not layer.weights or not layer.name.startswith(("encoder_", "decoder_")):
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise RecipeError(f"{where}: the saved model has no layer {layer.name!r}; the stage's overrides change "
                              "the network's layers, which a saved model cannot continue from") from None
        shapes = [w.shape for w in weights], [tuple(w.shape) for w in layer.weights]
        if shapes[0] != shapes[1]:
            raise RecipeError(f"{where}: layer {layer.name!r} has weights of shapes {shapes[0]} in the saved model "
                              f"but {shapes[1]} here; the stage's overrides change its size (widths?), which a saved "
                              "model cannot continue from")
        layer.set_weights(weights)


def check_same_normalisation(source_arch, arch, where: str) -> None:
    """Refuse to carry an encoder into a model whose inputs are normalised differently (it would see other units)."""
    def numbers(a):
        return (round(a.pixel_scale, 9), [round(v, 6) for v in a.channel_mean()],
                [round(v, 6) for v in a.channel_std()])

    if source_arch.channels == arch.channels and numbers(source_arch) == numbers(arch):
        return
    scale, mean, std = numbers(source_arch)
    raise RecipeError(
        f"{where}: the encoder was trained on inputs normalised with pixel_scale {scale}, mean {mean}, std {std}, "
        f"but this stage normalises with pixel_scale {numbers(arch)[0]}, mean {numbers(arch)[1]}, std "
        f"{numbers(arch)[2]} (other data, or other statistics): its features would see other units. Set "
        f"model.overrides (or the stage's overrides) to mean: {mean}, std: {std}, pixel_scale: {scale} to "
        "normalise as the encoder expects"
    )


def joint_training(run, name: str, stage: StageConfig, model, arch, train_ds):
    """``(joint model, joint batches)`` of a finetune stage with a ``joint`` section (see :mod:`..train.joint`)."""
    cfg = stage.joint
    if not kind_spec(model.kind).image_labels:
        raise RecipeError(f"stages.{name}.joint: joint training is built for classifiers (one label per image); "
                          f"this stage trains a {model.kind}. Remove joint, or pre-train first and fine-tune")
    source = None
    if stage.init:
        # a decoder pre-trained with pipeline corruption has none in its own arch: take the recorded one
        with run.trainer.scope():
            source = load(run.model_path(stage.init))
        recorded = run.recorded_stage(stage.init).get("corruption")
        if recorded and recorded.get("where") == "pipeline":
            source.arch = with_recorded_corruption(source.arch, recorded)
    with run.trainer.scope():
        joint = build_joint(model, source, weight=cfg.weight, ladder=cfg.loss == "ladder",
                            layer_weight=cfg.layer_weight, arch=arch)
    ae_arch = joint.autoencoder_arch
    batch = cfg.batch_size or stage.batch_size
    pool = run.subset(cfg.train_on, cfg.limit)
    size = getattr(getattr(pool, "info", None), "num_examples", None)
    if size is not None and size < batch:
        raise RecipeError(f"stages.{name}.joint: {cfg.train_on!r} holds {size} images, fewer than one batch of "
                          f"{batch}: give it more images (data.labels_per_class / num_labels leave the rest "
                          "unlabelled) or a smaller joint.batch_size")
    unlabelled = pipeline_for("autoencoder", pool, ae_arch, batch, training=True, seed=run.recipe.seed + 3,
                              corruption="model")
    examples = getattr(getattr(run.subset(cfg.train_on, cfg.limit), "info", None), "num_examples", "?")
    run.echo(f"[{name}] joint: + {cfg.weight:g} x {cfg.loss} loss on {cfg.train_on} ({examples} images, "
             f"{ae_arch.corruption} {ae_arch.corruption_level:g}), decoder "
             f"{'from ' + stage.init if stage.init else 'from random weights'}")
    return joint, joint_dataset(train_ds, unlabelled)


def online_probe(run, name: str, stage: StageConfig, arch) -> OnlineProbe:
    """The stage's :class:`OnlineProbe` on its probe section's labelled and held-out images."""
    cfg = stage.probe

    def arrays(which: str, limit):
        ds = pipeline_for("classifier", run.subset(which, limit), arch, 256, training=False, seed=run.recipe.seed,
                          cache=False)
        xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds))
        y = np.concatenate(ys)
        if (y < 0).any():
            raise RecipeError(f"probe: {which!r} holds unlabelled examples (label -1); the probe needs labels "
                              "(probe.train_on: labelled, probe.test_on: val)")
        return np.concatenate(xs), y

    train_x, train_y = arrays(cfg.train_on, cfg.train_limit)
    test_x, test_y = arrays(cfg.test_on, cfg.test_limit)
    # a resumed stage goes on with the penalty its first probe chose (recorded in history.csv)
    chosen = [row["probe_l2"] for _, row in sorted(run.run_dir.history(name, run.worker).items()) if "probe_l2" in row]
    return OnlineProbe(train_x, train_y, test_x, test_y, every=cfg.every, pooling=cfg.pooling, knn_k=cfg.knn_k,
                       l2=chosen[0] if chosen else None, seed=run.recipe.seed)
