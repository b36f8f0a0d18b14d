"""Class ids of labels and masks: what counts as one, how many classes, and the fixes to offer.

Labels and mask values must be integer class ids ``0..num_classes-1`` (``-1``:
no label; masks may also hold the ``ignore_label``). What is not is refused
with a message that says what was found and what to pass, never read wrongly:

- float labels that are not whole numbers (``0.7``), strings, one-hot rows;
- values that would make mostly empty classes (``{0, 1000, 2000}`` would be
  2001 classes): when more than half of the implied classes never occur, and
  at least 32 of them, ``label_map=`` (given in the message) or an explicit
  ``num_classes=`` is required;
- binary masks written as ``{0, 255}`` (DRIVE vessels, most foreground masks)
  are read as classes ``{0, 1}`` with a warning naming the ``label_map`` that
  says so explicitly (and silences it); they never become 256 classes.
"""

from __future__ import annotations

import numpy as np

from .info import DataError, warn

#: Refuse values that leave more than half of the implied classes empty, and at least this many.
SPARSE_MIN_MISSING = 32
BINARY_MAP = {255: 1}


# ----------------------------------------------------------------------------------- labels
def label_ids(targets: np.ndarray, where: str, what: str = "labels") -> np.ndarray:
    """``targets`` as int64 class ids, refusing strings, non-finite and non-integral values."""
    dtype_code = targets.dtype.kind
    if dtype_code in "USO":
        sample = ", ".join(repr(str(v)) for v in np.unique(targets.reshape(-1)[:1000].astype(str))[:5])
        raise DataError(
            f"{where}: {what} are strings (e.g. {sample}); expected integer class ids 0..K-1. Number the "
            "names first, e.g. class_names = sorted(set(names)); ids = [class_names.index(n) for n in names], "
            "and pass class_names= to keep the names"
        )
    if dtype_code == "b":
        return targets.astype(np.int64)
    if dtype_code == "f":
        finite = np.isfinite(targets)
        if not finite.all():
            raise DataError(f"{where}: {int((~finite).sum())} {what} are NaN or infinite; expected integer class ids")
        fractional = targets != np.round(targets)
        if fractional.any():
            shown = ", ".join(f"{v:g}" for v in np.unique(targets[fractional])[:5])
            raise DataError(
                f"{where}: {int(fractional.sum())} {what} are not whole numbers (e.g. {shown}); expected integer "
                "class ids. Rounding or truncating would change classes silently: fix the values first"
            )
        return targets.astype(np.int64)
    if dtype_code in "iu":
        return targets.astype(np.int64)
    raise DataError(f"{where}: {what} of dtype {targets.dtype}; expected integer class ids")


def refuse_one_hot(targets: np.ndarray, where: str) -> None:
    """A (N, K) label array: say whether it is one-hot, and what to pass instead."""
    values = np.unique(targets)
    one_hot = np.isin(values, (0, 1)).all() and np.all(targets.sum(axis=1) == 1)
    if one_hot:
        raise DataError(
            f"{where}: labels of shape {targets.shape} are one-hot rows; expected one integer class id per "
            "image, shape (N,): pass labels.argmax(axis=1)"
        )
    raise DataError(
        f"{where}: labels of shape {targets.shape}; expected one integer class id per image, shape (N,) "
        "(or masks (N, H, W) for segmentation)"
    )


def remap(values: np.ndarray, label_map: dict | None) -> np.ndarray:
    if not label_map:
        return values
    out = values.copy()
    for old, new in label_map.items():
        out[values == int(old)] = int(new)
    return out


def names_for(class_names, n: int) -> tuple:
    if class_names is None:
        return tuple(str(i) for i in range(n))
    return tuple(str(c) for c in class_names)


def classes_for(labels: np.ndarray, num_classes, class_names, where: str) -> int:
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise DataError(f"{where}: {len(class_names)} class_names but num_classes={num_classes}; give matching values")
    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        else:
            refuse_sparse(np.unique(labels[labels >= 0]), where, "labels")
            num_classes = int(labels.max(initial=-1)) + 1
    return max(int(num_classes), 1)


