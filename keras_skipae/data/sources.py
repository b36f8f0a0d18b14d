"""``data.load(source, split)``: one entry point for every kind of dataset.

Sources: ``"tfds:NAME[/CONFIG]"``, ``"idx:[DIR]"``, ``"folder:PATH"``,
``"segfolder:PATH"``, ``"seglist:LIST"``, ``"npz:PATH"``, ``"packed:DIR"``
(made by :func:`~keras_skipae.data.pack`), an in-memory
``(images, labels)`` tuple or a dict ``{"images": ..., "labels" | "masks": ...}``.
Every dataset yields ``(image uint8 [H, W, C], label int32 [])`` for
classification or ``(image uint8 [H, W, C], mask int32 [H, W])`` for
segmentation, and carries a :class:`~keras_skipae.data.SourceInfo` as ``ds.info``.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow as tf

from . import classes as _classes
from . import files as _files
from . import decode as _decode
from . import headers as _headers
from .info import DataError, SourceInfo, attach_info, warn
from .locate import FASHION_MNIST_DIR
from .packed import load_packed
from .segmentation import load_segfolder, load_seglist, uniform_shape, warn_ignored
from .slices import parse_split, slice_indices
from .tables import FileTable, MemoryTable
from .tfds_source import load_tfds

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
ON_ERROR = ("raise", "skip")
SCHEMES = ("tfds", "idx", "folder", "segfolder", "seglist", "npz", "packed")


def load(
    source: str | tuple | dict,
    split: str = "train",
    *,
    data_dir: str | None = None,
    download: bool = False,
    on_error: str = "raise",
    ignore_label: int | None = None,
    label_map: dict | None = None,
    num_classes: int | None = None,
    class_names: tuple | list | None = None,
    images: str | None = None,
    masks: str | None = None,
    root: str | None = None,
    palette: dict | list | str | None = None,
    max_image_pixels: int | None = None,
    stream_above: int | None = None,
) -> tf.data.Dataset:
    """Load ``split`` of ``source`` as a dataset of uint8 images with labels or masks.

    ``split`` is a split name (``"train"``, ``"test"``, ``"unlabelled"``) with
    optional TFDS-style slicing (``"train[:90%]"``, ``"train[100:200]"``).
    ``on_error="skip"`` leaves unreadable image files out and counts them in
    ``ds.info.skipped``. ``ignore_label`` marks the mask value that scores
    nothing (CamVid: 11); ``label_map`` remaps label or mask values before
    checking (``{255: 11}``); ``num_classes`` and ``class_names`` override what
    is inferred.

    Segmentation files: ``images``/``masks`` are name patterns for
    ``segfolder:`` (``"{split}/1st_manual/{stem}_manual1.gif"``, see
    :mod:`~keras_skipae.data.pairs`); ``root`` is where a ``seglist:`` list's
    paths start (default: the list's folder); ``palette`` maps mask colours to
    classes (a dict, a list of colours or a palette file, see
    :mod:`~keras_skipae.data.palette`). Binary ``{0, 255}`` masks are read as
    classes ``{0, 1}`` with a warning (``label_map={255: 1}`` says so silently).
    ``max_image_pixels`` refuses larger image files before decoding them
    (default 64 megapixels, ``SKIPAE_MAX_IMAGE_PIXELS``). A ``folder:``
    directory with more than ``stream_above`` files (default 50,000,
    ``SKIPAE_STREAM_ABOVE``) is not decoded at load: only the files' headers
    are read (sizes, channels, unusable files by name) and the pixels are decoded
    as the dataset is read (see :mod:`~keras_skipae.data.headers`); for speed
    pack it once (:func:`~keras_skipae.data.pack`).

    Example::

        ds = load("folder:../shared/data/cifar10/cifar10_jpg.zip", "train")
        ds.info.class_names[:2]                   # ('airplane', 'automobile')
        seg = load("segfolder:../shared/data/camvid", "train", ignore_label=11)
        seg = load("seglist:../shared/data/camvid", "val", ignore_label=11)       # camvid/val.txt
        drive = load("segfolder:DRIVE", "training", images="{split}/images/{stem}_{split}.tif",
                     masks="{split}/1st_manual/{stem}_manual1.gif")              # 2 classes
    """
    if on_error not in ON_ERROR:
        raise DataError(f"on_error={on_error!r}; expected one of {', '.join(ON_ERROR)}")
    opts = dict(ignore_label=ignore_label, label_map=label_map, num_classes=num_classes, class_names=class_names)
    scheme = source.partition(":")[0] if isinstance(source, str) else "arrays"
    _check_options(scheme, source, images=images, masks=masks, root=root, palette=palette, stream_above=stream_above)
    if max_image_pixels is not None:
        try:
            _decode.max_image_pixels(max_image_pixels)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise DataError(f"an in-memory source is (images, labels) or (images, masks); got {len(source)} items")
        return _from_arrays(source[0], source[1], "arrays", split, **opts)
    if isinstance(source, dict):
        return _from_dict(source, split, **opts)
    if not isinstance(source, str) or ":" not in source:
        raise DataError(
            f"unknown data source {source!r}; expected 'tfds:NAME[/CONFIG]', 'idx:[DIR]', 'folder:PATH', "
            "'segfolder:PATH', 'seglist:LIST', 'npz:PATH', 'packed:DIR', an (images, labels) tuple or a dict of arrays"
        )
    rest = source.partition(":")[2]
    files_opts = dict(on_error=on_error, pixel_limit=max_image_pixels, **opts)
    if scheme == "tfds":
        return load_tfds(rest, split, source, data_dir=data_dir, download=download, **opts)
    if scheme == "idx":
        return _load_idx(rest, split, source, data_dir=data_dir, **opts)
    if scheme == "folder":
        return _load_folder(rest, split, source, stream_above=stream_above, **files_opts)
    if scheme == "segfolder":
        return load_segfolder(rest, split, source, images=images, masks=masks, palette=palette, **files_opts)
    if scheme == "seglist":
        return load_seglist(rest, split, source, root=root, palette=palette, **files_opts)
    if scheme == "npz":
        return _load_npz(rest, split, source, **opts)
    if scheme == "packed":
        return load_packed(rest, split, source, **opts)
    raise DataError(f"unknown data source scheme {scheme!r} in {source!r}; expected {', '.join(SCHEMES)}")


def _check_options(scheme: str, source, **given) -> None:
    """Refuse an option the source does not use (it would be ignored silently)."""
    used_by = {"images": ("segfolder",), "masks": ("segfolder",), "root": ("seglist",), "palette": ("segfolder", "seglist"),
               "stream_above": ("folder",)}
    for option, value in given.items():
        if value is not None and scheme not in used_by[option] and scheme in SCHEMES + ("arrays",):
            where = source if isinstance(source, str) else "an in-memory source"
            raise DataError(f"{where}: {option}= applies to {' and '.join(s + ':' for s in used_by[option])} sources only")


# ------------------------------------------------------------------------------------ splitting
def _from_dict(d: dict, split: str, **opts):
    if "images" not in d or ("labels" not in d and "masks" not in d):
        raise DataError(f"a dict source needs 'images' and 'labels' (or 'masks'); got keys {sorted(d)}")
    opts["class_names"] = opts.get("class_names") or d.get("class_names")
    return _from_arrays(d["images"], d["masks"] if "masks" in d else d["labels"], "arrays", split, **opts)


def as_uint8_images(images, where: str) -> np.ndarray:
    """(N, H, W[, C]) pixel values -> uint8 (N, H, W, C); floats must lie in [0, 1] or [0, 255]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{where}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        finite = np.isfinite(images)
        if not finite.all():
            bad = int(images.size - np.count_nonzero(finite))
            first = np.unravel_index(int(np.argmin(finite.reshape(-1))), images.shape)[0]
            raise DataError(
                f"{where}: {bad} pixel value(s) are NaN or infinite (the first in image {first}); fix or drop "
                "those images: their range cannot be read, and one bad value would change the scale of all"
            )
        lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: float images range over [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255] pixel values")
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.clip(np.rint(images * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{where}: integer images range over [{images.min()}, {images.max()}]; expected 0..255")
        return images.astype(np.uint8)
    raise DataError(f"{where}: images of dtype {images.dtype}; expected uint8 or float pixel values")


def _from_arrays(images, targets, name, split, *, ignore_label, label_map, num_classes, class_names, source=None,
                 label_where=None):  # fmt: skip
    """The dataset of in-memory arrays; classes are counted and checked on all of them, then sliced."""
    where = source or name
    label_where = label_where or where
    images = as_uint8_images(images, where)
    targets = np.asarray(targets)
    if len(targets) != len(images):
        raise DataError(f"{where}: {len(images)} images but {len(targets)} labels; give one label (or mask) per image")
    base, spec = parse_split(split)
    idx = slice_indices(len(images), spec, split)
    if targets.ndim == 1 or (targets.ndim == 2 and targets.shape[1] == 1 and images.shape[1] != 1):
        labels = _classes.remap(_classes.label_ids(targets.reshape(-1), label_where), label_map)
        n_cls = _classes.classes_for(labels, num_classes, class_names, label_where)
        _classes.check_labels(labels, n_cls, label_where, lambda i: f"example {i}")
        info = SourceInfo(
            name=name, task="classification", num_classes=n_cls, class_names=_classes.names_for(class_names, n_cls),
            channels=images.shape[-1], image_shape=tuple(images.shape[1:]), num_examples=len(idx),
            source=where, split=split, label_map=dict(label_map) if label_map else None,
        )  # fmt: skip
        table = MemoryTable(images[idx], labels[idx].astype(np.int32), "classification")
        return attach_info(table.dataset(), info.replace(table=table))
    if targets.ndim == 2:
        _classes.refuse_one_hot(targets, label_where)
    if targets.ndim == 4 and targets.shape[-1] > 1 and targets.shape[1:3] == images.shape[1:3]:
        raise DataError(
            f"{label_where}: masks of shape {targets.shape} have {targets.shape[-1]} channels; expected one class "
            "id per pixel, (N, H, W): for one-hot masks pass masks.argmax(axis=-1)"
        )
    masks = targets[..., 0] if targets.ndim == 4 and targets.shape[-1] == 1 else targets
    if masks.shape[1:3] != images.shape[1:3] or masks.ndim != 3:
        raise DataError(
            f"{where}: masks have shape {targets.shape} but images {images.shape}; "
            "expected one (H, W) mask per image of the same height and width"
        )
    masks = _classes.label_ids(masks, label_where, "mask values")
    present = np.unique(masks)
    detected = _classes.binary_mask_map(present, label_map=label_map, palette=None, ignore_label=ignore_label,
                                        num_classes=num_classes, where=label_where)  # fmt: skip
    applied = detected or label_map or None
    masks = _classes.remap(masks, applied)
    all_values = np.unique(masks)
    n_cls = _classes.seg_classes(all_values, num_classes, ignore_label, class_names, label_where)
    _classes.check_mask_values(all_values, n_cls, ignore_label, label_where)
    raw_values, raw_counts = np.unique(targets[idx], return_counts=True) if len(present) <= 256 else ((), ())
    values, counts = np.unique(masks[idx], return_counts=True)
    info = SourceInfo(
        name=name, task="segmentation", num_classes=n_cls, class_names=_classes.names_for(class_names, n_cls),
        channels=images.shape[-1], image_shape=tuple(images.shape[1:]), num_examples=len(idx),
        ignore_label=ignore_label, source=where, split=split,
        mask_values=tuple((int(v), int(c)) for v, c in zip(raw_values, raw_counts)),
        class_pixels=tuple((int(v), int(c)) for v, c in zip(values, counts)),
        label_map=dict(applied) if applied else None,
        notes=("binary masks: values {0, 255} read as classes {0, 1} (label_map={255: 1})",) if detected else (),
    )  # fmt: skip
    table = MemoryTable(images[idx], masks[idx].astype(np.int32), "segmentation")
    return attach_info(table.dataset(), info.replace(table=table))


# ----------------------------------------------------------------------------------------- idx
def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number); expected MNIST-format data")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise DataError(f"{path}: header says shape {tuple(dims)} but the file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _idx_file(directory: str, prefix: str, kind: str) -> str | None:
    for name in (f"{prefix}-{kind}.gz", f"{prefix}-{kind}", f"{prefix}-{kind.replace('-idx', '.idx')}.gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _load_idx(directory, split, source, *, data_dir, **opts):
    base, spec = parse_split(split)
    if base not in ("train", "test"):
        raise DataError(f"{source}: IDX data has splits 'train' and 'test'; got {split!r}")
    if not directory:
        if os.path.isdir(FASHION_MNIST_DIR):
            directory = FASHION_MNIST_DIR
        else:
            cached = _tfds_fashion_mnist(data_dir)
            if cached is not None:
                        return load_tfds("fashion_mnist", split, source, data_dir=cached, download=False, **opts)
            raise DataError(
                f"{source}: no Fashion-MNIST found: {FASHION_MNIST_DIR} does not exist and no prepared "
                f"fashion_mnist is in the TFDS cache ({data_dir or _tfds_default_dir()}). Install Debian's package "
                "(sudo apt-get install dataset-fashion-mnist), or give idx:DIR holding "
                "train-images-idx3-ubyte.gz etc., or use tfds:fashion_mnist with download=True"
            )
    if not os.path.isdir(directory):
        raise DataError(f"{source}: {directory} is not a directory; expected a folder of MNIST-format IDX files")
    prefix = "train" if base == "train" else "t10k"
    img_path = _idx_file(directory, prefix, "images-idx3-ubyte")
    lbl_path = _idx_file(directory, prefix, "labels-idx1-ubyte")
    if img_path is None or lbl_path is None:
        raise DataError(
            f"{source}: missing {prefix}-images-idx3-ubyte[.gz] or {prefix}-labels-idx1-ubyte[.gz] in {directory} "
            f"(found: {', '.join(sorted(os.listdir(directory))) or 'nothing'})"
        )
    images, labels = _read_idx(img_path), _read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{source}: {img_path} has shape {images.shape} and {lbl_path} {labels.shape}; "
                        "expected (N, H, W) and (N,)")
    fashion = "fashion" in os.path.abspath(directory).lower()
    if opts.get("class_names") is None and opts.get("label_map") is None:
        opts["class_names"] = FASHION_MNIST_CLASSES if fashion else tuple(str(i) for i in range(10))
    name = "fashion_mnist" if fashion else os.path.basename(os.path.normpath(directory))
    return _from_arrays(images, labels, name, split, source=source, **opts)


def _tfds_default_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _tfds_fashion_mnist(data_dir: str | None) -> str | None:
    """The TFDS data directory holding a prepared Fashion-MNIST (an interrupted download has no dataset_info.json)."""
    root = data_dir or _tfds_default_dir()
    folder = os.path.join(root, "fashion_mnist")
    prepared = os.path.isdir(folder) and any(
        os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder))
    return root if prepared else None


# ----------------------------------------------------------------------------------------- npz
def _load_npz(path, split, source, **opts):
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(f"{source}: no such file {path}; expected a .npz of arrays")
    try:
        arrays = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{source}: cannot read {path} as a .npz file ({exc})") from None
    keys = set(arrays.files)
    base, _ = parse_split(split)
    candidates = [
        (f"x_{base}", f"y_{base}"),
        (f"{base}_images", f"{base}_labels"),
        (f"{base}_images", f"{base}_masks"),
        (f"images_{base}", f"labels_{base}"),
    ]
    for x_key, y_key in candidates:
        if x_key in keys and y_key in keys:
            break
    else:
        if {"images", "labels"} <= keys or {"images", "masks"} <= keys:
            x_key, y_key = "images", "labels" if "labels" in keys else "masks"
        else:
            raise DataError(
                f"{source}: no arrays for split {base!r} in {path} (keys: {sorted(keys)}); expected "
                f"x_{base}/y_{base}, {base}_images/{base}_labels (or _masks), or images/labels"
            )

    def array(key):
        try:
            return arrays[key]
        except ValueError as exc:  # object arrays (strings, lists) need pickle, which is not allowed
            raise DataError(
                f"{source}: key {key!r} of {path} is an object array ({exc}); expected numbers: uint8 or float "
                "pixels for images, integer class ids for labels (strings must be numbered first)"
            ) from None

    if opts.get("class_names") is None and "class_names" in keys:
        opts["class_names"] = tuple(str(c) for c in array("class_names"))
    name = os.path.splitext(os.path.basename(path))[0]
    return _from_arrays(array(x_key), array(y_key), name, split, source=f"{source} key {x_key!r}",
                        label_where=f"{source} key {y_key!r}", **opts)  # fmt: skip


# -------------------------------------------------------------------------------- folder trees
def _load_folder(path, split, source, *, on_error, ignore_label, label_map, num_classes, class_names,
                 pixel_limit=None, stream_above=None):  # fmt: skip
    base, spec = parse_split(split)
    tree = _files.Tree(path)
    limit = _decode.max_image_pixels(pixel_limit)
    listing = _files.list_folder(tree, base, source)
    idx = slice_indices(len(listing.rels), spec, split)
    names = [listing.names[i] for i in idx]
    labels = _classes.remap(listing.labels[idx].astype(np.int64), label_map)
    names_out = class_names if class_names is not None else (None if label_map else listing.class_names)
    if names_out is not None or num_classes:
        n_cls = _classes.classes_for(labels, num_classes, names_out, source)
    else:
        n_cls = int(labels.max(initial=-1)) + 1
    _classes.check_labels(labels, n_cls, source, lambda i: names[i])
    refs = tree.refs([listing.rels[i] for i in idx])
    if not tree.is_zip and len(refs) > _headers.stream_above(stream_above):
        table, channels, shapes, skipped = _stream_table(refs, names, labels, on_error, limit)
    else:
        table, channels, shapes, skipped = _decoded_table(tree, refs, names, labels, on_error, limit)
    info = SourceInfo(
        name=os.path.splitext(os.path.basename(tree.path))[0], task="classification", num_classes=n_cls,
        class_names=_classes.names_for(names_out, n_cls), channels=channels,
        image_shape=uniform_shape(shapes, channels), num_examples=table.num_examples,
        skipped=len(skipped), skipped_files=tuple(skipped), ignored=tuple(listing.ignored), source=source,
        split=split, label_map=dict(label_map) if label_map else None,
    )  # fmt: skip
    warn_ignored(listing.ignored, source)
    return attach_info(table.dataset(), info.replace(table=table))


def _decoded_table(tree, refs, names, labels, on_error, limit):
    """Every file decoded and checked now, kept in memory when it fits (see :mod:`~keras_skipae.data.files`)."""
    result = _files.decode_pass(refs, tree.is_zip, limit=limit, label=f"decoding {len(refs)} images")
    skipped = _files.handle_failures(
        result,
        lambda i: (names[i], _decode.decode_error(refs[i], tree.is_zip, limit=limit) or "failed to decode"),
        on_error,
    )
    keep = np.flatnonzero(result.ok)
    channels = _files.choose_channels(result.image_shapes[keep]) if len(keep) else 3
    table = _files.build_table(result, keep, refs, labels, tree.is_zip, channels, "classification", limit=limit)
    return table, channels, result.image_shapes[keep], skipped


def _stream_table(refs, names, labels, on_error, limit):
    """A large folder: headers read now (sizes, channels, unusable files by name), pixels decoded as it is read."""
    shapes, problems = _headers.read_headers(refs, limit)
    bad = [i for i, p in enumerate(problems) if p is not None]
    if bad and on_error == "raise":
        more = f" ({len(bad) - 1} more unusable file(s))" if len(bad) > 1 else ""
        raise DataError(f"cannot read {names[bad[0]]}: {problems[bad[0]]}{more}; fix or remove the file, or load "
                        "with on_error='skip' to leave such files out (they are counted in ds.info.skipped)")
    skipped = [names[i] for i in bad]
    if skipped:
        warn(f"skipped {len(skipped)} unusable file(s) (on_error='skip'), e.g. {skipped[0]}")
    keep = np.flatnonzero(np.asarray([p is None for p in problems], dtype=bool))
    channels = _files.choose_channels(shapes[keep]) if len(keep) else 3
    hw = np.unique(shapes[keep][:, :2], axis=0)
    size = (int(hw[0, 0]), int(hw[0, 1])) if len(hw) == 1 else (None, None)
    decode = _files.lazy_decoder(False, channels, "classification", size=size, limit=limit)
    table = FileTable(refs[keep], np.asarray(labels, np.int32)[keep], "classification", decode, None)
    return table, channels, shapes[keep], skipped
