"""Random access to a source's examples, so that any subset can become a dataset.

:func:`~keras_skipae.data.load` builds its dataset from a table, and
:func:`~keras_skipae.data.split` asks the same table for the labelled,
unlabelled and validation subsets: in-memory data is sliced by index (no
filtering pass over the whole set), files are read and decoded only for the
examples a subset holds.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

# the decoders hold no Python control flow on tensors: AutoGraph's conversion is skipped (see data/pipeline.py)
_graph = tf.autograph.experimental.do_not_convert

AUTOTUNE = tf.data.AUTOTUNE


class MemoryTable:
    """Decoded uint8 images (one array, or a list when sizes vary) with labels or masks.

    ``targets`` is an int array of labels ``(N,)`` for classification, or masks:
    one uint8/int array ``(N, H, W)`` or a list of ``(H, W)`` arrays.
    ``refs``: the image files the rows were decoded from (paths), where there
    are such files, so that :func:`~keras_skipae.data.pack` can store the
    files themselves rather than their pixels; None otherwise.
    """

    in_memory = True

    def __init__(self, images, targets, task: str, refs: np.ndarray | None = None):
        self.images = images
        self.targets = targets
        self.task = task
        self.num_examples = len(images)
        if refs is not None and len(refs) != self.num_examples:
            raise ValueError(f"{len(refs)} file references for {self.num_examples} images")
        self.refs = refs

    def labels(self) -> np.ndarray | None:
        return np.asarray(self.targets) if self.task == "classification" else None

    def dataset(self, indices: np.ndarray | None = None) -> tf.data.Dataset:
        idx = np.arange(self.num_examples) if indices is None else np.asarray(indices, dtype=np.int64)
        images = _take(self.images, idx)
        targets = _take(self.targets, idx)
        if self.task == "classification":
            ds_targets = tf.data.Dataset.from_tensor_slices(np.asarray(targets, dtype=np.int32))
        else:
            ds_targets = _slices(targets, 2).map(lambda m: tf.cast(m, tf.int32))
        return tf.data.Dataset.zip((_slices(images, 3), ds_targets))


class FileTable:
    """Encoded files (paths or in-memory bytes) decoded on the fly by ``decode(ref, target)``.

    Used when the decoded data would not fit the in-memory budget. Every file
    has already been read once and checked when the table is built.
    """

    in_memory = False
    #: ``dataset(shuffle_seed=...)`` shuffles the references before decoding (the pipelines use it in training)
    shuffles_files = True

    def __init__(self, refs: np.ndarray, targets: np.ndarray, task: str, decode: Callable, element_spec):
        self.refs = refs
        self.targets = targets
        self.task = task
        self.decode = decode
        self.num_examples = len(refs)
        self.element_spec = element_spec
        self._paths_t = None

    def labels(self) -> np.ndarray | None:
        return np.asarray(self.targets) if self.task == "classification" else None

    def _paths(self) -> tf.Tensor | None:
        """The file paths as one string tensor, converted once (300,000 paths: a quarter of a second each time,
        and ``load`` and the training pipeline each build a dataset); None when the references are file bytes."""
        if not tf.executing_eagerly():  # inside a graph or tf.function: the arrays, as a graph needs its own constant
            return None
        if self._paths_t is None and len(self.refs) and isinstance(self.refs[0], str):
            self._paths_t = tf.constant(self.refs)
        return self._paths_t

    def dataset(self, indices: np.ndarray | None = None, shuffle_seed: int | None | bool = False) -> tf.data.Dataset:
        """The examples at ``indices`` (all by default), decoded as read.

        ``shuffle_seed`` (an int, or None for an unseeded order) shuffles the
        file references, all of them, anew each epoch, before anything is
        decoded: a perfect shuffle whose first batch waits for no buffer of
        decoded images. ``False``: in order.
        """
        idx = np.arange(self.num_examples) if indices is None else np.asarray(indices, dtype=np.int64)
        paths = self._paths()
        if paths is None:  # in-memory bytes (zip members: not kept twice), or built inside a graph
            refs = self.refs[idx]
        else:
            refs = paths if indices is None else tf.gather(paths, idx)
        ds = tf.data.Dataset.from_tensor_slices((refs, self.targets[idx]))
        if shuffle_seed is not False:
            ds = ds.shuffle(max(len(idx), 1), seed=shuffle_seed, reshuffle_each_iteration=True)
        return ds.map(_graph(self.decode), num_parallel_calls=AUTOTUNE, deterministic=True)


class StreamTable:
    """A dataset without random access (TFDS): subsets are taken by filtering on the index.

    ``label_scan()`` returns all class labels without decoding images.
    """

    in_memory = False

    def __init__(self, full: tf.data.Dataset, num_examples: int, task: str, label_scan: Callable | None):
        self.full = full
        self.num_examples = num_examples
        self.task = task
        self.label_scan = label_scan

    def labels(self) -> np.ndarray | None:
        if self.task != "classification" or self.label_scan is None:
            return None
        return self.label_scan()

    def dataset(self, indices: np.ndarray | None = None) -> tf.data.Dataset:
        """All examples, or those at ``indices`` (in stream order), with a known cardinality.

        ``filter`` leaves the length unknown, and with it that of every pipeline
        built on the subset (the trainer then needs ``steps_per_epoch``): the
        number of selected examples is known here, so it is asserted.
        """
        if indices is None:
            return _known_length(self.full, self.num_examples)
        keep = np.zeros(self.num_examples, dtype=bool)
        keep[np.asarray(indices, dtype=np.int64)] = True
        keep_t = tf.constant(keep)
        ds = self.full.enumerate().filter(lambda i, example: tf.gather(keep_t, i))
        ds = ds.map(lambda i, example: example)
        return ds.apply(tf.data.experimental.assert_cardinality(int(keep.sum())))


def _known_length(ds: tf.data.Dataset, n: int) -> tf.data.Dataset:
    if n and int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY:
        return ds.apply(tf.data.experimental.assert_cardinality(int(n)))
    return ds


def _take(values, idx: np.ndarray):
    if isinstance(values, np.ndarray):
        return values[idx]
    return [values[i] for i in idx]


def _slices(values, rank: int) -> tf.data.Dataset:
    """A dataset of the arrays in ``values`` (one stacked array, or a list of differing shapes)."""
    if isinstance(values, np.ndarray):
        return tf.data.Dataset.from_tensor_slices(values)
    if not values:
        return tf.data.Dataset.from_tensors(tf.zeros([1] * rank, tf.uint8)).take(0)
    dtype = values[0].dtype
    shapes = np.asarray([v.shape for v in values], dtype=np.int64)
    flat = np.concatenate([v.reshape(-1) for v in values]).astype(dtype, copy=False)
    lengths = np.asarray([v.size for v in values], dtype=np.int64)
    ragged = tf.RaggedTensor.from_row_lengths(flat, lengths)
    static = [None, None, *values[0].shape[2:]]  # images share their channel count, masks are 2-D

    def unflatten(v, s):
        out = tf.reshape(v, s)
        out.set_shape(static)
        return out

    ds = tf.data.Dataset.from_tensor_slices((ragged, shapes))
    return ds.map(unflatten, num_parallel_calls=AUTOTUNE, deterministic=True)


class SubsetTable:
    """The rows ``indices`` of another table (what :func:`~keras_skipae.data.split` hands out)."""

    def __init__(self, parent, indices: np.ndarray):
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.task = parent.task
        self.num_examples = len(self.indices)
        self.in_memory = parent.in_memory

    def labels(self) -> np.ndarray | None:
        labels = self.parent.labels()
        return None if labels is None else labels[self.indices]

    @property
    def shuffles_files(self) -> bool:
        return bool(getattr(self.parent, "shuffles_files", False))

    def dataset(self, indices: np.ndarray | None = None, shuffle_seed: int | None | bool = False) -> tf.data.Dataset:
        idx = self.indices if indices is None else self.indices[np.asarray(indices, dtype=np.int64)]
        if shuffle_seed is not False:
            return self.parent.dataset(idx, shuffle_seed=shuffle_seed)
        return self.parent.dataset(idx)
