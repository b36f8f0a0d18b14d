"""Features out: a trained encoder's features of any data source, written for a head of your own.

:func:`embed` runs a model's encoder over a source in batches and streams the
features to disk as it goes, with each example's id (its position in the
split) and label (-1 where there is none; segmentation sources have masks,
not labels, so every label is -1). The features are the encoder's output
pooled over height and width (``pooling``: ``avg``, ``max``, ``avgmax``), or,
with ``stage=S`` and ``pooling="none"``, stage S's feature maps as they are.

Formats, by the output's suffix: ``.npz`` (arrays ``features``, ``ids``,
``labels``), ``.npy`` (the features; ``ids`` and ``labels`` beside it as
``NAME.ids.npy`` and ``NAME.labels.npy``), ``.parquet`` (columns ``id``,
``label`` and ``features``, a fixed-size list of the flattened features; one
row group per batch, written as the batches come; needs the ``[parquet]``
extra, pyarrow). The file appears complete or not at all.

>>> embed("runs/quickstart/seed_0", "idx:", split="test", out="test_features.npz")
>>> f = np.load("test_features.npz"); f["features"].shape, f["labels"][:5]
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import data
from .choices import POOLINGS
from .extras import require
from .probe.features import feature_model, stage_layer_names
from .runs import resolve_model
from .saving import load

FORMATS = (".npz", ".npy", ".parquet")


@dataclass
class EmbedResult:
    """What :func:`embed` wrote."""

    path: Path
    examples: int
    feature_shape: tuple
    model: Path


def _features_of(model: keras.Model, pooling: str, stage: int | None) -> keras.Model:
    if stage is None:
        if pooling == "none":
            raise ValueError("pooling 'none' keeps a stage's feature maps: give stage=S with it")
        return feature_model(model, pooling)
    names = stage_layer_names(model.arch)
    if not 1 <= stage <= len(names):
        raise ValueError(f"stage={stage}: the encoder has stages 1..{len(names)}")
    maps = model.get_layer(names[stage - 1]).output
    if pooling == "none":
        return keras.Model(model.inputs, maps)
    pooled = {"avg": keras.layers.GlobalAveragePooling2D(), "max": keras.layers.GlobalMaxPooling2D()}
    if pooling == "avgmax":
        out = keras.layers.Concatenate()([pooled["avg"](maps), pooled["max"](maps)])
    elif pooling in pooled:
        out = pooled[pooling](maps)
    else:
        raise ValueError(f"pooling {pooling!r} for a stage's features: use avg, max, avgmax or none")
    return keras.Model(model.inputs, out)


def embed(
    model_or_run: str | os.PathLike | keras.Model,
    source: str,
    *,
    out: str | os.PathLike,
    split: str = "train",
    stage: int | None = None,
    pooling: str = "avg",
    batch_size: int = 256,
    run_stage: str | None = None,
    **load_options,
) -> EmbedResult:
    """Write ``model_or_run``'s encoder features of ``source`` (split ``split``) to ``out``.

    Args:
        model_or_run: a keras_skipae model, a ``.keras`` file, or a run
            directory (its last finished stage, or ``run_stage``).
        source: any :func:`keras_skipae.data.load` source (``idx:``, ``folder:``,
            ``npz:``, ``tfds:``, ``segfolder:``, ...).
        out: the file to write: ``.npz``, ``.npy`` or ``.parquet``.
        split: the source's split.
        stage: an encoder stage (1 = the first) instead of the encoder's output.
        pooling: ``avg``, ``max``, ``avgmax``, or ``none`` (a stage's maps as
            they are; needs ``stage``).
        batch_size: images per batch; memory holds one batch of features at a time (a ``.parquet``
            file gets one row group per batch).
        run_stage: which stage of a run directory holds the model.
        **load_options: passed to :func:`keras_skipae.data.load`.

    Returns:
        An :class:`EmbedResult` (path, number of examples, feature shape, model file).

    Raises:
        ValueError: an unknown format, pooling or stage (the message lists the valid ones).
        MissingExtra: a ``.parquet`` output without pyarrow (the message names the ``[parquet]`` extra).
    """
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ValueError(f"{out}: write features to one of {', '.join(FORMATS)}")
    if pooling not in POOLINGS + ("none",) or pooling == "flatten":
        raise ValueError(f"pooling {pooling!r}: use avg, max, avgmax, or none (with stage=S)")
    parquet = require("pyarrow.parquet", "parquet", f"writing {out.name}") if out.suffix == ".parquet" else None
    if isinstance(model_or_run, keras.Model):
        model, model_path = model_or_run, Path("<model>")
    else:
        model_path = resolve_model(model_or_run, run_stage)
        model = load(model_path, compile=False)
    features = _features_of(model, pooling, stage)
    ds = data.load(data.resolve_source(source), split, **load_options)
    segmentation = getattr(ds.info, "task", "classification") == "segmentation"
    batches = _batches(ds, model.arch, batch_size, segmentation)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        tmp_out = Path(tmp) / ("whole" + out.suffix)
        if parquet is not None:
            n, shape = _write_parquet(parquet, tmp_out, features, batches)
        else:
            n, shape = _write_arrays(tmp_out, features, batches, Path(tmp))
        if not n:
            raise ValueError(f"{source} (split {split}) holds no example")
        os.replace(tmp_out, out)  # the features first: ids and labels beside a .npy follow it
        for extra in (".ids.npy", ".labels.npy") if out.suffix == ".npy" else ():
            os.replace(Path(tmp) / ("whole" + extra), out.with_name(out.stem + extra))
    return EmbedResult(out, n, shape, model_path)


def _batches(ds, arch, batch_size: int, segmentation: bool):
    if segmentation:
        batches = data.segmentation_pipeline(ds, arch, batch_size, training=False)
        return ((b[0], None) for b in batches.as_numpy_iterator())
    batches = data.classification_pipeline(ds, arch, batch_size, training=False)
    return ((x, y) for x, y in batches.as_numpy_iterator())


def _feature_batches(features, batches):
    """``(features, labels)`` per batch: float32 features of the batch's images, int64 labels (-1 without)."""
    for x, y in batches:
        f = np.asarray(features.predict_on_batch(x), np.float32)
        yield f, (np.full(len(f), -1, np.int64) if y is None else np.asarray(y, np.int64).reshape(-1))


