"""Segmentation from image files: ``segfolder:PATH`` (masks found by name) and ``seglist:LIST`` (pair lists).

Both end in :func:`load_pairs`: one parallel decode pass over images and
masks, then the checks that name a file (size mismatch, colour masks without
a palette, colours not in the palette, values outside the classes), the
reading of binary ``{0, 255}`` masks as classes ``{0, 1}``, and the table.
"""

from __future__ import annotations

import os

import numpy as np

from . import classes as _classes
from . import files as _files
from .decode import decode_error, max_image_pixels
from .info import DataError, SourceInfo, attach_info, warn
from .palette import colour_of, describe_colour, read_palette
from .pairs import Pairs, folder_pairs, list_pairs
from .slices import parse_split, slice_indices
from .tree import Tree


def load_segfolder(path, split, source, *, images=None, masks=None, **opts):
    """``segfolder:PATH``: ``split``'s images and masks in a directory or zip, paired by name pattern."""
    base, spec = parse_split(split)
    tree = Tree(path)
    pairs = folder_pairs(tree, base, images, masks, source)
    name = os.path.splitext(os.path.basename(tree.path))[0]
    return load_pairs(tree, pairs, split, spec, source, name, **opts)


def load_seglist(spec_path, split, source, *, root=None, **opts):
    """``seglist:LIST``: the pairs a list file names (``LIST`` may hold ``{split}`` or be a folder of lists)."""
    base, spec = parse_split(split)
    tree, pairs, list_file = list_pairs(spec_path, base, root, source)
    name = os.path.basename(os.path.dirname(os.path.abspath(list_file))) or "pairs"
    return load_pairs(tree, pairs, split, spec, source, name, **opts)


def load_pairs(tree, pairs: Pairs, split, spec, source, name, *, on_error, ignore_label, label_map, num_classes,
               class_names, palette=None, pixel_limit=None):  # fmt: skip
    """Decode and check ``pairs`` (the slice ``spec`` of them) into a segmentation dataset."""
    limit = max_image_pixels(pixel_limit)
    pal = read_palette(palette) if palette is not None else None
    idx = slice_indices(len(pairs.images), spec, split)
    image_rels, mask_rels = [pairs.images[i] for i in idx], [pairs.masks[i] for i in idx]
    image_names = [tree.describe(r) for r in image_rels]
    mask_names = [tree.describe(r) for r in mask_rels]
    refs, mask_refs = tree.refs(image_rels), tree.refs(mask_rels)
    result = _files.decode_pass(refs, tree.is_zip, mask_refs, limit=limit, palette=pal,
                                label=f"decoding {len(refs)} image/mask pairs")  # fmt: skip

    def locate(i):  # the image or its mask, whichever does not decode
        message = decode_error(refs[i], tree.is_zip, limit=limit)
        if message is not None:
            return image_names[i], message
        message = decode_error(mask_refs[i], tree.is_zip, mask=True, colour=pal is not None, limit=limit)
        return mask_names[i], message or "failed to decode"

    skipped = _files.handle_failures(result, locate, on_error)
    keep = np.flatnonzero(result.ok)
    _check_files(result, keep, image_names, mask_names, source, pal)
    hist = result.mask_hist[keep].sum(axis=0)
    present = np.flatnonzero(hist)
    where = f"{source} [{split}]"
    detected = _classes.binary_mask_map(present, label_map=label_map, palette=pal, ignore_label=ignore_label,
                                        num_classes=num_classes, where=where)  # fmt: skip
    applied = detected or label_map or None
    lut = _classes.mask_lut(applied)
    class_pixels: dict = {}
    for v in present:
        cls = int(lut[v]) if lut is not None else int(v)
        class_pixels[cls] = class_pixels.get(cls, 0) + int(hist[v])
    mapped = np.unique(lut[present]) if lut is not None else present
    n_cls = _classes.seg_classes(mapped, num_classes, ignore_label, class_names, where, pal)
    if class_names is None and pal is not None and pal.names and len(pal.names) >= n_cls:
        class_names = pal.names[:n_cls]
    for i in keep:  # name the file of a bad value
        values = np.flatnonzero(result.mask_hist[i])
        values = lut[values] if lut is not None else values
        _classes.check_mask_values(np.unique(values), n_cls, ignore_label, source, file=mask_names[i])
    channels = _files.choose_channels(result.image_shapes[keep]) if len(keep) else 3
    table = _files.build_table(result, keep, refs, mask_refs, tree.is_zip, channels, "segmentation", lut,
                               limit=limit, palette=pal)  # fmt: skip
    notes = ()
    if detected:
        notes = ("binary masks: values {0, 255} read as classes {0, 1} (label_map={255: 1})",)
    info = SourceInfo(
        name=name, task="segmentation", num_classes=n_cls,
        class_names=_classes.names_for(class_names, n_cls), channels=channels,
        image_shape=uniform_shape(result.image_shapes[keep], channels), num_examples=len(keep),
        ignore_label=ignore_label, skipped=len(skipped), skipped_files=tuple(skipped),
        ignored=tuple(pairs.ignored + pairs.spare), source=source, split=split,
        mask_values=tuple((int(v), int(hist[v])) for v in present) if pal is None else (),
        class_pixels=tuple(sorted(class_pixels.items())),
        label_map=dict(applied) if applied else None, palette=pal, notes=notes,
    )  # fmt: skip
    warn_ignored(pairs.ignored, source)
    return attach_info(table.dataset(), info.replace(table=table))


