"""The :class:`Trainer`: strategy, precision, optimiser and callbacks around ``model.fit``.

The training step is Keras's own (compiled once, ``steps_per_execution`` steps
per call); the trainer only chooses the strategy and dtype policy, builds the
optimiser and schedule, compiles with the metrics for the model's kind, and
installs callbacks that act at epoch boundaries. A stage directory holds::

    STAGE/model.keras                best (with validation data) or last model
    STAGE/checkpoints/best.keras     best.json, last.keras, epoch_EEE.keras
    STAGE/history.csv                one row per epoch
    STAGE/logs/                      TensorBoard: train/, validation/, images/, hparams/
    STAGE/backup/                    resume state while training (removed at the end)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer  # patched for multi-worker fit, see below

from . import callbacks as cb
from .encoder_lr import SCALED, encoder_variable_paths
from .. import runs
from ..choices import OPTIMIZERS, SCHEDULES
from ..kinds import MONITOR, kind_spec, loss_for, metrics_for, monitor_mode
from .schedules import WarmupSchedule
from .strategy import make_strategy, resolve_mixed_precision, worker_info
from .threads import apply_threads



@dataclasses.dataclass
class OptimizerSpec:
    """An optimiser and its learning-rate schedule, in epochs.

    ``schedule``: ``constant``, ``step`` (multiply by ``step_factor`` at each
    epoch in ``step_epochs``) or ``cosine`` (to zero at the last epoch), each
    after ``warmup_epochs`` of linear warm-up from zero. ``weight_decay`` is
    decoupled (AdamW-style) for every optimiser.

    Fine-tuning a transferred encoder: its variables (those of the ``encoder_*``
    layers) learn at ``encoder_lr_scale`` times the schedule's rate, and not at
    all for the first ``encoder_frozen_epochs`` (the new head trains alone); see
    :mod:`keras_skipae.train.encoder_lr`.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: tuple = ()
    step_factor: float = 0.1
    clipnorm: float | None = None
    encoder_lr_scale: float = 1.0
    encoder_frozen_epochs: float = 0.0

    @property
    def scales_encoder(self) -> bool:
        return self.encoder_lr_scale != 1.0 or self.encoder_frozen_epochs > 0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.encoder_lr_scale < 0:
            raise ValueError(f"encoder_lr_scale must be >= 0, got {self.encoder_lr_scale}")
        if self.encoder_frozen_epochs < 0:
            raise ValueError(f"encoder_frozen_epochs must be >= 0, got {self.encoder_frozen_epochs}")


