"""What a loaded dataset is: :class:`SourceInfo`, and the one error type of the data package."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

TASKS = ("classification", "segmentation")


class DataError(ValueError):
    """A dataset could not be read as asked: the message names the file or key and the fix."""


@dataclass(frozen=True)
class SourceInfo:
    """Facts about a dataset returned by :func:`keras_skipae.data.load`, kept on ``ds.info``.

    ``image_shape`` is ``(height, width, channels)`` when every image has the same
    size and ``None`` when sizes vary. ``skipped`` counts unreadable files left out
    with ``on_error="skip"`` (their names are in ``skipped_files``); ``ignored``
    lists files in the tree that are not images (README, .txt lists), never read.
    Labels of ``-1`` mark examples without a label (e.g. STL-10's ``unlabelled``).

    For segmentation from files: ``mask_values`` counts the pixels of each value
    read from the mask files (``((value, pixels), ...)``; empty with a
    ``palette``), ``class_pixels`` the pixels of each class after ``palette``
    and ``label_map``; ``label_map`` is the remap applied (the one given, or
    ``{255: 1}`` detected for binary ``{0, 255}`` masks), ``palette`` the
    :class:`~keras_skipae.data.palette.Palette` used, ``notes`` what was decided
    for the user (shown by :func:`~keras_skipae.data.describe`).

    Example::

        ds = data.load("idx:")                  # Fashion-MNIST from Debian's package
        ds.info.num_classes, ds.info.image_shape   # (10, (28, 28, 1))
    """

    name: str
    task: str
    num_classes: int
    class_names: tuple
    channels: int
    image_shape: tuple | None
    num_examples: int | None
    ignore_label: int | None = None
    skipped: int = 0
    skipped_files: tuple = ()
    ignored: tuple = ()
    source: str = ""
    split: str = "train"
    mask_values: tuple = ()
    class_pixels: tuple = ()
    label_map: dict | None = field(default=None, hash=False)
    palette: Any = field(default=None, hash=False)
    notes: tuple = ()
    # (examples, per-channel mean, per-channel std) in [0, 1] units, computed when packing (packed: sources)
    pixel_stats: tuple | None = field(default=None, compare=False)
    # how to re-read any subset of the examples (used by data.split); not part of equality
    table: Any = field(default=None, repr=False, compare=False)

    def replace(self, **changes: Any) -> "SourceInfo":
        return dataclasses.replace(self, **changes)

    @property
    def in_memory(self) -> bool:
        """True when the decoded examples are held in memory (no need to cache them again)."""
        return bool(getattr(self.table, "in_memory", False))


def warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside the data package (the user's ``load`` call)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__package__ + "."):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level + 1)


def attach_info(ds, info: SourceInfo):
    """Set ``ds.info`` and return ``ds`` (tf.data datasets take plain attributes)."""
    ds.info = info
    return ds


def info_of(ds) -> SourceInfo | None:
    """The :class:`SourceInfo` of a dataset from :func:`load` or :func:`split`, else None."""
    return getattr(ds, "info", None) if isinstance(getattr(ds, "info", None), SourceInfo) else None
