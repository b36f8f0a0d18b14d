"""Which mask belongs to which image: name patterns (``segfolder:``) and pair lists (``seglist:``).

**Name patterns** are paths inside the source with two placeholders:
``{split}`` (the split name) and ``{stem}`` (the part of the file name that an
image and its mask share); ``*`` matches any text in a file name. DRIVE, as
distributed::

    data.load("segfolder:DRIVE", "training",
              images="{split}/images/{stem}_{split}.tif",       # 21_training.tif -> stem 21
              masks="{split}/1st_manual/{stem}_manual1.gif")    # 21_manual1.gif

Without patterns, ``segfolder:`` pairs ``<split>/`` with ``<split>annot/``
(CamVid) or ``<split>/images/`` with ``<split>/masks/`` by file name without
extension (``{stem}.*``).

**Pair lists** (``seglist:LIST``) hold one ``image mask`` pair per line
(whitespace-, tab- or, in a ``.csv``, comma-separated; a CSV header naming
``image`` and ``mask`` columns is recognised; ``#`` starts a comment). Paths are
relative to ``root=`` (default: the list's folder; a directory or a zip). A
path that does not exist as written, like SegNet's ``/SegNet/CamVid/train/x.png``
in CamVid's ``train.txt``, is looked up under the root by its trailing parts:
how many leading folders to drop is found on the first pair and kept for all.

Nothing is dropped silently: an image without a mask, a mask without an image,
an image that does not match the pattern or a listed file that does not exist
is an error that lists the first few and the count.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field

from .tree import Tree, check_tree_split, is_image, split_names
from .info import DataError, warn

MASK_DIR_SUFFIXES = ("annot", "_annot", "annotations", "_annotations", "labels", "_labels", "_masks")
LIST_SUFFIXES = (".txt", ".csv", ".tsv", ".lst")
SHOWN = 5  # how many offending files a message lists


@dataclass
class Pairs:
    """Image and mask paths inside a :class:`~keras_skipae.data.tree.Tree`, in dataset order."""

    images: list
    masks: list
    ignored: list = field(default_factory=list)  # not images: never read
    spare: list = field(default_factory=list)  # images beside the masks that the mask pattern does not match


def _listing(names: list, total: int | None = None) -> str:
    shown = ", ".join(names[:SHOWN])
    total = len(names) if total is None else total
    return shown + (f", ... ({total} in all)" if total > SHOWN else "")


# ------------------------------------------------------------------------------ name patterns
@dataclass
class Pattern:
    text: str  # as given, {split} replaced
    folder: str
    regex: re.Pattern

    def name_for(self, stem: str) -> str:
        return self.text.replace("{stem}", stem)


def compile_pattern(pattern: str, split: str, what: str, source: str) -> Pattern:
    """``"{split}/1st_manual/{stem}_manual1.gif"`` -> folder ``training/1st_manual`` and a file-name regex."""
    text = pattern.replace("{split}", split).strip("/")
    folder, _, name = text.rpartition("/")
    if name.count("{stem}") != 1:
        raise DataError(
            f"{source}: {what}={pattern!r} needs one {{stem}} in its file name, e.g. "
            f"'{{split}}/images/{{stem}}.png' ({{stem}} is the part of the name an image and its mask share)"
        )
    if any(c in folder for c in "{}*?[") or re.search(r"\{(?!stem\})", name):
        raise DataError(
            f"{source}: {what}={pattern!r}: only {{split}} (anywhere) and {{stem}} and * (in the file name) "
            "are placeholders; folders are literal"
        )
    parts = re.split(r"(\{stem\}|\*)", name)
    regex = "".join("(?P<stem>.+)" if p == "{stem}" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return Pattern(text, folder, re.compile(regex))


def find_mask_dir(tree: Tree, split: str, source: str) -> tuple[str, str]:
    """(image folder, mask folder) for ``split``: ``<split>``+``<split>annot`` or ``<split>/images``+``<split>/masks``."""
    tree.find_root(split)
    splits = [s for s in split_names(tree) if not s.endswith(MASK_DIR_SUFFIXES)]
    check_tree_split(tree, split, splits, source)
    for suffix in MASK_DIR_SUFFIXES:
        if tree.isdir(split + suffix):
            return split, split + suffix
    for images, masks in (("images", "masks"), ("images", "labels"), ("images", "annotations")):
        if tree.isdir(f"{split}/{images}") and tree.isdir(f"{split}/{masks}"):
            return f"{split}/{images}", f"{split}/{masks}"
    raise DataError(
        f"{source}: found {tree.describe(split)} but no masks for it; expected a mask folder "
        f"{split}annot/ beside it (CamVid layout) or {split}/images/ with {split}/masks/, "
        "masks named like their images; or say where they are with masks='{split}/labels/{stem}_mask.png'"
    )


def folder_pairs(tree: Tree, split: str, images: str | None, masks: str | None, source: str) -> Pairs:
    """Images and masks of ``split`` matched by their shared ``{stem}`` (see the module docstring)."""
    if images is not None and masks is None:
        raise DataError(f"{source}: images={images!r} needs masks= too, e.g. masks='{{split}}annot/{{stem}}.png'")
    if masks is None:
        image_dir, mask_dir = find_mask_dir(tree, split, source)
        images, masks = f"{image_dir}/{{stem}}.*", f"{mask_dir}/{{stem}}.*"
    mask_p = compile_pattern(masks, split, "masks", source)
    tree.find_root(mask_p.folder)
    if images is None:
        images = "{split}/images/{stem}.*" if tree.isdir(f"{split}/images") else "{split}/{stem}.*"
    image_p = compile_pattern(images, split, "images", source)
    for p, what in ((image_p, "images"), (mask_p, "masks")):
        if not tree.isdir(p.folder):
            available = ", ".join(split_names(tree)) or "nothing"
            raise DataError(
                f"{source}: no folder {tree.describe(p.folder)} for {what}={p.text!r} (split {split!r}); "
                f"the top level holds: {available}"
            )
    _, mask_files = tree.listdir(mask_p.folder)
    _, image_files = tree.listdir(image_p.folder)
    ignored, mask_of, spare_masks, dup = [], {}, [], []
    for f in mask_files:
        m = mask_p.regex.fullmatch(f)
        if not is_image(f):
            ignored.append(tree.describe(f"{mask_p.folder}/{f}"))
        elif m is None:
            spare_masks.append(f)
        elif m.group("stem") in mask_of:
            dup.append(f"{mask_of[m.group('stem')]} and {f}")
        else:
            mask_of[m.group("stem")] = f
    same_dir = image_p.folder == mask_p.folder
    image_of, unmatched = {}, []
    for f in image_files:
        if same_dir and (f in mask_of.values() or not is_image(f)):
            continue  # a mask beside its image, or already listed as not an image
        if not is_image(f):
            ignored.append(tree.describe(f"{image_p.folder}/{f}"))
            continue
        m = image_p.regex.fullmatch(f)
        if m is None:
            unmatched.append(f)
        elif m.group("stem") in image_of:
            dup.append(f"{image_of[m.group('stem')]} and {f}")
        else:
            image_of[m.group("stem")] = f
    if not image_of and not unmatched:
        raise DataError(f"{source}: {tree.describe(image_p.folder)} holds no images (looked for {image_p.text})")
    lonely = sorted(set(image_of) - set(mask_of))
    orphans = sorted(set(mask_of) - set(image_of))
    problems = []
    if lonely:
        problems.append(
            f"{len(lonely)} image(s) without a mask: "
            + _listing([f"{image_of[s]} (no {mask_p.name_for(s)})" for s in lonely])
        )
    if orphans:
        problems.append(f"{len(orphans)} mask(s) without an image: " + _listing([mask_of[s] for s in orphans]))
    if unmatched:
        problems.append(
            f"{len(unmatched)} image(s) in {tree.describe(image_p.folder)} that do not match images="
            f"{image_p.text!r}: " + _listing(unmatched)
        )
    if dup:
        problems.append(f"{len(dup)} pair(s) of files with the same {{stem}}: " + _listing(dup))
    if problems:
        raise DataError(
            f"{source}: " + "; ".join(problems) + f". Images are {image_p.text!r}, masks {mask_p.text!r}; every "
            "image needs exactly one mask with the same {stem}: fix the files or pass images=/masks= patterns"
        )
    if same_dir:
        spare_masks = [f for f in spare_masks if image_p.regex.fullmatch(f) is None]
    spare_masks = [tree.describe(f"{mask_p.folder}/{f}") for f in spare_masks]
    if spare_masks:
        warn(f"{source}: {len(spare_masks)} file(s) beside the masks do not match masks={mask_p.text!r} "
             f"and are not read, e.g. {spare_masks[0]}")  # fmt: skip
    stems = sorted(image_of)
    return Pairs(
        [f"{image_p.folder}/{image_of[s]}" if image_p.folder else image_of[s] for s in stems],
        [f"{mask_p.folder}/{mask_of[s]}" if mask_p.folder else mask_of[s] for s in stems],
        ignored,
        spare_masks,
    )


# --------------------------------------------------------------------------------- pair lists
def list_path(spec: str, split: str, source: str) -> str:
    """The list file for ``split``: ``LIST`` with ``{split}`` replaced, ``DIR/<split>.txt``, or the file itself."""
    spec = os.path.expanduser(spec)
    if "{split}" in spec:
        path = spec.replace("{split}", split)
    elif os.path.isdir(spec):
        found = [os.path.join(spec, split + s) for s in LIST_SUFFIXES if os.path.isfile(os.path.join(spec, split + s))]
        if not found:
            lists = sorted(f for f in os.listdir(spec) if f.endswith(LIST_SUFFIXES))
            raise DataError(
                f"{source}: no pair list {split}.txt (or .csv, .tsv, .lst) in {spec} for split {split!r}; "
                f"lists there: {', '.join(lists) or 'none'}"
            )
        return found[0]
    else:
        path = spec
        stem = os.path.splitext(os.path.basename(spec))[0]
        if split not in ("train", stem):
            raise DataError(
                f"{source}: {os.path.basename(spec)} is one list, read for split 'train' (or {stem!r}); for split "
                f"{split!r} name the list per split: seglist:{os.path.join(os.path.dirname(spec), '{split}.txt')}"
            )
    if not os.path.isfile(path):
        raise DataError(f"{source}: no such pair list {path}; expected a text or CSV file of image and mask paths")
    return path


def read_pair_list(path: str, source: str) -> list[tuple[int, str, str]]:
    """``(line number, image path, mask path)`` for every pair in the list, as written."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        if path.lower().endswith(".csv"):
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)]
        else:
            rows = []
            for n, line in enumerate(f, 1):
                text = line.strip()
                rows.append((n, text.split("\t") if "\t" in text else text.split()))
    rows = [(n, [c for c in r if c != ""]) for n, r in rows]
    rows = [(n, r) for n, r in rows if r and not r[0].startswith("#")]
    if not rows:
        raise DataError(f"{source}: pair list {path} is empty; expected one 'image mask' pair per line")
    columns = (0, 1)
    if not any(is_image(c) for c in rows[0][1]):  # a header
        header = [c.lower() for c in rows[0][1]]
        image_col = next((i for i, h in enumerate(header) if "image" in h or "img" in h), 0)
        mask_col = next((i for i, h in enumerate(header) if any(k in h for k in ("mask", "label", "annot", "seg", "gt"))), 1)
        columns, rows = (image_col, mask_col), rows[1:]
    pairs = []
    for n, row in rows:
        if len(row) <= max(columns) or (len(row) != 2 and columns == (0, 1) and not path.lower().endswith(".csv")):
            raise DataError(
                f"{source}: line {n} of {path} has {len(row)} field(s): {' '.join(row)!r}; expected an image path "
                "and a mask path (separate them by a tab, or use a .csv, when paths contain spaces)"
            )
        pairs.append((n, row[columns[0]], row[columns[1]]))
    return pairs


