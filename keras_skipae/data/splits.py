"""Labelled / unlabelled / validation splits for semi-supervised work.

Stratified by class and seeded with NumPy's PCG64 generator, so the same
``seed`` gives the same examples in every run and every process. Per class the
examples are permuted once: the first ``val_fraction`` go to validation, the
next ``labels_per_class`` are labelled, the rest are the unlabelled pool. The
validation set therefore does not depend on how many labels are asked for, and
a smaller labelled set is contained in a larger one with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .info import DataError, SourceInfo, attach_info, info_of
from .tables import StreamTable, SubsetTable


@dataclass(frozen=True)
class Splits:
    """Three datasets with the element spec and ``.info`` of their source, and their indices."""

    labelled: tf.data.Dataset
    unlabelled: tf.data.Dataset
    val: tf.data.Dataset
    labelled_indices: np.ndarray
    unlabelled_indices: np.ndarray
    val_indices: np.ndarray


def split(
    ds: tf.data.Dataset,
    *,
    labels_per_class: int | None = None,
    num_labels: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Carve a labelled subset, the unlabelled pool and a validation split out of ``ds``.

    Give ``labels_per_class`` (Fashion-MNIST: 100) or ``num_labels`` (CIFAR-10:
    4000, spread over classes in proportion to their sizes), or neither to label
    everything outside validation. Examples labelled ``-1`` always go to the
    unlabelled pool. Segmentation datasets are split at random (``num_labels``
    images labelled).

    Example::

        train = data.load("idx:", "train")
        s = data.split(train, labels_per_class=100, val_fraction=0.1, seed=0)
        s.labelled.info.num_examples              # 1000
    """
    if labels_per_class is not None and num_labels is not None:
        raise DataError("give labels_per_class or num_labels, not both")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction}; expected a fraction in [0, 1)")
    for name, value in (("labels_per_class", labels_per_class), ("num_labels", num_labels)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
            raise DataError(f"{name}={value!r}; expected an int >= 0")
    info = info_of(ds)
    table = info.table if info is not None and info.table is not None else _stream_table(ds, info)
    rng = np.random.default_rng(seed)
    task = info.task if info is not None else table.task
    if task == "classification":
        labels = table.labels()
        num_classes = info.num_classes if info is not None else int(labels.max(initial=-1)) + 1
        val, lab, unl = _stratified(labels, num_classes, labels_per_class, num_labels, val_fraction, rng, info)
    else:
        if labels_per_class is not None:
            raise DataError("labels_per_class needs class labels; for segmentation give num_labels (images)")
        val, lab, unl = _random(table.num_examples, num_labels, val_fraction, rng)
    base_info = info or SourceInfo(
        name="dataset", task=task, num_classes=0, class_names=(), channels=int(ds.element_spec[0].shape[-1] or 0),
        image_shape=None, num_examples=table.num_examples,
    )  # fmt: skip

    def subset(indices: np.ndarray, part: str) -> tf.data.Dataset:
        sub = SubsetTable(table, indices)
        sub_info = base_info.replace(num_examples=len(indices), split=f"{base_info.split}:{part}", table=sub)
        return attach_info(sub.dataset(), sub_info)

    return Splits(subset(lab, "labelled"), subset(unl, "unlabelled"), subset(val, "val"), lab, unl, val)


def sample(ds: tf.data.Dataset, limit: int | None, seed: int = 0) -> tf.data.Dataset:
    """``limit`` examples of ``ds`` drawn at random, seeded: the one subset sampler of the package.

    Classification data are stratified by class (each class in proportion to
    its size, as :func:`split` with ``num_labels=limit``). Segmentation data,
    and pools holding unlabelled examples (label -1), are drawn uniformly.
    Never the first ``limit``: sources ordered by class (``folder:`` trees)
    would give only the first classes. Only the chosen examples are read.
    The whole dataset when it holds ``limit`` or fewer; ``limit=None``: all.

    >>> heldout = data.sample(data.load("folder:cifar10_jpg.zip", "test"), 2000, seed=0)
    """
    if limit is None:
        return ds
    if not isinstance(limit, (int, np.integer)) or limit < 1:
        raise DataError(f"limit={limit!r}; expected a positive number of examples")
    info = info_of(ds)
    n = info.num_examples if info is not None else None
    if n is not None and limit >= n:
        return ds
    table = info.table if info is not None and info.table is not None else _stream_table(ds, info)
    if limit >= table.num_examples:
        return ds
    labels = table.labels() if table.task == "classification" else None
    if labels is not None and not bool((np.asarray(labels) < 0).any()):
        return split(ds, num_labels=int(limit), val_fraction=0.0, seed=seed).labelled
    indices = np.sort(np.random.default_rng(seed).choice(table.num_examples, size=int(limit), replace=False))
    sub = SubsetTable(table, indices)
    base = info if info is not None else SourceInfo(
        name="dataset", task=table.task, num_classes=0, class_names=(), channels=int(ds.element_spec[0].shape[-1] or 0),
        image_shape=None, num_examples=table.num_examples,
    )  # fmt: skip
    return attach_info(sub.dataset(), base.replace(num_examples=int(limit), table=sub))


def sample_indices(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the :func:`sample` of ``limit`` examples with class ``labels`` (numpy arrays)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    if limit >= len(labels):
        return np.arange(len(labels))
    num_classes = int(labels.max(initial=-1)) + 1
    rng = np.random.default_rng(seed)
    _, lab, _ = _stratified(labels, num_classes, None, int(limit), 0.0, rng, None)
    return lab


def _stratified(labels, num_classes, per_class, total, val_fraction, rng, info):
    names = info.class_names if info is not None and info.class_names else tuple(str(c) for c in range(num_classes))
    perms, val, rest = [], [], []
    for c in range(num_classes):
        perm = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(perm) * val_fraction))
        val.append(perm[:n_val])
        rest.append(perm[n_val:])
        perms.append(perm)
    sizes = np.array([len(r) for r in rest])
    if per_class is not None:
        short = [(names[c], sizes[c]) for c in range(num_classes) if sizes[c] < per_class]
        if short:
            raise DataError(
                f"labels_per_class={per_class} but class {short[0][0]!r} has only {short[0][1]} examples "
                f"outside validation ({len(short)} class(es) short); lower labels_per_class or val_fraction"
            )
        take = np.full(num_classes, per_class)
    elif total is not None:
        if total > sizes.sum():
            raise DataError(f"num_labels={total} but only {sizes.sum()} labelled examples lie outside validation")
        take = _proportional(total, sizes)
    else:
        take = sizes
    labelled = [rest[c][: take[c]] for c in range(num_classes)]
    unlabelled = [rest[c][take[c]:] for c in range(num_classes)] + [np.flatnonzero(labels < 0)]
    return _sorted(val), _sorted(labelled), _sorted(unlabelled)