def _check_files(result, keep, image_names, mask_names, source, pal) -> None:
    for i in keep:
        ih, iw = result.image_shapes[i][:2]
        mh, mw = result.mask_shapes[i][:2]
        if (ih, iw) != (mh, mw):
            raise DataError(
                f"{source}: mask {mask_names[i]} is {mh}x{mw} but its image {image_names[i]} is {ih}x{iw} "
                "(height x width); masks must have their image's size"
            )
        if not result.mask_agree[i]:
            raise DataError(
                f"{source}: mask {mask_names[i]} is a colour image whose channels differ; expected class "
                "indices: a grey image (mode L), or one of the palette PNGs (mode P, as in Pascal VOC: the "
                "index is the class). For colour-coded masks (CamVid, Cityscapes) pass palette= (colour -> "
                "class: a dict {(128, 64, 128): 0, ...}, a list of colours or a palette file)"
            )
    bad = [i for i in keep if result.unknown_pixels[i]]
    if bad:
        i = bad[0]
        more = f" ({len(bad) - 1} more mask(s) hold colours not in the palette)" if len(bad) > 1 else ""
        r, g, b = colour_of(int(result.unknown_colour[i]))
        if r == g == b:
            more += f"; it is grey: if the masks hold class ids already (value {r} = class {r}), leave palette= out"
        raise DataError(
            f"{source}: mask {mask_names[i]} has {result.unknown_pixels[i]} pixel(s) of colour "
            f"{describe_colour(result.unknown_colour[i])}, which is not in the palette ({pal.origin}: "
            f"{pal.summary()}){more}; add the colour to the palette (or map it to the ignore label) or fix the mask"
        )


def uniform_shape(shapes: np.ndarray, channels: int):
    """``(height, width, channels)`` when every row of ``shapes`` has the same height and width, else None."""
    shapes = np.asarray(shapes, dtype=np.int64)
    if not shapes.size:
        return None
    hw = shapes[:, :2]  # compared with the first row, not np.unique (which sorts: 0.2 s at 300,000 files)
    return (int(hw[0, 0]), int(hw[0, 1]), int(channels)) if (hw == hw[0]).all() else None


def warn_ignored(ignored: list, source: str) -> None:
    if ignored:
        warn(f"{source}: {len(ignored)} non-image file(s) not read, e.g. {ignored[0]}")
