"""Where exports go and how they get there: versioned layout and the crash-safe commit.

Layout: TF Serving's ``<base>/<name>/<version>/`` (``version`` a positive
integer, :func:`next_version` by default); the other formats use the same
``<name>/<version>/`` folders. Each artefact is built and verified under a
hidden name beside its destination (:class:`Staging`) and renamed into place
only once it passed; several artefacts are renamed together (:func:`commit`),
all or none. An existing version is never replaced unless ``overwrite=True``;
then it is swapped out and deleted only after the new one is in place.

Crash safety. Renames in several folders cannot happen at once, so before the
first one :func:`commit` writes a journal (``.commit-<id>.json``, atomically)
into every folder it touches, listing every move. Until the journal is removed,
each new artefact exists complete at its staging name or its final name, and
each replaced one at its final name or its backup name. An exception undoes the
moves; a crash (a kill, a power cut of the process) leaves the journal, and the
next export into any of those folders, or :func:`recover`, finishes the commit
(every new artefact was verified before the journal was written), with a
message. The same pass removes the staging folders of killed exports and puts
back or removes orphaned backups. ``SKIPAE_EXPORT_CRASH_AT=<point>`` kills the
process at a named point of the commit, for the tests of all this.

Example::

    with Staging(overwrite=False) as staging:
        tmp = staging.stage(Path("models/classifier/3"))
        build_and_verify(tmp)
        staging.commit()            # models/classifier/3 appears, complete
    # leaving the block removes whatever is still staged, and the folders it created
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_OWNED = re.compile(r"^\.(tmp|old)-(?P<name>.+)-[0-9a-f]{8}\.p(?P<pid>\d+)$")  # .tmp-1-1a2b3c4d.p4242
# older names: with the pid before the random part, which a name ending in -<digits> of the format before that
# (no pid) also matches: .old-model-2-1a2b3c4d is model-2's backup, or model's of process 2 (see _ambiguous_final)
_OWNED_V1 = re.compile(r"^\.(tmp|old)-(?P<name>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")  # .tmp-1-4242-1a2b3c4d
_LEGACY = re.compile(r"^\.(tmp|old)-(?P<name>.+)-[0-9a-f]{8}$")  # before the owner's pid was in the name
JOURNAL_PREFIX = ".commit-"
CRASH_ENV = "SKIPAE_EXPORT_CRASH_AT"


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


def _owned_name(kind: str, final: Path) -> Path:
    """A hidden sibling of ``final`` (not an integer: TF Serving ignores it) naming this process."""
    return final.with_name(f".{kind}-{final.name}-{uuid.uuid4().hex[:8]}.p{os.getpid()}")


def staging_name(final: Path) -> Path:
    """A hidden sibling of ``final`` to build it in."""
    return _owned_name("tmp", final)


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


def notice(message: str) -> None:
    """Tell the user about a repair made in their export folders: printed to stderr, and logged."""
    print(f"skipae export: {message}", file=sys.stderr)
    log.info(message)


def _crash_point(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Staging:
    """One export transaction: stage artefacts beside their destinations, then commit them together.

    :meth:`stage` returns the hidden name to build an artefact in (creating
    its parent directories); :meth:`commit` renames every staged artefact into place, all or
    none. Leaving the ``with`` block removes what is still staged and, when
    nothing was committed, the directories :meth:`stage` created, so a failed
    export leaves nothing behind, not even an empty ``<name>/``.
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


