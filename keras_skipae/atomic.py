"""Atomic file writes: a reader (or a crash) never sees a partial file.

Every JSON, YAML or text file the package writes into a run directory or an
export goes through here: the content is written to a temporary file beside
the destination, flushed to disk, then renamed over it (``os.replace``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (numpy scalars and arrays become JSON)."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
