"""Write small datasets in every on-disk layout :func:`~keras_skipae.data.load` reads.

For tests and examples (like ``tfds.testing``): image trees (PNG/JPEG and any
format Pillow writes, as a folder or a zip), segmentation folders in CamVid's
layout (index or colour-coded masks), DRIVE's layout (TIFF images, GIF masks
with vessels = 255), pair lists and MNIST-format IDX files. Images are random
but seeded; each class has its own mean colour, so a classifier can learn them.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib

import numpy as np
import tensorflow as tf


def random_images(n: int, size=(16, 16), channels: int = 3, labels=None, seed: int = 0) -> np.ndarray:
    """``n`` uint8 images; with ``labels`` the brightness follows the class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 64, size=(n, *size, channels), dtype=np.int64)
    if labels is not None:
        images += (np.asarray(labels).reshape(-1, 1, 1, 1) * 17) % 192
    return images.astype(np.uint8)


#: Pillow's format names for the file endings :func:`encode` writes with Pillow.
PILLOW_FORMATS = {"tif": "TIFF", "tiff": "TIFF", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}


def encode(image: np.ndarray, fmt: str) -> bytes:
    """Encoded bytes of a uint8 (or, for png/tif, uint16) ``(H, W, C)`` or ``(H, W)`` array.

    ``fmt``: ``png`` and ``jpg`` (TensorFlow), ``tif``, ``webp`` (lossless), ``gif``
    and ``bmp`` (Pillow).
    """
    if fmt == "png":
        return tf.io.encode_png(image if image.ndim == 3 else image[..., None]).numpy()
    if fmt in ("jpg", "jpeg"):
        return tf.io.encode_jpeg(image if image.ndim == 3 else image[..., None], quality=95).numpy()
    if fmt in PILLOW_FORMATS:
        from PIL import Image

        array = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        buffer = io.BytesIO()
        options = {"lossless": True} if fmt == "webp" else {}
        Image.fromarray(array).save(buffer, PILLOW_FORMATS[fmt], **options)
        return buffer.getvalue()
    raise ValueError(f"unknown image format {fmt!r}; expected png, jpg, {', '.join(PILLOW_FORMATS)}")


