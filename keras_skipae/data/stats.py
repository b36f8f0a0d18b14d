"""What a dataset holds: per-channel statistics, arrays for small sets, and its description for people.

:func:`compute_stats` (the normalisation the recipes use), :func:`to_numpy`,
and :func:`describe` (``skipae data SOURCE``), one function for every source.
"""

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


SHOWN = 16


def _shares(pairs: tuple, names: tuple = (), ignore_label=None) -> str:
    total = sum(c for _, c in pairs) or 1
    parts = []
    for value, count in pairs[:SHOWN]:
        label = str(value)
        if value == ignore_label:
            label += " ignore"
        elif names and 0 <= value < len(names) and names[value] != str(value):
            label += f" {names[value]}"
        parts.append(f"{label} ({100 * count / total:.1f}%)")
    more = f", ... ({len(pairs)} in all)" if len(pairs) > SHOWN else ""
    return ", ".join(parts) + more


def mask_lines(info) -> list[str]:
    """Lines about the masks of a segmentation source from files or arrays; none otherwise."""
    lines = []
    if info.palette is not None:
        lines.append(f"palette:  {len(info.palette.colours)} colours ({info.palette.origin}): {info.palette.summary()}")
    mapped = bool(info.label_map) or info.palette is not None
    if info.mask_values:
        shown = (info.mask_values,) if mapped else (info.mask_values, info.class_names, info.ignore_label)
        lines.append("mask values (pixels): " + _shares(*shown))
    if info.label_map:
        lines.append("label_map: " + ", ".join(f"{k} -> {v}" for k, v in sorted(info.label_map.items())))
    if info.class_pixels and mapped:
        lines.append("classes (pixels): " + _shares(info.class_pixels, info.class_names, info.ignore_label))
    lines += [f"note:     {note}" for note in info.notes]
    return lines


def describe(ds: tf.data.Dataset, *, stats: bool = False) -> str:
    """A few lines about a dataset from :func:`load`, for people (``skipae data SOURCE``).

    Source, task, sizes, classes (with counts), skipped and ignored files; for
    a segmentation source also what it decided: the mask values read from the
    files with their share of pixels, the value mapping applied (a binary
    ``{0, 255}`` mask read as ``{0, 1}``, a ``label_map``), the palette of
    colour-coded masks and the pixels per class. ``stats=True`` adds the
    per-channel mean and std (:func:`compute_stats`, a full pass over the
    images).

    Example::

        print(data.describe(data.load("idx:", "test")))
        print(data.describe(data.load("segfolder:DRIVE", "training", images="{split}/images/{stem}_{split}.tif",
                                      masks="{split}/1st_manual/{stem}_manual1.gif")))
        # ... mask values (pixels): 0 (87.4%), 255 (12.6%)
        # label_map: 255 -> 1
        # note:     binary masks: values {0, 255} read as classes {0, 1} (label_map={255: 1})
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
    if info.task == "segmentation":
        lines += mask_lines(info)
    if stats:
        mean, std = compute_stats(ds)
        lines.append("mean:     " + ", ".join(f"{m:.4f}" for m in mean) + "  (pixel / 255, per channel)")
        lines.append("std:      " + ", ".join(f"{s:.4f}" for s in std))
    return "\n".join(lines)
