"""A directory or a zip file seen as a tree of relative paths, and which of its files are images.

``PATH`` of ``folder:``, ``segfolder:`` and ``seglist:`` is a directory or a
``.zip`` (read into memory once; members are read from memory, never
extracted). The sources list their files here; decoding them is
:mod:`.files`' job.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib

import numpy as np

from .info import DataError

#: Read by TensorFlow's own decoders; every other extension Pillow opens is read by Pillow.
NATIVE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


class Tree:
    """A directory or a zip file seen as a tree of relative POSIX paths."""

    def __init__(self, path: str):
        self.path = os.path.abspath(os.path.expanduser(path))
        if not os.path.exists(self.path):
            raise DataError(
                f"{path}: no such file or directory; expected a directory or a .zip holding "
                "<split>/<class>/<image> (folder:) or <split>/ + <split>annot/ (segfolder:)"
            )
        self.is_zip = os.path.isfile(self.path)
        self.prefix = ""
        self._blob = None
        if self.is_zip:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile as exc:
                raise DataError(
                    f"{path} is not a zip file ({exc}); expected a directory or a .zip archive "
                    "holding <split>/<class>/<image>"
                ) from None
            self._files = {m.filename: m for m in self._zip.infolist() if not m.is_dir()}
            # one pass over the member names: folder -> (sub-folders, files)
            self._index: dict[str, tuple[set, set]] = {"": (set(), set())}
            for name in self._files:
                parts = name.split("/")
                for i in range(len(parts)):
                    parent = "/".join(parts[:i])
                    entry = self._index.setdefault(parent, (set(), set()))
                    if i == len(parts) - 1:
                        entry[1].add(parts[i])
                    else:
                        entry[0].add(parts[i])
                        self._index.setdefault("/".join(parts[: i + 1]), (set(), set()))

    def describe(self, rel: str) -> str:
        """How to name ``rel`` in messages: a path, or ``archive.zip:member``."""
        full = self.prefix + rel
        return f"{self.path}:{full}" if self.is_zip else os.path.join(self.path, full)

    def isdir(self, rel: str) -> bool:
        full = (self.prefix + rel).rstrip("/")
        if self.is_zip:
            return full in self._index
        return os.path.isdir(os.path.join(self.path, full))

    def isfile(self, rel: str) -> bool:
        if self.is_zip:
            return (self.prefix + rel) in self._files
        return os.path.isfile(os.path.join(self.path, self.prefix + rel))

    def listdir(self, rel: str) -> tuple[list[str], list[str]]:
        """Sorted (sub-directories, files) of ``rel``; hidden entries are left out."""
        full = (self.prefix + rel).rstrip("/")
        if self.is_zip:
            dirs, files = self._index.get(full, (set(), set()))
            return sorted(d for d in dirs if not d.startswith(".")), sorted(
                f for f in files if not f.startswith(".")
            )
        # scandir: whether an entry is a folder comes with its name (no stat per file, except for links)
        with os.scandir(os.path.join(self.path, full)) as scan:
            entries = sorted((e.name, e.is_dir()) for e in scan if not e.name.startswith("."))
        return [name for name, is_dir in entries if is_dir], [name for name, is_dir in entries if not is_dir]

    def _member_bytes(self, member: zipfile.ZipInfo) -> bytes:
        """A member's content, sliced from the archive read once into memory (stored or deflated)."""
        if self._blob is None:
            with open(self.path, "rb") as f:
                self._blob = f.read()
        blob, off = self._blob, member.header_offset
        if blob[off : off + 4] != b"PK\x03\x04" or member.flag_bits & 0x1:
            return self._zip.read(member)  # unusual or encrypted: let zipfile handle (and report) it
        name_len, extra_len = struct.unpack_from("<HH", blob, off + 26)
        start = off + 30 + name_len + extra_len
        data = blob[start : start + member.compress_size]
        if member.compress_type == zipfile.ZIP_STORED:
            return data
        if member.compress_type == zipfile.ZIP_DEFLATED:
            return zlib.decompress(data, -15)
        return self._zip.read(member)

    def find_root(self, must_hold: str) -> None:
        """Step into a single top-level folder when the tree is wrapped in one (``cifar10/train/...``)."""
        if self.isdir(must_hold):
            return
        dirs, _ = self.listdir("")
        if len(dirs) == 1:
            self.prefix = dirs[0] + "/"
            if self.isdir(must_hold):
                return
            self.prefix = ""

    def refs(self, rels: list[str]) -> np.ndarray:
        """What the decode step reads: absolute paths, or the members' bytes (zip)."""
        if self.is_zip:
            return np.array([self._member_bytes(self._files[self.prefix + r]) for r in rels], dtype=object)
        base = os.path.join(self.path, self.prefix, "")  # what os.path.join(path, prefix + r) gives, joined once
        return np.array([base + r for r in rels], dtype=object)


_extensions: tuple | None = None


def image_extensions() -> tuple:
    """File name endings read as images: every format Pillow opens (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)."""
    global _extensions
    if _extensions is None:
        try:
            from PIL import Image

            Image.init()
            found = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
        except ImportError:  # pragma: no cover - Pillow is a declared dependency
            found = set()
        _extensions = tuple(sorted(found | set(NATIVE_EXTENSIONS) | {".gif", ".tif", ".tiff", ".webp"}))
    return _extensions


def is_image(name: str) -> bool:
    return name.lower().endswith(image_extensions())


def looked_for() -> str:
    return ".png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp and every other format Pillow reads"


def split_names(tree: Tree, skip_suffixes=()) -> list[str]:
    dirs, _ = tree.listdir("")
    return [d for d in dirs if not d.endswith(tuple(skip_suffixes))] if skip_suffixes else dirs


def check_tree_split(tree: Tree, split: str, available: list[str], source: str) -> None:
    if not tree.isdir(split):
        raise DataError(
            f"{source}: no split folder {split!r} in {tree.path}; "
            f"available splits: {', '.join(available) or 'none (the tree is empty)'}"
        )
