"""Packing data: sharded TFRecord files that stream, for unlabelled sets of any size.

:func:`pack` (``skipae data pack SOURCE OUT``) reads any source :func:`load`
reads, decodes and checks every image once, and writes the examples as
sharded TFRecord files of PNG-encoded images with their labels (or PNG masks),
plus ``metadata.json``: counts, classes, shapes, label maps, per-class counts,
per-channel statistics and the source they came from. ``load("packed:OUT")``
then starts at once: nothing is decoded or counted at load time, shards are
read in parallel, and under ``MultiWorkerMirroredStrategy`` each worker reads
its own shards (tf.data's FILE auto-sharding).

Writes are resumable and atomic. Each shard is written to a hidden temporary
file and renamed when complete; a small record beside it says it is done. A
killed pack is finished by running the same command again (finished shards
are kept), and ``metadata.json`` is written last: a reader refuses a folder
without it, and a shard whose size differs from the one recorded.

Example::

    data.pack("folder:unlabelled_photos", "packed/photos", splits=("train",))
    ds = data.load("packed:packed/photos", "train")
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..atomic import write_json_atomic
from ..progress import Progress
from .info import DataError, SourceInfo
from .packed import FORMAT, METADATA, REQUEST, read_metadata
from .slices import parse_split
from .sources import load
from .tables import StreamTable

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_SHARD_SIZE = 2048
ORDER_SEED = 0  # which examples go to which shard, and their order in it (recorded: <split>-order.npy)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _done_name(shard: str) -> str:
    return f".{shard}.done.json"


def pack(source, out: str | os.PathLike, *, splits=("train",), shard_size: int = DEFAULT_SHARD_SIZE,
         overwrite: bool = False, **load_options) -> dict:
    """Write ``splits`` of ``source`` as sharded TFRecord files under ``out``; return the metadata.

    ``shard_size`` examples per shard (give a cluster at least one shard per
    worker: 1,000-10,000 images of 100-200 kB per shard suit most
    filesystems). ``load_options`` are :func:`~keras_skipae.data.load`'s
    (``on_error``, ``ignore_label``, ``label_map``, ``palette`` ...): they are
    applied once, here, and recorded. Rerunning the same call after an
    interruption finishes the pack; a different call into the same folder is
    refused unless ``overwrite=True``.

    Raises:
        DataError: the source cannot be read, or ``out`` holds something else.
    """
    if isinstance(splits, str):
        splits = (splits,)
    if not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise DataError(f"shard_size={shard_size!r}; expected a positive number of examples per shard")
    if not isinstance(source, str):
        raise DataError("pack reads a source string (folder:PATH, tfds:NAME, ...); in-memory arrays need no packing")
    for split in splits:
        if parse_split(split)[1] is not None:
            raise DataError(f"split {split!r}: pack whole splits; slice when loading (packed:OUT with {split!r})")
    out = Path(out)
    _refuse_inside_source(source, out)
    request = {"format": FORMAT, "source": source, "splits": list(splits), "shard_size": int(shard_size),
               "options": {k: v for k, v in sorted(load_options.items()) if v is not None}}  # fmt: skip
    request = json.loads(json.dumps(request, default=str))
    _prepare_folder(out, request, overwrite)
    if (out / METADATA).is_file():
        return read_metadata(out)
    for stale in out.glob(".*.partial"):  # a killed pack's unfinished shard: never renamed, never read
        stale.unlink()
    per_split = {}
    for split in splits:
        info = load(source, split, **load_options).info
        _check_same_source(out, split, info)
        per_split[split] = (info, _pack_split(info, out, split, int(shard_size)))
    metadata = _metadata(request, per_split)
    for split, (_, entry) in per_split.items():
        for shard in entry["shards"]:
            (out / _done_name(shard["file"])).unlink(missing_ok=True)
    write_json_atomic(out / METADATA, metadata)
    return metadata


def _refuse_inside_source(source: str, out: Path) -> None:
    """Packing into the source's own folder (or above it) could read its own shards, or overwrite the source."""
    rest = source.partition(":")[2]
    if not rest or source.startswith(("tfds:", "idx:")) and not os.path.isdir(rest):
        return
    src, dst = Path(os.path.expanduser(rest)).resolve(), out.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise DataError(f"cannot pack {source} into {out}: the two overlap; give a folder outside the source")