def check_labels(labels: np.ndarray, num_classes: int, where: str, locate) -> None:
    bad = np.flatnonzero((labels >= num_classes) | (labels < -1))
    if len(bad):
        i = bad[0]
        raise DataError(
            f"{where}: label {labels[i]} of {locate(i)} is outside [0, {num_classes}) "
            f"({len(bad)} such label(s)); fix the labels, pass num_classes=, or remap with label_map="
        )


def refuse_sparse(values: np.ndarray, where: str, what: str, ignore_label=None) -> None:
    """Refuse class ids that leave most implied classes empty (``{0, 1000, 2000}``), offering the label_map."""
    values = np.asarray([int(v) for v in values if v != ignore_label and v >= 0])
    if not len(values):
        return
    implied = int(values.max()) + 1
    missing = implied - len(values)
    if missing < SPARSE_MIN_MISSING or missing <= len(values):
        return
    shown = ", ".join(str(v) for v in values[:20]) + (f", ... ({len(values)} in all)" if len(values) > 20 else "")
    mapping = ", ".join(f"{v}: {i}" for i, v in enumerate(values[:20]))
    more = ", ..." if len(values) > 20 else ""
    top = int(values.max())
    hint = f"; if {top} marks pixels to score nothing, pass ignore_label={top}" if what == "mask values" else ""
    raise DataError(
        f"{where}: {what} take {len(values)} distinct values ({shown}); read as class ids that is {implied} "
        f"classes, {missing} of them never seen. Number them with label_map={{{mapping}{more}}}, or pass "
        f"num_classes={implied} if they really are class ids{hint}"
    )


# ------------------------------------------------------------------------------------ masks
def mask_lut(label_map: dict | None) -> np.ndarray | None:
    """A 256-entry lookup table for ``label_map`` over uint8 mask values, None without a map."""
    if not label_map:
        return None
    lut = np.arange(256, dtype=np.int64)
    for old, new in label_map.items():
        if not 0 <= int(old) < 256:
            raise DataError(f"label_map key {old!r}: mask files hold values 0..255")
        lut[int(old)] = int(new)
    return lut


def binary_mask_map(present: np.ndarray, *, label_map, palette, ignore_label, num_classes, where: str) -> dict | None:
    """``{255: 1}`` when the masks hold exactly 0 and 255 (and nothing says how to read them), else None.

    Warns once, naming the ``label_map`` that makes the choice explicit.
    """
    values = {int(v) for v in present}
    if label_map or palette is not None or ignore_label == 255 or num_classes not in (None, 2):
        return None
    if 255 not in values or not values <= {0, 255}:
        return None
    warn(
        f"{where}: binary masks with values {{0, 255}} are read as classes {{0, 1}}; pass label_map={{255: 1}} "
        "to say so (and silence this), or ignore_label=255 if 255 marks pixels to score nothing"
    )
    return dict(BINARY_MAP)


def seg_classes(values: np.ndarray, num_classes, ignore_label, class_names, where, palette=None) -> int:
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    if num_classes is None and palette is not None:
        declared = [c for c in palette.classes if c != ignore_label]
        num_classes = max(declared, default=-1) + 1
    if num_classes is None:
        refuse_sparse(values, where, "mask values", ignore_label)
        real = values[values != ignore_label] if ignore_label is not None else values
        num_classes = int(real.max(initial=-1)) + 1
    return max(int(num_classes), 1)


def check_mask_values(values: np.ndarray, num_classes: int, ignore_label, where: str, file: str | None = None) -> None:
    bad = [int(v) for v in values if (v < 0 or v >= num_classes) and v != ignore_label]
    if bad:
        loc = f"mask {file}" if file else where
        raise DataError(
            f"{loc}: label value {bad[0]} is outside [0, {num_classes}) and is not the ignore label "
            f"({ignore_label}); all bad values: {bad[:10]}; pass ignore_label=, num_classes= or remap with label_map="
        )
