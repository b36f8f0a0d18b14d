"""TFDS-style split slicing for every file source: ``train``, ``train[:90%]``, ``test[10:20]``."""

from __future__ import annotations

import re

import numpy as np

from .info import DataError

_SPLIT_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[\s*([^\]]*)\s*\])?\s*$")


def parse_split(split: str) -> tuple[str, str | None]:
    """``"train[:90%]"`` -> ``("train", ":90%")``."""
    m = _SPLIT_RE.match(split or "")
    if not m:
        raise DataError(f"cannot read split {split!r}; expected a name with optional slicing, e.g. 'train' or 'train[:90%]'")
    return m.group(1), m.group(2)


def slice_indices(n: int, spec: str | None, split: str) -> np.ndarray:
    """Indices of ``range(n)`` selected by a TFDS-style slice like ``":90%"`` or ``"100:-100"``."""
    if spec is None:
        return np.arange(n)
    parts = spec.split(":")
    if len(parts) != 2:
        raise DataError(f"cannot read the slice in split {split!r}; expected [start:stop] with ints or percentages")

    def bound(text: str):
        text = text.strip()
        if not text:
            return None
        try:
            if text.endswith("%"):
                return int(round(n * float(text[:-1]) / 100.0))
            return int(text)
        except ValueError:
            raise DataError(f"cannot read {text!r} in split {split!r}; expected an int or a percentage like 90%") from None

    return np.arange(n)[slice(bound(parts[0]), bound(parts[1]))]


# ----------------------------------------------------------------------------------- in memory
