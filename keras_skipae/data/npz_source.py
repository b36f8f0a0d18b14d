"""``npz:PATH``: a NumPy ``.npz`` file of arrays (``x_train``/``y_train``, ``train_images``/``train_labels``, ...)."""

from __future__ import annotations

import os

import numpy as np

from .arrays import from_arrays
from .info import DataError
from .slices import parse_split


def load_npz(path, split, source, **opts):
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
    return from_arrays(array(x_key), array(y_key), name, split, source=f"{source} key {x_key!r}",
                        label_where=f"{source} key {y_key!r}", **opts)  # fmt: skip