def _prepare_folder(out: Path, request: dict, overwrite: bool) -> None:
    asked = out / REQUEST
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; give a folder to pack into")
    if asked.is_file():
        previous = json.loads(asked.read_text())
        if previous == request:
            return
        if not overwrite:
            raise DataError(
                f"{out} holds a pack of another request ({previous.get('source')}, splits {previous.get('splits')}, "
                f"shard_size {previous.get('shard_size')}); give another folder, or overwrite=True "
                "(skipae data pack --overwrite) to replace it"
            )
        shutil.rmtree(out)  # only ever a pack: a folder holding pack.json
    elif out.is_dir() and any(out.iterdir()):
        raise DataError(f"{out} is not empty and holds no pack; give an empty or new folder (overwrite replaces "
                        "only an earlier pack)")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(asked, request)


def _fingerprint(info: SourceInfo) -> dict:
    """What identifies the examples a split read: their count, labels and (for files) names, hashed."""
    table = info.table
    digest = hashlib.sha256(str(info.num_examples).encode())
    labels = table.labels()
    if labels is not None:
        digest.update(np.asarray(labels, np.int64).tobytes())
    refs = getattr(table, "refs", None)
    if refs is not None and len(refs) and isinstance(refs[0], str):
        digest.update("\n".join(refs).encode())
    return {"num_examples": int(info.num_examples or 0), "sha256": digest.hexdigest()}


def _check_same_source(out: Path, split: str, info: SourceInfo) -> None:
    """A resumed pack must read what the killed one read: else its finished shards are of other data."""
    record = out / f".{split}.source.json"
    now = _fingerprint(info)
    if record.is_file():
        before = json.loads(record.read_text())
        if before != now:
            raise DataError(
                f"{out}: split {split!r} of the source changed since this pack began ({before['num_examples']} "
                f"examples then, {now['num_examples']} now, or other files or labels); pack it again with "
                "overwrite=True (skipae data pack --overwrite)"
            )
        return
    write_json_atomic(record, now)


def _pack_split(info: SourceInfo, out: Path, split: str, shard_size: int) -> dict:
    n = int(info.num_examples or 0)
    count = max(1, math.ceil(n / shard_size))
    table = info.table
    if table is None:  # pragma: no cover - every source of load() carries a table
        raise DataError(f"{info.source} [{split}] cannot be read by index; it cannot be packed")
    if info.task == "segmentation" and info.ignore_label is not None and not 0 <= info.ignore_label <= 65535:
        raise DataError(f"{info.source}: ignore_label={info.ignore_label}; packed masks hold class ids 0..65535: "
                        "remap it with label_map (e.g. {-1: 255}) and ignore_label=255")  # fmt: skip
    labels = table.labels()
    if labels is not None:
        np.save(out / f"{split}-labels.npy", np.asarray(labels, dtype=np.int32))
    # shards hold seeded random subsets, each written in a seeded random order: a stream read shard by shard
    # is already mixed (sources list files class by class), so a small shuffle buffer suffices when training
    order = np.random.default_rng(ORDER_SEED).permutation(n)
    np.save(out / f"{split}-order.npy", order)
    shards = []
    # traced once for the split, not once per shard's map (0.1-0.2 s a shard); shapes that vary generalise
    encode = tf.function(_encoder(info.task == "segmentation", int(info.channels)), reduce_retracing=True)
    label = f"packing {info.name} [{split}]"
    with Progress(label, n, unit="images") as bar:
        for index in range(count):
            lo, hi = index * shard_size, min(n, (index + 1) * shard_size)
            name = shard_name(split, index, count)
            members = np.sort(order[lo:hi])
            done = _finished_shard(out, name, members)
            if done is None:
                done = _write_shard(table, info, out, name, members, index, encode)
            shards.append(done)
            bar.update(hi - lo)
    return {"num_examples": n, "shards": shards}