# --------------------------------------------------------------------------- the commit and its journal
def commit(moves: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Rename each staged ``tmp`` to its ``final`` (a sibling): all of them, or none, also across a crash.

    An existing ``final`` is kept unless ``overwrite``; then it is swapped out
    (old -> hidden backup, new -> final) and its backup deleted only once every
    move succeeded. On an exception, moves already made are undone (the new
    artefacts go back to their staging names, for the caller to remove) and the
    backups are renamed back, so the previous versions stay in place, intact.
    A crash leaves a journal that :func:`recover` finishes from.
    """
    plan = []  # (tmp, final, backup or None)
    for tmp, final in moves:
        backup = None
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists; pass overwrite=True (--overwrite) or another version")
            backup = _owned_name("old", final)
        plan.append((tmp, final, backup))
    _crash_point("staged")
    journals = _write_journals(plan)
    _crash_point("journaled")
    done = []
    try:
        for i, (tmp, final, backup) in enumerate(plan, 1):
            if backup is not None:
                os.rename(final, backup)
                _crash_point(f"swapped-out:{i}")
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
            _crash_point(f"moved:{i}")
    except BaseException:
        undone = True
        for tmp, final, backup in reversed(done):
            try:
                os.rename(final, tmp)
                if backup is not None:
                    os.rename(backup, final)
            except OSError as undo:  # pragma: no cover - the file system failed twice
                undone = False
                kept = f"; the previous version is kept at {backup}" if backup is not None else ""
                log.error("could not undo the export to %s (%s)%s", final, undo, kept)
        if undone:  # back to where we started: the journal has nothing left to finish
            _remove_journals(journals)
        raise
    _crash_point("committed")
    for _, _, backup in plan:
        if backup is not None:
            remove(backup)
    _crash_point("cleaned")
    _remove_journals(journals)


def _write_journals(plan: list) -> list[Path]:
    """One journal per folder the plan touches, each listing every move; written before any rename."""
    directories = list(dict.fromkeys(final.parent for _, final, _ in plan))
    name = f"{JOURNAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    journals = [d / name for d in directories]
    for journal in journals:
        base = journal.parent

        def rel(path):
            return os.path.relpath(path, base) if path is not None else None

        write_json_atomic(journal, {
            "what": "keras_skipae export commit journal: every tmp was verified; finish the moves",
            "pid": os.getpid(),
            "moves": [{"tmp": rel(t), "final": rel(f), "backup": rel(b)} for t, f, b in plan],
            "journals": [rel(j) for j in journals],
        })
    return journals


def _remove_journals(journals: Iterable[Path]) -> None:
    for journal in journals:
        try:
            journal.unlink()
        except FileNotFoundError:
            pass


def _read_journal(journal: Path) -> dict | None:
    try:
        data = json.loads(journal.read_text())
    except (OSError, ValueError):
        return None  # removed meanwhile, or a write killed before its atomic rename (then there is no such file)
    base = journal.parent

    def path(rel):
        return (base / rel) if rel is not None else None

    return {
        "pid": int(data.get("pid", 0)),
        "moves": [(path(m["tmp"]), path(m["final"]), path(m["backup"])) for m in data["moves"]],
        "journals": [path(j) for j in data.get("journals", [journal.name])],
    }


def _alive(pid: int) -> bool:
    """Whether another process with ``pid`` runs (on this machine)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finish(journal: dict) -> list[str]:
    """Roll a journaled commit forward: every new artefact into place, backups and journals removed."""
    done = []
    for tmp, final, backup in journal["moves"]:
        if tmp.exists():  # not moved yet; the old version (if any) is at final or already at backup
            if final.exists():
                if backup is None or backup.exists():
                    notice(f"{final} exists and is not the export's; kept it and dropped the staged {tmp.name}")
                    remove(tmp)
                    continue
                os.rename(final, backup)
            os.rename(tmp, final)
            done.append(str(final))
        elif backup is not None and backup.exists() and not final.exists():
            os.rename(backup, final)  # the new artefact is gone (an undo that failed half-way): keep the old one
            continue
        if backup is not None:
            remove(backup)
    _remove_journals(journal["journals"])
    return done


def recover_directory(directory: str | os.PathLike) -> list[str]:
    """Finish or clean up what killed exports left in ``directory``; returns what was done, one line each.

    Journals of dead processes: their commits are finished. Staging
    leftovers (``.tmp-*``) of dead processes: removed. Orphaned backups
    (``.old-*``, no journal): put back when their version is missing, else
    removed. Anything of a live export is left alone.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    actions = []
    for journal_path in sorted(directory.glob(f"{JOURNAL_PREFIX}*.json")):
        journal = _read_journal(journal_path)
        if journal is None or _alive(journal["pid"]):
            continue
        moved = _finish(journal)
        actions.append(
            f"finished an export commit interrupted by a crash ({journal_path.name}): "
            + (f"moved {', '.join(moved)} into place" if moved else "removed the replaced versions")
        )
    for entry in sorted(directory.iterdir()):
        owned, older, legacy = (pattern.match(entry.name) for pattern in (_OWNED, _OWNED_V1, _LEGACY))
        if owned is None and legacy is None:
            continue
        pid = int(owned["pid"]) if owned else int(older["pid"]) if older else 0
        if pid and _alive(pid):
            continue  # a running export's (or, for an older name, perhaps one's): left alone
        if entry.name.startswith(".tmp-"):
            remove(entry)
            actions.append(f"removed {entry}, the staging folder of an export that was killed")
            continue
        if owned or not older:
            final = entry.with_name((owned or legacy)["name"])
        else:
            final = _ambiguous_final(entry, older["name"], legacy["name"])
        if final.exists():
            remove(entry)
            actions.append(f"removed {entry}, a replaced version left by an export that was killed")
        else:
            os.rename(entry, final)
            actions.append(f"restored {final} from {entry.name}, left by an export killed while replacing it")
    for action in actions:
        notice(action)
    return actions


def _ambiguous_final(entry: Path, with_pid: str, without: str) -> Path | None:
    """Which version a backup named in the older format belongs to: ``.old-model-2-1a2b3c4d`` is model-2's
    (named before pids were in names) or model's (of process 2).

    Versions are integers: ``.old-2-4242-1a2b3c4d`` is version 2's. Otherwise a backup is restored where
    its version is missing: the name without the pid when only that one is
    missing; otherwise the pid reading (the format written last before this one). When both versions exist
    it is a replaced version's backup either way, and is removed.
    """
    a, b = entry.with_name(with_pid), entry.with_name(without)
    if with_pid.isdigit() and not without.isdigit():  # a TF Serving version (an integer) is what it held
        return a
    if a.exists() and not b.exists():
        return b
    return a


def recover(root: str | os.PathLike) -> list[str]:
    """Finish or clean up what killed exports left anywhere under ``root`` (see :func:`recover_directory`).

    Every export does this for the folders it writes to; call it to repair an
    export tree without exporting, e.g. before TF Serving picks it up.

    >>> recover("exported")        # prints what it did; [] when there was nothing to do
    """
    root = Path(root)
    actions = []
    visible = (p for p in root.rglob("*") if p.is_dir() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    folders = [root, *sorted(visible)]
    for folder in folders:
        if any(e.name.startswith((".tmp-", ".old-", JOURNAL_PREFIX)) for e in folder.iterdir()):
            actions += recover_directory(folder)
    return actions
