"""Where exports go and how they get there: versioned layout and the atomic commit.

Layout: TF Serving's ``<base>/<name>/<version>/`` (``version`` a positive
integer, :func:`next_version` by default); the other formats use the same
``<name>/<version>/`` folders. Writes are atomic: each artefact is built and
verified under a hidden name beside its destination (:class:`Staging`) and
renamed into place only once it passed; several artefacts are renamed together
(:func:`commit`), all or none. An existing version is never replaced unless
``overwrite=True``; then it is swapped out and deleted only after the new one
is in place, and restored if a move fails.

Example::

    with Staging(overwrite=False) as staging:
        tmp = staging.stage(Path("models/classifier/3"))
        build_and_verify(tmp)
        staging.commit()            # models/classifier/3 appears, complete
    # leaving the block removes whatever is still staged
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str) -> str:
    """``name`` if it can be a directory and TF Serving's model name, else a ValueError."""
    if not _NAME.match(name or ""):
        raise ValueError(
            f"invalid model name {name!r}: use letters, digits, '_', '.', '-' (it becomes a directory and "
            "TF Serving's model name)"
        )
    return name


def check_version(version) -> int:
    """``version`` as an int if it is a positive integer, else a ValueError."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"invalid version {version!r}: TF Serving versions are positive integers")
    return int(version)


def next_version(model_dir: str | os.PathLike) -> int:
    """One more than the largest integer version directory under ``model_dir`` (1 when none)."""
    model_dir = Path(model_dir)
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    return max(versions, default=0) + 1


def staging_name(final: Path) -> Path:
    """A hidden sibling of ``final`` to build it in (not an integer: TF Serving ignores it)."""
    return final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")


def remove(path: Path) -> None:
    """Remove a file or a directory tree, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def refuse_existing(final: Path, overwrite: bool, what: str = "another version") -> None:
    """Raise ``FileExistsError`` when ``final`` exists and may not be replaced."""
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True (--overwrite) or {what}")


class Staging:
    """One export transaction: stage artefacts beside their destinations, then commit them together.

    :meth:`stage` returns the hidden name to build an artefact in (creating
    its parent directories); :meth:`commit` renames every staged artefact into
    place, all or none. Leaving the ``with`` block removes what is still
    staged and, when nothing was committed, the directories :meth:`stage`
    created, so a failed export leaves nothing behind.
    """

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite
        self.moves: list[tuple[Path, Path]] = []
        self.created: list[Path] = []
        self.committed = False

    def stage(self, final: str | os.PathLike) -> Path:
        """The staging name of ``final``; builds go there, :meth:`commit` moves them to ``final``."""
        final = Path(final)
        missing = [d for d in (final.parent, *final.parent.parents) if not d.exists()]
        final.parent.mkdir(parents=True, exist_ok=True)
        self.created.extend(d for d in missing if d not in self.created)
        tmp = staging_name(final)
        self.moves.append((tmp, final))
        return tmp

    def commit(self) -> None:
        """Rename every staged artefact into place (see :func:`commit`)."""
        commit(self.moves, self.overwrite)
        self.committed = True

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        for tmp, _ in self.moves:
            remove(tmp)
        if not self.committed:  # leave no directories behind that this export created
            for directory in sorted(self.created, key=lambda d: len(d.parts), reverse=True):
                try:
                    directory.rmdir()
                except OSError:
                    break


def commit(moves: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Rename each staged ``tmp`` to its ``final`` (a sibling): all of them, or none.

    An existing ``final`` is kept unless ``overwrite``; then it is swapped out
    (old -> hidden backup, new -> final) and its backup deleted only once every
    move succeeded. On any failure, moves already made are undone (the new
    artefacts go back to their staging names, for the caller to remove) and the
    backups are renamed back, so the previous versions stay in place, intact.
    """
    done = []  # (tmp, final, backup or None), in order
    try:
        for tmp, final in moves:
            backup = None
            if final.exists():
                if not overwrite:
                    raise FileExistsError(f"{final} already exists; pass overwrite=True (--overwrite) or another version")
                backup = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
                os.rename(final, backup)
            try:
                os.rename(tmp, final)
            except BaseException as exc:
                if backup is not None:
                    os.rename(backup, final)
                if isinstance(exc, OSError) and final.exists() and backup is None:
                    raise FileExistsError(
                        f"{final} appeared while exporting; pass overwrite=True (--overwrite) or another version"
                    ) from exc
                raise
            done.append((tmp, final, backup))
    except BaseException:
        for tmp, final, backup in reversed(done):
            try:
                os.rename(final, tmp)
                if backup is not None:
                    os.rename(backup, final)
            except OSError as undo:  # pragma: no cover - the file system failed twice
                kept = f"; the previous version is kept at {backup}" if backup is not None else ""
                log.error("could not undo the export to %s (%s)%s", final, undo, kept)
        raise
    for _, _, backup in done:
        if backup is not None:
            remove(backup)
