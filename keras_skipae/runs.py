"""The run directory: the one place that knows its layout on disk.

A run of a recipe (:func:`keras_skipae.recipes.run`) writes::

    RUN/recipe.yaml        the resolved recipe (every default filled in)
    RUN/environment.json   versions, git revision, seed, strategy
    RUN/metrics.json       {"stages": {STAGE: entry}} in recipe order
    RUN/STAGE/stage.json   the stage's entry once it finished (its commit marker)
    RUN/STAGE/model.keras  the stage's final (or best) model
    RUN/STAGE/history.csv  one row per epoch (1-based ``epoch`` column)
    RUN/STAGE/checkpoints/epoch_EEE.keras   best.keras (carrying its own epoch and value), last.keras
    RUN/STAGE/backup/      the resume backup while the stage is not committed
    RUN/STAGE/.workerN/    what worker N of a multi-worker run writes

A stage's entry holds ``kind`` (autoencoder, classifier, segmenter), ``model``
(relative to RUN), ``metrics`` (on ``evaluated_on``), ``val_metrics`` (the
best or last epoch), ``epochs``, ``best_epoch``, ``seconds`` and, for
auto-encoders, ``corruption`` ``{"kind", "level", "where"}``: how inputs were
corrupted in training, ``where`` being ``"model"`` (the model's own layer) or
``"pipeline"`` (the data pipeline; the model's arch then says "none").

Export, probe, evaluation and the command line read runs through
:class:`RunDir`; the runner writes through it.

>>> run = RunDir("runs/quickstart")
>>> run.stage("finetune").metrics["accuracy"]
>>> run.stage().model            # the last finished stage's model file
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_json_atomic, write_text_atomic

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.json"
ENVIRONMENT_FILE = "environment.json"
STAGE_FILE = "stage.json"
LOCK_FILE = ".skipae.lock"
HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"
CHECKPOINTS_DIR = "checkpoints"
BACKUP_DIR = "backup"
BEST_CHECKPOINT = "best.keras"
LAST_CHECKPOINT = "last.keras"
BEST_STATE = "best.json"
BACKUP_STATE = "state.json"  # in backup/: the last complete epoch and its weights file
COMPARISON_FILE = "comparison.json"  # a comparison of runs or seeds (and its .csv, .md, .png beside it)
WORKER_PREFIX = ".worker"
SEED_PREFIX = "seed_"
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.keras$")


# ------------------------------------------------------------------ the layout, as paths
def own_folder(stage_dir: str | os.PathLike, worker: int | None = None) -> Path:
    """Where one process writes a stage: the stage folder (the chief) or its ``.workerN`` folder (worker N)."""
    return Path(stage_dir) if worker is None else Path(stage_dir) / f"{WORKER_PREFIX}{worker}"


def is_worker_folder(name: str) -> bool:
    """Whether a folder name is a non-chief worker's (``.workerN``)."""
    return name.startswith(WORKER_PREFIX)


def epoch_checkpoint_name(epoch: int) -> str:
    """``epoch_EEE.keras``: the periodic checkpoint of 1-based ``epoch``."""
    return f"epoch_{epoch:03d}.keras"


def seed_dir(parent: str | os.PathLike, seed: int) -> Path:
    """``PARENT/seed_S``: one seed's run directory of a seeded run."""
    return Path(parent) / f"{SEED_PREFIX}{seed}"


def seed_dirs(parent: str | os.PathLike) -> list[Path]:
    """The finished seeds' run directories under ``parent`` (``seed_S`` with a ``metrics.json``), by seed."""
    def seed_of(path: Path) -> int:
        tail = path.name[len(SEED_PREFIX):]
        return int(tail) if tail.isdigit() else 0

    found = (c for c in Path(parent).glob(f"{SEED_PREFIX}*") if (c / METRICS_FILE).is_file())
    return sorted(found, key=seed_of)


class RunError(ValueError):
    """A run directory is missing, incomplete or not what was asked for; the message says which file."""


class RunDirLocked(RunError):
    """Another process is writing into this run directory."""


# run directories this process holds the lock of: path -> open lock file (closed, and so released, at exit)
_HELD_LOCKS: dict[str, Any] = {}


