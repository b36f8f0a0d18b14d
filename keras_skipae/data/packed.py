"""Reading packed data: ``load("packed:DIR", split)`` streams the shards :func:`~keras_skipae.data.pack` wrote.

Nothing is decoded or counted at load time: the metadata says what the shards
hold, each shard's size is checked against it (a partial copy is refused), and
shards are read in parallel. The file list is the dataset's source, so under
``MultiWorkerMirroredStrategy`` each worker reads its own shards (tf.data's
FILE auto-sharding). See :mod:`keras_skipae.data.packing` for the format.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from .info import DataError, SourceInfo, attach_info, info_of
from .slices import parse_split, slice_indices
from .tables import SubsetTable

FORMAT = "keras_skipae.packed/1"
METADATA = "metadata.json"
REQUEST = "pack.json"  # what was asked, written first: a rerun must ask the same to resume
AUTOTUNE = tf.data.AUTOTUNE


# ------------------------------------------------------------------------------------- reading
def read_metadata(folder: str | os.PathLike) -> dict:
    """The ``metadata.json`` of a finished pack; a clear error for an unfinished or foreign folder."""
    folder = Path(folder)
    meta = folder / METADATA
    if not meta.is_file():
        if (folder / REQUEST).is_file():
            asked = json.loads((folder / REQUEST).read_text())
            done = sorted(p.name for p in folder.glob(".*.done.json"))
            raise DataError(
                f"packed:{folder} is an unfinished pack of {asked.get('source')} ({len(done)} shard(s) written, "
                f"no {METADATA}): run `skipae data pack {asked.get('source')} {folder}` again to finish it"
            )
        what = "does not exist" if not folder.exists() else f"holds no {METADATA}"
        raise DataError(f"packed:{folder} {what}; make it with `skipae data pack SOURCE {folder}`")
    try:
        metadata = json.loads(meta.read_text())
    except ValueError as exc:
        raise DataError(f"packed:{folder}: {METADATA} is not JSON ({exc}); pack the source again") from None
    if metadata.get("format") != FORMAT:
        raise DataError(f"packed:{folder}: format {metadata.get('format')!r}; this version reads {FORMAT!r}")
    return metadata


def load_packed(path: str, split: str, source: str, **opts) -> tf.data.Dataset:
    """``load("packed:DIR", split)``: the examples of one packed split (see the module docstring)."""
    folder = Path(os.path.expanduser(path))
    metadata = read_metadata(folder)
    _check_same_options(metadata, source, opts)
    base, spec = parse_split(split)
    if base not in metadata["splits"]:
        raise DataError(f"{source}: no split {base!r}; this pack holds {', '.join(metadata['splits'])}")
    entry = metadata["splits"][base]
    for shard in entry["shards"]:
        file = folder / shard["file"]
        size = file.stat().st_size if file.is_file() else None
        if size != shard["bytes"]:
            found = "is missing" if size is None else f"has {size} bytes, {shard['bytes']} recorded"
            raise DataError(f"{source}: shard {shard['file']} {found}: the copy is incomplete; copy it again or re-pack")
    labels = np.load(folder / entry["labels"]) if entry.get("labels") else None
    table = PackedTable(folder, metadata, base, labels)
    idx = slice_indices(table.num_examples, spec, split)
    shape = metadata["image_shape"]
    n = int(entry["num_examples"])
    info = SourceInfo(
        name=metadata["name"], task=metadata["task"], num_classes=int(metadata["num_classes"]),
        class_names=tuple(metadata["class_names"]), channels=int(metadata["channels"]),
        image_shape=tuple(shape) if shape else None, num_examples=len(idx), ignore_label=metadata["ignore_label"],
        skipped=len(metadata["skipped_files"]), skipped_files=tuple(metadata["skipped_files"]), source=source,
        split=split, label_map={int(k): v for k, v in metadata["label_map"].items()} if metadata["label_map"] else None,
        notes=tuple(metadata["notes"]),
        pixel_stats=(n, tuple(entry["mean"]), tuple(entry["std"])) if len(idx) == n else None,
    )  # fmt: skip
    ds = table.dataset(None if len(idx) == n else idx)
    return attach_info(ds, info.replace(table=table if len(idx) == n else SubsetTable(table, idx)))


def _check_same_options(metadata: dict, source: str, opts: dict) -> None:
    """Options given at load must be those applied when packing (a recipe may repeat them); others are refused."""
    recorded = {
        "ignore_label": metadata["ignore_label"],
        "label_map": {int(k): v for k, v in metadata["label_map"].items()} if metadata["label_map"] else None,
        "num_classes": metadata["num_classes"],
        "class_names": tuple(metadata["class_names"]),
    }
    for key, value in opts.items():
        if value is None:
            continue
        given = tuple(value) if key == "class_names" else dict(value) if key == "label_map" else value
        if given != recorded.get(key):
            raise DataError(
                f"{source}: {key}={value!r}, but the pack was made with {key}={recorded.get(key)!r} ({METADATA}); "
                "the options apply when packing: pack the source again to change them"
            )


class PackedTable:
    """The examples of one packed split, read from their shards; subsets read only the shards they touch."""

    in_memory = False

    def __init__(self, folder: Path, metadata: dict, split: str, labels: np.ndarray | None):
        entry = metadata["splits"][split]
        self.folder = folder
        self.shards = entry["shards"]
        self.task = metadata["task"]
        self.channels = int(metadata["channels"])
        shape = metadata["image_shape"]
        self.image_shape = tuple(shape[:2]) if shape else (None, None)
        self.num_examples = int(entry["num_examples"])
        self._labels = labels
        # the shard holding each example: shard s holds order[s * size:(s + 1) * size] (see data.packing)
        order = np.load(folder / entry["order"])
        bounds = np.cumsum([0] + [s["examples"] for s in self.shards])
        self.shard_of = np.empty(self.num_examples, dtype=np.int64)
        for s in range(len(self.shards)):
            self.shard_of[order[bounds[s]:bounds[s + 1]]] = s

    def labels(self) -> np.ndarray | None:
        return None if self._labels is None else np.asarray(self._labels)

    @property
    def files(self) -> list[str]:
        return [str(self.folder / s["file"]) for s in self.shards]

    def dataset(self, indices: np.ndarray | None = None) -> tf.data.Dataset:
        """All examples, or those at ``indices``, in the order they were packed, with a known cardinality.

        Shards are interleaved in parallel, each read whole in turn; the packed
        order is already shuffled (seeded, when packing). The file list is the
        dataset's source, so tf.distribute's FILE auto-sharding gives each
        worker its own shards.
        """
        shards = self.shards
        keep = None
        if indices is not None:
            indices = np.asarray(indices, dtype=np.int64)
            keep = np.zeros(self.num_examples, dtype=bool)
            keep[indices] = True
            wanted = set(np.unique(self.shard_of[indices]).tolist())
            shards = [s for i, s in enumerate(shards) if i in wanted]
        files = [str(self.folder / s["file"]) for s in shards] or [str(self.folder / self.shards[0]["file"])]
        block = max((s["examples"] for s in shards), default=1)
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), 8)), block_length=block,
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )  # fmt: skip
        parse = self._parser()
        if keep is not None:
            keep_t = tf.constant(keep)
            ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
            ds = ds.filter(lambda i, image, target: tf.gather(keep_t, i))
            count = int(keep.sum())
        else:
            ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
            count = self.num_examples
        ds = ds.map(lambda i, image, target: (image, target))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
        return ds.apply(tf.data.experimental.assert_cardinality(count)).with_options(options)

    def _parser(self):
        segmentation = self.task == "segmentation"
        features = {"index": tf.io.FixedLenFeature([], tf.int64), "image": tf.io.FixedLenFeature([], tf.string)}
        if segmentation:
            features["mask"] = tf.io.FixedLenFeature([], tf.string)
        else:
            features["label"] = tf.io.FixedLenFeature([], tf.int64)
        channels, (h, w) = self.channels, self.image_shape

        def parse(record):
            ex = tf.io.parse_single_example(record, features)
            image = tf.io.decode_png(ex["image"], channels=channels)
            image.set_shape([h, w, channels])
            if segmentation:
                mask = tf.cast(tf.io.decode_png(ex["mask"], dtype=tf.uint16)[..., 0], tf.int32)
                mask.set_shape([h, w])
                return ex["index"], image, mask
            return ex["index"], image, tf.cast(ex["label"], tf.int32)

        return parse


def check_shards_for_workers(ds, num_workers: int, where: str = "the training data") -> None:
    """Refuse a packed dataset with fewer shards than workers (FILE sharding would leave a worker idle)."""
    info = info_of(ds)
    table = getattr(info, "table", None) if info is not None else None
    table = getattr(table, "parent", table)
    if isinstance(table, PackedTable) and num_workers > 1 and len(table.shards) < num_workers:
        raise DataError(
            f"{where} ({info.source}) has {len(table.shards)} shard(s) for {num_workers} workers: each worker reads "
            f"whole shards; pack it again with a smaller shard size (skipae data pack --shard-size "
            f"{max(1, table.num_examples // (num_workers * 4))})"
        )
