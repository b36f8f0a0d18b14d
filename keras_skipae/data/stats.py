"""Dataset statistics and small-data helpers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..progress import Progress
from .info import DataError, info_of


def compute_stats(ds: tf.data.Dataset, *, pixel_scale: float = 1.0 / 255.0, limit: int | None = None) -> tuple:
    """Per-channel ``(mean, std)`` of the images of ``ds`` in units of ``pixel * pixel_scale``.

    Computed once over the whole dataset (or its first ``limit`` examples) in
    float64; record the result in the model's ``Arch.mean``/``Arch.std``. A
    pass that takes more than a few seconds shows a progress line
    (:mod:`keras_skipae.progress`).

    Example::

        mean, std = data.compute_stats(data.load("idx:"))    # ((0.286,), (0.353,))
        ae = ks.build("autoencoder", "tiny", input_shape=(28, 28, 1), mean=mean, std=std)

    A whole split of a ``packed:`` source carries the statistics computed when
    it was packed: they are returned without a pass over the data.
    """
    info = info_of(ds)
    packed = info.pixel_stats if info is not None else None
    if packed is not None and packed[0] == info.num_examples and (limit is None or limit >= packed[0]):
        scale = pixel_scale * 255.0
        return tuple(float(m * scale) for m in packed[1]), tuple(float(max(s * scale, 1e-8)) for s in packed[2])
    images = ds.map(lambda image, *rest: image)
    if limit is not None:
        images = images.take(limit)
    shape = images.element_spec.shape
    channels = shape[-1]
    if channels is None:  # unknown channel count: read it from the first image
        first = next(iter(images.take(1)), None)
        if first is None:
            raise DataError("compute_stats: the dataset holds no images")
        channels = int(first.shape[-1])
    # per-batch (or per-image, for differing sizes) sums reduced in the graph: no host sync per element
    same_size = shape[0] is not None and shape[1] is not None
    batched = images.batch(512) if same_size else images.map(lambda x: x[None])

    def sums(batch):
        x = tf.cast(batch, tf.float64)
        return (
            tf.reduce_sum(x, axis=[0, 1, 2]),
            tf.reduce_sum(tf.square(x), axis=[0, 1, 2]),
            tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.int64),
            tf.cast(tf.shape(x)[0], tf.int64),
        )

    known = int(images.cardinality())
    with Progress("computing statistics", total=known if known >= 0 else None, unit="images") as bar:

        def show(done):  # called from the graph; the bar redraws at most ten times a second
            bar.update(int(done) - bar.count)
            return done

        def add(state, part):
            state = tuple(a + b for a, b in zip(state, part))
            if bar.mode != "live":
                return state
            done = state[3]
            # a Python call every 512 images (one batch, or every 64th image of differing sizes)
            due = tf.constant(True) if same_size else tf.equal(done % 64, 0)
            done = tf.cond(due, lambda: tf.reshape(tf.py_function(show, [done], tf.int64), []), lambda: done)
            return (*state[:3], done)

        init = (tf.zeros([channels], tf.float64), tf.zeros([channels], tf.float64), tf.constant(0, tf.int64),
                tf.constant(0, tf.int64))
        total, sq, count, done = batched.map(sums, num_parallel_calls=tf.data.AUTOTUNE).reduce(init, add)
        bar.update(int(done.numpy()) - bar.count)
    total, sq, count = total.numpy(), sq.numpy(), int(count.numpy())
    if not count:
        raise DataError("compute_stats: the dataset holds no images")
    mean = total / count
    var = np.maximum(sq / count - mean**2, 0.0)
    std = np.sqrt(var)
    return tuple(float(m * pixel_scale) for m in mean), tuple(float(max(s * pixel_scale, 1e-8)) for s in std)


def to_numpy(ds: tf.data.Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (or the first ``limit``) examples of ``ds`` as ``(images uint8, labels or masks)`` arrays.

    Example::

        x, y = data.to_numpy(data.load("idx:", "test"), limit=100)   # (100, 28, 28, 1), (100,)
    """
    info = info_of(ds)
    table = info.table if info is not None else None
    if table is not None and getattr(table, "in_memory", False) and limit is None and hasattr(table, "images"):
        images, targets = table.images, table.targets
        if isinstance(images, np.ndarray) and isinstance(targets, np.ndarray):
            return images, targets
    if limit is not None:
        ds = ds.take(limit)
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        spec = ds.element_spec
        return (
            np.zeros((0, *[d or 0 for d in spec[0].shape]), np.uint8),
            np.zeros((0, *[d or 0 for d in spec[1].shape]), spec[1].dtype.as_numpy_dtype),
        )
    if len({x.shape for x in xs}) > 1:
        raise DataError(
            "to_numpy: the images differ in size, so they cannot be stacked into one array; "
            "iterate the dataset instead, or resize them with a pipeline first"
        )
    return np.stack(xs), np.stack(ys)


def describe(ds: tf.data.Dataset, *, stats: bool = False) -> str:
    """A few lines about a dataset from :func:`load`: source, task, sizes, classes (with counts), skips.

    ``stats=True`` adds the per-channel mean and std (:func:`compute_stats`,
    a full pass over the images).

    Example::

        print(data.describe(data.load("idx:", "test")))
    """
    info = info_of(ds)
    if info is None:
        raise DataError("describe() needs a dataset from data.load or data.split (it reads ds.info)")
    shape = "x".join(str(d) for d in info.image_shape) if info.image_shape else f"varying sizes, {info.channels} channel(s)"
    lines = [
        f"source:   {info.source or info.name} [{info.split}]",
        f"task:     {info.task}, {info.num_classes} classes" + (
            f", ignore label {info.ignore_label}" if info.ignore_label is not None else ""),
        f"examples: {info.num_examples if info.num_examples is not None else 'unknown'}; images {shape}"
        + ("; decoded in memory" if info.in_memory else ""),
    ]  # fmt: skip
    labels = info.table.labels() if info.table is not None and info.task == "classification" else None
    counts = np.bincount(labels[labels >= 0], minlength=info.num_classes) if labels is not None else None
    names = info.class_names or tuple(str(i) for i in range(info.num_classes))
    shown = [f"{n} ({counts[i]})" if counts is not None else str(n) for i, n in enumerate(names[:20])]
    lines.append("classes:  " + ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > 20 else ""))
    if labels is not None and (labels < 0).any():
        lines.append(f"unlabelled (label -1): {int((labels < 0).sum())}")
    if info.skipped:
        lines.append(f"skipped:  {info.skipped} unreadable file(s), e.g. {info.skipped_files[0]}")
    if info.ignored:
        lines.append(f"ignored:  {len(info.ignored)} non-image file(s), e.g. {info.ignored[0]}")
    if stats:
        mean, std = compute_stats(ds)
        lines.append("mean:     " + ", ".join(f"{m:.4f}" for m in mean) + "  (pixel / 255, per channel)")
        lines.append("std:      " + ", ".join(f"{s:.4f}" for s in std))
    return "\n".join(lines)
