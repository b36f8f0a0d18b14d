"""Image files of a tree (:mod:`.tree`): one checked decode pass, and the tables that hold the result.

Which files make a dataset is the source's business (``folder:`` in
:mod:`.folder_source`, ``segfolder:`` and ``seglist:`` in :mod:`.segmentation`
and :mod:`.pairs`); any format Pillow reads is an image (:mod:`.decode` says
which decoder reads which file).

Every file is decoded once when the dataset is loaded, in a parallel tf.data
pass. That pass is what lets a corrupt file be named (or skipped and counted),
a mask of the wrong size or a label out of range be reported with its file,
and the decoded uint8 images be kept in memory when they fit
(:data:`MEMORY_BUDGET_BYTES`), so that training never decodes twice. It shows
a :class:`~keras_skipae.progress.Progress` line when it takes more than a few
seconds.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..progress import Progress
from .decode import decode_image, decode_mask, max_image_pixels, probe, to_channels
from .info import DataError
from .palette import Palette, map_colours
from .tables import FileTable, MemoryTable

AUTOTUNE = tf.data.AUTOTUNE
#: Decoded data above this size is decoded on the fly (and cached by the pipelines) instead of
#: kept as one in-memory array: arrays held by a dataset must stay well under the 2 GB limit of a
#: serialised graph, which multi-worker training's auto-sharding needs.
MEMORY_BUDGET_BYTES = int(os.environ.get("SKIPAE_DATA_MEMORY_BYTES", 3 * 1024**3 // 2))


# ------------------------------------------------------------------------------------- decoding
def _read(ref, is_zip: bool):
    return ref if is_zip else tf.io.read_file(ref)


@dataclass
class DecodeResult:
    """What the checking pass learnt about each file (in file order).

    ``images``/``masks`` hold the decoded arrays of the files that decoded, in
    file order: one stacked array when they share a shape, else a list; None
    when they exceeded the memory budget. Masks hold class values (palette
    colours already mapped); ``mask_hist`` counts them per mask.
    """

    ok: np.ndarray  # bool per file
    image_shapes: np.ndarray  # (N, 3), zeros where not ok
    images: np.ndarray | list | None
    mask_shapes: np.ndarray | None = None
    masks: np.ndarray | list | None = None
    mask_hist: np.ndarray | None = None  # (N, 256) value counts per mask
    mask_agree: np.ndarray | None = None  # False where a colour mask's channels differ (no palette)
    unknown_pixels: np.ndarray | None = None  # pixels whose colour is not in the palette
    unknown_colour: np.ndarray | None = None  # the first such colour (r << 16 | g << 8 | b), -1 if none


class _Chunks:
    """Flat uint8 batches from the pass, assembled once at the end (no per-file arrays when uniform)."""

    def __init__(self):
        self.flats, self.lengths, self.shapes, self.nbytes = [], [], [], 0

    def add(self, ragged, shapes: np.ndarray) -> None:
        flat = ragged.flat_values.numpy()
        self.flats.append(flat)
        self.lengths.append(ragged.row_lengths().numpy())
        self.shapes.append(shapes)
        self.nbytes += flat.nbytes

    def assemble(self):
        if not self.flats:
            return np.zeros((0, 1, 1, 1), np.uint8)
        shapes = np.concatenate(self.shapes)
        flat = np.concatenate(self.flats)
        self.flats = []
        if (shapes == shapes[0]).all():
            return flat.reshape((len(shapes), *shapes[0]))
        bounds = np.concatenate([[0], np.cumsum(np.concatenate(self.lengths))])
        return [flat[bounds[k] : bounds[k + 1]].reshape(shapes[k]) for k in range(len(shapes))]


def mask_classes(raw: tf.Tensor, table) -> tuple:
    """Decoded mask ``[H, W, C]`` -> (values uint8 ``[H, W]``, channels agree, unknown pixels, first unknown colour).

    With a palette ``table`` colours become classes; without one a colour mask
    is accepted only when its colour channels agree (a grey image saved as RGB).
    """
    if table is not None:
        values, unknown, first = map_colours(raw, table)
        return values, tf.constant(True), unknown, first
    agree = tf.cond(
        tf.shape(raw)[-1] >= 3,
        lambda: tf.reduce_all(raw[..., :3] == raw[..., :1]),
        lambda: tf.constant(True),
    )
    return raw[..., 0], agree, tf.constant(0, tf.int64), tf.constant(-1, tf.int64)


#: Files are probed (format, size from the header) in batches of this many: a few vectorised ops per batch.
PROBE_BATCH = 64


def _read_and_probe(ds: tf.data.Dataset, is_zip: bool) -> tf.data.Dataset:
    """``(i, ref[, mask_ref])`` -> ``(i, data, probe[, mask_data, mask_probe])``; unreadable files drop out."""
    if not is_zip:
        read = lambda i, *refs: (i, *[tf.io.read_file(r) for r in refs])  # noqa: E731
        ds = ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors()

    def probe_batch(i, data, mask_data=None):
        out = (i, data, probe(data))
        return out if mask_data is None else (*out, mask_data, probe(mask_data))

    return ds.batch(PROBE_BATCH).map(probe_batch).unbatch()


def decode_pass(
    refs: np.ndarray,
    is_zip: bool,
    mask_refs: np.ndarray | None = None,
    keep: bool = True,
    *,
    limit: int | None = None,
    palette: Palette | None = None,
    label: str = "decoding",
) -> DecodeResult:
    """Decode every file once in parallel; files that fail are marked, never silently lost."""
    n = len(refs)
    limit = max_image_pixels(limit)
    table = palette.table() if palette is not None else None
    comps = [np.arange(n, dtype=np.int64), refs]
    if mask_refs is not None:
        comps.append(mask_refs)

    def decode(i, data, found, mask_data=None, mask_found=None):
        image = decode_image(data, limit, found)
        out = [i, tf.shape(image), tf.reshape(image, [-1])]
        if mask_data is not None:
            raw = decode_mask(mask_data, limit, colour=table is not None, found=mask_found)
            values, agree, unknown, first = mask_classes(raw, table)
            flat = tf.reshape(values, [-1])
            hist = tf.math.bincount(tf.cast(flat, tf.int32), minlength=256, maxlength=256)
            out += [tf.shape(raw)[:2], flat, agree, hist, unknown, first]
        return tuple(out)

    ds = _read_and_probe(tf.data.Dataset.from_tensor_slices(tuple(comps)), is_zip)
    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors()
    ds = ds.ragged_batch(256).prefetch(2)

    seg = mask_refs is not None
    ok = np.zeros(n, dtype=bool)
    image_shapes = np.zeros((n, 3), dtype=np.int64)
    mask_shapes = np.zeros((n, 2), dtype=np.int64) if seg else None
    hist = np.zeros((n, 256), dtype=np.int64) if seg else None
    agree = np.ones(n, dtype=bool) if seg else None
    unknown = np.zeros(n, dtype=np.int64) if seg else None
    first_unknown = np.full(n, -1, dtype=np.int64) if seg else None
    images, masks = (_Chunks(), _Chunks()) if keep else (None, None)
    with Progress(label, total=n, unit="files") as bar:
        for batch in ds:
            idx = batch[0].numpy()
            ok[idx] = True
            image_shapes[idx] = batch[1].numpy()
            if seg:
                mask_shapes[idx] = batch[3].numpy()
                agree[idx] = batch[5].numpy()
                hist[idx] = batch[6].numpy()
                unknown[idx] = batch[7].numpy()
                first_unknown[idx] = batch[8].numpy()
            if images is not None:
                images.add(batch[2], image_shapes[idx])
                if seg:
                    masks.add(batch[4], mask_shapes[idx])
                if images.nbytes + masks.nbytes > MEMORY_BUDGET_BYTES:
                    images = masks = None  # too big: decode on the fly later
            bar.update(len(idx))
    return DecodeResult(
        ok,
        image_shapes,
        images.assemble() if images is not None else None,
        mask_shapes,
        masks.assemble() if (seg and masks is not None) else None,
        hist,
        agree,
        unknown,
        first_unknown,
    )


def handle_failures(result: DecodeResult, locate, on_error: str) -> list[str]:
    """Raise naming the first unreadable file, or return the skipped names (on_error="skip").

    ``locate(i)`` returns ``(file name, decoder message)`` for failed example ``i``.
    """
    bad = np.flatnonzero(~result.ok)
    if len(bad) == 0:
        return []
    if on_error == "raise":
        name, message = locate(bad[0])
        more = f" ({len(bad) - 1} more unreadable file(s))" if len(bad) > 1 else ""
        raise DataError(
            f"cannot decode {name}: {message}{more}; fix or remove the file, or load with "
            "on_error='skip' to leave unreadable files out (they are counted in ds.info.skipped)"
        )
    skipped = [locate(i)[0] for i in bad]
    warnings.warn(
        f"skipped {len(skipped)} unreadable file(s) (on_error='skip'), e.g. {skipped[0]}",
        stacklevel=3,
    )
    return skipped


def choose_channels(shapes: np.ndarray) -> int:
    """3 when any image has colour, else 1 (alpha channels are dropped)."""
    return 3 if (shapes[:, 2] >= 3).any() else 1


def stack_if_uniform(arrays):
    if isinstance(arrays, np.ndarray):
        return arrays
    shapes = {a.shape for a in arrays}
    return np.stack(arrays) if len(shapes) == 1 else arrays


def lazy_decoder(is_zip: bool, channels: int, task: str, lut: np.ndarray | None = None, size=(None, None),
                 limit: int | None = None, palette: Palette | None = None):  # fmt: skip
    """The per-example decode for a :class:`FileTable` (data too big to keep decoded).

    ``size`` is the (height, width) every image has, when the checking pass found one.
    """
    lut_t = None if lut is None else tf.constant(lut, tf.int32)
    limit = max_image_pixels(limit)
    table = palette.table() if palette is not None else None

    def decode(ref, target):
        image = to_channels(decode_image(_read(ref, is_zip), limit), channels)
        image.set_shape([*size, channels])
        if task == "classification":
            return image, tf.cast(target, tf.int32)
        raw = decode_mask(_read(target, is_zip), limit, colour=table is not None)
        mask = tf.cast(mask_classes(raw, table)[0], tf.int32)
        if lut_t is not None:
            mask = tf.gather(lut_t, mask)
        mask.set_shape(list(size))
        return image, mask

    return decode


def build_table(result: DecodeResult, keep_idx: np.ndarray, refs, targets, is_zip: bool, channels: int, task: str,
                lut=None, *, limit: int | None = None, palette: Palette | None = None):  # fmt: skip
    """A :class:`MemoryTable` when the decoded data was kept, else a :class:`FileTable`."""
    if result.images is not None:
        images = stack_if_uniform(to_channels(result.images, channels))
        # the files' paths go with the pixels (a pack then stores the files); zip members' bytes do not (held twice)
        paths = None if is_zip else np.asarray(refs, dtype=object)[keep_idx]
        if task == "classification":
            return MemoryTable(images, np.asarray(targets, np.int32)[keep_idx], task, refs=paths)
        masks = result.masks
        if lut is not None:
            lut8 = lut.astype(np.uint8) if lut.max() < 256 and lut.min() >= 0 else lut
            masks = lut8[masks] if isinstance(masks, np.ndarray) else [lut8[m] for m in masks]
        return MemoryTable(images, masks, task, refs=paths)
    tgt = np.asarray(targets)[keep_idx]
    if task == "classification":
        tgt = tgt.astype(np.int32)
    hw = {(int(h), int(w)) for h, w, _ in result.image_shapes[keep_idx]}
    size = hw.pop() if len(hw) == 1 else (None, None)
    return FileTable(refs[keep_idx], tgt, task, lazy_decoder(is_zip, channels, task, lut, size, limit, palette), None)
