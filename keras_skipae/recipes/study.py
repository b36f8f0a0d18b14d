"""The pitfall study: pre-train a grid of auto-encoders with the stage runner, probe every checkpoint.

A study recipe (``recipes/pitfall_fashion_mnist.yaml``, ``kind: study``) names
the data, one base architecture, a grid (skips on/off x corruption settings),
the training schedule (a checkpoint every ``checkpoint_every`` epochs) and the
probe's settings. :func:`run_study` turns each grid point into a one-stage run
recipe (:func:`grid_recipe`) and runs it with :func:`keras_skipae.recipes.run`
into ``OUT/RUN/`` (a run directory like any other: resumable, its corruption
recorded), then probes all of them with :func:`keras_skipae.probe.probe_run`,
writing ``OUT/probe/`` (table, correlations, plots, TensorBoard) and
``OUT/study.md`` (the Markdown tables and verdict for a README).

>>> config = load_study("recipes/pitfall_fashion_mnist.yaml", ["train.epochs=2"])
>>> table = run_study(config, "runs/pitfall")
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .. import data
from ..atomic import write_json_atomic, write_text_atomic
from ..probe import correlation_table, probe_run
from .loading import load_recipe, validate
from .runner import run
from .schema import Recipe, StudyConfig, StudyData


def load_study(path: str | os.PathLike, overrides: list[str] | tuple = (), *, quick: bool = False) -> StudyConfig:
    """Read and validate a study recipe; ``--set``-style ``overrides``; errors name the file and key path.

    ``quick``: apply the recipe's ``quick:`` section first (``overrides`` still win).

    >>> config = load_study("recipes/pitfall_fashion_mnist.yaml", ["grid.skips=[true]"])
    """
    return load_recipe(path, overrides, check_paths=False, kind="study", quick=quick)


def load_study_data(d: StudyData) -> tuple:
    """(pretrain images, val images, labelled (images, labels), held-out (images, labels)) as uint8 numpy.

    Labelled and validation images are a stratified, seeded split of the
    training split (:func:`keras_skipae.data.split`); pre-training images are
    drawn from the rest and held-out images from ``heldout_split``, both with
    the seeded, class-stratified :func:`keras_skipae.data.sample`, never the
    first N: sources ordered by class (``folder:``) give every class. The grid
    runs of a study draw the same pre-training and validation images.
    """
    splits, heldout, _ = _study_splits(d)
    pretrain, _ = data.to_numpy(data.sample(splits.unlabelled, d.pretrain_images, d.seed))
    val, _ = data.to_numpy(data.sample(splits.val, d.val_images, d.seed))
    return pretrain, val, data.to_numpy(splits.labelled), heldout


def _study_splits(d: StudyData) -> tuple:
    """(the training split's :class:`~keras_skipae.data.Splits`, held-out (images, labels), val_fraction)."""
    source = data.resolve_source(d.source)
    train = data.load(source, d.train_split)
    val_fraction = d.val_images / max(1, train.info.num_examples or 60000)
    splits = data.split(train, labels_per_class=d.labels_per_class, val_fraction=val_fraction, seed=d.seed)
    heldout = data.to_numpy(data.sample(data.load(source, d.heldout_split), d.heldout_images, d.seed))
    return splits, heldout, val_fraction


def grid_recipe(config: StudyConfig, name: str, overrides: dict, val_fraction: float) -> Recipe:
    """The one-stage run recipe that pre-trains grid point ``name`` (its arch ``overrides``)."""
    d, t = config.data, config.train
    return validate({
        "name": name,
        "seed": t.seed,
        "trainer": {"strategy": t.strategy},
        "data": {"source": d.source, "train_split": d.train_split, "eval_split": d.heldout_split,
                 "labels_per_class": d.labels_per_class, "val_fraction": val_fraction, "split_seed": d.seed,
                 "normalise": "none"},
        "model": {"preset": config.model.preset, "overrides": {**config.model.overrides, **overrides}},
        "stages": {"pretrain": {
            "kind": "pretrain", "train_on": "unlabelled", "limit": d.pretrain_images,
            "val_on": "val", "val_limit": d.val_images, "eval_on": "none",
            "epochs": t.epochs, "batch_size": t.batch_size, "checkpoint_every": t.checkpoint_every,
            "optimizer": t.optimizer.model_dump(),
        }},
    })


def pretrain_batches(images, arch, batch_size: int, *, training: bool, seed: int):
    """uint8 ``images`` -> :func:`keras_skipae.data.pretrain_pipeline` batches of ``(x, x)``.

    The images stay uint8 in memory (a quarter of a float32 copy); each batch
    is normalised for ``arch`` as it is drawn. ``training``: seeded shuffle,
    whole batches only; otherwise every image in order. The model's own
    corruption layer corrupts inputs in training, so both sides are clean here.

    >>> train_ds = pretrain_batches(images_uint8, model.arch, 64, training=True, seed=0)
    """
    images = np.asarray(images)
    ds = data.load((images, np.zeros(len(images), np.int64)))  # in memory: no cache, no copy to float
    return data.pretrain_pipeline(ds, arch, batch_size, training=training, seed=seed, corruption="model",
                                  drop_remainder=training)


def _log(message: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_study(config: StudyConfig, out_dir: str | os.PathLike, *, quick: bool = False,
              skip_training: bool = False):
    """Train every grid point (unless ``skip_training``), probe all checkpoints, write the report.

    Returns the :class:`keras_skipae.probe.ProbeTable`. ``quick`` applies the
    recipe's ``quick`` overrides (a smoke run in a minute or two). Grid points
    already trained in ``out_dir`` are not trained again.
    """
    if quick:
        config = config.quick_version()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    splits, heldout, val_fraction = _study_splits(config.data)
    labelled = data.to_numpy(splits.labelled)
    _log(f"data: {config.data.pretrain_images} pre-training, {config.data.val_images} validation, "
         f"{len(labelled[1])} labelled, {len(heldout[1])} held-out images")
    timings = {"data_s": round(time.time() - start, 1)}
    grid = config.runs()
    if not skip_training:
        t0 = time.time()
        for i, (name, overrides) in enumerate(grid, start=1):
            t_run = time.time()
            results = run(grid_recipe(config, name, overrides, val_fraction), run_dir=out_dir / name,
                          echo=lambda line: None)
            val = results["stages"]["pretrain"].get("val_metrics", {})
            _log(f"[{i}/{len(grid)}] {name}: val mse {val.get('mse', float('nan')):.4f} "
                 f"({time.time() - t_run:.0f} s)")
        timings["train_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    p = config.probe
    table = probe_run([out_dir / name for name, _ in grid], labelled, heldout, out_dir=out_dir / "probe",
                      pooling=p.pooling, knn_k=p.knn_k, corruption=p.corruption, n_boot=p.n_boot,
                      finetune_epochs=p.finetune_epochs, regret_tolerance=p.regret_tolerance,
                      seed=config.data.seed, verbose=True)
    timings["probe_s"] = round(time.time() - t0, 1)
    timings["total_s"] = round(time.time() - start, 1)
    table.settings["study"] = {"name": config.name, "quick": quick, "timings": timings,
                               "config": config.model_dump(mode="json")}
    table.to_json(out_dir / "probe" / "probe.json")
    write_text_atomic(out_dir / "study.md", study_markdown(table))
    write_json_atomic(out_dir / "study.json", {"timings": timings, "verdict": table.verdict})
    _log(f"done in {timings['total_s']:.0f} s; report in {out_dir / 'study.md'}")
    print(correlation_table(table.correlations), flush=True)
    print("verdict: " + table.verdict, flush=True)
    return table


def study_markdown(table) -> str:
    """The study's final-checkpoint table, correlations, regret and verdict as Markdown."""
    by_run: dict = {}
    for r in table.rows:
        if r["kind"] == "checkpoint":
            by_run.setdefault(r["run"], []).append(r)
    lines = ["| run | epoch | MSE | PSNR clean (dB) | PSNR corrupted (dB) | SSIM | probe acc. | k-NN acc. |",
             "|---|---|---|---|---|---|---|---|"]

    def line(name, r):
        epoch = "" if r.get("epoch") is None else str(r["epoch"])
        return (f"| {name} | {epoch} | {r['mse']:.4f} | {r['psnr']:.2f} | {r.get('psnr_corrupted', float('nan')):.2f} "
                f"| {r['ssim']:.3f} | {r['probe_accuracy']:.3f} | {r['knn_accuracy']:.3f} |")

    for run_name, rs in by_run.items():
        lines.append(line(run_name, rs[-1]))
    untrained = next((r for r in table.rows if r["kind"] == "untrained"), None)
    if untrained is not None:
        lines.append(line("untrained encoder", untrained))
    raw = next((r for r in table.rows if r["kind"] == "raw_pixels"), None)
    if raw is not None:
        lines.append(line("raw pixels (identity)", raw))
    out = ["Last checkpoint of each run:", "", *lines, "",
           "Correlation of reconstruction quality with feature quality (bootstrap 95% CI):", "",
           correlation_table(table.correlations, markdown=True), ""]
    for r in table.regrets:
        out.append(f"- choosing by `{r.criterion}` picks {r.chosen} (probe {r.chosen_value:.3f}); "
                   f"best is {r.best} ({r.best_value:.3f}): regret {100 * r.regret:.1f} points")
    out += ["", "Verdict: " + table.verdict, ""]
    return "\n".join(out)