def make_optimizer(spec: OptimizerSpec | dict | str, steps_per_epoch: int, epochs: int,
                   encoder_paths: list[str] | None = None) -> keras.optimizers.Optimizer:
    """A Keras optimiser for ``spec`` with its schedule laid out over ``epochs`` x ``steps_per_epoch``.

    ``encoder_paths``: the paths of the encoder's variables
    (:func:`~keras_skipae.train.encoder_lr.encoder_variable_paths`), needed when
    ``spec`` scales or freezes the encoder's learning rate.

    >>> opt = make_optimizer({"name": "sgd", "learning_rate": 0.05, "schedule": "cosine"}, 100, 10)
    """
    if isinstance(spec, str):
        spec = OptimizerSpec(name=spec)
    elif isinstance(spec, dict):
        spec = OptimizerSpec(**spec)
    if spec.schedule == "constant" and not spec.warmup_epochs:
        lr: Any = spec.learning_rate
    else:
        lr = WarmupSchedule(
            spec.learning_rate,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=round(spec.warmup_epochs * steps_per_epoch),
            kind=spec.schedule,
            boundaries=[round(e * steps_per_epoch) for e in spec.step_epochs],
            step_factor=spec.step_factor,
        )
    common = {"learning_rate": lr, "weight_decay": spec.weight_decay or None, "clipnorm": spec.clipnorm}
    classes = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    if spec.scales_encoder:
        if not encoder_paths:
            raise ValueError(
                "encoder_lr_scale / encoder_frozen_epochs act on a model's encoder, but no encoder variables were "
                "given: the model has no trainable encoder_* layers (is its encoder frozen with freeze_encoder?), or "
                "make_optimizer was called without encoder_paths (Trainer.compile passes them)"
            )
        classes = SCALED
        common.update(encoder_paths=encoder_paths, encoder_lr_scale=spec.encoder_lr_scale,
                      frozen_steps=round(spec.encoder_frozen_epochs * steps_per_epoch))
    if spec.name == "sgd":
        return classes["sgd"](momentum=spec.momentum, nesterov=spec.nesterov, **common)
    if spec.name == "adam":
        return classes["adam"](**common)
    return classes["adamw"](**{**common, "weight_decay": spec.weight_decay})


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic (slower)."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _patch_keras_multi_worker() -> None:
    """Work around Keras 3.15's broken ``fit`` under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras reduces each worker's scalar logs with ``strategy.reduce("MEAN", v, axis=0)``,
    which fails on scalars; reduce them with ``axis=None`` (a mean over replicas) instead.
    """
    if getattr(tf_trainer.reduce_per_replica, "_skipae_patched", False):
        return
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if tf_trainer._is_per_replica_instance(v) else v,
                values,
            )
        return original(values, strategy, reduction)

    reduce_per_replica._skipae_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


