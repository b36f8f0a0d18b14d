"""The stage runner: one recipe, its stages in order, one run directory.

:func:`run` trains and evaluates each stage of a :class:`~keras_skipae.recipes.schema.Recipe`
and records it through :class:`keras_skipae.runs.RunDir` (see there for the
layout). A stage that finished (``STAGE/stage.json``) is skipped when the same
command runs again, and a stage that was interrupted resumes after its last
complete epoch, so re-running a killed command finishes the run. A run
directory belongs to one recipe: running a different one (other values, other
``--set``) into it is refused with the keys that differ; use a new run directory.

Auto-encoder entries also hold ``"corruption": {"kind", "level", "where"}``:
how the inputs were corrupted in training ("model": the model's layer,
"pipeline": the data pipeline) and so in their evaluation.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from .. import data
from ..data.locate import resolve_path
from ..data.packed import check_shards_for_workers
from ..factory import build
from ..kinds import kind_spec
from ..models import resolve_arch
from ..runs import MODEL_FILE, RunDir, StageResult
from ..saving import load
from ..train import Trainer, set_seed
from ..train.strategy import num_workers
from .environment import environment
from .evaluation import corruption_record, pipeline_for, with_recorded_corruption
from .loading import apply_overrides, load_recipe, validate
from .schema import Recipe, RecipeError, StageConfig, arch_overrides
from .stage_setup import check_same_normalisation, copy_network_weights, joint_training, online_probe


class _Run:
    """State shared by the stages of one run: trainer, data, architecture."""

    def __init__(self, recipe: Recipe, run_dir: RunDir, trainer: Trainer, echo: Callable[[str], Any]):
        self.recipe = recipe
        self.run_dir = run_dir
        self.trainer = trainer
        self.echo = echo
        self._datasets: dict[str, Any] = {}
        self._splits = None
        self._arch = None

    # ---------------------------------------------------------------- data
    def _load(self, split: str):
        if split not in self._datasets:
            cfg = self.recipe.data
            self._datasets[split] = data.load(data.resolve_source(cfg.source), split, **cfg.load_options())
        return self._datasets[split]

    def splits(self):
        if self._splits is None:
            cfg = self.recipe.data
            self._splits = data.split(
                self._load(cfg.train_split), labels_per_class=cfg.labels_per_class, num_labels=cfg.num_labels,
                val_fraction=cfg.val_fraction, seed=cfg.split_seed,
            )
        return self._splits

    def subset(self, which: str, limit: int | None = None):
        cfg = self.recipe.data
        if which == "all":
            ds = self._load(cfg.train_split)
        elif which == "eval":
            ds = self._load(cfg.eval_split)
        elif which.startswith("split:"):
            ds = self._load(which.split(":", 1)[1])
        elif which in ("labelled", "unlabelled", "val"):
            if which == "val" and cfg.val_fraction == 0:
                raise RecipeError("a stage uses val_on: val but data.val_fraction is 0; set data.val_fraction "
                                  "or val_on: eval / none")
            ds = getattr(self.splits(), which)
        else:  # pragma: no cover - the schema's pattern rules this out
            raise RecipeError(f"unknown data subset {which!r}")
        ds = data.sample(ds, limit, seed=cfg.split_seed) if limit is not None else ds
        if which not in ("val", "eval"):  # training subsets: each worker must have shards of its own to read
            check_shards_for_workers(ds, num_workers(self.trainer.strategy), where=f"the {which!r} data")
        return ds

    def info(self):
        return self._load(self.recipe.data.train_split).info

    # ----------------------------------------------------------- architecture
    def arch(self):
        """The recipe's architecture with the data's shape, classes and (optionally) statistics."""
        if self._arch is None:
            cfg = self.recipe.model
            overrides = arch_overrides(cfg.overrides)
            info = self.info()
            if "input_shape" not in overrides and info.image_shape is not None:
                overrides["input_shape"] = tuple(info.image_shape)
            if "num_classes" not in overrides and info.num_classes:
                overrides["num_classes"] = int(info.num_classes)
            arch = resolve_arch(cfg.preset, **overrides)
            if self.recipe.data.normalise == "dataset" and "mean" not in overrides:
                mean, std = data.compute_stats(self.subset("all", self.recipe.data.stats_limit),
                                               pixel_scale=arch.pixel_scale)
                arch = arch.replace(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
            self._arch = arch
        return self._arch

    # ----------------------------------------------------------- model paths
    @property
    def worker(self) -> int | None:
        return None if self.trainer.is_chief else self.trainer.task_index

    def own_dir(self, stage: str) -> Path:
        return self.run_dir.stage_dir(stage, self.worker)

    def model_path(self, ref: str) -> Path:
        if ref.endswith(".keras"):
            found = resolve_path(ref)
            if found is None:
                raise RecipeError(f"init: no model file {ref!r}")
            return found
        path = self.own_dir(ref) / MODEL_FILE
        if not path.exists():
            raise RecipeError(
                f"stage {ref!r} has no model at {path}; run that stage first with the same run directory "
                f"(skipae run RECIPE --run-dir {self.run_dir.path}, or skipae pretrain ...)"
            )
        return path

    def recorded_stage(self, ref: str | None) -> dict:
        """The finished stage ``ref``'s entry, or {} for a ``.keras`` file or none."""
        if not ref or ref.endswith(".keras"):
            return {}
        return self.run_dir.finished(ref, self.worker) or {}

    def pipeline(self, kind: str, which: str, arch, stage: StageConfig, *, training: bool, seed: int,
                 limit: int | None = None, cache: bool = True):
        return pipeline_for(kind, self.subset(which, limit), arch, stage.batch_size, training=training, seed=seed,
                            augment=stage.augment, corruption=stage.corruption, crop_size=stage.crop_size,
                            cache=cache)


