"""Hyper-parameter search for skip auto-encoders that optimises feature quality, not reconstruction.

:class:`SkipAEHyperModel` is a ``keras_tuner.HyperModel`` over the
auto-encoder's search space (:class:`SearchSpace`: depth, widths, convolutions
per stage, skips and their spacing, merge mode, corruption type and level,
learning rate). Each trial pre-trains on unlabelled images and then reports
two numbers: ``probe_accuracy`` (a linear probe on the pooled encoder
features, fitted on a small labelled set and scored on held-out images; see
:mod:`keras_skipae.probe`) and ``val_reconstruction_loss`` (validation MSE).
Either can be the tuner's objective (``probe_accuracy`` by default); both are
recorded for every trial, and :class:`TuneResult` says when they disagree on
the best trial — the pitfall of Alberti et al. (arXiv 1712.01655).

:func:`make_tuner` wraps RandomSearch, BayesianOptimization and Hyperband;
:func:`search` runs a tune recipe (``skipae tune RECIPE``) into a run
directory: ``trials.csv``, ``tune.json``, ``summary.txt``, ``best.keras`` and
TensorBoard's HParams view under ``logs/hparams``.

Distributed search uses keras-tuner's own chief/worker mode: start the same
command on every machine with ``KERASTUNER_ORACLE_IP``/``KERASTUNER_ORACLE_PORT``
naming the chief and ``KERASTUNER_TUNER_ID`` set to ``chief`` on the chief and
to a unique ``tuner0``, ``tuner1``, ... on each worker; the run directory must
be shared. The chief hands out trials and writes the summary; workers train.

Example::

    from keras_skipae import tune
    config = tune.load_tune_config("recipes/tune_fashion_mnist.yaml")
    result = tune.search(config, "runs/tune")
    print(result.summary())
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import keras
import numpy as np
import tensorflow as tf

from tensorboard.plugins.hparams import api as hp_api

from .arch import Arch
from .factory import build
from .models import resolve_arch
from .probe import features as feats
from .probe import format_table
from .probe.reconstruction import normalise
from .recipes.loading import load_recipe
from .runs import BEST_CHECKPOINT, RunDir
from .choices import TuneAlgorithm
from .recipes.schema import SearchSpace, TuneConfig
from .recipes.study import load_study_data, pretrain_batches
from .train import Trainer
from .extras import require

keras_tuner = require("keras_tuner", "tune", "hyper-parameter search")
tuner_distribute = require("keras_tuner.src.distribute.utils", "tune", "hyper-parameter search")

OBJECTIVES = {"probe_accuracy": "max", "val_reconstruction_loss": "min"}
ALGORITHMS = get_args(TuneAlgorithm)


def _choice(hp, name: str, values: list):
    return values[0] if len(values) == 1 else hp.Choice(name, values)


class SkipAEHyperModel(keras_tuner.HyperModel):
    """keras-tuner HyperModel for skip auto-encoders, scored by a linear probe.

    ``base``: the preset (or :class:`~keras_skipae.arch.Arch`) whose other
    fields (input shape, normalisation, activation, ...) every trial keeps,
    with ``overrides`` applied. ``probe_sets``: ``((x_labelled, y_labelled),
    (x_heldout, y_heldout))`` with images already normalised for the base arch
    (see :func:`keras_skipae.probe.reconstruction.normalise`); without it
    trials report only ``val_reconstruction_loss``.

    >>> hm = SkipAEHyperModel("tiny", SearchSpace(stages=[2]), probe_sets=((xl, yl), (xh, yh)))
    >>> model = hm.build(keras_tuner.HyperParameters())
    """

    def __init__(self, base: str | Arch = "tiny", space: SearchSpace | dict | None = None, *,
                 overrides: dict | None = None, probe_sets: tuple | None = None, pooling: str = "avg",
                 knn_k: int = 10, seed: int = 0, name: str = "skip_autoencoder"):
        super().__init__(name=name, tunable=True)
        self.base = resolve_arch(base, **(overrides or {}))
        self.space = space if isinstance(space, SearchSpace) else SearchSpace.model_validate(space or {})
        self.probe_sets = probe_sets
        self.pooling = pooling
        self.knn_k = knn_k
        self.seed = seed

    def arch(self, hp: keras_tuner.HyperParameters) -> Arch:
        """The trial's architecture: the base arch with this trial's choices."""
        s = self.space
        stages = _choice(hp, "stages", s.stages)
        width = _choice(hp, "base_width", s.base_width)
        corruption = _choice(hp, "corruption", s.corruption)
        level = 0.0
        noisy = [c for c in s.corruption if c != "none"]
        if corruption != "none":
            with hp.conditional_scope("corruption", noisy) if len(s.corruption) > 1 else contextlib.nullcontext():
                level = s.corruption_level[0] if s.corruption_level[0] == s.corruption_level[1] else hp.Float(
                    "corruption_level", *s.corruption_level)
        skips = bool(hp.Boolean("skips", default=True) if len(set(s.skips)) > 1 else s.skips[0])
        kw = {}
        if skips:
            with hp.conditional_scope("skips", [True]) if len(set(s.skips)) > 1 else contextlib.nullcontext():
                kw["skip_every"] = _choice(hp, "skip_every", s.skip_every)
                kw["merge"] = _choice(hp, "merge", s.merge)
        return self.base.replace(
            widths=tuple(width * 2**i for i in range(stages)),
            convs_per_stage=_choice(hp, "convs_per_stage", s.convs_per_stage),
            skips=skips,
            corruption=corruption,
            corruption_level=float(level),
            **kw,
        )

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        model = build("autoencoder", self.arch(hp))
        lr = self.space.learning_rate
        rate = lr[0] if lr[0] == lr[1] else hp.Float("learning_rate", *lr, sampling="log")
        model.compile(keras.optimizers.Adam(rate), "mse")
        return model

    def fit(self, hp, model, *args, **kwargs) -> dict:
        """Pre-train, then score: ``{"probe_accuracy", "knn_accuracy", "val_reconstruction_loss"}``."""
        kwargs.setdefault("verbose", 0)
        history = model.fit(*args, **kwargs)
        losses = history.history.get("val_loss")
        if not losses:
            raise ValueError("tuning needs validation data: pass validation_data= to search() "
                             "(val_reconstruction_loss is the validation MSE)")
        result = {"val_reconstruction_loss": float(losses[-1])}
        if self.probe_sets is not None:
            (x_lab, y_lab), (x_test, y_test) = self.probe_sets
            f_lab = feats.extract_features(model, x_lab, self.pooling)
            f_test = feats.extract_features(model, x_test, self.pooling)
            result["probe_accuracy"] = feats.linear_probe_accuracy(f_lab, y_lab, f_test, y_test,
                                                                   seed=self.seed).accuracy
            result["knn_accuracy"] = feats.knn_accuracy(f_lab, y_lab, f_test, y_test, k=self.knn_k)
        return result


def make_tuner(
    hypermodel: SkipAEHyperModel,
    algorithm: str = "random",
    *,
    objective: str = "probe_accuracy",
    max_trials: int = 10,
    max_epochs: int = 9,
    hyperband_factor: int = 3,
    directory: str | Path = "runs/tune",
    project_name: str = "search",
    overwrite: bool = False,
    seed: int = 0,
    distribution_strategy: Any = None,
) -> keras_tuner.Tuner:
    """A RandomSearch, BayesianOptimization or Hyperband tuner with a named objective.

    ``objective``: ``probe_accuracy`` (maximised) or ``val_reconstruction_loss``
    (minimised). ``max_epochs``/``hyperband_factor`` apply to Hyperband, which
    chooses each trial's epochs itself. ``distribution_strategy`` (e.g.
    ``keras_skipae.train.Trainer(...).strategy``) builds and trains every trial
    under that ``tf.distribute`` strategy.

    >>> tuner = make_tuner(hm, "bayesian", max_trials=20, directory="runs/tune")
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    if objective == "probe_accuracy" and hypermodel.probe_sets is None:
        raise ValueError("objective 'probe_accuracy' needs labelled data: give the hypermodel probe_sets=")
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(objective, OBJECTIVES[objective]),
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
        distribution_strategy=distribution_strategy,
    )
    if algorithm == "random":
        return keras_tuner.RandomSearch(max_trials=max_trials, **common)
    if algorithm == "bayesian":
        return keras_tuner.BayesianOptimization(max_trials=max_trials, **common)
    if algorithm == "hyperband":
        return keras_tuner.Hyperband(max_epochs=max_epochs, factor=hyperband_factor, **common)
    raise ValueError(f"unknown tuner algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")