def read_history(path: str | os.PathLike) -> dict:
    """A trainer's ``history.csv`` as ``{epoch: {column: float}}`` ({} when the file is missing).

    ``epoch`` is the file's 1-based ``epoch`` column (the row's 1-based
    position when a file has none); empty and non-numeric cells are left out.
    The one reader of ``history.csv``.

    >>> read_history("runs/ae/pretrain/history.csv")[2]["val_loss"]
    """
    path = Path(path)
    if not path.exists():
        return {}
    out: dict = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            epoch = row.get("epoch")
            epoch = int(float(epoch)) if epoch not in (None, "") else i + 1
            values = {}
            for key, value in row.items():
                if key in ("epoch", None) or value in ("", None):
                    continue
                try:
                    values[key] = float(value)
                except ValueError:
                    continue
            out[epoch] = values
    return out


def checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """The epoch of a ``checkpoints/epoch_EEE.keras`` file name, None for other names."""
    m = _EPOCH_FILE.search(str(path))
    return int(m.group(1)) if m else None


@dataclass
class StageResult:
    """A finished stage: what the runner records in ``STAGE/stage.json`` and ``metrics.json``, and reads back.

    ``model`` is an absolute path; ``extra`` holds the other recorded keys
    (``encoder_from``, ``probe_seconds``); ``entry`` is the raw recorded dict.
    :meth:`to_entry` writes what :meth:`from_entry` reads.
    """

    name: str
    kind: str
    model: Path
    metrics: dict = field(default_factory=dict)
    val_metrics: dict = field(default_factory=dict)
    corruption: dict | None = None
    evaluated_on: str | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)
    entry: dict = field(default_factory=dict, repr=False)

    _FIELDS = ("kind", "model", "metrics", "evaluated_on", "epochs", "best_epoch", "val_metrics", "corruption",
               "seconds")

    @classmethod
    def from_entry(cls, run_dir: Path, name: str, entry: dict) -> StageResult:
        model = Path(entry.get("model", f"{name}/{MODEL_FILE}"))
        return cls(name=name, kind=str(entry.get("kind")), model=model if model.is_absolute() else run_dir / model,
                   metrics=dict(entry.get("metrics") or {}), val_metrics=dict(entry.get("val_metrics") or {}),
                   corruption=entry.get("corruption"), evaluated_on=entry.get("evaluated_on"),
                   epochs=entry.get("epochs"), best_epoch=entry.get("best_epoch"), seconds=entry.get("seconds"),
                   extra={k: v for k, v in entry.items() if k not in cls._FIELDS}, entry=dict(entry))

    def to_entry(self, run_dir: str | os.PathLike) -> dict:
        """The recorded form: ``model`` relative to ``run_dir`` when inside it (the run can move), else absolute."""
        root = Path(run_dir).resolve()
        model = Path(self.model).resolve()
        entry = {"kind": self.kind, "model": os.path.relpath(model, root) if model.is_relative_to(root) else str(model),
                 "metrics": dict(self.metrics), "evaluated_on": self.evaluated_on}
        if self.epochs is not None:
            entry.update(epochs=self.epochs, best_epoch=self.best_epoch, val_metrics=dict(self.val_metrics))
        if self.corruption is not None:
            entry["corruption"] = self.corruption
        entry.update(self.extra)
        if self.seconds is not None:
            entry["seconds"] = self.seconds
        return entry

    @property
    def training_corruption(self) -> dict | None:
        """``{"corruption", "corruption_level"}`` when the data pipeline corrupted the inputs in training.

        Such a model's own arch says corruption "none"; this says what the
        pipeline applied, e.g. ``{"corruption": "masking (pipeline)",
        "corruption_level": 0.25}``. None when the model's arch is right.
        """
        record = self.corruption
        if not record or record.get("where") != "pipeline":
            return None
        return {"corruption": f"{record['kind']} (pipeline)", "corruption_level": float(record["level"])}


