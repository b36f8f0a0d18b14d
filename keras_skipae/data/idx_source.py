"""``idx:[DIR]``: MNIST-format IDX files (``train-images-idx3-ubyte.gz`` and the rest).

``idx:`` with no folder reads Debian's ``dataset-fashion-mnist`` package
(the ``idx`` scheme's ``default_path`` in :mod:`~keras_skipae.data.schemes`), else a Fashion-MNIST
that TFDS has already prepared in its cache.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from .arrays import from_arrays
from .info import DataError
from .schemes import SCHEMES
from .slices import parse_split
from .tfds_source import load_tfds

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


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


def load_idx(directory, split, source, *, data_dir, **opts):
    base, spec = parse_split(split)
    if base not in ("train", "test"):
        raise DataError(f"{source}: IDX data has splits 'train' and 'test'; got {split!r}")
    if not directory:
        installed = SCHEMES["idx"].default_path  # read at call time: the registry is the one place it is set
        if os.path.isdir(installed):
            directory = installed
        else:
            cached = _tfds_fashion_mnist(data_dir)
            if cached is not None:
                        return load_tfds("fashion_mnist", split, source, data_dir=cached, download=False, **opts)
            raise DataError(
                f"{source}: no Fashion-MNIST found: {installed} does not exist and no prepared "
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
    return from_arrays(images, labels, name, split, source=source, **opts)


def _tfds_default_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _tfds_fashion_mnist(data_dir: str | None) -> str | None:
    """The TFDS data directory holding a prepared Fashion-MNIST (an interrupted download has no dataset_info.json)."""
    root = data_dir or _tfds_default_dir()
    folder = os.path.join(root, "fashion_mnist")
    prepared = os.path.isdir(folder) and any(
        os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder))
    return root if prepared else None
