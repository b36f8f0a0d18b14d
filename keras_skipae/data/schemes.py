"""The data source schemes, one registry: what ``data.load`` dispatches on and what recipes resolve.

A source string is ``SCHEME:REST`` (``"folder:images/"``, ``"idx:"``,
``"tfds:cifar10"``). Each scheme's entry says how it is written, which module
loads it (imported when a source of the scheme is first loaded), whether
``REST`` names a file or folder that must exist, and which of
:func:`~keras_skipae.data.load`'s keyword options it takes.
:func:`~keras_skipae.data.load` and :func:`~keras_skipae.data.resolve_source`
both read this table; adding a scheme means adding one entry here and its
loader module.

>>> get_scheme("folder").form
'folder:PATH'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .info import DataError

#: where Debian's ``dataset-fashion-mnist`` puts its files: what ``idx:`` with no path reads
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: the keyword options of ``load`` that only some schemes use; giving one to another scheme is refused (it would
#: be ignored silently)
SPECIFIC_OPTIONS = ("images", "masks", "root", "palette", "stream_above")


@dataclass(frozen=True)
class Scheme:
    """One source scheme: how it is written, what loads it and what it takes."""

    name: str
    form: str                      # how a source of this scheme is written, for messages
    loader: str                    # "module:function" in keras_skipae.data: (rest, split, source, **options)
    path: bool = True              # REST names a file or folder that must exist (resolve_source makes it absolute)
    default_path: str | None = None  # what an empty REST means
    takes: tuple[str, ...] = ()    # load()'s options passed on beyond the label options every scheme takes

    def load(self, rest: str, split: str, source: str, **options):
        """The loader's dataset for ``split`` of ``source`` (``options``: the label options and :attr:`takes`).

        The loader module is imported here, on first use; it must not import :mod:`.sources` (the layout test's
        cycle check does not see this edge).
        """
        module_name, function = self.loader.split(":")
        loader = getattr(importlib.import_module(f"keras_skipae.data.{module_name}"), function)
        return loader(rest, split, source, **options)


_FILES = ("on_error", "pixel_limit")  # schemes that read image files: unreadable files and the pixel limit

SCHEMES: dict[str, Scheme] = {
    scheme.name: scheme
    for scheme in (
        Scheme("tfds", "tfds:NAME[/CONFIG]", "tfds_source:load_tfds", path=False, takes=("data_dir", "download")),
        Scheme("idx", "idx:[DIR]", "idx_source:load_idx", default_path=FASHION_MNIST_DIR, takes=("data_dir",)),
        Scheme("folder", "folder:PATH", "folder_source:load_folder", takes=_FILES + ("stream_above",)),
        Scheme("segfolder", "segfolder:PATH", "segmentation:load_segfolder", takes=_FILES + ("images", "masks", "palette")),
        Scheme("seglist", "seglist:LIST", "segmentation:load_seglist", takes=_FILES + ("root", "palette")),
        Scheme("npz", "npz:PATH", "npz_source:load_npz"),
        Scheme("packed", "packed:DIR", "packed:load_packed"),
    )
}


def scheme_names() -> tuple[str, ...]:
    """Every scheme's name, in the registry's order."""
    return tuple(SCHEMES)


def forms(final: str = " or ") -> str:
    """The schemes as a user writes them, for messages: ``'tfds:NAME[/CONFIG]', 'idx:[DIR]', ... or 'packed:DIR'``."""
    written = [f"'{scheme.form}'" for scheme in SCHEMES.values()]
    return ", ".join(written[:-1]) + final + written[-1]


def get_scheme(name: str, source: object = None) -> Scheme:
    """The registry's entry for ``name``; a :class:`DataError` naming ``source`` and the schemes there are if none."""
    try:
        return SCHEMES[name]
    except KeyError:
        where = f" in {source!r}" if source is not None else ""
        raise DataError(f"unknown data source scheme {name!r}{where}; expected {forms()}") from None


def takers(option: str) -> tuple[str, ...]:
    """The schemes that take ``option``."""
    return tuple(name for name, scheme in SCHEMES.items() if option in scheme.takes)