def _members_sha(members: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(members, np.int64).tobytes()).hexdigest()


def _finished_shard(out: Path, name: str, members: np.ndarray) -> dict | None:
    """The record of a shard of these examples written completely by an earlier (perhaps killed) pack, else None."""
    record = out / _done_name(name)
    if not record.is_file() or not (out / name).is_file():
        return None
    try:
        done = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    same = done.get("members") == _members_sha(members) and done.get("bytes") == (out / name).stat().st_size
    return done if same else None


def _write_shard(table, info: SourceInfo, out: Path, name: str, members: np.ndarray, index: int, encode) -> dict:
    segmentation = info.task == "segmentation"
    channels = int(info.channels)
    sums = np.zeros(channels)
    squares = np.zeros(channels)
    pixels = 0
    classes: dict[int, int] = {}
    tmp = out / f".{name}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    # written in a seeded random order; tables read by index stream in that order, others are held per shard
    shuffled = members[np.random.default_rng([ORDER_SEED, index]).permutation(len(members))]
    by_index = not isinstance(table, StreamTable)
    ds = table.dataset(shuffled if by_index else members)
    files = _file_bytes(table, shuffled) if by_index else None
    ds = tf.data.Dataset.zip((ds, files if files is not None else tf.data.Dataset.from_tensors(b"").repeat()))
    ds = ds.map(encode, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
    held = {}
    files_kept = 0
    try:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for offset, (encoded, from_file, target, moments) in enumerate(ds.as_numpy_iterator()):
                record = _example(int((shuffled if by_index else members)[offset]), encoded, bool(from_file), target,
                                  segmentation)  # fmt: skip
                files_kept += int(from_file)
                if by_index:
                    writer.write(record)
                else:
                    held[int(members[offset])] = record
                sums += moments[0]
                squares += moments[1]
                pixels += int(moments[2][0])
                if not segmentation:
                    classes[int(target)] = classes.get(int(target), 0) + 1
            for i in shuffled if not by_index else ():
                writer.write(held.pop(int(i)))
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            os.fsync(f.fileno())
        os.replace(tmp, out / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    done = {"file": name, "examples": len(members), "members": _members_sha(members), "bytes": (out / name).stat().st_size,
            "sha256": digest.hexdigest(), "pixel_sum": sums.tolist(), "pixel_sum_sq": squares.tolist(),
            "pixels": pixels, "class_counts": {str(k): v for k, v in sorted(classes.items())},
            "from_file": files_kept}  # fmt: skip
    write_json_atomic(out / _done_name(name), done)
    return done


def _file_bytes(table, indices: np.ndarray) -> tf.data.Dataset | None:
    """The encoded files behind a table's examples at ``indices``: a :class:`FileTable`'s (paths read, zip members as
    held) or the files a :class:`MemoryTable` was decoded from; None where there are none (arrays, TFDS)."""
    refs = getattr(table, "refs", None)
    if refs is None or not len(refs):
        return None
    chosen = list(refs[np.asarray(indices, dtype=np.int64)])
    ds = tf.data.Dataset.from_tensor_slices(chosen)
    return ds if isinstance(chosen[0], bytes) else ds.map(tf.io.read_file, num_parallel_calls=AUTOTUNE, deterministic=True)


_NATIVE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")  # what tf.io.decode_image reads


def _encoder(segmentation: bool, channels: int):
    """(image, target), file bytes -> (payload, from_file, target, moments).

    The payload is the source file itself when TensorFlow decodes it to exactly the loaded pixels (JPEG and PNG
    sets keep their size, and decode as fast as the originals); else the uint8 pixels (``serialize_tensor``).
    """

    def same_pixels(data, image):
        decoded = tf.io.decode_image(data, channels=channels, expand_animations=False)
        same_shape = tf.reduce_all(tf.equal(tf.shape(decoded), tf.shape(image)))
        return tf.cond(same_shape, lambda: tf.reduce_all(tf.equal(decoded, image)), lambda: tf.constant(False))

    def encode(element, data):
        image, target = element
        x = tf.cast(image, tf.float64) / 255.0
        flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
        moments = (tf.reduce_sum(flat, 0), tf.reduce_sum(flat * flat, 0),
                   tf.fill([tf.shape(x)[-1]], tf.cast(tf.shape(flat)[0], tf.float64)))  # fmt: skip
        native = tf.reduce_any([tf.strings.substr(data, 0, len(m)) == m for m in _NATIVE_MAGIC])
        from_file = tf.cond(native, lambda: same_pixels(data, image), lambda: tf.constant(False))
        payload = tf.cond(from_file, lambda: data, lambda: tf.io.serialize_tensor(image))
        if segmentation:
            # class ids (with an ignore label of any size) as 16-bit PNG: exact, and decoded without scaling
            return payload, from_file, tf.io.encode_png(tf.cast(target[..., None], tf.uint16)), moments
        return payload, from_file, target, moments

    return encode


def _example(index: int, encoded: bytes, from_file: bool, target, segmentation: bool) -> bytes:
    feature = {
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "from_file": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(from_file)])),
    }
    if segmentation:
        feature["mask"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[target]))
    else:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(target)]))
    # deterministic: the map of features in a fixed order, so that the same examples give the same bytes in every process
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def _metadata(request: dict, per_split: dict) -> dict:
    splits = {}
    for split, (info, entry) in per_split.items():
        shards = entry["shards"]
        pixels = sum(s["pixels"] for s in shards)
        sums = np.sum([s["pixel_sum"] for s in shards], axis=0) if shards else np.zeros(info.channels)
        squares = np.sum([s["pixel_sum_sq"] for s in shards], axis=0) if shards else np.zeros(info.channels)
        mean = sums / max(pixels, 1)
        std = np.sqrt(np.maximum(squares / max(pixels, 1) - mean**2, 0.0))
        counts: dict[str, int] = {}
        for s in shards:
            for k, v in s["class_counts"].items():
                counts[k] = counts.get(k, 0) + v
        splits[split] = {
            "num_examples": entry["num_examples"],
            "channels": info.channels,
            "image_shape": list(info.image_shape) if info.image_shape else None,
            "shards": [{k: s[k] for k in ("file", "examples", "bytes", "sha256")} for s in shards],
            "from_file": sum(s["from_file"] for s in shards),
            "order": f"{split}-order.npy",
            "class_counts": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
            "mean": mean.tolist(), "std": std.tolist(),
            "labels": f"{split}-labels.npy" if info.task == "classification" else None,
            "skipped_files": list(info.skipped_files),
            "notes": list(info.notes),
        }  # fmt: skip
    info = next(iter(per_split.values()))[0]
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": request["source"],
        "options": request["options"],
        "name": info.name,
        "task": info.task,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "ignore_label": info.ignore_label,
        "label_map": {str(k): v for k, v in (info.label_map or {}).items()} or None,
        "palette": None if info.palette is None else repr(info.palette),
        "encoding": "each image: its source file where TensorFlow decodes that to the same pixels (from_file 1), "
                    "else its uint8 pixels as tf.io.serialize_tensor (0); masks: 16-bit PNG",
        "checked": ["every image decoded with its shape and channels",
                    "labels or mask values within the classes (after label_map and palette)"],
        "splits": splits,
    }  # fmt: skip
