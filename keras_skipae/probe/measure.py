"""Measure every checkpoint: :func:`probe_run`, and the data it measures on (:func:`probe_data`).

For each auto-encoder (and two baselines: raw pixels, the same architecture
untrained) one predict gives its reconstructions and its pooled features;
:mod:`.reconstruction` scores the one, :mod:`.features` the other, and
:mod:`.statistics` and :mod:`.verdict` relate them across checkpoints.
Every subset is a seeded, class-stratified draw (:func:`keras_skipae.data.sample`).

>>> labelled, heldout = probe_data("idx:", labels_per_class=100)
>>> table = probe_run("runs/ae", labelled, heldout, out_dir="runs/ae/probe")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import data
from ..factory import build
from ..progress import track
from ..runs import RunDir
from .checkpoints import arch_info, find_checkpoints
from .features import features_and_reconstruction, knn_accuracy, linear_probe_accuracy, stage_feature_model
from .reconstruction import corrupt, image_quality, normalise, reconstruction_scores
from .statistics import regrets, relate
from .tables import ProbeTable
from .verdict import verdict


def probe_run(
    run_dir_or_checkpoints: Any,
    labelled_ds: Any,
    heldout_ds: Any,
    *,
    out_dir: str | Path | None = None,
    pooling: str = "avg",
    knn_k: int = 10,
    corruption: tuple | None = ("masking", 0.25),
    baselines: bool = True,
    finetune_epochs: int = 0,
    max_labelled: int | None = None,
    max_heldout: int | None = None,
    n_boot: int = 1000,
    regret_tolerance: float = 0.01,
    tensorboard: bool = True,
    seed: int = 0,
    verbose: bool = False,
    stages: bool = False,
    grid: int = 1,
) -> ProbeTable:
    """Probe every checkpoint of one or more pre-training runs; return a :class:`ProbeTable`.

    ``run_dir_or_checkpoints``: anything :func:`~keras_skipae.probe.find_checkpoints` accepts.
    ``labelled_ds`` (fits the probe) and ``heldout_ds`` (scores everything):
    ``(images, labels)`` numpy tuples of raw pixels (uint8) or tf.data
    Datasets of ``(image, label)`` as :func:`keras_skipae.data.load` returns.
    ``corruption``: ``(kind, level)`` applied (seeded) to the held-out images
    for the ``*_corrupted`` metrics, or None. ``baselines`` adds raw pixels
    (flattened; their "reconstruction" is the identity) and, per run, the same
    architecture untrained (epoch 0). ``finetune_epochs > 0`` also fine-tunes
    a classifier from each encoder on the labelled set. ``stages`` also
    probes every encoder stage's features (``probe_accuracy_stageS``), and
    ``grid`` > 1 adds a ``grid`` x ``grid`` spatial pooling beside the global one
    (``probe_accuracy_stageS_gridG``), so the table shows which layers the
    pre-training changed against the untrained network. With ``out_dir``
    everything is written there (:meth:`ProbeTable.save`).

    >>> table = probe_run("runs/ae", (x_lab, y_lab), (x_test, y_test), out_dir="runs/ae/probe")
    >>> table.correlation("checkpoints", "psnr", "probe_accuracy").spearman
    """
    checkpoints = find_checkpoints(run_dir_or_checkpoints)
    if not checkpoints:
        raise ValueError("probe_run: nothing to probe (no checkpoints found)")
    took_lock = RunDir(out_dir).lock("probe") if out_dir is not None else False  # one writer per output folder
    img_lab, y_lab = _arrays(labelled_ds, "labelled_ds", max_labelled, seed)
    img_test, y_test = _arrays(heldout_ds, "heldout_ds", max_heldout, seed)
    _arrays_ok(y_lab, y_test)

    rows: list = []
    inputs: dict = {}  # normalisation key -> (x_lab, x_test, x_test_corrupted)

    def model_inputs(arch):
        key = (tuple(arch.input_shape), arch.pixel_scale, tuple(arch.channel_mean()), tuple(arch.channel_std()))
        if key not in inputs:
            x_lab, x_test = normalise(img_lab, arch), normalise(img_test, arch)
            x_bad = corrupt(x_test, arch, corruption[0], corruption[1], seed=seed) if corruption else None
            inputs[key] = (x_lab, x_test, x_bad)
        return inputs[key]

    def measure(model, row: dict) -> dict:
        x_lab, x_test, x_bad = model_inputs(model.arch)
        row.update(arch_info(model.arch))
        both = features_and_reconstruction(model, pooling)  # one traced predict for all inputs
        restored, features = both.predict(np.concatenate([x_test, x_lab]), batch_size=256, verbose=0)
        restored_bad = None if x_bad is None else both.predict(x_bad, batch_size=256, verbose=0)[0]
        row.update(reconstruction_scores(x_test, restored[: len(x_test)], model.arch, restored_bad))
        row.update(_feature_scores(features[len(x_test):], y_lab, features[: len(x_test)], y_test, knn_k, seed))
        if stages or grid > 1:
            row.update(_stage_scores(model, x_lab, y_lab, x_test, y_test, grid, seed))
        if finetune_epochs > 0:
            row["finetune_accuracy"] = _finetune_accuracy(model, x_lab, y_lab, x_test, y_test, finetune_epochs, seed)
        if verbose and "name" in row:
            print(f"probe: {row['name']}: psnr {row['psnr']:.2f} probe {row['probe_accuracy']:.4f} "
                  f"knn {row['knn_accuracy']:.4f}", flush=True)
        return row

    untrained_done: dict = {}
    untrained_runs: set = set()
    first_arch = None
    for ckpt in track(checkpoints, "probing", unit="checkpoints"):
        model = ckpt.load()
        if getattr(model, "kind", "") != "autoencoder":
            raise ValueError(f"{ckpt.name}: {ckpt.source} is a {getattr(model, 'kind', type(model).__name__)!r}, "
                             "not a keras_skipae autoencoder; probe pre-training checkpoints")
        first_arch = first_arch or model.arch
        if baselines and ckpt.run not in untrained_runs:
            untrained_runs.add(ckpt.run)
            # without a corruption layer the global seed initialises the encoder identically in every run;
            # runs that differ only in their corruption share one untrained model, measured once
            fresh_arch = model.arch.replace(corruption="none", corruption_level=0.0, loss_on="all", skip_dropout=0.0)
            key = json.dumps(fresh_arch.to_dict(), sort_keys=True)
            if key not in untrained_done:
                keras.utils.set_random_seed(seed)
                untrained_done[key] = measure(build("autoencoder", fresh_arch), {})
            row = {"run": ckpt.run, "name": f"{ckpt.run}@untrained", "kind": "untrained", "epoch": 0,
                   "checkpoint": "", **{k: v for k, v in untrained_done[key].items() if k not in ("name",)}}
            row.update(ckpt.arch_info(model.arch))
            rows.append(row)
        row = measure(model, {
            "run": ckpt.run, "name": ckpt.name, "kind": "checkpoint", "epoch": ckpt.epoch,
            "checkpoint": "" if isinstance(ckpt.source, keras.Model) else str(ckpt.source),
            "val_loss": ckpt.val_loss,
        })
        row.update(ckpt.arch_info(model.arch))
        rows.append(row)
    if baselines:
        x_lab, x_test, x_bad = model_inputs(first_arch)
        raw = {"run": "raw_pixels", "name": "raw_pixels", "kind": "raw_pixels", "epoch": None, "checkpoint": ""}
        raw.update(image_quality(x_test, x_test, first_arch))
        if x_bad is not None:
            raw.update({k + "_corrupted": v for k, v in image_quality(x_test, x_bad, first_arch).items()})
        f_lab, f_test = x_lab.reshape(len(x_lab), -1), x_test.reshape(len(x_test), -1)
        raw.update(_feature_scores(f_lab, y_lab, f_test, y_test, knn_k, seed))
        rows.append(raw)

    table = ProbeTable(rows=[{k: v for k, v in r.items() if v is not None or k in ("epoch",)} for r in rows])
    table.settings = {
        "pooling": pooling, "knn_k": knn_k, "corruption": list(corruption) if corruption else None,
        "labelled": int(len(y_lab)), "heldout": int(len(y_test)), "n_boot": n_boot, "seed": seed,
        "finetune_epochs": finetune_epochs, "regret_tolerance": regret_tolerance, "stages": bool(stages or grid > 1),
        "grid": grid,
    }
    table.correlations = relate(table.rows, n_boot=n_boot, seed=seed)
    table.regrets = regrets(table.rows)
    table.verdict = verdict(table, regret_tolerance)
    if out_dir is not None:
        table.save(out_dir, tensorboard=tensorboard)
    if took_lock:
        RunDir(out_dir).unlock()
    return table


def _arrays_ok(y_lab: np.ndarray, y_test: np.ndarray) -> None:
    missing = sorted(set(np.unique(y_test)) - set(np.unique(y_lab)))
    if missing:
        raise ValueError(f"held-out labels {missing[:10]} never occur in the labelled set; the probe cannot "
                         "predict them (use a stratified labelled subset, e.g. keras_skipae.data.split)")


def _stage_scores(model, x_lab, y_lab, x_test, y_test, grid: int, seed: int) -> dict:
    """``probe_accuracy_<output>`` of every encoder stage's pooled features (see :func:`stage_feature_model`)."""
    fm, names = stage_feature_model(model, grid)
    out = fm.predict(np.concatenate([x_test, x_lab]), batch_size=256, verbose=0)
    out = out if isinstance(out, list) else [out]
    scores = {}
    for name, feats in zip(names, out):
        feats = np.asarray(feats, np.float32)
        scores[f"probe_accuracy_{name}"] = linear_probe_accuracy(
            feats[len(x_test):], y_lab, feats[: len(x_test)], y_test, seed=seed).accuracy
    return scores


