"""Callbacks the trainer installs: kill-safe backups and checkpoints, CSV history,
learning-rate logging, a clear divergence error, and TensorBoard extras.

Everything here runs at epoch boundaries only, so the training step itself is
untouched: no per-batch Python work and no host synchronisation per step.
Files are written to a temporary name and moved into place with ``os.replace``,
so a process killed at any moment (``kill -9``) leaves either the previous file
or the new one, never a truncated one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from ..atomic import write_json_atomic
from ..runs import (BACKUP_STATE, BEST_CHECKPOINT, BEST_STATE, LAST_CHECKPOINT, epoch_checkpoint_name,
                    is_worker_folder)
from .metrics import _ToUnitRange


_PARTIAL_LOAD = re.compile(r"skipping|freshly.initiali[sz]ed|mismatch|not all|could not load|did not load", re.I)
#: the metadata a checkpoint carries inside its own .keras file, so weights and metadata cannot disagree
CHECKPOINT_INFO = "skipae_checkpoint.json"


def checkpoint_info(path) -> dict | None:
    """The metadata stored inside a checkpoint ``.keras`` file (None for a file without it)."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(CHECKPOINT_INFO)) if CHECKPOINT_INFO in z.namelist() else None
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        return None


def remove_temporaries(folder) -> list[str]:
    """Delete the temporary files a killed writer left in ``folder`` (and its sub-folders); their names.

    Only the process that owns the folder calls this, when it starts writing
    there (the run directory's lock makes it the one writer), so every
    temporary file found is a leftover: ``.NAME.PID.tmp*``, ``.NAME.tmp`` and
    the backup's ``.tmp_*`` files. Other workers' ``.workerN`` folders are left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*"):
        if any(is_worker_folder(part) for part in path.relative_to(folder).parts):
            continue
        if path.is_file() and (path.name.startswith(".tmp_") or ".tmp" in path.name):
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(folder)))
    return removed


def save_model_atomic(model: keras.Model, path, info: dict | None = None) -> Path:
    """``model.save(path)`` through a temporary ``.keras`` file and ``os.replace``.

    A joint training model (:class:`~keras_skipae.train.joint.JointModel`) is
    saved as its plain task model.
    """
    model = getattr(model, "task_model", model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    if info is not None:  # inside the same file: one rename commits the weights and what they are
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(CHECKPOINT_INFO, json.dumps(info))
    os.replace(tmp, path)
    return path


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` whose saves survive ``kill -9`` at any moment.

    Keras's version writes the weights and then the epoch counter in place, so
    a kill in between resumes at the wrong epoch (or reads a truncated file).
    Here each epoch's weights (with the optimizer state) go to a new file, and a
    small ``state.json`` naming that file and the epoch is replaced atomically
    last; older weight files are removed afterwards. A run started again with
    the same backup directory resumes after its last completed epoch.
    """

    STATE = BACKUP_STATE

    def __init__(self, backup_dir, delete_checkpoint: bool = True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self.resumed_from_epoch = 0

    @property
    def _state_path(self) -> Path:
        return Path(self.backup_dir) / self.STATE

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        if not self._state_path.exists():
            return
        state = json.loads(self._state_path.read_text())
        weights = Path(self.backup_dir) / state["weights"]
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.model.load_weights(weights)
            # Keras 3 only warns for some mismatches ("Skipping variable loading ...", "freshly-initialized"):
            # a resume that restored part of the state would go on in silence, so any such warning is an error
            partial = [str(w.message) for w in caught if _PARTIAL_LOAD.search(str(w.message))]
            if partial:
                raise ValueError("; ".join(partial)[:600])
        except Exception as exc:  # Keras raises ValueError/KeyError/OSError for weights that do not fit
            raise ValueError(
                f"cannot resume from the backup {weights} in {self.backup_dir} (epoch {state['epoch']}): its "
                f"weights do not fit this model ({type(exc).__name__}: {exc}). The backup was written by a "
                f"different model or optimiser (e.g. the recipe was edited since). Delete the folder "
                f"{self.backup_dir} to start this stage afresh, or use a new --run-dir"
            ) from exc
        self.model._initial_epoch = int(state["epoch"])
        self.resumed_from_epoch = int(state["epoch"])
        print(f"Resuming from the backup of epoch {state['epoch']} in {self.backup_dir}", flush=True)

    def _save_model(self):
        directory = Path(self.backup_dir)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{self._current_epoch:04d}.weights.h5"
        tmp = directory / f".tmp_{name}"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, directory / name)
        write_json_atomic(self._state_path, {"epoch": self._current_epoch, "weights": name})
        for old in directory.glob("epoch_*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir, ignore_errors=True)


class ModelCheckpoints(keras.callbacks.Callback):
    """``best.keras``, ``last.keras`` and, every ``every`` epochs, ``epoch_{EEE}.keras``.

    ``best`` follows ``monitor`` (``mode`` "min" or "max"); its value and epoch
    are kept in ``best.json`` beside it, so a resumed run keeps comparing
    against the best so far. Without the monitored value in the logs (no
    validation data) only ``last`` and the periodic checkpoints are written.
    """

    def __init__(self, directory, monitor: str | None = None, mode: str = "min", every: int | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = mode
        self.every = every
        self.best_value = None
        self.best_epoch = None

    @property
    def best_path(self) -> Path:
        return self.directory / BEST_CHECKPOINT

    @property
    def last_path(self) -> Path:
        return self.directory / LAST_CHECKPOINT

    def on_train_begin(self, logs=None):
        # the truth is inside best.keras itself; best.json is a copy for people and is rewritten to match
        state = checkpoint_info(self.best_path) if self.best_path.exists() else None
        if state is not None and state.get("monitor") == self.monitor:
            self.best_value, self.best_epoch = state["value"], state["epoch"]
            write_json_atomic(self.directory / BEST_STATE, state)

    def _improved(self, value) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        save_model_atomic(self.model, self.last_path)
        if self.every and (epoch + 1) % self.every == 0:
            save_model_atomic(self.model, self.directory / epoch_checkpoint_name(epoch + 1))
        value = logs.get(self.monitor) if self.monitor else None
        if value is not None:
            value = float(value)
            if self._improved(value):
                self.best_value, self.best_epoch = value, epoch + 1
                state = {"monitor": self.monitor, "mode": self.mode, "value": value, "epoch": epoch + 1}
                save_model_atomic(self.model, self.best_path, info=state)
                write_json_atomic(self.directory / BEST_STATE, state)


class HistoryCSV(keras.callbacks.Callback):
    """One row per epoch in ``history.csv`` (``epoch`` 1-based, then every logged value).

    On a resumed run the rows of epochs that are trained again are dropped
    first, so the file ends with exactly one row per epoch.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] | None = None

    def on_train_begin(self, logs=None):
        self.rows = None

    def on_epoch_end(self, epoch, logs=None):
        if self.rows is None:  # first epoch of this process: keep the rows of earlier epochs only
            self.rows = []
            if self.path.exists() and epoch > 0:
                with open(self.path, newline="") as f:
                    self.rows = [row for row in csv.DictReader(f) if int(row["epoch"]) <= epoch]
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current ``learning_rate`` to each epoch's logs (CSV, TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.model.optimizer is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN or infinite."""


class TerminateOnNaN(keras.callbacks.Callback):
    """Stops training with :class:`TrainingDiverged` when an epoch's loss is NaN or infinite.

    Checked at epoch end (the loss is already on the host there), so it costs
    nothing per step. The message names the stage, the epoch and what to try.
    """

    def __init__(self, stage: str = "training"):
        super().__init__()
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise TrainingDiverged(
                f"{self.stage}: the loss became {float(loss)} in epoch {epoch + 1}. Lower the learning rate "
                "(e.g. --set STAGE.optimizer.learning_rate=...), add warm-up epochs, check the input "
                "normalisation (mean/std), or train in float32 instead of mixed precision."
            )


class ReconstructionImages(keras.callbacks.Callback):
    """Writes a TensorBoard image grid each epoch: clean | corrupted | reconstructed rows.

    ``images`` is a batch of clean normalised images (a few are enough);
    ``corrupted`` the matching model input when the pipeline corrupts (else the
    model's own corruption layer is applied here).
    """

    def __init__(self, log_dir, images, corrupted=None, max_images: int = 6):
        super().__init__()
        self.log_dir = str(log_dir)
        self.images = np.asarray(images)[:max_images]
        self.corrupted = None if corrupted is None else np.asarray(corrupted)[:max_images]
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        corrupted = self.corrupted
        if corrupted is None:
            try:
                corrupted = model.get_layer("corruption")(self.images, training=True)
            except ValueError:  # no corruption layer
                corrupted = self.images
        recon = model(corrupted, training=False)
        arch = model.arch
        unit = _ToUnitRange(arch.channel_mean(), arch.channel_std(), arch.pixel_scale)
        rows = [unit(t) for t in (self.images, corrupted, recon)]
        grid = tf.concat([tf.concat(tf.unstack(r), axis=1) for r in rows], axis=0)[None]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        with self._writer.as_default():
            tf.summary.image("clean | corrupted | reconstructed", grid, step=epoch + 1)
        self._writer.flush()


class HParamsLogger(keras.callbacks.Callback):
    """Records the run's hyper-parameters for TensorBoard's HParams dashboard."""

    def __init__(self, log_dir, hparams: dict):
        super().__init__()
        self.log_dir = str(log_dir)
        self.hparams = {
            k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()
        }

    def on_train_begin(self, logs=None):
        writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "hparams"))
        with writer.as_default():
            hparams_api.hparams(self.hparams)
        writer.flush()