# --------------------------------------------------------------------- results
@dataclass
class TuneResult:
    """Every trial's hyper-parameters and both scores, and the best trial by each."""

    objective: str
    trials: list = field(default_factory=list)

    def _completed(self, metric: str) -> list:
        return [t for t in self.trials if t.get(metric) is not None]

    def best(self, metric: str | None = None) -> dict | None:
        """The best completed trial by ``metric`` (default: the objective)."""
        metric = metric or self.objective
        done = self._completed(metric)
        if not done:
            return None
        pick = max if OBJECTIVES[metric] == "max" else min
        return pick(done, key=lambda t: t[metric])

    @property
    def disagree(self) -> bool | None:
        """True when the best-reconstructing trial has worse probe accuracy than the best trial."""
        a, b = self.best("probe_accuracy"), self.best("val_reconstruction_loss")
        if a is None or b is None or b.get("probe_accuracy") is None:
            return None
        return b["probe_accuracy"] < a["probe_accuracy"]

    def summary(self) -> str:
        """Every trial with both scores (sorted by the objective), then the two winners."""
        hp_names = sorted({k for t in self.trials for k in t["hyperparameters"]})
        cols = ["trial", "status", "probe_acc", "knn_acc", "val_recon_loss"] + hp_names
        ordered = sorted(self.trials, key=lambda t: (t.get(self.objective) is None,
                                                     -(t.get(self.objective) or 0) if OBJECTIVES[self.objective]
                                                     == "max" else (t.get(self.objective) or 0)))
        rows = []
        for t in ordered:
            rows.append([t["trial_id"], t["status"], _num(t.get("probe_accuracy")), _num(t.get("knn_accuracy")),
                         _num(t.get("val_reconstruction_loss"))]
                        + [_num(t["hyperparameters"].get(h)) for h in hp_names])
        lines = [f"objective: {self.objective} ({OBJECTIVES[self.objective]}imise); {len(self.trials)} trials",
                 format_table(cols, rows, markdown=False)]
        a, b = self.best("probe_accuracy"), self.best("val_reconstruction_loss")
        if a is not None:
            lines.append(f"best by probe accuracy:          trial {a['trial_id']} "
                         f"(probe {a['probe_accuracy']:.4f}, val recon loss {a['val_reconstruction_loss']:.5f})")
        if b is not None:
            lines.append(f"best by reconstruction loss:     trial {b['trial_id']} "
                         f"(probe {_num(b.get('probe_accuracy'))}, val recon loss {b['val_reconstruction_loss']:.5f})")
        if self.disagree:
            lines.append("The two objectives DISAGREE: choosing by reconstruction loss would lose "
                         f"{a['probe_accuracy'] - b['probe_accuracy']:.4f} probe accuracy against choosing by probe.")
        elif self.disagree is False:
            lines.append("Both objectives agree here: the best-reconstructing trial also has the best probe accuracy.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"objective": self.objective, "disagree": self.disagree,
                "best": self.best(), "best_by_reconstruction": self.best("val_reconstruction_loss"),
                "trials": self.trials}


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def collect_results(tuner: keras_tuner.Tuner, objective: str) -> TuneResult:
    """Every trial the tuner's oracle knows, with both scores (``None`` where a trial has none)."""
    trials = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        row = {"trial_id": trial_id, "status": str(trial.status),
               "hyperparameters": dict(trial.hyperparameters.values)}
        for metric in ("probe_accuracy", "knn_accuracy", "val_reconstruction_loss"):
            row[metric] = (float(trial.metrics.get_last_value(metric))
                           if trial.metrics.exists(metric) else None)
        trials.append(row)
    return TuneResult(objective, trials)


