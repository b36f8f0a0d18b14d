"""``folder:PATH``: class-per-folder image trees, in a directory or a zip file.

Up to ``stream_above`` files every image is decoded and checked at load and
kept in memory when it fits (:mod:`~keras_skipae.data.files`); above it only
the headers are read and the pixels are decoded as the dataset is read
(:mod:`~keras_skipae.data.headers`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import classes as _classes
from . import decode as _decode
from . import files as _files
from . import headers as _headers
from .info import DataError, SourceInfo, attach_info, warn
from .segmentation import uniform_shape, warn_ignored
from .slices import parse_split, slice_indices
from .tables import FileTable
from .tree import Tree, check_tree_split, image_extensions, is_image, looked_for, split_names


def load_folder(path, split, source, *, on_error, ignore_label, label_map, num_classes, class_names,
                 pixel_limit=None, stream_above=None):  # fmt: skip
    base, spec = parse_split(split)
    tree = Tree(path)
    limit = _decode.max_image_pixels(pixel_limit)
    listing = list_folder(tree, base, source)
    idx = slice_indices(len(listing.rels), spec, split)
    names = [listing.names[i] for i in idx]
    labels = _classes.remap(listing.labels[idx].astype(np.int64), label_map)
    names_out = class_names if class_names is not None else (None if label_map else listing.class_names)
    if names_out is not None or num_classes:
        n_cls = _classes.classes_for(labels, num_classes, names_out, source)
    else:
        n_cls = int(labels.max(initial=-1)) + 1
    _classes.check_labels(labels, n_cls, source, lambda i: names[i])
    refs = tree.refs([listing.rels[i] for i in idx])
    if not tree.is_zip and len(refs) > _headers.stream_above(stream_above):
        table, channels, shapes, skipped = _stream_table(refs, names, labels, on_error, limit)
    else:
        table, channels, shapes, skipped = _decoded_table(tree, refs, names, labels, on_error, limit)
    info = SourceInfo(
        name=os.path.splitext(os.path.basename(tree.path))[0], task="classification", num_classes=n_cls,
        class_names=_classes.names_for(names_out, n_cls), channels=channels,
        image_shape=uniform_shape(shapes, channels), num_examples=table.num_examples,
        skipped=len(skipped), skipped_files=tuple(skipped), ignored=tuple(listing.ignored), source=source,
        split=split, label_map=dict(label_map) if label_map else None,
    )  # fmt: skip
    warn_ignored(listing.ignored, source)
    return attach_info(table.dataset(), info.replace(table=table))


def _decoded_table(tree, refs, names, labels, on_error, limit):
    """Every file decoded and checked now, kept in memory when it fits (see :mod:`~keras_skipae.data.files`)."""
    result = _files.decode_pass(refs, tree.is_zip, limit=limit, label=f"decoding {len(refs)} images")
    skipped = _files.handle_failures(
        result,
        lambda i: (names[i], _decode.decode_error(refs[i], tree.is_zip, limit=limit) or "failed to decode"),
        on_error,
    )
    keep = np.flatnonzero(result.ok)
    channels = _files.choose_channels(result.image_shapes[keep]) if len(keep) else 3
    table = _files.build_table(result, keep, refs, labels, tree.is_zip, channels, "classification", limit=limit)
    return table, channels, result.image_shapes[keep], skipped


def _stream_table(refs, names, labels, on_error, limit):
    """A large folder: headers read now (sizes, channels, unusable files by name), pixels decoded as it is read."""
    shapes, problems = _headers.read_headers(refs, limit)
    bad = [i for i, p in enumerate(problems) if p is not None]
    if bad and on_error == "raise":
        more = f" ({len(bad) - 1} more unusable file(s))" if len(bad) > 1 else ""
        raise DataError(f"cannot read {names[bad[0]]}: {problems[bad[0]]}{more}; fix or remove the file, or load "
                        "with on_error='skip' to leave such files out (they are counted in ds.info.skipped)")
    skipped = [names[i] for i in bad]
    if skipped:
        warn(f"skipped {len(skipped)} unusable file(s) (on_error='skip'), e.g. {skipped[0]}")
    keep = np.flatnonzero(np.asarray([p is None for p in problems], dtype=bool))
    channels = _files.choose_channels(shapes[keep]) if len(keep) else 3
    uniform = uniform_shape(shapes[keep], channels)
    size = uniform[:2] if uniform else (None, None)
    decode = _files.lazy_decoder(False, channels, "classification", size=size, limit=limit)
    table = FileTable(refs[keep], np.asarray(labels, np.int32)[keep], "classification", decode, None)
    return table, channels, shapes[keep], skipped


# ------------------------------------------------------------------------------ the folder listing
@dataclass
class FolderListing:
    names: list  # display names of the files
    rels: list  # relative paths inside the tree
    labels: np.ndarray
    class_names: tuple
    ignored: list


def list_folder(tree: Tree, split: str, source: str) -> FolderListing:
    """Files of ``<split>/<class>/<image>``; classes are the sorted union over all splits."""
    tree.find_root(split)
    splits = split_names(tree)
    check_tree_split(tree, split, splits, source)
    classes = set()
    for s in splits:
        sub, _ = tree.listdir(s)
        classes.update(sub)
    class_names = tuple(sorted(classes))
    here, loose = tree.listdir(split)
    if not here:
        raise DataError(
            f"{source}: {tree.describe(split)} has no class folders; expected {split}/<class>/<image> "
            f"(e.g. {split}/cat/0001.png)"
        )
    names, rels, labels, ignored = [], [], [], [tree.describe(f"{split}/{f}") for f in loose]
    extensions = image_extensions()
    for cls in here:
        _, files = tree.listdir(f"{split}/{cls}")
        images = [f for f in files if f.lower().endswith(extensions)]  # is_image, inlined (300,000 calls)
        if len(images) < len(files):
            ignored += [tree.describe(f"{split}/{cls}/{f}") for f in files if not is_image(f)]
        if not images:
            raise DataError(
                f"{source}: class folder {tree.describe(split + '/' + cls)} holds no images "
                f"(looked for {looked_for()}); remove the folder or add its images"
            )
        label = class_names.index(cls)
        folder = f"{split}/{cls}/"
        named = tree.describe(folder)  # names as describe() gives them, built by concatenation (300k files: 1 s less)
        rels += [folder + f for f in images]
        names += [named + f for f in images]
        labels += [label] * len(images)
    return FolderListing(names, rels, np.asarray(labels, np.int32), class_names, ignored)
