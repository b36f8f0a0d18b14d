"""Every recipe's schema: runs (stages), studies and searches, on one strict base.

An unknown key, a wrong type or an out-of-range value fails validation with its full key path
(:mod:`keras_skipae.recipes.loading`); the choice lists and kinds come from where each is defined once.

A run recipe names its data, its architecture, the trainer's settings and an
ordered mapping of stages::

    name: quickstart
    seed: 0
    data: {source: "idx:", train_split: train, eval_split: test, labels_per_class: 100, val_fraction: 0.1}
    model: {preset: tiny, overrides: {input_shape: [28, 28, 1]}}
    stages:
      pretrain: {kind: pretrain, train_on: all, epochs: 5}
      finetune: {kind: finetune, init: pretrain, train_on: labelled, epochs: 30}
      scratch:  {kind: finetune, init: null, train_on: labelled, epochs: 30}
    summary: [finetune, scratch]

A study recipe (``kind: study``) pre-trains a grid of auto-encoders and probes every checkpoint; a tune
recipe (``kind: tune``) searches hyper-parameters with keras-tuner; both share the sections defined here.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from ..arch import Corruption, Merge, check_fields
from ..choices import Cluster, OptimizerName, Pooling, Precision, Schedule, Strategy, TuneAlgorithm, TuneObjective
from ..kinds import StageKind, is_evaluate_stage, is_finetune_stage, is_pretrain_stage, monitor_mode
from ..presets import DEFAULT_PRESET, resolve_arch
from .base import SUBSET, Count, Strict
from .stage_options import JointConfig, OnlineProbeConfig


def parse_seeds(text: str | int) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ``"1-2,5"`` -> [1, 2, 5]; ``3`` -> [3].

    >>> parse_seeds("0-2,9")
    [0, 1, 2, 9]
    """
    if isinstance(text, int):
        return [text]
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            values = list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"seeds {text!r}: expected whole numbers and ranges like 0-4 or 0,3,7") from None
        if sep and int(hi) < int(lo):
            raise ValueError(f"seeds {text!r}: the range {part} is empty (write low-high)")
        seeds += values
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {text!r}: a seed is listed twice")
    return seeds


#: a recipe or grid name: it names a folder under runs/, so never "." or ".."
NAME_PATTERN = r"^[\w\-.]+$"


def check_name(value: str) -> str:
    if value.strip(".") == "":
        raise ValueError(f"{value!r} is not a usable name: it names a folder, so it needs a letter, digit, _ or -")
    return value


class RecipeError(ValueError):
    """A recipe failed validation; the message lists each bad key path and what is allowed."""


def arch_overrides(overrides: dict) -> dict:
    """``overrides`` checked to be :class:`keras_skipae.Arch` fields (a copy)."""
    check_fields(overrides)
    return dict(overrides)


def apply_quick(raw: dict, origin: str) -> dict:
    """Merge a study or tune recipe's ``quick:`` section into the sections it names (a smoke run)."""
    quick = raw.get("quick") or {}
    if not isinstance(quick, dict):
        raise RecipeError(f"{origin}: quick: expected a mapping of sections to override, got {quick!r}")
    for section, values in quick.items():
        if not isinstance(values, dict) or not isinstance(raw.get(section, {}), dict):
            raise RecipeError(f"{origin}: quick.{section}: expected a mapping of that section's keys")
        raw[section] = {**(raw.get(section) or {}), **values}
    raw["quick"] = {}
    return raw


# ------------------------------------------------------------------ shared sections
class TrainerConfig(Strict):
    """How to train: distribution strategy, precision, XLA, determinism, CPU threads."""

    strategy: Strategy = "auto"
    #: multi_worker: where the cluster is described (TF_CONFIG, Slurm's variables, or auto)
    cluster: Cluster = "auto"
    mixed_precision: Optional[Precision] = None
    jit_compile: bool = False
    deterministic: bool = False
    steps_per_execution: Union[Literal["auto"], Count] = "auto"
    #: TensorFlow's CPU thread pools (auto: one thread per usable CPU); recorded in environment.json
    intra_op_threads: Union[Literal["auto"], Count] = "auto"
    inter_op_threads: Union[Literal["auto"], Count] = "auto"

    @field_validator("steps_per_execution", "intra_op_threads", "inter_op_threads")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 'auto' or an int >= 1")
        return v