def _write_parquet(parquet, path: Path, features, batches) -> tuple[int, tuple]:
    """Stream the batches' features into ``path``, one row group per batch: nothing is held beyond a batch."""
    import pyarrow as pa

    writer, n, shape = None, 0, ()
    try:
        for f, labels in _feature_batches(features, batches):
            shape, flat = f.shape[1:], f.reshape(len(f), -1)
            table = pa.table({"id": np.arange(n, n + len(f), dtype=np.int64), "label": labels,
                              "features": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])})
            if writer is None:
                # the feature shape rides in the schema, so a reader can restore it: features.reshape(-1, *shape)
                schema = table.schema.with_metadata({"keras_skipae.feature_shape": ",".join(map(str, shape))})
                writer = parquet.ParquetWriter(str(path), schema)
            writer.write_table(table.cast(writer.schema))
            n += len(f)
    finally:
        if writer is not None:
            writer.close()
    return n, tuple(shape)


def _write_arrays(path: Path, features, batches, tmp: Path) -> tuple[int, tuple]:
    """``.npz`` or ``.npy``: each batch's features to a part file, then the parts copied into one memory-mapped
    array, so memory holds one batch at a time."""
    parts, labels, n = [], [], 0
    for f, batch_labels in _feature_batches(features, batches):
        part = tmp / f"part_{len(parts):06d}.npy"
        np.save(part, f)
        parts.append(part)
        labels.append(batch_labels)
        n += len(f)
    if not n:
        return 0, ()
    shape = tuple(np.load(parts[0], mmap_mode="r").shape[1:])
    whole = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32, shape=(n,) + shape)
    start = 0
    for part in parts:
        block = np.load(part)
        whole[start:start + len(block)] = block
        start += len(block)
        part.unlink()
    whole.flush()
    ids, labels = np.arange(n, dtype=np.int64), np.concatenate(labels)
    if path.suffix == ".npz":
        np.savez(path, features=whole, ids=ids, labels=labels)
    else:
        del whole
        os.replace(tmp / "features.npy", path)
        np.save(tmp / "whole.ids.npy", ids)
        np.save(tmp / "whole.labels.npy", labels)
    return n, shape