def _resolve(tree: Tree, paths: list[str]) -> list[str | None]:
    """Paths as tree-relative names (absolute paths on disk stay absolute); None where no file exists."""
    drop, out = None, []
    for p in paths:
        if not tree.is_zip and os.path.isabs(p) and os.path.isfile(p):
            out.append(p)
            continue
        parts = [x for x in p.replace("\\", "/").split("/") if x not in ("", ".")]
        if drop is None:
            drop = next((k for k in range(len(parts)) if tree.isfile("/".join(parts[k:]))), None)
            out.append("/".join(parts[drop:]) if drop is not None else None)
            continue
        rel = "/".join(parts[drop:])
        out.append(rel if rel and tree.isfile(rel) else None)
    return out


def list_pairs(spec: str, split: str, root: str | None, source: str) -> tuple[Tree, Pairs, str]:
    """The tree, the pairs and the list file of ``seglist:`` source ``spec`` for ``split``."""
    path = list_path(spec, split, source)
    rows = read_pair_list(path, source)
    tree = Tree(root if root is not None else os.path.dirname(os.path.abspath(path)))
    images = _resolve(tree, [r[1] for r in rows])
    masks = _resolve(tree, [r[2] for r in rows])
    missing = [f"line {n}: {'image' if i is None else 'mask'} {a if i is None else b}"
               for (n, a, b), i, m in zip(rows, images, masks) if i is None or m is None]  # fmt: skip
    if missing:
        raise DataError(
            f"{source}: {len(missing)} of {len(rows)} pair(s) in {path} name a file that does not exist under "
            f"{tree.path}: {_listing(missing)}; paths are read relative to root= (default: the list's folder)"
        )
    return tree, Pairs(images, masks), path