def _proportional(total: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``sizes`` (largest remainder; ties to lower class)."""
    exact = total * sizes / max(sizes.sum(), 1)
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: total - take.sum()]] += 1
    return np.minimum(take, sizes)


def _random(n, total, val_fraction, rng):
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    rest = perm[n_val:]
    if total is not None and total > len(rest):
        raise DataError(f"num_labels={total} but only {len(rest)} examples lie outside validation")
    k = len(rest) if total is None else total
    return np.sort(perm[:n_val]), np.sort(rest[:k]), np.sort(rest[k:])


def _sorted(parts) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros((0,), np.int64)


def _stream_table(ds: tf.data.Dataset, info: SourceInfo | None) -> StreamTable:
    """Any (image, label) or (image, mask) dataset: labels read once by iterating it."""
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"split() needs a dataset of (image, label) or (image, mask) pairs; got elements {spec}")
    task = "classification" if spec[1].shape.rank == 0 else "segmentation"
    if task == "classification":
        labels = np.concatenate([b.numpy() for b in ds.map(lambda x, y: y).batch(4096)] or [np.zeros((0,), np.int32)])
        n = len(labels)
        return StreamTable(ds, n, task, lambda: labels)
    n = int(ds.reduce(np.int64(0), lambda c, _: c + 1).numpy())
    return StreamTable(ds, n, task, None)
