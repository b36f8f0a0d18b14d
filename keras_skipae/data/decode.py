"""One image or mask file -> uint8 pixels: TensorFlow's decoders where they are exact, Pillow for the rest.

Which decoder reads a file is decided from its first bytes, inside the tf.data
graph, so a dataset of PNGs or JPEGs keeps TensorFlow's fast parallel decoding:

- **images**: PNG (8 and 16 bit), JPEG and 24/32-bit BMP are decoded by
  TensorFlow; GIF, TIFF, WebP, 8-bit BMP and every other format Pillow reads go
  through Pillow (a ``tf.numpy_function``; Pillow decodes without the GIL).
- **masks**: 8-bit grey or RGB PNG, JPEG and 24/32-bit BMP by TensorFlow; palette
  PNGs, 16-bit PNGs, GIF, TIFF and the rest by Pillow, which returns the stored
  values: a palette index (Pascal VOC: the index is the class), or the grey level
  when the palette is all grey (a GIF saved from a grey image).

**16-bit images** become 8-bit by keeping the high byte (``value >> 8``, i.e.
``value // 256``): that is what TensorFlow's PNG decoder does, so a 16-bit file
gives the same pixels whichever decoder reads it, and an 8-bit image widened to
16 bits (``v * 257``) comes back exactly. Masks are never scaled: a 16-bit mask
must hold class ids 0..255.

**Pixel limit**: a file whose header says it holds more than
:func:`max_image_pixels` pixels (default 64 megapixels, e.g. 8000x8000;
``SKIPAE_MAX_IMAGE_PIXELS`` or ``data.load(max_image_pixels=)``) is refused
before it is decoded: a 1 MB PNG can decode to gigabytes.

A file with several frames (an animated GIF or PNG, a multi-page TIFF) is
refused: which frame is meant is not known.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import tensorflow as tf

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
_PNG_MAGIC = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
_HEAD = 32  # bytes of header the router reads
_APNG_SCAN = 65536  # an animated PNG's acTL chunk comes before its image data


def count_setting(value, name: str, env: str, default: int, unit: str, example: int, minimum: int) -> int:
    """A count given as ``value``, else read from the environment variable ``env``, else ``default``."""
    if value is None:
        text = os.environ.get(env, "").strip()
        try:
            value = int(float(text)) if text else default
        except ValueError:
            raise ValueError(f"{env}={text!r}; expected a number of {unit}, e.g. {example}") from None
    if int(value) < minimum:
        raise ValueError(f"{name}={value!r}; expected a number of {unit} >= {minimum}")
    return int(value)


def max_image_pixels(override: int | None = None) -> int:
    """The pixel limit: ``override``, else ``SKIPAE_MAX_IMAGE_PIXELS``, else 64 megapixels."""
    return count_setting(override, "max_image_pixels", "SKIPAE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS,
                         "pixels", 100000000, minimum=1)  # fmt: skip


def too_large(width: int, height: int, limit: int) -> str:
    return (
        f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the pixel limit of "
        f"{limit / 1e6:g} megapixels; if it is meant to be that large, raise the limit with "
        "SKIPAE_MAX_IMAGE_PIXELS=<pixels> or data.load(..., max_image_pixels=<pixels>)"
    )


# ------------------------------------------------------------------------------- routing (graph)
# numpy, not tf.constant: an eager tensor made at import would start TensorFlow's runtime before a
# multi-worker strategy can configure its collectives
_BE32 = np.array([2**24, 2**16, 2**8, 1], np.int64)
_LE32 = np.array([1, 2**8, 2**16, 2**24], np.int64)


@tf.autograph.experimental.do_not_convert
def probe(data: tf.Tensor) -> dict:
    """What the first bytes of each file in ``data`` (a string tensor of any shape) say.

    A handful of vectorised ops: the checking pass runs it on batches of files.
    ``image``/``mask``: TensorFlow decodes the file exactly as an image / a mask;
    ``jpeg``: it is a JPEG (its size is read by ``extract_jpeg_shape``);
    ``hw``: ``[..., 2]`` (height, width) of a PNG or BMP from its header.
    """
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 0, _HEAD), tf.uint8, fixed_length=_HEAD), tf.int64)
    words = tf.reduce_sum(tf.reshape(head, tf.concat([tf.shape(data), [8, 4]], 0)) * _BE32, axis=-1)  # big-endian
    png = (words[..., 0] == 0x89504E47) & (words[..., 1] == 0x0D0A1A0A)
    length = tf.where(png, _APNG_SCAN, 0)
    scan = tf.strings.substr(data, tf.zeros_like(length), length)  # an APNG's acTL chunk precedes its image data
    png &= tf.strings.length(tf.strings.regex_replace(scan, "acTL", "")) == tf.strings.length(scan)
    jpeg = (words[..., 0] // 256) == 0xFFD8FF
    bmp_bits = head[..., 28] + 256 * head[..., 29]
    bmp = ((words[..., 0] // 65536) == 0x424D) & ((bmp_bits == 24) | (bmp_bits == 32))
    bmp_wh = tf.reduce_sum(tf.reshape(head[..., 18:26], tf.concat([tf.shape(data), [2, 4]], 0)) * _LE32, axis=-1)
    bmp_hw = tf.abs(tf.where(bmp_wh >= 2**31, bmp_wh - 2**32, bmp_wh))[..., ::-1]  # signed; height < 0: top-down
    png_hw = tf.stack([words[..., 5], words[..., 4]], axis=-1)
    plain_png = png & (head[..., 24] <= 8) & (head[..., 25] != 3)  # palette, 16-bit masks: Pillow keeps values
    return {
        "image": png | jpeg | bmp,
        "mask": plain_png | jpeg | bmp,
        "jpeg": jpeg,
        "hw": tf.where(png[..., None], png_hw, bmp_hw),
    }


def native(data: tf.Tensor, mask: bool) -> tf.Tensor:
    """True where TensorFlow decodes ``data`` exactly (see the module docstring), else Pillow does."""
    return probe(data)["mask" if mask else "image"]


def header_size(data: tf.Tensor, found: dict) -> tf.Tensor:
    """(height, width) int64 of one PNG, JPEG or BMP file from its header."""
    return tf.cond(found["jpeg"], lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64), lambda: found["hw"])


# ------------------------------------------------------------------------------ decoding (graph)
@tf.autograph.experimental.do_not_convert
def decode_image(data: tf.Tensor, limit: int, found: dict | None = None) -> tf.Tensor:
    """uint8 ``[H, W, C]`` pixels of one encoded image (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    ``found`` is :func:`probe` of ``data`` when the caller probed a batch already.
    """
    found = probe(data) if found is None else found
    return tf.cond(
        found["image"],
        lambda: _checked_tf_decode(data, found, limit),
        lambda: _pillow_op(data, lambda b: pillow_pixels(b, limit=limit)),
    )


@tf.autograph.experimental.do_not_convert
def decode_mask(data: tf.Tensor, limit: int, colour: bool = False, found: dict | None = None) -> tf.Tensor:
    """uint8 ``[H, W, C]`` mask values: C=1 class values (or palette indices), 3-4 colours.

    ``colour=True`` (a ``palette=`` is given) reads palette files as their RGB
    colours instead of their indices.
    """
    found = probe(data) if found is None else found
    return tf.cond(
        found["mask"],
        lambda: _checked_tf_decode(data, found, limit),
        lambda: _pillow_op(data, lambda b: pillow_pixels(b, limit=limit, mask=True, colour=colour)),
    )


def _checked_tf_decode(data: tf.Tensor, found: dict, limit: int) -> tf.Tensor:
    hw = header_size(data, found)
    check = tf.debugging.Assert(hw[0] * hw[1] <= limit, ["over the pixel limit"])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, None])
    return image


def _pillow_op(data: tf.Tensor, fn) -> tf.Tensor:
    out = tf.numpy_function(lambda b: fn(b.item() if isinstance(b, np.ndarray) else b), [data], tf.uint8, stateful=False)
    out.set_shape([None, None, None])
    return out


# --------------------------------------------------------------------------------------- Pillow
def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("reading TIFF, WebP, GIF and other formats needs Pillow (pip install pillow)") from exc
    return Image


def _grey_palette(im) -> bool:
    """Whether every colour of ``im``'s palette is a grey, read from the palette Pillow parsed with the header
    (``im.getpalette()`` would decode the pixels first, which the header-only listing must not)."""
    palette = getattr(im, "palette", None)
    if palette is not None and getattr(palette, "mode", None) in ("RGB", "RGBA"):
        bands = len(palette.mode)
        values = np.frombuffer(bytes(palette.palette), np.uint8)
        rgb = values[: len(values) // bands * bands].reshape(-1, bands)[:, :3]
    else:
        values = im.getpalette() or []
        rgb = np.asarray(values[: len(values) // 3 * 3]).reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def pillow_pixels(data: bytes, *, limit: int, mask: bool = False, colour: bool = False) -> np.ndarray:
    """Decode ``data`` with Pillow into uint8 ``[H, W, C]``; raises ValueError saying what is wrong."""
    Image = _pillow()
    if limit > (Image.MAX_IMAGE_PIXELS or 0) and Image.MAX_IMAGE_PIXELS is not None:
        Image.MAX_IMAGE_PIXELS = limit  # ours is the limit; Pillow's own would refuse first
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        raise ValueError(f"the image holds {pixels / 1e6:.1f} megapixels, over the pixel limit of {limit / 1e6:g} "
                         "megapixels; raise it with SKIPAE_MAX_IMAGE_PIXELS=<pixels> or max_image_pixels=") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a file it cannot identify
        raise ValueError(f"not an image file TensorFlow or Pillow can read ({type(exc).__name__}: {exc})") from None
    with im:
        width, height = im.size
        if width * height > limit:
            raise ValueError(too_large(width, height, limit))
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise ValueError(
                f"the {im.format} file holds {frames} frames (an animation or a multi-page file); "
                "expected one image per file: save the frame you mean as its own file"
            )
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
            raise ValueError(f"cannot decode the {im.format} data ({exc})") from None
        array = _mask_array(im, colour) if mask else _image_array(im)
    return array[..., None] if array.ndim == 2 else array


def _image_array(im) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or (mode == "I" and im.format == "PNG"):
        return (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)  # the high byte, as TensorFlow does
    if mode in ("I", "F"):
        kind = "32-bit integer" if mode == "I" else "floating-point"
        raise ValueError(
            f"{kind} pixel values (Pillow mode {mode}) have no known scale to 8 bits; "
            "convert the images to 8- or 16-bit first"
        )
    target = image_mode(im)
    return np.asarray(im if target == mode else im.convert(target), dtype=np.uint8)


_MODE_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def image_mode(im) -> str:
    """The Pillow mode an 8-bit image is decoded to (L, LA, RGB or RGBA): a palette of greys to L (LA with
    transparency), any other palette to RGB (RGBA), 1-bit to L, CMYK, YCbCr and the rest to RGB. Needs only
    the header and palette, so the header-only listing (:mod:`.headers`) counts channels the same way."""
    mode = im.mode
    if mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in im.info
        return ("LA" if alpha else "L") if _grey_palette(im) else ("RGBA" if alpha else "RGB")
    if mode == "1":
        return "L"
    return mode if mode in _MODE_CHANNELS else "RGB"  # CMYK, YCbCr, LAB, HSV, RGBX ...


def image_channels(im) -> int:
    """How many channels :func:`image_mode` decodes ``im`` to (16-bit greys: 1)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return 1
    return _MODE_CHANNELS[image_mode(im)]


def _mask_array(im, colour: bool) -> np.ndarray:
    mode = im.mode
    if colour and mode not in ("I", "F") and not mode.startswith("I;16"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if mode in ("P", "PA"):
        if _grey_palette(im):
            return np.asarray(im.convert("L"), dtype=np.uint8)
        values = np.asarray(im)
        return values[..., 0] if values.ndim == 3 else values  # the palette index is the class
    if mode == "1":
        return np.asarray(im, dtype=np.uint8)  # 0 and 1
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values))):
            raise ValueError(
                f"the mask holds values from {values.min():g} to {values.max():g} (Pillow mode {mode}); "
                "mask values are class ids 0..255"
            )
        return values.astype(np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


# ------------------------------------------------------------------------- errors, for messages
def read_bytes(ref, is_zip: bool) -> bytes:
    """The encoded file: zip members are already bytes; paths are read."""
    if is_zip:
        return bytes(ref)
    with open(ref, "rb") as f:
        return f.read()


def decode_error(ref, is_zip: bool, *, mask: bool = False, colour: bool = False, limit: int | None = None) -> str | None:
    """Why the file at ``ref`` does not decode (what the checking pass dropped), None when it decodes."""
    limit = max_image_pixels(limit)
    try:
        data = read_bytes(ref, is_zip)
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    tensor = tf.constant(data)
    try:
        by_tf = bool(native(tensor, mask))
    except (tf.errors.OpError, ValueError):
        by_tf = False
    if not by_tf:
        try:
            pillow_pixels(data, limit=limit, mask=mask, colour=colour)
        except ValueError as exc:
            return str(exc)
        return None
    try:
        height, width = (int(v) for v in header_size(tensor, probe(tensor)).numpy())
        if width * height > limit:
            return too_large(width, height, limit)
        tf.io.decode_image(tensor, channels=0, expand_animations=False, dtype=tf.uint8)
    except (tf.errors.OpError, ValueError) as exc:
        text = getattr(exc, "message", str(exc)).strip().splitlines()[0]
        text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]|\s*name:\s*$", "", text)
        return text.strip() or type(exc).__name__
    return None


def to_channels(image, channels: int):
    """``image`` with ``channels`` (1 or 3) channels: grey is repeated into RGB, alpha dropped, grey is the first.

    The one channel rule for every source: ``image`` is a uint8 ``[H, W, C]``
    tensor (in a tf.data map), or a numpy ``(..., H, W, C)`` array or a list
    of them (the decode pass's in-memory images).
    """
    if isinstance(image, list):
        return [to_channels(one, channels) for one in image]
    if isinstance(image, np.ndarray):
        have = image.shape[-1]
        if have == channels:
            return image
        if channels == 3 and have < 3:
            return np.repeat(image[..., :1], 3, axis=-1)
        return np.ascontiguousarray(image[..., : 3 if channels == 3 else 1])
    if channels == 3:
        image = tf.cond(tf.shape(image)[-1] < 3, lambda: tf.repeat(image[..., :1], 3, axis=-1), lambda: image[..., :3])
    else:
        image = image[..., :1]
    image.set_shape([None, None, channels])
    return image
