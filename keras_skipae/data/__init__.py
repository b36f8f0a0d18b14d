"""Datasets and input pipelines for keras_skipae's three model kinds.

- :func:`load` (source, split) -> ``tf.data.Dataset`` of uint8 ``(image, label)`` or
  ``(image, mask)`` with ``ds.info`` a :class:`SourceInfo`
- :func:`split` (ds, labels_per_class=/num_labels=, val_fraction=, seed=) -> :class:`Splits`
- :func:`sample` (ds, limit, seed) -> a seeded subset, stratified by class (the one sampler)
- :func:`pretrain_pipeline`, :func:`classification_pipeline`,
  :func:`segmentation_pipeline` (ds, arch, batch_size, ...) -> batches in the model's units
- :func:`compute_stats` (ds) -> per-channel (mean, std); :func:`to_numpy` (ds) -> arrays;
  :func:`describe` (ds) -> a few lines for people (``skipae data SOURCE``)
- :func:`pack` (source, out) -> sharded TFRecord files that ``load("packed:OUT")`` streams
  (``skipae data pack``): for large sets and multi-worker training
- :func:`read_palette` (dict, list or file) -> the colour -> class :class:`Palette` of
  colour-coded masks (``load(..., palette=)`` takes the same)

Example::

    import keras_skipae as ks
    from keras_skipae import data

    train = data.load("idx:", "train")                        # Fashion-MNIST (Debian package)
    s = data.split(train, labels_per_class=100, seed=0)
    ae = ks.build("autoencoder", "tiny", input_shape=(28, 28, 1))
    ae.compile("adam", "mse")
    ae.fit(data.pretrain_pipeline(s.unlabelled, ae.arch, 64, seed=0), epochs=1)
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ..lazy import lazy_attributes as _lazy_attributes
from .info import DataError, SourceInfo
from .locate import resolve_source

# public name -> the submodule that defines it, imported on first access: the sources, pipelines and
# statistics need TensorFlow, naming a source or reading its errors does not
_LAZY = {
    "pack": ".packing",
    "Palette": ".palette",
    "read_palette": ".palette",
    "classification_pipeline": ".pipeline",
    "pretrain_pipeline": ".pipeline",
    "segmentation_pipeline": ".pipeline",
    "load": ".sources",
    "Splits": ".splits",
    "sample": ".splits",
    "sample_indices": ".splits",
    "split": ".splits",
    "compute_stats": ".stats",
    "describe": ".stats",
    "to_numpy": ".stats",
}

if _TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .packing import pack
    from .palette import Palette, read_palette
    from .pipeline import classification_pipeline, pretrain_pipeline, segmentation_pipeline
    from .sources import load
    from .splits import Splits, sample, sample_indices, split
    from .stats import compute_stats, describe, to_numpy

__all__ = [
    "DataError",
    "Palette",
    "SourceInfo",
    "Splits",
    "classification_pipeline",
    "compute_stats",
    "describe",
    "load",
    "pack",
    "pretrain_pipeline",
    "read_palette",
    "resolve_source",
    "sample",
    "sample_indices",
    "segmentation_pipeline",
    "split",
    "to_numpy",
]

__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, __all__)