def write_hparams(result: TuneResult, log_dir: str | Path) -> Path:
    """TensorBoard HParams view: one run per trial with both scores as metrics."""
    log_dir = Path(log_dir)
    names = sorted({k for t in result.trials for k in t["hyperparameters"] if not k.startswith("tuner/")})
    metrics = ["probe_accuracy", "knn_accuracy", "val_reconstruction_loss"]
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams_config(hparams=[hp_api.HParam(n) for n in names],
                              metrics=[hp_api.Metric(m, display_name=m) for m in metrics])
    for t in result.trials:
        writer = tf.summary.create_file_writer(str(log_dir / f"trial_{t['trial_id']}"))
        with writer.as_default():
            hp_api.hparams({k: v for k, v in t["hyperparameters"].items() if k in names}, trial_id=t["trial_id"])
            for m in metrics:
                if t.get(m) is not None:
                    tf.summary.scalar(m, t[m], step=1)
        writer.close()
    return log_dir


def write_results(result: TuneResult, run_dir: str | Path) -> dict:
    """``trials.csv``, ``tune.json``, ``summary.txt`` and ``logs/hparams`` in ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    hp_names = sorted({k for t in result.trials for k in t["hyperparameters"]})
    with open(run_dir / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial_id", "status", "probe_accuracy", "knn_accuracy", "val_reconstruction_loss"] + hp_names)
        for t in result.trials:
            w.writerow([t["trial_id"], t["status"], t.get("probe_accuracy"), t.get("knn_accuracy"),
                        t.get("val_reconstruction_loss")] + [t["hyperparameters"].get(h) for h in hp_names])
    (run_dir / "tune.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    (run_dir / "summary.txt").write_text(result.summary() + "\n")
    return {"csv": run_dir / "trials.csv", "json": run_dir / "tune.json", "summary": run_dir / "summary.txt",
            "hparams": write_hparams(result, run_dir / "logs" / "hparams")}


# ---------------------------------------------------------------------- recipe
def load_tune_config(path: str | Path, overrides: list[str] | tuple = (), *, quick: bool = False) -> TuneConfig:
    """Read and validate a tune recipe (YAML) with ``--set``-style ``overrides``.

    ``quick``: apply the recipe's ``quick:`` section first (``overrides`` still win).

    >>> config = load_tune_config("recipes/tune_fashion_mnist.yaml", ["tuner.max_trials=4"])
    """
    return load_recipe(path, overrides, check_paths=False, kind="tune", quick=quick)


def worker_id() -> str:
    """This process's keras-tuner id (``KERASTUNER_TUNER_ID``; ``tuner0`` when unset)."""
    return os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