class RunDir:
    """A run directory: read its recipe, stages, histories and checkpoints; write its files atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ files
    @property
    def recipe_file(self) -> Path:
        return self.path / RECIPE_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def environment_file(self) -> Path:
        return self.path / ENVIRONMENT_FILE

    def is_run(self) -> bool:
        """Whether this is a run directory (it has ``metrics.json`` or ``recipe.yaml``)."""
        return self.metrics_file.is_file() or self.recipe_file.is_file()

    def stage_dir(self, stage: str, worker: int | None = None) -> Path:
        """The folder of ``stage`` (of multi-worker worker ``worker`` when given and not the chief)."""
        return own_folder(self.path / stage, worker)

    def stage_file(self, stage: str, worker: int | None = None) -> Path:
        return self.stage_dir(stage, worker) / STAGE_FILE

    def history_file(self, stage: str, worker: int | None = None) -> Path:
        return self.stage_dir(stage, worker) / HISTORY_FILE

    def model_file(self, stage: str) -> Path:
        """``STAGE/model.keras``, where a training stage saves its final (or best) model."""
        return self.stage_dir(stage) / MODEL_FILE

    # ---------------------------------------------------------------- reading
    def recipe(self) -> dict | None:
        """The recorded (resolved) recipe as a dict, None when there is none."""
        if not self.recipe_file.is_file():
            return None
        try:
            raw = yaml.safe_load(self.recipe_file.read_text())
        except yaml.YAMLError as exc:
            raise RunError(f"{self.recipe_file}: not valid YAML ({exc}); the run directory is damaged, "
                           f"use a new --run-dir") from None
        if not isinstance(raw, dict):
            raise RunError(f"{self.recipe_file}: expected a recipe mapping, got {type(raw).__name__}")
        return raw

    def _metrics(self) -> dict:
        if not self.metrics_file.is_file():
            return {"stages": {}}
        try:
            results = json.loads(self.metrics_file.read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.metrics_file} is not valid JSON ({exc})") from None
        if not isinstance(results, dict) or not isinstance(results.get("stages", {}), dict):
            raise RunError(f"{self.metrics_file} is not a run's metrics.json; expected "
                           "{'stages': {NAME: {'kind': ...}}}")
        results.setdefault("stages", {})
        return results

    def results(self) -> dict:
        """``metrics.json``'s content: ``{"stages": {STAGE: entry}}`` ({} stages for a new run)."""
        return self._metrics()

    def stages(self) -> dict[str, StageResult]:
        """The finished stages in recipe order."""
        return {name: StageResult.from_entry(self.path, name, entry)
                for name, entry in self._metrics()["stages"].items()}

    def stage(self, name: str | None = None) -> StageResult:
        """The finished stage ``name`` (the last finished one when None)."""
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run directory")
        stages = self.stages()
        if not self.metrics_file.is_file():
            raise RunError(f"{self.path}: not a run directory (no {METRICS_FILE}); run a recipe into it first")
        if not stages:
            raise RunError(f"{self.metrics_file} lists no finished stage yet")
        if name is None:
            return stages[list(stages)[-1]]
        if name not in stages:
            raise RunError(f"{self.path}: no stage {name!r} has finished here; finished stages: {', '.join(stages)}")
        return stages[name]

    def finished(self, stage: str, worker: int | None = None) -> dict | None:
        """The stage's committed entry (its ``stage.json``), None while it is not finished."""
        marker = self.stage_file(stage, worker)
        return json.loads(marker.read_text()) if marker.is_file() else None

    def history(self, stage: str, worker: int | None = None) -> dict:
        """``{epoch: {column: value}}`` of the stage's ``history.csv`` (see :func:`read_history`)."""
        return read_history(self.history_file(stage, worker))

    def epoch_row(self, stage: str, epoch: int, worker: int | None = None) -> dict | None:
        """The history row of 1-based ``epoch``, None when it has none."""
        return self.history(stage, worker).get(int(epoch))

    def checkpoints(self, stage: str) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of the stage's periodic checkpoints, in epoch order."""
        folder = self.stage_dir(stage) / CHECKPOINTS_DIR
        found = [(checkpoint_epoch(p), p) for p in folder.glob("epoch_*.keras")]  # epoch_checkpoint_name's
        return sorted((e, p) for e, p in found if e is not None)

    def checkpoint_stages(self) -> list[str]:
        """Stage folders that hold periodic checkpoints, found on disk (sorted; for runs without ``metrics.json``).

        ``[""]`` when this folder is itself a stage folder (``self.path/checkpoints/``, as a
        :meth:`keras_skipae.train.Trainer.fit` ``run_dir`` is); ``RunDir.checkpoints("")`` then lists them.
        """
        if (self.path / CHECKPOINTS_DIR).is_dir():
            return [""]
        return [p.parent.name for p in sorted(self.path.glob(f"*/{CHECKPOINTS_DIR}")) if p.is_dir()]

    def stage_corruption(self, stage: str) -> dict | None:
        """:attr:`StageResult.training_corruption` of ``stage`` (None when not finished or not needed)."""
        entry = self._metrics()["stages"].get(stage) or self.finished(stage)
        if not entry:
            return None
        return StageResult.from_entry(self.path, stage, entry).training_corruption

    def data_defaults(self) -> dict:
        """``source``, ``train_split``, ``eval_split``, ``labels_per_class`` of the recorded recipe (or {})."""
        cfg = (self.recipe() or {}).get("data") or {}
        return {k: cfg[k] for k in ("source", "train_split", "eval_split", "labels_per_class")
                if cfg.get(k) is not None}

    # ---------------------------------------------------------------- writing
    def lock(self, what: str = "run") -> bool:
        """Become the one writer of this run directory until :meth:`unlock` or the end of this process.

        An exclusive ``flock`` on ``RUN/.skipae.lock``, which the operating
        system releases when the process ends, crash or ``kill -9`` included,
        so a stale lock never blocks a rerun. A second process that asks while
        the first holds it gets :class:`RunDirLocked` at once, naming that
        process (pid and command line). Asking again in the same process is a
        no-op that returns False (True: this call took the lock).
        """
        key = str(self.path.resolve())
        if key in _HELD_LOCKS:
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirLocked(
                f"{self.path} is in use: {holder} is writing into it. Wait for it to finish (or stop it), "
                f"or give this {what} another run directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} ({' '.join(sys.argv)[:300]})\n")
        handle.flush()
        _HELD_LOCKS[key] = handle
        return True

    def unlock(self) -> None:
        """Give up this process's lock (it also goes when the process ends)."""
        handle = _HELD_LOCKS.pop(str(self.path.resolve()), None)
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def write_recipe(self, recipe: dict) -> Path:
        return write_text_atomic(self.recipe_file, yaml.safe_dump(recipe, sort_keys=False))

    def write_environment(self, environment: dict) -> Path:
        """Record this process's environment: the top level is the latest process's, and ``processes``
        keeps every process that worked on the run, in order, so a run resumed under another library
        version (or on another machine) says so.
        """
        processes = []
        if self.environment_file.is_file():
            try:
                previous = json.loads(self.environment_file.read_text())
            except (OSError, json.JSONDecodeError):
                previous = None
            if isinstance(previous, dict):
                earlier = previous.get("processes")
                processes = list(earlier) if isinstance(earlier, list) else [
                    {k: v for k, v in previous.items() if k != "processes"}]
        processes.append(dict(environment))
        return write_json_atomic(self.environment_file, {**environment, "processes": processes})

    def environments(self) -> list[dict]:
        """The environment of every process that worked on the run, oldest first ([] when none was recorded)."""
        if not self.environment_file.is_file():
            return []
        recorded = json.loads(self.environment_file.read_text())
        return list(recorded.get("processes") or [{k: v for k, v in recorded.items() if k != "processes"}])

    def write_results(self, results: dict) -> Path:
        return write_json_atomic(self.metrics_file, results)

    def commit_stage(self, stage: str, entry: dict | StageResult, worker: int | None = None) -> Path:
        """Mark ``stage`` finished with ``entry`` (its ``stage.json``), then drop its resume backup.

        ``entry``: a :class:`StageResult` (written with :meth:`StageResult.to_entry`) or its recorded dict.

        The backup goes only after the commit: a process killed between the
        last epoch and this commit resumes with every epoch done and only
        evaluates and commits, never trains again.
        """
        if isinstance(entry, StageResult):
            entry = entry.to_entry(self.path)
        path = write_json_atomic(self.stage_file(stage, worker), entry)
        shutil.rmtree(self.stage_dir(stage, worker) / BACKUP_DIR, ignore_errors=True)
        return path


