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

from .info import DataError, SourceInfo, attach_info, info_of, warn
from .slices import parse_split, slice_indices
from .tables import SubsetTable

FORMAT = "keras_skipae.packed/2"
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
    shape = entry["image_shape"]
    n = int(entry["num_examples"])
    info = SourceInfo(
        name=metadata["name"], task=metadata["task"], num_classes=int(metadata["num_classes"]),
        class_names=tuple(metadata["class_names"]), channels=int(entry["channels"]),
        image_shape=tuple(shape) if shape else None, num_examples=len(idx), ignore_label=metadata["ignore_label"],
        skipped=len(entry["skipped_files"]), skipped_files=tuple(entry["skipped_files"]), source=source,
        split=split, label_map={int(k): v for k, v in metadata["label_map"].items()} if metadata["label_map"] else None,
        notes=tuple(entry["notes"]),
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


#: Training shuffles the examples' encoded records (before decoding) through a buffer of this many bytes, never
#: under RECORD_SHUFFLE_MIN records: packed data is mixed when packed, a record that holds its source file is
#: several times smaller than the decoded pixels (one that holds pixels is their size), and the decoded images
#: then go straight to the batches.
RECORD_SHUFFLE_BYTES = 16 * 1024**2
RECORD_SHUFFLE_MIN = 1024


class PackedTable:
    """The examples of one packed split, read from their shards; subsets read only the shards they touch."""

    in_memory = False
    #: ``dataset(shuffle_seed=...)`` shuffles the records before decoding (the pipelines use it in training)
    shuffles_files = True

    def __init__(self, folder: Path, metadata: dict, split: str, labels: np.ndarray | None):
        entry = metadata["splits"][split]
        self.folder = folder
        self.shards = entry["shards"]
        self.task = metadata["task"]
        self.channels = int(entry["channels"])
        shape = entry["image_shape"]
        self.image_shape = tuple(shape[:2]) if shape else (None, None)
        self.num_examples = int(entry["num_examples"])
        self.from_file = entry.get("from_file")  # how many images are stored as their source files (None: unknown)
        self._labels = labels
        # the shard holding each example: shard s holds order[s * size:(s + 1) * size] (see data.packing)
        order = np.load(folder / entry["order"])
        bounds = np.cumsum([0] + [s["examples"] for s in self.shards])
        if bounds[-1] != self.num_examples or len(order) != self.num_examples or not np.array_equal(
                np.sort(order), np.arange(self.num_examples)):  # fmt: skip
            raise DataError(f"packed:{folder} [{split}]: its shards and {entry['order']} do not account for each of "
                            f"its {self.num_examples} examples once; pack the source again")  # fmt: skip
        self.shard_of = np.empty(self.num_examples, dtype=np.int64)
        for s in range(len(self.shards)):
            self.shard_of[order[bounds[s]:bounds[s + 1]]] = s

    def labels(self) -> np.ndarray | None:
        return None if self._labels is None else np.asarray(self._labels)

    @property
    def files(self) -> list[str]:
        return [str(self.folder / s["file"]) for s in self.shards]

    def dataset(self, indices: np.ndarray | None = None, shuffle_seed: int | None | bool = False) -> tf.data.Dataset:
        """All examples, or those at ``indices``, with a known cardinality.

        The shard files are listed in a seeded order reshuffled at each pass
        and read in parallel, eight at a time, one example from each in turn;
        each shard holds a seeded random subset in random order (see
        :mod:`~keras_skipae.data.packing`), so a stream is mixed before any
        shuffle buffer. The file list is the dataset's source, so
        tf.distribute's FILE auto-sharding gives each worker its own shards.
        ``shuffle_seed`` (an int, or None for an unseeded order) orders the
        shards by that seed and shuffles the records, still encoded, through
        a buffer of ``RECORD_SHUFFLE_BYTES`` anew at each pass, before they
        are decoded; ``False``: the shards' own order only.
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
        order_seed = 0 if shuffle_seed is False else shuffle_seed
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=order_seed,
                                                               reshuffle_each_iteration=True)  # fmt: skip
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), 8)), block_length=1,
                           num_parallel_calls=AUTOTUNE, deterministic=True)  # fmt: skip
        parse_batch, decode = self._parser()
        # records parsed 256 at a time (parse_example is much faster on batches), images decoded one by one
        ds = ds.batch(256).map(parse_batch, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
        if keep is not None:
            keep_t = tf.constant(keep)
            ds = ds.filter(lambda ex: tf.gather(keep_t, ex["index"]))
            count = int(keep.sum())
        else:
            count = self.num_examples
        if shuffle_seed is not False:
            ds = ds.shuffle(self.record_buffer(count, shards), seed=shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
        return ds.apply(tf.data.experimental.assert_cardinality(count)).with_options(options)

    def record_buffer(self, count: int, shards: list | None = None) -> int:
        """How many records the training shuffle holds: ``RECORD_SHUFFLE_BYTES`` of them at the shards' mean record
        size (from the sizes the metadata records), never under ``RECORD_SHUFFLE_MIN``, never over ``count``."""
        shards = self.shards if shards is None else shards
        size = sum(int(s.get("bytes", 0)) for s in shards) / max(1, sum(int(s["examples"]) for s in shards))
        cap = max(RECORD_SHUFFLE_MIN, int(RECORD_SHUFFLE_BYTES // size) if size > 0 else RECORD_SHUFFLE_MIN)
        return max(1, min(count, cap))

    def _parser(self):
        segmentation = self.task == "segmentation"
        features = {"index": tf.io.FixedLenFeature([], tf.int64), "image": tf.io.FixedLenFeature([], tf.string),
                    "from_file": tf.io.FixedLenFeature([], tf.int64)}
        if segmentation:
            features["mask"] = tf.io.FixedLenFeature([], tf.string)
        else:
            features["label"] = tf.io.FixedLenFeature([], tf.int64)
        channels, (h, w) = self.channels, self.image_shape
        kept = self.from_file

        def decode_one(ex):
            if kept == self.num_examples:  # every image is its source file
                return tf.io.decode_image(ex["image"], channels=channels, expand_animations=False)
            if kept == 0:  # every image is its pixels
                return tf.io.parse_tensor(ex["image"], tf.uint8)
            return tf.cond(ex["from_file"] > 0,
                           lambda: tf.io.decode_image(ex["image"], channels=channels, expand_animations=False),
                           lambda: tf.io.parse_tensor(ex["image"], tf.uint8))  # fmt: skip

        def parse_batch(records):
            return tf.io.parse_example(records, features)

        def decode(ex):
            image = decode_one(ex)
            image.set_shape([h, w, channels])
            if segmentation:
                mask = tf.cast(tf.io.decode_png(ex["mask"], dtype=tf.uint16)[..., 0], tf.int32)
                mask.set_shape([h, w])
                return image, mask
            return image, tf.cast(ex["label"], tf.int32)

        return parse_batch, decode


def shards_read(ds) -> tuple[PackedTable, int] | None:
    """The packed table under ``ds`` (a dataset or its :class:`SourceInfo`, through any subsets) and how many
    of its shards it reads, else None."""
    info = ds if isinstance(ds, SourceInfo) else info_of(ds)
    table = getattr(info, "table", None) if info is not None else None
    indices = None
    while table is not None and not isinstance(table, PackedTable):
        sub = getattr(table, "indices", None)
        if sub is None:
            return None
        indices = sub if indices is None else sub[indices]
        table = getattr(table, "parent", None)
    if table is None:
        return None
    count = len(table.shards) if indices is None else len(np.unique(table.shard_of[indices]))
    return table, count


def check_shards_for_workers(ds, num_workers: int, where: str = "the training data") -> None:
    """Refuse packed data with fewer shards than workers (each worker reads whole shards: one would have none);
    warn when the shards do not divide evenly (workers then see different numbers of examples)."""
    found = shards_read(ds) if num_workers > 1 else None
    if found is None:
        return
    table, count = found
    source = info_of(ds).source
    if count < num_workers:
        raise DataError(
            f"{where} ({source}) reads {count} shard(s) for {num_workers} workers: each worker reads whole shards; "
            f"pack it again with a smaller shard size (skipae data pack --shard-size "
            f"{max(1, table.num_examples // (num_workers * 4))})"
        )
    if count % num_workers:
        warn(f"{where} ({source}) reads {count} shards for {num_workers} workers: some workers read one more shard "
             "than others; for equal steps per worker give a number of shards that the workers divide")  # fmt: skip