def _feature_scores(f_lab, y_lab, f_test, y_test, knn_k, seed) -> dict:
    probe = linear_probe_accuracy(f_lab, y_lab, f_test, y_test, seed=seed)
    return {
        "probe_accuracy": probe.accuracy,
        "probe_l2": probe.l2,
        "knn_accuracy": knn_accuracy(f_lab, y_lab, f_test, y_test, k=knn_k),
        "feature_dim": int(f_lab.shape[1]),
    }


def _finetune_accuracy(model, x_lab, y_lab, x_test, y_test, epochs: int, seed: int) -> float:
    keras.utils.set_random_seed(seed)
    num_classes = int(max(y_lab.max(), y_test.max())) + 1
    clf = build("classifier", model.arch, encoder=model, num_classes=num_classes)
    clf.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    clf.fit(x_lab, y_lab, epochs=epochs, batch_size=64, verbose=0)
    return float(clf.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])


# ---------------------------------------------------------------------- data
def _arrays(given: Any, what: str, limit: int | None, seed: int = 0) -> tuple:
    """(images, labels) numpy arrays from a (images, labels) tuple or a tf.data.Dataset.

    With ``limit``: a seeded subset stratified by class (:func:`keras_skipae.data.sample`), not the first ``limit``.
    """
    if isinstance(given, (tuple, list)) and len(given) == 2:
        images, labels = np.asarray(given[0]), np.asarray(given[1])
    elif hasattr(given, "element_spec"):
        images, labels = data.to_numpy(data.sample(given, limit, seed))
    else:
        raise TypeError(f"{what}: expected an (images, labels) tuple or a tf.data.Dataset of (image, label); "
                        f"got {type(given).__name__}")
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.ndim != 1 or labels.min() < 0):
        raise ValueError(f"{what}: labels must be class indices >= 0 (classification data), got min {labels.min()}")
    if limit is not None and len(labels) > limit:
        keep = data.sample_indices(labels, limit, seed)
        images, labels = images[keep], labels[keep]
    return images, labels


def probe_data(
    source: str,
    *,
    labelled_split: str = "train",
    heldout_split: str = "test",
    labels_per_class: int = 100,
    max_heldout: int | None = 2000,
    seed: int = 0,
) -> tuple:
    """``(labelled, heldout)`` datasets for :func:`probe_run` from a :func:`keras_skipae.data.load` source.

    The labelled set is a stratified, seeded ``labels_per_class`` subset of
    ``labelled_split`` (:func:`keras_skipae.data.split`); the held-out set is
    a stratified, seeded ``max_heldout`` subset of ``heldout_split``
    (:func:`keras_skipae.data.sample`; None: all of it).

    >>> labelled, heldout = probe_data("idx:", labels_per_class=100)
    """
    source = data.resolve_source(source)
    splits = data.split(data.load(source, labelled_split), labels_per_class=labels_per_class, val_fraction=0.0,
                        seed=seed)
    heldout = data.load(source, heldout_split)
    if max_heldout is not None:
        heldout = data.to_numpy(data.sample(heldout, max_heldout, seed))
    return splits.labelled, heldout