def stage_of(model_file: str | os.PathLike) -> tuple[RunDir, str]:
    """The run directory and stage a model file belongs to, from where it lies.

    ``RUN/STAGE/checkpoints/epoch_EEE.keras`` and ``RUN/STAGE/model.keras`` give
    ``(RunDir(RUN), STAGE)``; ask the run about the stage (its recorded
    corruption, its history). A file outside a run gives its folder's parent and
    name all the same: the run then simply has no record of it.

    >>> run, stage = stage_of("runs/ae/pretrain/checkpoints/epoch_002.keras")   # (RunDir('runs/ae'), 'pretrain')
    """
    path = Path(model_file)
    stage_dir = path.parent.parent if path.parent.name == CHECKPOINTS_DIR else path.parent
    return RunDir(stage_dir.parent), stage_dir.name


def resolve_model(target: str | os.PathLike, stage: str | None = None) -> Path:
    """A ``.keras`` file from a model path or a run directory (its last finished stage, or ``stage``).

    >>> resolve_model("runs/quickstart", "finetune")     # runs/quickstart/finetune/model.keras
    """
    path = Path(target)
    if path.is_file():
        return path
    if not path.exists():
        raise RunError(f"{target}: no such .keras file or run directory")
    run = RunDir(path)
    if not run.metrics_file.is_file():
        raise RunError(f"{target}: neither a .keras file nor a run directory with {METRICS_FILE}")
    return run.stage(stage).model

