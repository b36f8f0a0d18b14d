"""In-memory sources: an ``(images, labels)`` tuple, a dict of arrays, and the arrays the IDX and npz files hold.

Pixels become uint8 (:func:`as_uint8_images`), labels or masks are checked
and counted over all of them, then the split is sliced (:func:`from_arrays`).
"""

from __future__ import annotations

import numpy as np

from . import classes as _classes
from .info import DataError, SourceInfo, attach_info
from .slices import parse_split, slice_indices
from .tables import MemoryTable


def from_dict(d: dict, split: str, **opts):
    if "images" not in d or ("labels" not in d and "masks" not in d):
        raise DataError(f"a dict source needs 'images' and 'labels' (or 'masks'); got keys {sorted(d)}")
    opts["class_names"] = opts.get("class_names") or d.get("class_names")
    return from_arrays(d["images"], d["masks"] if "masks" in d else d["labels"], "arrays", split, **opts)


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


def from_arrays(images, targets, name, split, *, ignore_label, label_map, num_classes, class_names, source=None,
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