def _evaluate_stage(run: _Run, stage_name: str, stage: StageConfig) -> StageResult:
    trainer = run.trainer
    path = run.model_path(stage.init)
    with trainer.scope():
        model = load(path)
    kind = model.kind
    denoising = kind_spec(kind).denoising
    # a model pre-trained with pipeline corruption has none in its arch; evaluate it on inputs corrupted
    # as in its own stage (recorded there), so the figures are comparable
    recorded = run.recorded_stage(stage.init).get("corruption") if denoising else None
    eval_arch = with_recorded_corruption(model.arch, recorded)
    # seed + 2 as the training stages' own evaluation: the same fixed noise on the same data
    eval_ds = run.pipeline(kind, stage.eval_on, eval_arch, stage, training=False, seed=run.recipe.seed + 2)
    trainer.compile(model, stage.optimizer.model_dump(), steps_per_epoch=1, epochs=1)
    metrics = trainer.evaluate(model, eval_ds)
    return StageResult(name=stage_name, kind=kind, model=path, metrics=metrics, evaluated_on=stage.eval_on,
                       corruption=corruption_record(eval_arch, recorded["where"] if recorded else "model")
                       if denoising else None)


def stage_seed(seed: int, stage: str) -> int:
    """The seed a stage starts from: the run's seed and the stage's name, never what ran before it.

    So a stage draws the same initial weights and dropout noise whether the
    stages before it ran in this process or in another (``skipae run`` against
    ``skipae pretrain`` then ``skipae finetune``).
    """
    return (seed * 1_000_003 + zlib.crc32(stage.encode())) % (2**31 - 1)