class ModelConfig(Strict):
    """The architecture: a preset name plus any :class:`keras_skipae.Arch` field overrides."""

    preset: str = DEFAULT_PRESET  # the same default as keras_skipae.build
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _arch_is_valid(self):
        try:
            resolve_arch(self.preset, **arch_overrides(self.overrides))
        except ValueError as exc:
            raise ValueError(f"overrides (preset {self.preset!r}): {exc}") from None
        return self


class OptimizerConfig(Strict):
    """Optimiser and schedule (see :class:`keras_skipae.train.OptimizerSpec`)."""

    name: OptimizerName = "adam"
    learning_rate: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Schedule = "constant"
    warmup_epochs: float = Field(default=0.0, ge=0)
    step_epochs: list[float] = Field(default_factory=list)
    step_factor: float = Field(default=0.1, gt=0)
    clipnorm: Optional[float] = Field(default=None, gt=0)
    #: fine-tuning: the transferred encoder learns at this fraction of the rate (the new head at the full rate)
    encoder_lr_scale: float = Field(default=1.0, ge=0)
    #: fine-tuning: epochs at the start in which the encoder does not move (the new head trains alone)
    encoder_frozen_epochs: float = Field(default=0.0, ge=0)


# ------------------------------------------------------------------------ run recipes
class DataConfig(Strict):
    """Where the images come from and how the training split is divided.

    ``source``: a :func:`keras_skipae.data.load` source string, or a list of
    them tried in order (the first whose path exists; ``tfds:`` always counts).
    Relative paths are taken from the current directory, else from the project
    root. ``labels_per_class``/``num_labels`` choose the labelled subset of
    ``train_split``; ``val_fraction`` holds out a validation set from it.
    """

    source: Union[str, list[str]]
    data_dir: Optional[str] = None
    download: bool = False
    train_split: str = "train"
    eval_split: str = "test"
    labels_per_class: Optional[Count] = Field(default=None, ge=1)
    num_labels: Optional[Count] = Field(default=None, ge=1)
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    split_seed: Count = 0
    ignore_label: Optional[int] = None
    label_map: Optional[dict[int, int]] = None
    on_error: Literal["raise", "skip"] = "raise"
    normalise: Literal["dataset", "none"] = "dataset"
    stats_limit: Count = Field(default=10000, ge=1)
    # the user's own segmentation data (see keras_skipae.data.load): masks found by pattern or pair list
    images: Optional[str] = None
    masks: Optional[str] = None
    root: Optional[str] = None
    palette: Union[dict[str, int], list, str, None] = None
    num_classes: Optional[Count] = Field(default=None, ge=1)
    class_names: Optional[list[str]] = None
    max_image_pixels: Optional[Count] = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_label_budget(self):
        if self.labels_per_class is not None and self.num_labels is not None:
            raise ValueError("give labels_per_class or num_labels, not both")
        return self

    def load_options(self) -> dict:
        """The :func:`keras_skipae.data.load` keyword arguments this section sets."""
        options = {"data_dir": self.data_dir, "download": self.download, "ignore_label": self.ignore_label,
                   "label_map": self.label_map, "on_error": self.on_error}
        # source-specific options only when set: a source that does not use one refuses it by name
        for key in ("images", "masks", "root", "palette", "num_classes", "class_names", "max_image_pixels"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return options


_SUBSET = SUBSET


class StageConfig(Strict):
    """One stage of a recipe.

    ``kind``: ``pretrain`` (auto-encoder on images, labels unused), ``finetune``
    (classifier/segmenter; ``init`` names the pre-training stage or a ``.keras``
    file whose encoder is carried over, null trains from scratch) or
    ``evaluate`` (``init`` names the stage or file to evaluate).
    ``train_on``/``val_on``/``eval_on``: ``all`` (the whole train split),
    ``labelled``, ``unlabelled``, ``val``, ``eval`` (the eval split),
    ``split:NAME`` (another split of the source) or, for val/eval, ``none``.
    ``limit``/``val_limit``: a seeded, class-stratified subset of that many.
    """

    kind: StageKind
    model: Optional[Literal["classifier", "segmenter"]] = None
    init: Optional[str] = None
    train_on: str = Field(default="all", pattern=_SUBSET)
    limit: Optional[Count] = Field(default=None, ge=1)
    val_on: str = Field(default="val", pattern=_SUBSET[:-2] + "|none)$")
    val_limit: Optional[Count] = Field(default=None, ge=1)
    eval_on: str = Field(default="eval", pattern=_SUBSET[:-2] + "|none)$")
    epochs: Count = Field(default=1, ge=1)
    batch_size: Count = Field(default=64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    freeze_encoder: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)
    augment: bool = False
    corruption: Literal["model", "pipeline"] = "model"
    crop_size: Optional[list[int]] = None
    checkpoint_every: Optional[Count] = Field(default=None, ge=1)
    restore_best: bool = True
    #: the validation metric that picks the best epoch (default: the kind's own), e.g. val_probe_accuracy;
    #: NAME:max / NAME:min for a metric the package does not know
    monitor: Optional[str] = None
    #: pre-training: an online linear probe of the encoder's features every few epochs
    probe: Optional[OnlineProbeConfig] = None
    #: fine-tuning: the pre-trained decoder's denoising loss on unlabelled images, trained jointly
    joint: Optional[JointConfig] = None

    is_pretrain = property(lambda self: is_pretrain_stage(self.kind))
    is_finetune = property(lambda self: is_finetune_stage(self.kind))
    is_evaluate = property(lambda self: is_evaluate_stage(self.kind))

    @model_validator(mode="after")
    def _options_fit_the_kind(self):
        if self.probe is not None and not self.is_pretrain:
            raise ValueError("probe: the online probe measures a pre-training stage's encoder; this stage is "
                             f"{self.kind!r} (remove probe, or use skipae probe on its model)")
        if self.joint is not None and not self.is_finetune:
            raise ValueError(f"joint: joint semi-supervised training belongs to a finetune stage, not {self.kind!r}")
        if self.monitor is not None:
            try:
                name, _ = monitor_mode(self.monitor)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            if name.startswith("val_probe") and self.probe is None:
                raise ValueError(f"monitor: {self.monitor!r} is logged by the online probe; add probe: {{}} to "
                                 "this stage (or monitor another metric)")
            if self.val_on == "none" and not name.startswith("val_probe"):
                raise ValueError(f"monitor: {self.monitor!r} is a validation metric but val_on is none; set "
                                 "val_on (e.g. val) or monitor val_probe_accuracy with a probe")
        return self

    @model_validator(mode="after")
    def _encoder_protocol(self):
        opt = self.optimizer
        if self.freeze_encoder and (opt.encoder_lr_scale != 1.0 or opt.encoder_frozen_epochs > 0):
            raise ValueError(
                "freeze_encoder: true keeps the encoder fixed for the whole stage, so optimizer.encoder_lr_scale / "
                "optimizer.encoder_frozen_epochs have nothing to act on; use one or the other "
                "(encoder_frozen_epochs: N freezes it for the first N epochs only)"
            )
        if opt.encoder_frozen_epochs >= self.epochs:
            raise ValueError(
                f"optimizer.encoder_frozen_epochs ({opt.encoder_frozen_epochs:g}) is not below the stage's epochs "
                f"({self.epochs}), so the encoder would never train; use freeze_encoder: true for that, or fewer "
                "frozen epochs"
            )
        return self


class Recipe(Strict):
    """A whole run: see the module docstring."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    seed: Count = 0
    run_dir: Optional[str] = None
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    stages: dict[str, StageConfig]
    summary: list[str] = Field(default_factory=list)
    #: run the whole recipe once per seed (``skipae run --seeds``): a list, or "0-4" / "0,3,7"
    seeds: Optional[list[Count]] = None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, v):
        return parse_seeds(v) if isinstance(v, (str, int)) and not isinstance(v, bool) else v

    _name = field_validator("name")(check_name)

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, stages):
        if not stages:
            raise ValueError("a recipe needs at least one stage")
        for name in stages:
            if not re.fullmatch(r"[A-Za-z][\w\-]*", name):
                raise ValueError(f"stage name {name!r} must start with a letter and use letters, digits, _ or -")
        return stages

    @model_validator(mode="after")
    def _references(self):
        seen: dict[str, StageConfig] = {}
        for name, stage in self.stages.items():
            ref = stage.init
            if stage.is_evaluate and not ref:
                raise ValueError(f"stages.{name}.init: an evaluate stage needs `init`, the stage or .keras file to evaluate")
            if stage.is_pretrain and ref and not ref.endswith(".keras"):
                raise ValueError(f"stages.{name}.init: a pretrain stage can only start from a .keras file, got {ref!r}")
            if ref and not ref.endswith(".keras"):
                if ref not in seen:
                    before = ", ".join(seen) or "none"
                    raise ValueError(
                        f"stages.{name}.init: {ref!r} is not an earlier stage (earlier stages: {before}) "
                        "nor a .keras file"
                    )
                if stage.is_finetune and not seen[ref].is_pretrain:
                    raise ValueError(f"stages.{name}.init: a finetune stage starts from a pretrain stage, "
                                     f"but {ref!r} is a {seen[ref].kind} stage")
            if stage.is_pretrain and stage.train_on == "labelled" and self.data.labels_per_class is None \
                    and self.data.num_labels is None:
                raise ValueError(f"stages.{name}.train_on: 'labelled' needs data.labels_per_class or data.num_labels")
            try:
                resolve_arch(self.model.preset, **arch_overrides({**self.model.overrides, **stage.overrides}))
            except ValueError as exc:
                raise ValueError(f"stages.{name}.overrides: {exc}") from None
            seen[name] = stage
        for name in self.summary:
            if name not in self.stages:
                raise ValueError(f"summary: {name!r} is not a stage (stages: {', '.join(self.stages)})")
        return self

    def stages_of_kind(self, kind: str) -> list[str]:
        """Names of the stages of ``kind`` (pretrain, finetune, evaluate), in order."""
        by_kind: dict[str, list[str]] = {}
        for name, stage in self.stages.items():
            by_kind.setdefault(stage.kind, []).append(name)
        return by_kind.get(kind, [])


# ------------------------------------------------------------ study and tune recipes
class StudyData(Strict):
    """Where the images come from and how many of each role."""

    source: str = "idx:/usr/share/datasets/fashion-mnist"
    train_split: str = "train"
    heldout_split: str = "test"
    pretrain_images: Count = Field(12000, gt=0, description="unlabelled images used for pre-training")
    val_images: Count = Field(1000, gt=0, description="validation images (reconstruction loss per epoch)")
    labels_per_class: Count = Field(100, gt=0, description="labelled images per class that fit the probe")
    heldout_images: Count = Field(2000, gt=0, description="held-out images that score everything")
    seed: Count = 0


class GridRecipe(Strict):
    """Base of study and tune recipes. ``quick``: per-section overrides for a smoke run (``--quick``)."""

    name: str = Field("analysis", pattern=NAME_PATTERN)
    quick: dict = Field(default_factory=dict)
    data: StudyData = Field(default_factory=StudyData)
    model: ModelConfig = Field(default_factory=ModelConfig)

    _name = field_validator("name")(check_name)

    def quick_version(self):
        """This recipe with its ``quick`` overrides merged into each named section."""
        sections = [k for k in type(self).model_fields if k not in ("name", "quick", "kind")]
        unknown = [k for k in self.quick if k not in sections]
        if unknown:
            raise RecipeError(f"quick.{unknown[0]}: quick may override the sections {', '.join(sections)}")
        return type(self).model_validate(apply_quick(self.model_dump(), f"recipe {self.name!r}"))


class StudyCorruption(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    kind: Corruption
    level: float = Field(0.0, ge=0)


class StudyGrid(Strict):
    skips: list[bool] = [True, False]
    corruption: list[StudyCorruption] = Field(default_factory=lambda: [
        StudyCorruption(name="none", kind="none", level=0.0),
        StudyCorruption(name="moderate", kind="masking", level=0.25),
        StudyCorruption(name="strong", kind="masking", level=0.5),
    ])


class StudyTrain(Strict):
    epochs: Count = Field(10, gt=0)
    checkpoint_every: Count = Field(2, gt=0)
    batch_size: Count = Field(64, gt=0)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    strategy: Strategy = "auto"
    seed: Count = 0


class ProbeConfig(Strict):
    """How features are scored: pooling of the encoder's output and the k-NN's k."""

    pooling: Pooling = "avg"
    knn_k: Count = Field(10, gt=0)


class StudyProbe(ProbeConfig):
    corruption: Optional[tuple[Corruption, float]] = ("masking", 0.25)
    n_boot: Count = Field(1000, ge=0)
    finetune_epochs: Count = Field(0, ge=0)
    regret_tolerance: float = Field(0.01, ge=0)


class StudyConfig(GridRecipe):
    """A validated study recipe; ``quick`` holds overrides for a smoke run (``--quick``)."""

    kind: Literal["study"] = "study"
    name: str = Field("study", pattern=NAME_PATTERN)
    grid: StudyGrid = Field(default_factory=StudyGrid)
    train: StudyTrain = Field(default_factory=StudyTrain)
    probe: StudyProbe = Field(default_factory=StudyProbe)

    def runs(self) -> list:
        """(run name, arch overrides) for every grid point."""
        out = []
        for skips in self.grid.skips:
            for c in self.grid.corruption:
                name = f"skips-{'on' if skips else 'off'}_{c.name}"
                out.append((name, {"skips": skips, "corruption": c.kind, "corruption_level": c.level}))
        return out


class SearchSpace(Strict):
    """The choices a trial draws from. ``widths`` double per stage from ``base_width``."""

    stages: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    base_width: list[int] = Field(default_factory=lambda: [8, 16, 32], min_length=1)
    convs_per_stage: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    skips: list[bool] = Field(default_factory=lambda: [True, False], min_length=1)
    skip_every: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    merge: list[Merge] = Field(default_factory=lambda: ["add", "concat"], min_length=1)
    corruption: list[Corruption] = Field(
        default_factory=lambda: ["none", "gaussian", "masking", "salt_pepper"], min_length=1)
    corruption_level: tuple[float, float] = (0.05, 0.5)
    learning_rate: tuple[float, float] = (1e-4, 1e-2)

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("stages", "base_width", "convs_per_stage", "skip_every"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"{name}: every choice must be a positive int, got {getattr(self, name)}")
        lo, hi = self.corruption_level
        if not 0 <= lo <= hi < 1:
            raise ValueError(f"corruption_level: expected 0 <= low <= high < 1, got {self.corruption_level}")
        lo, hi = self.learning_rate
        if not 0 < lo <= hi:
            raise ValueError(f"learning_rate: expected 0 < low <= high, got {self.learning_rate}")
        return self


class TunerSettings(Strict):
    algorithm: TuneAlgorithm = "random"
    objective: TuneObjective = "probe_accuracy"
    max_trials: Count = Field(8, gt=0)
    epochs: Count = Field(3, gt=0, description="epochs per trial (Hyperband: the most any trial gets)")
    hyperband_factor: Count = Field(3, ge=2)
    batch_size: Count = Field(64, gt=0)
    strategy: Strategy = "auto"
    seed: Count = 0


class TuneConfig(GridRecipe):
    """A tune recipe: data (as a study's), the base model, the search space, the tuner, the probe."""

    kind: Literal["tune"] = "tune"
    name: str = Field("tune", pattern=NAME_PATTERN)
    # required: a recipe that names no search space or tuner settings is a mistake, not a default search
    space: SearchSpace
    tuner: TunerSettings
    probe: ProbeConfig = Field(default_factory=ProbeConfig)


#: the recipe types by their ``kind:`` key (a run recipe has none)
RECIPE_TYPES: dict[str, type[Strict]] = {"run": Recipe, "study": StudyConfig, "tune": TuneConfig}