def blank_png(width: int, height: int) -> bytes:
    """A valid grey PNG of any size holding zeros, written row by row: a 20000x20000 one is 0.4 MB
    on disk and 400 MB decoded (what the pixel limit is for)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_folder_tree(
    root: str,
    per_class: dict | int = 4,
    classes=("cat", "dog", "frog"),
    size=(16, 16),
    channels: int = 3,
    fmt: str = "png",
    as_zip: bool = False,
    seed: int = 0,
) -> str:
    """Write ``<split>/<class>/<i>.<fmt>`` under ``root`` (or into ``root + '.zip'``); returns the path.

    ``per_class`` is an int (train split only) or ``{split: images per class}``.

    Example::

        path = write_folder_tree(tmp_path / "tree", {"train": 5, "test": 2})
        ds = data.load(f"folder:{path}", "test")
    """
    splits = per_class if isinstance(per_class, dict) else {"train": per_class}
    files = {}
    k = 0
    for split, n in splits.items():
        for c, cls in enumerate(classes):
            images = random_images(n, size, channels, labels=[c] * n, seed=seed + k)
            k += 1
            for i, image in enumerate(images):
                files[f"{split}/{cls}/{i:04d}.{fmt}"] = encode(image, fmt)
    return _write(str(root), files, as_zip)


def write_segfolder(
    root: str,
    splits: dict | int = 4,
    size=(24, 32),
    num_classes: int = 4,
    ignore_label: int | None = None,
    channels: int = 3,
    fmt: str = "png",
    seed: int = 0,
) -> str:
    """Write CamVid-style ``<split>/<name>.<fmt>`` images and ``<split>annot/<name>.png`` masks.

    Masks hold classes ``0..num_classes-1`` in vertical bands, plus an
    ``ignore_label`` border when given; the image's brightness follows its mask.
    """
    counts = splits if isinstance(splits, dict) else {"train": splits}
    rng = np.random.default_rng(seed)
    files = {}
    h, w = size
    for split, n in counts.items():
        for i in range(n):
            offset = rng.integers(0, w)
            mask = ((np.arange(w)[None, :] + offset) * num_classes // w % num_classes).repeat(h, axis=0)
            if ignore_label is not None:
                mask[0, :] = ignore_label
            image = random_images(1, size, channels, seed=seed + i)[0]
            image = np.clip(image.astype(int) + (mask[..., None] * 40), 0, 255).astype(np.uint8)
            files[f"{split}/f{i:04d}.{fmt}"] = encode(image, fmt)
            files[f"{split}annot/f{i:04d}.png"] = encode(mask.astype(np.uint8), "png")
    return _write(str(root), files, as_zip=False)


def write_colour_segfolder(
    root: str, palette: dict, splits: dict | int = 3, size=(12, 16), unknown: tuple | None = None, seed: int = 0
) -> str:
    """CamVid-style ``<split>/`` images and ``<split>annot/`` RGB masks coloured by ``palette`` (colour -> class).

    ``unknown``: paint one pixel of the last mask of each split in this colour (not in the palette).
    """
    counts = splits if isinstance(splits, dict) else {"train": splits}
    colours = list(palette)
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in counts.items():
        for i in range(n):
            pick = rng.integers(0, len(colours), size=size)
            mask = np.asarray(colours, np.uint8)[pick]
            if unknown is not None and i == n - 1:
                mask[0, 0] = unknown
            files[f"{split}/f{i:04d}.png"] = encode(random_images(1, size, 3, seed=seed + i)[0], "png")
            files[f"{split}annot/f{i:04d}.png"] = encode(mask, "png")
    return _write(str(root), files, as_zip=False)


def write_drive(root: str, splits: dict | None = None, size=(24, 28), seed: int = 0) -> str:
    """The DRIVE retinal-vessel layout as distributed: ``training/images/21_training.tif`` (RGB TIFF),
    ``training/1st_manual/21_manual1.gif`` (vessels 255, background 0) and ``training/mask/21_training_mask.gif``
    (the field of view); ``test`` numbers its images from 01.

    ``splits``: images per split, default ``{"training": 4, "test": 2}``.
    """
    counts = splits or {"training": 4, "test": 2}
    rng = np.random.default_rng(seed)
    h, w = size
    files = {}
    for split, n in counts.items():
        first = 21 if split == "training" else 1
        for k in range(first, first + n):
            vessels = np.zeros(size, np.uint8)
            for _ in range(3):  # a few straight "vessels", 2 pixels wide
                if rng.random() < 0.5:
                    r = rng.integers(0, h - 2)
                    vessels[r : r + 2, :] = 255
                else:
                    c = rng.integers(0, w - 2)
                    vessels[:, c : c + 2] = 255
            image = random_images(1, size, 3, seed=seed + k)[0].astype(np.int64) + 150
            image[vessels > 0] -= 120  # vessels are dark
            fov = np.full(size, 255, np.uint8)
            fov[0, :] = fov[-1, :] = 0
            files[f"{split}/images/{k:02d}_{split}.tif"] = encode(np.clip(image, 0, 255).astype(np.uint8), "tif")
            files[f"{split}/1st_manual/{k:02d}_manual1.gif"] = encode(vessels, "gif")
            files[f"{split}/mask/{k:02d}_{split}_mask.gif"] = encode(fov, "gif")
    return _write(str(root), files, as_zip=False)


def write_pair_list(path: str, pairs, sep: str = " ") -> str:
    """Write ``image<sep>mask`` lines (a ``.csv`` gets an ``image,mask`` header); returns ``path``."""
    path = str(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    csv = path.endswith(".csv")
    lines = (["image,mask"] if csv else []) + [("," if csv else sep).join(map(str, pair)) for pair in pairs]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_idx(directory: str, images: np.ndarray, labels: np.ndarray, prefix: str = "train", gz: bool = True) -> str:
    """Write ``{prefix}-images-idx3-ubyte[.gz]`` and ``{prefix}-labels-idx1-ubyte[.gz]`` (MNIST format)."""
    os.makedirs(directory, exist_ok=True)
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels, np.uint8)
    ext = ".gz" if gz else ""
    opener = gzip.open if gz else open
    with opener(os.path.join(directory, f"{prefix}-images-idx3-ubyte{ext}"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    with opener(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{ext}"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())
    return str(directory)


def _write(root: str, files: dict, as_zip: bool) -> str:
    if as_zip:
        path = root if root.endswith(".zip") else root + ".zip"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, content in files.items():
                zf.writestr(name, content)
        return path
    for name, content in files.items():
        full = os.path.join(root, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)
    return root