def _run_stage(run: _Run, name: str, stage: StageConfig) -> StageResult:
    if stage.is_evaluate:
        return _evaluate_stage(run, name, stage)
    trainer = run.trainer
    set_seed(stage_seed(run.recipe.seed, name), run.recipe.trainer.deterministic)
    arch = run.arch().replace(**arch_overrides(stage.overrides)) if stage.overrides else run.arch()
    seed = run.recipe.seed
    transfer_note = None
    if stage.is_pretrain:
        kind = "autoencoder"
        source = None
        if stage.init:
            # go on from a saved auto-encoder: its architecture and input normalisation, the stage's overrides
            # on top; the pipeline below normalises and corrupts with exactly that
            with trainer.scope():
                source = load(run.model_path(stage.init))
            # a model pre-trained with pipeline corruption has none in its arch: go on with the recorded one
            source_arch = with_recorded_corruption(source.arch, run.recorded_stage(stage.init).get("corruption"))
            arch = source_arch.replace(**arch_overrides(stage.overrides)) if stage.overrides else source_arch
        # with pipeline corruption the model corrupts nothing; the pipeline's weights restrict the loss
        model_arch = arch.replace(corruption="none", loss_on="all") if stage.corruption == "pipeline" else arch
        with trainer.scope():
            model = build(kind, model_arch, name=name)
        if source is not None:
            copy_network_weights(source, model, f"stages.{name}.init ({stage.init})")
    else:
        kind = stage.model or ("segmenter" if run.info().task == "segmentation" else "classifier")
        encoder = str(run.model_path(stage.init)) if stage.init else None
        if encoder is not None:
            check_same_normalisation(load(encoder).arch, arch, f"stages.{name}.init ({stage.init})")
        with trainer.scope():
            model = build(kind, arch, encoder=encoder, freeze_encoder=stage.freeze_encoder, name=name)
        if model.transfer_report is not None:
            transfer_note = {"copied": len(model.transfer_report.copied), "from": stage.init}
            run.echo(f"[{name}] encoder from {stage.init}: {transfer_note['copied']} layers copied")

    spec = kind_spec(kind)
    if spec.image_labels:
        labels = getattr(getattr(getattr(run.subset(stage.train_on, stage.limit), "info", None), "table", None),
                         "labels", lambda: None)()
        unlabelled = int((labels < 0).sum()) if labels is not None else 0
        if unlabelled:
            raise RecipeError(
                f"stages.{name}.train_on: {stage.train_on!r} holds {unlabelled} unlabelled examples (label -1) "
                "and a classifier needs a label for each; train on 'labelled' (with data.labels_per_class or "
                "data.num_labels) or on a labelled split"
            )
    train_ds = run.pipeline(kind, stage.train_on, arch, stage, training=True, seed=seed, limit=stage.limit)
    if stage.joint is not None:
        model, train_ds = joint_training(run, name, stage, model, arch, train_ds)
    val_ds = None
    if stage.val_on != "none":
        val_ds = run.pipeline(kind, stage.val_on, arch, stage, training=False, seed=seed + 1, limit=stage.val_limit)
    sample = None
    if spec.denoising and val_ds is not None and trainer.is_chief:
        # from an uncached view: take(1) of the cached val_ds would leave a partial cache (and a TF warning)
        view = run.pipeline(kind, stage.val_on, arch, stage, training=False, seed=seed + 1, limit=stage.val_limit,
                            cache=False)
        corrupted, clean = next(iter(view.take(1)))[:2]
        sample = (clean.numpy()[:6], corrupted.numpy()[:6])
    examples = getattr(getattr(run.subset(stage.train_on, stage.limit), "info", None), "num_examples", "?")
    run.echo(f"[{name}] {stage.kind} {kind} on {stage.train_on} ({examples} examples), "
             f"{stage.epochs} epochs; {trainer.describe(stage.batch_size)}")
    hparams = {"stage": name, "kind": kind, "epochs": stage.epochs, "batch_size": stage.batch_size,
               **{f"optimizer.{k}": v for k, v in stage.optimizer.model_dump().items()},
               **{f"arch.{k}": v for k, v in model.arch.to_dict().items() if k != "description"}}
    callbacks = []
    if stage.probe is not None:
        callbacks.append(online_probe(run, name, stage, model.arch))
    history = trainer.fit(
        model, train_ds, val_ds, epochs=stage.epochs, optimizer=stage.optimizer.model_dump(),
        run_dir=run.run_dir.stage_dir(name), checkpoint_every=stage.checkpoint_every,
        restore_best=stage.restore_best, stage=name, hparams=hparams, sample_images=sample, keep_backup=True,
        monitor=stage.monitor, callbacks=callbacks,
    )
    val_metrics = {}
    if val_ds is not None or stage.probe is not None:
        # the best epoch, else the last: history.csv holds every epoch of the stage, also those of an earlier
        # process (a resumed stage, or one whose training had ended before the process was killed)
        recorded = run.run_dir.history(name, run.worker)
        best_epoch = getattr(history, "best_epoch", None) or (max(recorded) if recorded else None)
        val_metrics = (recorded.get(best_epoch) if best_epoch else None) or {}
    model = getattr(model, "task_model", model)  # a joint stage's result is its plain task model
    metrics = {}
    if stage.eval_on != "none":
        metrics = trainer.evaluate(model, run.pipeline(kind, stage.eval_on, arch, stage, training=False,
                                                       seed=seed + 2))
    extra = {}
    if transfer_note:
        extra["encoder_from"] = transfer_note
    if callbacks and callbacks[0].seconds:
        extra["probe_seconds"] = round(sum(callbacks[0].seconds), 2)
    return StageResult(name=name, kind=kind, model=run.own_dir(name) / MODEL_FILE,  # a worker's: its own folder
                       metrics=metrics, evaluated_on=stage.eval_on, epochs=stage.epochs,
                       best_epoch=getattr(history, "best_epoch", None),
                       val_metrics={k[4:]: v for k, v in val_metrics.items() if k.startswith("val_")},
                       corruption=corruption_record(arch, stage.corruption) if spec.denoising else None, extra=extra)


