"""``data.describe(ds)``: what :func:`~keras_skipae.data.load` found, for people (``skipae data SOURCE``).

The common lines (source, task, sizes, classes, skips, statistics) come from
:func:`keras_skipae.data.stats.describe`; this adds what a segmentation source
decided: the mask values read from the files with their share of pixels, the
value mapping applied (a binary ``{0, 255}`` mask read as ``{0, 1}``, a
``label_map``), the palette of colour-coded masks and the pixels per class.
"""

from __future__ import annotations

import tensorflow as tf

from . import stats as _stats
from .info import info_of

SHOWN = 16


def _shares(pairs: tuple, names: tuple = (), ignore_label=None) -> str:
    total = sum(c for _, c in pairs) or 1
    parts = []
    for value, count in pairs[:SHOWN]:
        label = str(value)
        if value == ignore_label:
            label += " ignore"
        elif names and 0 <= value < len(names) and names[value] != str(value):
            label += f" {names[value]}"
        parts.append(f"{label} ({100 * count / total:.1f}%)")
    more = f", ... ({len(pairs)} in all)" if len(pairs) > SHOWN else ""
    return ", ".join(parts) + more


def mask_lines(info) -> list[str]:
    """Lines about the masks of a segmentation source from files or arrays; none otherwise."""
    lines = []
    if info.palette is not None:
        lines.append(f"palette:  {len(info.palette.colours)} colours ({info.palette.origin}): {info.palette.summary()}")
    mapped = bool(info.label_map) or info.palette is not None
    if info.mask_values:
        shown = (info.mask_values,) if mapped else (info.mask_values, info.class_names, info.ignore_label)
        lines.append("mask values (pixels): " + _shares(*shown))
    if info.label_map:
        lines.append("label_map: " + ", ".join(f"{k} -> {v}" for k, v in sorted(info.label_map.items())))
    if info.class_pixels and mapped:
        lines.append("classes (pixels): " + _shares(info.class_pixels, info.class_names, info.ignore_label))
    lines += [f"note:     {note}" for note in info.notes]
    return lines


def describe(ds: tf.data.Dataset, *, stats: bool = False) -> str:
    """A few lines about a dataset from :func:`load`: source, task, sizes, classes, masks, skips.

    ``stats=True`` adds the per-channel mean and std (a full pass over the images).

    Example::

        print(data.describe(data.load("segfolder:DRIVE", "training", images="{split}/images/{stem}_{split}.tif",
                                      masks="{split}/1st_manual/{stem}_manual1.gif")))
        # ... mask values (pixels): 0 (87.4%), 255 (12.6%)
        # label_map: 255 -> 1
        # note:     binary masks: values {0, 255} read as classes {0, 1} (label_map={255: 1})
    """
    text = _stats.describe(ds, stats=stats)
    info = info_of(ds)
    extra = mask_lines(info) if info is not None and info.task == "segmentation" else []
    if not extra:
        return text
    lines = text.split("\n")
    at = next((i for i, line in enumerate(lines) if line.startswith(("mean:", "std:"))), len(lines))
    return "\n".join(lines[:at] + extra + lines[at:])
