"""Colour-coded masks (CamVid, Cityscapes): ``palette=`` maps each RGB colour to a class.

A palette is given as

- a dict ``{(128, 64, 128): 0, ...}``; keys may also be ``"#804080"`` or
  ``"128,64,128"`` strings (what a YAML recipe can hold);
- a list of colours ``[(128, 128, 128), (128, 0, 0), ...]``: class = position;
- a path to a palette file: an image whose pixels, row by row, are the
  colours of classes 0, 1, 2, ... (CamVid's ``palette.png``, a 256x1 strip),
  or a text file with one ``R G B [name]`` line per class (``#`` comments;
  commas work too). Names become the class names.

In a list or a file the first occurrence of a colour wins, so a strip padded
with black after the last class reads as it should. Every mask pixel must have
a colour of the palette: another colour stops :func:`~keras_skipae.data.load`
with the file, the colour and its pixel count.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .decode import max_image_pixels, pillow_pixels
from .info import DataError

_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".lst", "")


@dataclass(frozen=True)
class Palette:
    """Colour -> class, as read by :func:`read_palette`."""

    colours: tuple  # ((r, g, b), ...)
    classes: tuple  # the class of each colour
    names: tuple | None = None  # class names, from a text palette
    origin: str = "palette"

    def mapping(self) -> dict:
        return dict(zip(self.colours, self.classes))

    def table(self) -> tf.lookup.StaticHashTable:
        keys = tf.constant([colour_key(c) for c in self.colours], tf.int64)
        values = tf.constant(self.classes, tf.int64)
        return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

    def summary(self, limit: int = 12) -> str:
        shown = [f"{_hex(c)}->{k}" + (f" {self.names[k]}" if self.names and k < len(self.names) else "")
                 for c, k in list(zip(self.colours, self.classes))[:limit]]  # fmt: skip
        more = f", ... ({len(self.colours)} colours)" if len(self.colours) > limit else ""
        return ", ".join(shown) + more


def colour_key(rgb) -> int:
    r, g, b = (int(v) for v in rgb)
    return (r << 16) | (g << 8) | b


def colour_of(key: int) -> tuple:
    return ((key >> 16) & 255, (key >> 8) & 255, key & 255)


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def describe_colour(key: int) -> str:
    rgb = colour_of(int(key))
    return f"RGB {rgb} ({_hex(rgb)})"


def _parse_colour(value, where: str) -> tuple:
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"#?[0-9a-fA-F]{6}", text):
            text = text.lstrip("#")
            return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))
        parts = [p for p in re.split(r"[\s,;()]+", text) if p]
    else:
        parts = list(value) if isinstance(value, (tuple, list, np.ndarray)) else [value]
    try:
        rgb = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise DataError(f"palette {where}: cannot read colour {value!r}; expected (R, G, B) with values 0..255 or '#rrggbb'")
    return rgb


def _from_pairs(pairs, origin: str, names=None) -> Palette:
    colours, classes, seen = [], [], {}
    for colour, cls in pairs:
        if colour in seen:
            continue  # the first occurrence wins (strips padded with a repeated colour)
        if not 0 <= int(cls) <= 255:
            raise DataError(f"palette {origin}: class {cls} of colour {colour}; mask classes must be 0..255")
        seen[colour] = int(cls)
        colours.append(colour)
        classes.append(int(cls))
    if not colours:
        raise DataError(f"palette {origin} holds no colours")
    return Palette(tuple(colours), tuple(classes), tuple(names) if names else None, origin)


def read_palette(spec) -> Palette:
    """A :class:`Palette` from a dict, a list of colours or a palette file (see the module docstring)."""
    if isinstance(spec, Palette):
        return spec
    if isinstance(spec, dict):
        pairs = []
        for key, cls in spec.items():
            colour = _parse_colour(key, "dict")
            try:
                pairs.append((colour, int(cls)))
            except (TypeError, ValueError):
                raise DataError(f"palette dict: class {cls!r} of colour {key!r} is not an int") from None
        mapping: dict = {}
        for colour, cls in pairs:
            if mapping.setdefault(colour, cls) != cls:
                raise DataError(f"palette dict: colour {colour} is given twice, as classes {mapping[colour]} and {cls}")
        return _from_pairs(pairs, "dict")
    if isinstance(spec, (list, tuple)):
        return _from_pairs([(_parse_colour(c, "list"), i) for i, c in enumerate(spec)], "list")
    if isinstance(spec, (str, os.PathLike)):
        return _read_palette_file(os.fspath(spec))
    raise DataError(f"palette={spec!r}; expected a dict colour -> class, a list of colours or a palette file path")


def _read_palette_file(path: str) -> Palette:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(f"palette file {path} does not exist; expected an image strip of class colours or a text file")
    origin = os.path.basename(path)
    if os.path.splitext(path)[1].lower() in _TEXT_SUFFIXES:
        return _read_palette_text(path, origin)
    with open(path, "rb") as f:
        data = f.read()
    try:
        pixels = pillow_pixels(data, limit=max_image_pixels())
    except ValueError as exc:
        raise DataError(f"palette file {path}: {exc}") from None
    if pixels.shape[-1] < 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    rgb = pixels[..., :3].reshape(-1, 3)
    return _from_pairs([(tuple(int(v) for v in c), i) for i, c in enumerate(rgb)], origin)


def _read_palette_text(path: str, origin: str) -> Palette:
    pairs, names = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if not text:
                continue
            fields = [p for p in re.split(r"[\s,;]+", text) if p]
            try:
                rgb = tuple(int(p) for p in fields[:3])
            except ValueError:
                if not pairs and not names:
                    continue  # a header line ("r g b name")
                rgb = ()
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise DataError(f"palette file {path}, line {number}: {line.strip()!r}; expected 'R G B [name]'")
            pairs.append((rgb, len(pairs)))
            names.append(" ".join(fields[3:]) or str(len(names)))
    return _from_pairs(pairs, origin, names if any(n != str(i) for i, n in enumerate(names)) else None)


def map_colours(raw: tf.Tensor, table: tf.lookup.StaticHashTable):
    """Mask colours ``[H, W, C]`` -> (classes uint8 ``[H, W]``, unknown pixel count, first unknown colour key or -1)."""
    rgb = tf.cast(raw, tf.int64)
    rgb = tf.cond(tf.shape(rgb)[-1] < 3, lambda: tf.repeat(rgb[..., :1], 3, axis=-1), lambda: rgb[..., :3])
    keys = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    classes = table.lookup(keys)
    unknown = classes < 0
    count = tf.reduce_sum(tf.cast(unknown, tf.int64))
    flat_unknown = tf.reshape(unknown, [-1])
    first = tf.argmax(tf.cast(flat_unknown, tf.int32), output_type=tf.int64)
    first_key = tf.where(count > 0, tf.reshape(keys, [-1])[first], tf.constant(-1, tf.int64))
    return tf.cast(tf.where(unknown, tf.zeros_like(classes), classes), tf.uint8), count, first_key
