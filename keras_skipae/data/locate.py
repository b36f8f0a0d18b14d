"""Finding a data source on disk: relative paths from the current directory, else the project root.

Recipes name their data with source strings (``idx:``, ``folder:PATH``,
``segfolder:PATH``, ``npz:PATH``, ``tfds:NAME``; the schemes are listed in
:mod:`~keras_skipae.data.schemes`) and may list several to try
in order; :func:`resolve_source` picks the first usable one and makes its path
absolute, so a run started from any directory reads the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

from .info import DataError
from .schemes import SCHEMES, forms

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PROJECT_ROOT = PACKAGE_DIR.parent


def resolve_path(text: str) -> Path | None:
    """``text`` as an existing absolute path (tried from the current directory, then the project root)."""
    path = Path(os.path.expanduser(text))
    if path.is_absolute():
        return path if path.exists() else None
    for base in (Path.cwd(), PROJECT_ROOT):
        if (base / path).exists():
            return (base / path).resolve()
    return None


def resolve_source(source: str | list[str]) -> str:
    """The first usable source of ``source`` with its path made absolute.

    Path sources (every scheme but ``tfds:``) must exist; ``idx:`` with no
    path means Debian's Fashion-MNIST package. ``tfds:`` is
    always usable (TFDS reports its own errors). Raises :class:`DataError`
    listing where each option was looked for.

    >>> resolve_source(["folder:../shared/data/cifar10/cifar10_jpg.zip", "tfds:cifar10"])
    """
    options = [source] if isinstance(source, str) else list(source)
    problems = []
    for option in options:
        scheme, sep, rest = option.partition(":")
        if not sep:
            problems.append(f"{option!r} has no scheme (expected {forms()})")
            continue
        if scheme not in SCHEMES or not SCHEMES[scheme].path:
            return option  # tfds: reports its own errors, an unknown scheme data.load's
        if not rest and SCHEMES[scheme].default_path:
            rest = SCHEMES[scheme].default_path
        # a list path may name its split as {split}: the folder holding the lists must exist
        probe = os.path.dirname(rest) if scheme == "seglist" and "{split}" in rest else rest
        found = resolve_path(probe)
        if found is not None:
            return f"{scheme}:{found / os.path.basename(rest) if probe != rest else found}"
        places = dict.fromkeys(str(p) for p in (Path.cwd(), PROJECT_ROOT))
        problems.append(f"{option!r}: path {rest!r} does not exist (looked in {' and '.join(places)})")
    hint = ""
    if any(o.startswith("idx:") for o in options):
        hint = "; for Fashion-MNIST install it with `apt-get install dataset-fashion-mnist`"
    raise DataError("no usable source: " + "; ".join(problems) + hint +
                    "; or point the recipe elsewhere with --set data.source=...")