@contextlib.contextmanager
def _keras_distribution(model, strategy):
    """Run ``fit``/``evaluate`` so that Keras 3.15 handles ``strategy`` (see :func:`_patch_keras_multi_worker`).

    Under MultiWorkerMirroredStrategy Keras's eager pre-build reduces a data batch across
    workers and fails; with the model's own strategy unset and the strategy's scope entered,
    Keras takes the same strategy from the scope and builds while tracing instead.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    _patch_keras_multi_worker()
    model._distribute_strategy = None
    with strategy.scope():
        yield


def _cardinality(ds) -> int | None:
    n = int(ds.cardinality()) if isinstance(ds, tf.data.Dataset) else -1
    return n if n > 0 else None


class Trainer:
    """Trains keras_skipae models on one device or many.

    ``strategy``: ``auto``, ``mirrored``, ``multi_worker`` (``TF_CONFIG``),
    ``tpu`` or ``one_device``. ``mixed_precision``: None (float32),
    ``mixed_float16``, ``mixed_bfloat16`` or ``auto``. Build models inside
    :meth:`scope` so their variables are distributed and use the policy.

    >>> trainer = Trainer(strategy="auto", mixed_precision="auto", seed=0)
    >>> with trainer.scope():
    ...     model = keras_skipae.build("autoencoder", "tiny")
    >>> history = trainer.fit(model, train_ds, val_ds, epochs=5, run_dir="runs/demo/pretrain")
    """

    def __init__(
        self,
        strategy: str | tf.distribute.Strategy = "auto",
        mixed_precision: str | None = None,
        jit_compile: bool = False,
        seed: int = 0,
        deterministic: bool = False,
        steps_per_execution: int | str = "auto",
        cluster: str = "auto",
        intra_op_threads: int | str = "auto",
        inter_op_threads: int | str = "auto",
    ):
        # the thread pools and the strategy first: both must be set before TensorFlow's runtime starts
        self.threads = apply_threads(intra_op_threads, inter_op_threads)
        self.strategy = make_strategy(strategy, cluster) if isinstance(strategy, str) else strategy
        set_seed(seed, deterministic)
        self.seed = seed
        self.deterministic = deterministic
        self.jit_compile = bool(jit_compile)
        self.steps_per_execution = steps_per_execution
        self.strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        self.policy = resolve_mixed_precision(mixed_precision)
        self.task_index, self.is_chief = worker_info(self.strategy)

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def per_replica_batch(self, global_batch: int) -> int:
        """The batch each replica sees; the global batch must divide evenly."""
        if global_batch % self.num_replicas:
            raise ValueError(
                f"batch_size {global_batch} does not divide over {self.num_replicas} replicas; "
                f"use a multiple of {self.num_replicas}"
            )
        return global_batch // self.num_replicas

    @contextlib.contextmanager
    def scope(self):
        """Strategy scope plus dtype policy: build (and load) models inside it."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)
        try:
            with self.strategy.scope():
                yield self.strategy
        finally:
            keras.config.set_dtype_policy(previous)

    def compile(self, model: keras.Model, optimizer, *, steps_per_epoch: int, epochs: int,
                loss=None, metrics=None) -> keras.Model:
        """Compile ``model`` with the optimiser and the loss/metrics for its kind."""
        spe = self.steps_per_execution
        if spe == "auto":
            spe = max(1, min(32, steps_per_epoch))
        if self.num_replicas > 1 and spe != 1:
            # Keras 3.15's multi-step loop fails under MirroredStrategy ("You must feed a value for
            # placeholder tensor ... while/cond"); one step per call is correct, if slower on tiny models
            spe = 1
        with self.strategy.scope():
            opt = optimizer if isinstance(optimizer, keras.optimizers.Optimizer) else make_optimizer(
                optimizer, steps_per_epoch, epochs, encoder_paths=encoder_variable_paths(model)
            )
            model.compile(
                optimizer=opt,
                loss=loss or loss_for(model),
                metrics=metrics if metrics is not None else metrics_for(model),
                jit_compile=self.jit_compile,
                steps_per_execution=int(spe),
            )
            # the optimiser's slots made now, not inside the first traced step: a tf.function that creates
            # variables is traced twice, so this halves the compile time of every stage
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        return model

    def fit(
        self,
        model: keras.Model,
        train_ds: tf.data.Dataset,
        val_ds: tf.data.Dataset | None = None,
        *,
        epochs: int,
        optimizer: OptimizerSpec | dict | str | keras.optimizers.Optimizer = "adam",
        run_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        steps_per_epoch: int | None = None,
        monitor: str | None = None,
        restore_best: bool = True,
        keep_backup: bool = False,
        stage: str = "training",
        hparams: dict | None = None,
        sample_images: tuple | None = None,
        verbose: int | str = "auto",
        loss=None,
        metrics=None,
        callbacks: list | None = None,
    ) -> keras.callbacks.History:
        """Compile and train ``model``; with ``run_dir`` write the stage directory (see module doc).

        ``train_ds`` yields batches of the global batch size. A run killed and
        started again with the same ``run_dir`` resumes after its last complete
        epoch. With ``val_ds`` and ``restore_best`` the model ends with the
        weights of its best epoch (by ``monitor``, default the kind's main
        validation metric) and that is what ``model.keras`` holds. Extra
        ``callbacks`` run before the trainer's own. ``keep_backup``: leave the
        resume backup in place after training (the caller removes it once it has
        recorded the results; a rerun before that finds every epoch done).
        """
        if steps_per_epoch is None and isinstance(train_ds, tf.data.Dataset) and int(train_ds.cardinality()) == 0:
            raise ValueError(
                f"{stage}: the training data gives no batch at all: the stage's batch size is larger than its "
                "training set and only whole batches are trained. Lower the stage's batch_size (--set "
                "STAGE.batch_size=N) or give it more examples"
            )
        steps = steps_per_epoch or _cardinality(train_ds)
        if steps is None:
            raise ValueError(
                f"{stage}: the training dataset (train_ds) has an unknown number of batches (tf.data cardinality "
                "unknown, e.g. after filter() or from a streamed source), so epochs cannot be counted. In a "
                "recipe, use a data source of known size or give the stage a limit (limit: N in the stage, or "
                "--set STAGE.limit=N); "
                "calling Trainer.fit directly, pass steps_per_epoch= or build the dataset with a known "
                "cardinality (e.g. tf.data.experimental.assert_cardinality)"
            )
        self.compile(model, optimizer, steps_per_epoch=steps, epochs=epochs, loss=loss, metrics=metrics)
        kind = getattr(model, "kind", "")
        monitor_name, mode = monitor_mode(monitor) if monitor else MONITOR.get(kind, ("val_loss", "min"))
        user_callbacks = list(callbacks or [])
        callbacks = [cb.LearningRateLogger(), cb.TerminateOnNaN(stage)]
        checkpoints = None
        if run_dir is not None:
            run_dir = Path(run_dir)
            own = runs.own_folder(run_dir, None if self.is_chief else self.task_index)
            leftovers = cb.remove_temporaries(own)
            if leftovers:
                print(f"{stage}: removed {len(leftovers)} temporary file(s) a killed run left in {own}: "
                      f"{', '.join(leftovers[:5])}", flush=True)
            # keep_backup: the caller (the stage runner) deletes the backup only once it has committed the
            # stage's results, so a kill between the last epoch and that commit loses no training
            backup = cb.AtomicBackupAndRestore(own / runs.BACKUP_DIR, delete_checkpoint=not keep_backup)
            callbacks.insert(0, backup)
            # every worker keeps its own checkpoints (non-chief ones under STAGE/.workerK), so that all
            # end on the same best weights; TensorBoard logs come from the chief only
            checkpoints = cb.ModelCheckpoints(
                own / runs.CHECKPOINTS_DIR, monitor=monitor_name if val_ds is not None or monitor else None,
                mode=mode, every=checkpoint_every,
            )
            callbacks += [checkpoints, cb.HistoryCSV(own / runs.HISTORY_FILE)]
            if self.is_chief:
                logs = run_dir / "logs"
                callbacks.append(keras.callbacks.TensorBoard(str(logs), write_graph=False, profile_batch=0,
                                                             update_freq="epoch"))
                if hparams:
                    callbacks.append(cb.HParamsLogger(logs, hparams))
                if kind in MONITOR and kind_spec(kind).denoising and sample_images is not None:
                    callbacks.append(cb.ReconstructionImages(logs, *sample_images))
            # the backup is saved last at each epoch end, after every other file of that epoch
            callbacks.append(callbacks.pop(0))
        callbacks = user_callbacks + callbacks
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        with _keras_distribution(model, self.strategy):
            history = self._fit(model, train_ds, val_ds, epochs, steps_per_epoch, callbacks, verbose)
        if checkpoints is not None:
            best = checkpoints.best_path
            if restore_best and checkpoints.best_value is not None and best.exists():
                getattr(model, "task_model", model).load_weights(best)  # a joint model's file is its task model
                history.best_epoch = checkpoints.best_epoch
        if run_dir is not None:
            cb.save_model_atomic(model, own / runs.MODEL_FILE)
        return history

    @staticmethod
    def _fit(model, train_ds, val_ds, epochs, steps_per_epoch, callbacks, verbose):
        return model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # tf.data pipelines shuffle themselves
        )

    def evaluate(self, model: keras.Model, ds: tf.data.Dataset, verbose: int = 0) -> dict:
        """``{metric: value}`` of compiled ``model`` on ``ds`` (loss plus the kind's metrics)."""
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
            self.compile(model, "adam", steps_per_epoch=1, epochs=1)
        with _keras_distribution(model, self.strategy):
            result = model.evaluate(ds, return_dict=True, verbose=verbose)
        return {k: float(v) for k, v in result.items()}

    def describe(self, global_batch: int | None = None) -> str:
        """One line: strategy, replicas, per-replica batch, precision."""
        text = f"strategy {self.strategy_name} ({self.num_replicas} replica(s))"
        if global_batch:
            text += f", global batch {global_batch} = {self.per_replica_batch(global_batch)} per replica"
        return text + f", precision {self.policy}" + (", XLA" if self.jit_compile else "")