def _with_trainer_changes(recipe: Recipe, strategy: str | None, mixed_precision: str | None) -> Recipe:
    changes: dict[str, Any] = {}
    if strategy:
        changes["strategy"] = strategy
    if mixed_precision:
        changes["mixed_precision"] = None if mixed_precision == "float32" else mixed_precision
    if not changes:
        return recipe
    return validate({**recipe.model_dump(), "trainer": {**recipe.trainer.model_dump(), **changes}})


def run(
    recipe: Recipe | str | os.PathLike,
    *,
    overrides: list[str] | tuple = (),
    run_dir: str | os.PathLike | None = None,
    strategy: str | None = None,
    mixed_precision: str | None = None,
    only: list[str] | tuple | None = None,
    kind: str | None = None,
    echo: Callable[[str], Any] = print,
) -> dict:
    """Run a recipe's stages in order and return ``metrics.json``'s content.

    ``recipe`` is a :class:`Recipe`, a recipe file or a name in ``recipes/``.
    ``only`` restricts to some stages and ``kind`` to the stages of one kind
    (``pretrain``, ``finetune``, ``evaluate``); the ``init`` stages they start
    from must already be in ``run_dir``. ``strategy``/``mixed_precision``
    override the recipe's trainer.

    Examples:
        >>> results = run("quickstart", overrides=["pretrain.epochs=1"], run_dir="runs/try")
        >>> results["stages"]["finetune"]["metrics"]["accuracy"]
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        recipe = validate(apply_overrides(recipe.model_dump(), overrides))
    recipe = _with_trainer_changes(recipe, strategy, mixed_precision)
    if only:
        unknown = [s for s in only if s not in recipe.stages]
        if unknown:
            raise RecipeError(f"no stage(s) {unknown} in recipe {recipe.name!r}; stages: {', '.join(recipe.stages)}")
    if kind is not None:
        only = [s for s in recipe.stages_of_kind(kind) if not only or s in only]
        if not only:
            raise RecipeError(f"recipe {recipe.name!r} has no {kind} stage; stages: {', '.join(recipe.stages)}")
    rundir = RunDir(run_dir or recipe.run_dir or Path("runs") / recipe.name)
    t = recipe.trainer
    trainer = Trainer(strategy=t.strategy, cluster=t.cluster, mixed_precision=t.mixed_precision, jit_compile=t.jit_compile,
                      seed=recipe.seed, deterministic=t.deterministic, steps_per_execution=t.steps_per_execution,
                      intra_op_threads=t.intra_op_threads, inter_op_threads=t.inter_op_threads)
    state = _Run(recipe, rundir, trainer, echo)
    # workers of a multi-worker run write their own .workerN folders beside the chief, which holds the lock
    took_lock = rundir.lock() if trainer.is_chief else False
    try:
        results = _run_stages(state, recipe, rundir, trainer, only, echo)
    finally:
        if took_lock:
            rundir.unlock()
    if recipe.summary:
        echo(summary_table(results, recipe.summary))
    return results


def _run_stages(state: _Run, recipe: Recipe, rundir: RunDir, trainer: Trainer, only, echo) -> dict:
    results = rundir.results()
    recorded = check_recorded_recipe(recipe, rundir)
    if trainer.is_chief:
        rundir.path.mkdir(parents=True, exist_ok=True)
        if recorded is None:
            rundir.write_recipe(recipe.model_dump(mode="json"))
        rundir.write_environment(environment(recipe.seed, {
            "strategy": trainer.strategy_name, "replicas": trainer.num_replicas, "precision": trainer.policy,
            "recipe": recipe.name, "threads": trainer.threads,
        }))
    echo(f"run {recipe.name} -> {rundir.path}")
    for name, stage in recipe.stages.items():
        if only and name not in only:
            continue
        result = rundir.finished(name, state.worker)
        if result is not None:
            echo(f"[{name}] already complete in {rundir.stage_dir(name)} (delete that folder to run it again)")
        else:
            started = time.time()
            stage_result = _run_stage(state, name, stage)
            stage_result.seconds = round(time.time() - started, 1)
            result = stage_result.to_entry(rundir.path)
            rundir.commit_stage(name, result, state.worker)
        results["stages"][name] = result
        # keep recipe order in metrics.json
        results["stages"] = {k: results["stages"][k] for k in recipe.stages if k in results["stages"]} | {
            k: v for k, v in results["stages"].items() if k not in recipe.stages}
        if trainer.is_chief:
            rundir.write_results(results)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items())
        if result.get("evaluated_on") == "none" or not shown:
            val = ", ".join(f"{k} {v:.4f}" for k, v in (result.get("val_metrics") or {}).items())
            echo(f"[{name}] {result['kind']}: not evaluated (eval_on: none)" + (f"; validation {val}" if val else ""))
        else:
            echo(f"[{name}] {result['kind']} on {result.get('evaluated_on')}: {shown}")
    return results


#: recipe keys (dotted) that may differ between a run directory's recipe.yaml and a resumed run: only keys
#: that cannot change any result. None so far: even trainer.* (replicas, precision) changes the numbers.
RESUME_IGNORED_KEYS: frozenset[str] = frozenset()


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def recipe_differences(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two recipes (``model_dump(mode="json")``)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b)
                  if a.get(k, "<absent>") != b.get(k, "<absent>") and k not in RESUME_IGNORED_KEYS)


def check_recorded_recipe(recipe: Recipe, run_dir: RunDir) -> dict | None:
    """The recipe recorded in the run directory (None for a new one); refuses a different recipe.

    Resuming a run directory with another recipe would mix results of two
    recipes under one recorded recipe: refuse, naming the keys that differ.
    """
    raw = run_dir.recipe()
    if raw is None:
        return None
    path = run_dir.recipe_file
    try:
        recorded = validate(raw, origin=str(path), check_paths=False)
    except RecipeError as exc:
        raise RecipeError(f"{path}: the run directory's recorded recipe no longer validates ({exc}); "
                          f"use a new --run-dir") from None
    current = recipe.model_dump(mode="json")
    old = recorded.model_dump(mode="json")
    differences = recipe_differences(old, current)
    if differences:
        shown = "; ".join(f"{k}: {_flatten(old).get(k, '<absent>')!r} -> {_flatten(current).get(k, '<absent>')!r}"
                          for k in differences[:10])
        more = f" (and {len(differences) - 10} more)" if len(differences) > 10 else ""
        raise RecipeError(
            f"{run_dir.path} holds a run of a different recipe; differing keys: {shown}{more}. Its results "
            f"would not match {path}. Use a new --run-dir (or run with the recorded recipe: "
            f"skipae run {path} --run-dir {run_dir.path})"
        )
    return old


def summary_table(results: dict, stages: list[str]) -> str:
    """The named stages' final metrics side by side, one row per metric."""
    stage_results = results.get("stages", {})
    names = [s for s in stages if s in stage_results]
    keys = list(dict.fromkeys(k for s in names for k in stage_results[s]["metrics"]))
    rows = [["metric"] + names]
    for key in keys:
        rows.append([key] + [f"{stage_results[s]['metrics'][key]:.4f}" if key in stage_results[s]["metrics"]
                             else "-" for s in names])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