def is_worker() -> bool:
    """True in a keras-tuner worker process (chief/worker mode, not the chief)."""
    return tuner_distribute.has_chief_oracle() and not tuner_distribute.is_chief_oracle()


def search(config: TuneConfig, run_dir: str | Path, *, overwrite: bool = False, quick: bool = False,
           arrays: tuple | None = None) -> TuneResult | None:
    """Run the tune recipe ``config`` into ``run_dir``; return the results (None on a worker).

    ``arrays`` (tests, notebooks): ``(pretrain_images, val_images, (labelled
    images, labels), (held-out images, labels))`` uint8 numpy instead of
    loading ``config.data``. Keras-tuner's files live in ``run_dir/search``;
    a second call with the same ``run_dir`` resumes unless ``overwrite``.

    >>> result = search(load_tune_config("recipes/tune_fashion_mnist.yaml"), "runs/tune")
    """
    if quick:
        config = config.quick_version()
    run_dir = Path(run_dir)
    if not is_worker():  # keras-tuner's workers share the chief's folder; the chief is its one writer
        RunDir(run_dir).lock("search")
    t = config.tuner
    pretrain_images, val_images, labelled, heldout = arrays or load_study_data(config.data)
    base = resolve_arch(config.model.preset, **config.model.overrides)
    probe_sets = ((normalise(labelled[0], base), np.asarray(labelled[1]).astype(np.int64)),
                  (normalise(heldout[0], base), np.asarray(heldout[1]).astype(np.int64)))
    trainer = Trainer(strategy=t.strategy, seed=t.seed)
    hypermodel = SkipAEHyperModel(base, config.space, probe_sets=probe_sets, pooling=config.probe.pooling,
                                  knn_k=config.probe.knn_k, seed=t.seed)
    tuner = make_tuner(hypermodel, t.algorithm, objective=t.objective, max_trials=t.max_trials,
                       max_epochs=t.epochs, hyperband_factor=t.hyperband_factor, directory=run_dir,
                       project_name="search", overwrite=overwrite, seed=t.seed,
                       distribution_strategy=trainer.strategy)
    # uint8 images, normalised per batch for the base arch (every trial keeps its normalisation and input shape)
    train_ds = pretrain_batches(pretrain_images, base, t.batch_size, training=True, seed=t.seed)
    val_ds = pretrain_batches(val_images, base, 256, training=False, seed=t.seed)
    fit_kwargs = {} if t.algorithm == "hyperband" else {"epochs": t.epochs}
    tuner.search(train_ds, validation_data=val_ds, verbose=0, shuffle=False, **fit_kwargs)
    if is_worker():
        return None
    result = collect_results(tuner, t.objective)
    write_results(result, run_dir)
    best_hp = tuner.get_best_hyperparameters(1)
    if best_hp:
        try:
            with warnings.catch_warnings():  # the rebuilt model's fresh optimizer does not match the saved one
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                best_model = tuner.get_best_models(1)[0]
            best_model.save(run_dir / BEST_CHECKPOINT)
        except (FileNotFoundError, OSError, ValueError) as exc:  # trial weights missing (e.g. on another machine)
            print(f"note: best model not saved ({exc}); rebuild it from tune.json's hyper-parameters")
    return result


def chief_worker_env(tuner_id: str, port: int, ip: str = "127.0.0.1") -> dict:
    """The environment variables of keras-tuner's chief/worker mode for one process.

    >>> subprocess.Popen(cmd, env={**os.environ, **chief_worker_env("chief", 8000)})
    >>> subprocess.Popen(cmd, env={**os.environ, **chief_worker_env("tuner0", 8000)})
    """
    return {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": ip, "KERASTUNER_ORACLE_PORT": str(port)}


__all__ = [
    "ALGORITHMS",
    "OBJECTIVES",
    "SearchSpace",
    "SkipAEHyperModel",
    "TuneConfig",
    "TuneResult",
    "chief_worker_env",
    "collect_results",
    "is_worker",
    "worker_id",
    "load_tune_config",
    "make_tuner",
    "search",
    "write_results",
]
