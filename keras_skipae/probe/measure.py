"""Reconstruction versus feature quality: does a better auto-encoder give better features?

Alberti et al. ("A Pitfall of Unsupervised Pre-Training", arXiv 1712.01655)
show that an auto-encoder's reconstruction error need not track how well its
features separate classes; a skip auto-encoder can copy its input through its
shallow skips while its deep features learn little. :func:`probe_run` measures
both sides for every saved checkpoint of one or more pre-training runs, and
for two baselines (raw pixels, the same encoder untrained):

- reconstruction: ``mse``, ``psnr``, ``ssim`` on clean held-out images, and
  ``*_corrupted`` when restoring a corrupted copy of them (a fixed, seeded
  corruption, the same for every checkpoint);
- features: ``probe_accuracy`` (linear probe on globally pooled encoder
  features, fitted on the labelled set, scored on the held-out set),
  ``knn_accuracy`` (cosine k-NN), optionally ``finetune_accuracy``;
- their relation: Pearson, Spearman and Kendall correlations across
  checkpoints, across runs (last checkpoint of each) and within each run, with
  bootstrap intervals; the regret of choosing a checkpoint by reconstruction;
  and a plain-language verdict that also says when the data do not show the
  pitfall.

Example::

    from keras_skipae import probe
    table = probe.probe_run("runs/pretrain", (x_lab, y_lab), (x_test, y_test), out_dir="runs/pretrain/probe")
    print(table)            # rows, correlations, regret, verdict
    print(table.verdict)
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Union

import keras
import numpy as np

from .analysis import features as feats
from .analysis import plots
from .analysis.reconstruction import corrupt, normalise, reconstruction_scores
from .analysis.stats import Correlation, Regret, correlate, regret

RECON_X = ("psnr", "psnr_corrupted")
FEATURE_Y = ("probe_accuracy", "knn_accuracy")
COLUMNS = (
    "run", "name", "kind", "epoch", "checkpoint", "skips", "corruption", "corruption_level",
    "mse", "psnr", "ssim", "mse_corrupted", "psnr_corrupted", "ssim_corrupted", "val_loss",
    "probe_accuracy", "probe_l2", "knn_accuracy", "finetune_accuracy", "feature_dim",
)
MIN_RELIABLE_N = 5  # fewer points than this: correlations are reported but not judged
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.keras$")

Source = Union[str, Path, keras.Model]


@dataclass
class Checkpoint:
    """One auto-encoder to probe: ``run`` name, ``epoch`` (None if unknown), a path or a model."""

    run: str
    epoch: int | None
    source: Source
    val_loss: float | None = None
    corruption: dict | None = None  # training corruption when the model's arch does not record it

    def arch_info(self, arch) -> dict:
        """``skips``, ``corruption``, ``corruption_level`` of this checkpoint's training."""
        return {**_arch_info(arch), **(self.corruption or {})}

    @property
    def name(self) -> str:
        return f"{self.run}@e{self.epoch:03d}" if self.epoch is not None else self.run

    def load(self) -> keras.Model:
        if isinstance(self.source, keras.Model):
            return self.source
        from .saving import load

        return load(self.source, compile=False)


# ----------------------------------------------------------------- discovery
def read_history(path: str | Path) -> dict:
    """A trainer's ``history.csv`` as ``{epoch: {column: float}}`` ({} when the file is missing).

    ``epoch`` is the file's 1-based ``epoch`` column (the row's 1-based
    position when a file has none); empty and non-numeric cells are left out.
    The one reader of ``history.csv`` for the probe and the recipes.

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


def _history_val_loss(stage_dir: Path) -> dict:
    """epoch (1-based) -> val_loss from a trainer's ``history.csv``, when it has one."""
    return {epoch: row["val_loss"] for epoch, row in read_history(stage_dir / "history.csv").items()
            if "val_loss" in row}


def training_corruption(stage_dir: str | Path) -> dict | None:
    """``{"corruption", "corruption_level"}`` a recipe stage trained with, when its model does not say.

    A recipe's ``corruption: pipeline`` stage corrupts the images in the input
    pipeline and builds its model with corruption "none", so the checkpoints'
    own architecture claims no corruption. The run directory's ``recipe.yaml``
    records the stage's mode and the architecture (preset and overrides) whose
    ``corruption``/``corruption_level`` the pipeline applied: that is returned
    as e.g. ``{"corruption": "masking (pipeline)", "corruption_level": 0.25}``,
    or ``"unknown (pipeline)"`` when the architecture cannot be resolved.
    None when the stage is not a pipeline-corruption stage of a recipe run
    (the model's own architecture is then right).
    """
    stage_dir = Path(stage_dir)
    recipe = stage_dir.parent / "recipe.yaml"
    if not recipe.is_file():
        return None
    import yaml

    try:
        cfg = yaml.safe_load(recipe.read_text()) or {}
        stage = ((cfg.get("stages") or {}).get(stage_dir.name)) or {}
    except (yaml.YAMLError, AttributeError):
        return None
    if not isinstance(stage, dict) or stage.get("corruption") != "pipeline":
        return None
    try:
        from .models import resolve_arch

        model = cfg.get("model") or {}
        overrides = {**(model.get("overrides") or {}), **(stage.get("overrides") or {})}
        arch = resolve_arch(model.get("preset"), **overrides)
    except (ValueError, TypeError, KeyError, AttributeError):
        return {"corruption": "unknown (pipeline)", "corruption_level": None}
    return {"corruption": f"{arch.corruption} (pipeline)", "corruption_level": float(arch.corruption_level)}


def _file_corruption(item: Any) -> dict | None:
    """:func:`training_corruption` of the stage a ``.keras`` file (``STAGE/checkpoints/epoch_EEE.keras``,
    ``STAGE/model.keras``) belongs to; None for models in memory."""
    if not isinstance(item, (str, Path)):
        return None
    path = Path(item)
    return training_corruption(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def _stage_checkpoints(run: str, stage_dir: Path) -> list:
    losses = _history_val_loss(stage_dir)
    trained = training_corruption(stage_dir)
    found = []
    for path in sorted((stage_dir / "checkpoints").glob("epoch_*.keras")):
        epoch = int(_EPOCH_FILE.search(path.name).group(1))
        found.append(Checkpoint(run, epoch, path, losses.get(epoch), trained))
    if not found and (stage_dir / "model.keras").exists():
        found.append(Checkpoint(run, None, stage_dir / "model.keras", corruption=trained))
    return found


def find_checkpoints(source: Any) -> list:
    """Every auto-encoder checkpoint in ``source``, as :class:`Checkpoint` objects.

    ``source`` may be a run directory (the trainer's layout: ``metrics.json``
    lists the stages; each auto-encoder stage's ``checkpoints/epoch_EEE.keras``,
    else its ``model.keras``), a ``.keras`` file, a model, a list of any of
    these, or a dict ``{run_name: [paths or models in epoch order]}``.

    >>> [c.name for c in find_checkpoints("runs/pitfall/skips-on_masking-0.25")]
    ['skips-on_masking-0.25@e002', 'skips-on_masking-0.25@e004']
    """
    if isinstance(source, Checkpoint):
        return [source]
    if isinstance(source, keras.Model):
        return [Checkpoint(source.name, None, source)]
    if isinstance(source, dict):
        out = []
        for run, items in source.items():
            items = items if isinstance(items, (list, tuple)) else [items]
            for i, item in enumerate(items, start=1):
                epoch = None
                if isinstance(item, (str, Path)) and _EPOCH_FILE.search(str(item)):
                    epoch = int(_EPOCH_FILE.search(str(item)).group(1))
                out.append(Checkpoint(str(run), epoch if epoch is not None else i, item,
                                      corruption=_file_corruption(item)))
        return out
    if isinstance(source, (list, tuple)):
        return [c for item in source for c in find_checkpoints(item)]
    path = Path(source)
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path} is not a .keras model; give a run directory, a .keras file or a list of them")
        m = _EPOCH_FILE.search(path.name)
        run = path.parent.parent.name if m and path.parent.name == "checkpoints" else path.stem
        return [Checkpoint(run, int(m.group(1)) if m else None, path, corruption=_file_corruption(path))]
    if not path.is_dir():
        raise FileNotFoundError(f"no run directory or model at {path}")
    metrics = path / "metrics.json"
    stages = []
    if metrics.exists():
        try:
            stages = [
                name for name, stage in json.loads(metrics.read_text()).get("stages", {}).items()
                if stage.get("kind") == "autoencoder"
            ]
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{metrics} is not the trainer's metrics.json ({exc}); "
                             "expected {'stages': {NAME: {'kind': ...}}}") from exc
    else:
        stages = [p.parent.name for p in sorted(path.glob("*/checkpoints")) if p.is_dir()]
        if (path / "checkpoints").is_dir():
            stages = [""]
    found = []
    for stage in stages:
        run = path.name if len(stages) == 1 else f"{path.name}/{stage}"
        found += _stage_checkpoints(run, path / stage)
    if not found:
        raise FileNotFoundError(
            f"no auto-encoder checkpoints under {path}: expected STAGE/checkpoints/epoch_EEE.keras or "
            "STAGE/model.keras for an autoencoder stage in metrics.json (train with checkpoint_every: k)"
        )
    return found


# ---------------------------------------------------------------------- data
def sample_subset(ds, limit: int | None, seed: int = 0):
    """``limit`` examples of a :func:`keras_skipae.data.load` dataset, drawn at random (seeded, fixed).

    Classification data are stratified: :func:`keras_skipae.data.split` with
    ``num_labels=limit`` takes every class in proportion to its size. Other
    data (segmentation, or a pool holding images labelled -1) are drawn
    uniformly with :func:`keras_skipae.recipes.random_subset`. Never the first
    ``limit``: sources ordered by class (``folder:`` trees) would give only
    the first classes. The whole dataset when it holds ``limit`` or fewer.

    >>> heldout = sample_subset(data.load("folder:cifar10_jpg.zip", "test"), 2000, seed=0)
    """
    if limit is None:
        return ds
    from . import data
    from .recipes import random_subset

    info = getattr(ds, "info", None)
    n = getattr(info, "num_examples", None)
    if n is not None and limit >= n:
        return ds
    table = getattr(info, "table", None)
    labels = table.labels() if table is not None else None
    unlabelled = labels is not None and bool((np.asarray(labels) < 0).any())  # -1: no class to stratify by
    if getattr(info, "task", "classification") == "classification" and not unlabelled:
        try:
            return data.split(ds, num_labels=limit, val_fraction=0.0, seed=seed).labelled
        except data.DataError:
            pass  # not (image, label) pairs after all: a plain random draw
    return random_subset(ds, limit, seed=seed)


def _stratified_indices(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded ``limit``-example subset of ``labels``, stratified as :func:`sample_subset`."""
    from . import data

    proxy = data.load((np.zeros((len(labels), 1, 1, 1), np.uint8), labels))  # labels only: no image copy
    return data.split(proxy, num_labels=limit, val_fraction=0.0, seed=seed).labelled_indices


def _arrays(data: Any, what: str, limit: int | None, seed: int = 0) -> tuple:
    """(images, labels) numpy arrays from a (images, labels) tuple or a tf.data.Dataset.

    With ``limit``: a seeded subset stratified by class (:func:`sample_subset`), not the first ``limit``.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = np.asarray(data[0]), np.asarray(data[1])
    elif hasattr(data, "element_spec"):
        from .data import to_numpy

        images, labels = to_numpy(sample_subset(data, limit, seed))
    else:
        raise TypeError(f"{what}: expected an (images, labels) tuple or a tf.data.Dataset of (image, label); "
                        f"got {type(data).__name__}")
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.ndim != 1 or labels.min() < 0):
        raise ValueError(f"{what}: labels must be class indices >= 0 (classification data), got min {labels.min()}")
    if limit is not None and len(labels) > limit:
        keep = _stratified_indices(labels, limit, seed)
        images, labels = images[keep], labels[keep]
    return images, labels


def run_data_defaults(run_dir: str | Path) -> dict:
    """``source``, ``train_split``, ``eval_split``, ``labels_per_class`` from a run's ``recipe.yaml`` (or {})."""
    recipe = Path(run_dir) / "recipe.yaml"
    if not recipe.is_file():
        return {}
    import yaml

    cfg = (yaml.safe_load(recipe.read_text()) or {}).get("data") or {}
    return {k: cfg[k] for k in ("source", "train_split", "eval_split", "labels_per_class") if cfg.get(k) is not None}


def probe_data(
    source: str,
    *,
    labelled_split: str = "train",
    heldout_split: str = "test",
    labels_per_class: int = 100,
    max_heldout: int | None = 2000,
    seed: int = 0,
) -> tuple:
    """``(labelled, heldout)`` datasets for :func:`probe_run` from a :func:`keras_skipae.data.load` source.

    The labelled set is a stratified, seeded ``labels_per_class`` subset of
    ``labelled_split`` (:func:`keras_skipae.data.split`); the held-out set is
    a stratified, seeded ``max_heldout`` subset of ``heldout_split``
    (:func:`sample_subset`; None: all of it).

    >>> labelled, heldout = probe_data("idx:", labels_per_class=100)
    """
    from . import data
    from .recipes import resolve_source

    source = resolve_source(source)
    splits = data.split(data.load(source, labelled_split), labels_per_class=labels_per_class, val_fraction=0.0,
                        seed=seed)
    heldout = data.load(source, heldout_split)
    if max_heldout is not None:
        heldout = data.to_numpy(sample_subset(heldout, max_heldout, seed))
    return splits.labelled, heldout


# --------------------------------------------------------------------- table
@dataclass
class ProbeTable:
    """Everything :func:`probe_run` measured. ``rows``: one dict per checkpoint or baseline."""

    rows: list
    correlations: list = field(default_factory=list)
    regrets: list = field(default_factory=list)
    verdict: str = ""
    settings: dict = field(default_factory=dict)

    def checkpoints(self) -> list:
        return [r for r in self.rows if r["kind"] == "checkpoint"]

    @classmethod
    def from_json(cls, path, *, recompute: bool = False) -> "ProbeTable":
        """Read a saved ``probe.json``; ``recompute=True`` redoes correlations, regret and verdict from its rows.

        >>> table = ProbeTable.from_json("runs/pitfall/probe/probe.json", recompute=True)
        """
        saved = json.loads(Path(path).read_text())
        rows = [{k: (math.inf if v is None and k in ("psnr", "psnr_corrupted") else v) for k, v in r.items()}
                for r in saved["rows"]]
        settings = saved.get("settings", {})
        table = cls(rows, settings=settings, verdict=saved.get("verdict", ""))
        if recompute:
            table.correlations = relate(rows, n_boot=settings.get("n_boot", 1000), seed=settings.get("seed", 0))
            table.regrets = regrets(rows)
            table.verdict = verdict(table, settings.get("regret_tolerance", 0.01))
        else:
            table.correlations = [Correlation(**c) for c in saved.get("correlations", [])]
            table.regrets = [Regret(**r) for r in saved.get("regret", [])]
        return table

    def correlation(self, scope: str = "checkpoints", x: str = "psnr", y: str = "probe_accuracy") -> Correlation | None:
        for c in self.correlations:
            if (c.scope, c.x, c.y) == (scope, x, y):
                return c
        return None

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "rows": self.rows,
            "correlations": [c.to_dict() for c in self.correlations],
            "regret": [r.to_dict() for r in self.regrets],
            "verdict": self.verdict,
        }

    def to_json(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(_json_safe(self.to_dict()), indent=2) + "\n")
        return path

    def to_csv(self, path) -> Path:
        """One row per checkpoint/baseline; correlations go to ``<stem>_correlations.csv``."""
        path = Path(path)
        cols = [c for c in COLUMNS if any(c in r for r in self.rows)]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                w.writerow({k: _fmt(r.get(k)) for k in cols})
        if self.correlations:
            with open(path.with_name(path.stem + "_correlations.csv"), "w", newline="") as f:
                fields = list(self.correlations[0].to_dict())
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                for c in self.correlations:
                    w.writerow({k: _fmt(v) for k, v in c.to_dict().items()})
        return path

    def plot(self, out_dir) -> list:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return [
            plots.scatter(self.rows, out_dir / "recon_vs_probe.png"),
            plots.over_epochs(self.rows, out_dir / "over_epochs.png"),
        ]

    def write_tensorboard(self, log_dir) -> Path:
        """Scalars ``reconstruction/*`` and ``features/*`` per run, step = epoch (0 = untrained)."""
        import tensorflow as tf

        log_dir = Path(log_dir)
        by_run: dict = {}
        for r in self.rows:
            if r["kind"] in ("checkpoint", "untrained"):
                by_run.setdefault(r["run"], []).append(r)
        for run, rows in by_run.items():
            writer = tf.summary.create_file_writer(str(log_dir / _safe_name(run)))
            with writer.as_default():
                for i, r in enumerate(rows):
                    step = 0 if r["kind"] == "untrained" else (r["epoch"] if r["epoch"] is not None else i)
                    for k in ("mse", "psnr", "ssim", "mse_corrupted", "psnr_corrupted", "ssim_corrupted"):
                        if _finite(r.get(k)):
                            tf.summary.scalar(f"reconstruction/{k}", r[k], step=step)
                    for k in ("probe_accuracy", "knn_accuracy", "finetune_accuracy"):
                        if _finite(r.get(k)):
                            tf.summary.scalar(f"features/{k}", r[k], step=step)
            writer.close()
        return log_dir

    def save(self, out_dir, tensorboard: bool = True) -> dict:
        """Write ``probe.csv``, ``probe_correlations.csv``, ``probe.json``, the PNGs and ``logs/``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = {"csv": self.to_csv(out_dir / "probe.csv"), "json": self.to_json(out_dir / "probe.json")}
        written["plots"] = self.plot(out_dir)
        if tensorboard:
            written["tensorboard"] = self.write_tensorboard(out_dir / "logs")
        return written

    def __str__(self) -> str:
        cols = ["name", "epoch", "mse", "psnr", "ssim", "psnr_corrupted", "probe_accuracy", "knn_accuracy"]
        if any("finetune_accuracy" in r for r in self.rows):
            cols.append("finetune_accuracy")
        lines = [_format_table(self.rows, cols)]
        if self.correlations:
            lines += ["", "correlations (bootstrap 95% CI):", correlation_table(self.correlations)]
        for r in self.regrets:
            lines.append(
                f"choose by {r.criterion}: {r.chosen} -> {r.target} {r.chosen_value:.4f}; "
                f"best {r.best} {r.best_value:.4f}; regret {r.regret:.4f}"
            )
        if self.verdict:
            lines += ["", "verdict: " + self.verdict]
        return "\n".join(lines)


def correlation_table(correlations: Iterable[Correlation], markdown: bool = False) -> str:
    """Correlations as an aligned text (or Markdown) table."""
    header = ["scope", "x", "y", "n", "pearson [95% CI]", "spearman [95% CI]", "kendall [95% CI]"]
    rows = []
    for c in correlations:
        cells = [c.scope, c.x, c.y, str(c.n)]
        for m in ("pearson", "spearman", "kendall"):
            v, lo, hi = getattr(c, m), getattr(c, m + "_low"), getattr(c, m + "_high")
            cells.append("n/a" if not _finite(v) else f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]" if _finite(lo)
                         else f"{v:+.2f}")
        rows.append(cells)
    return _grid(header, rows, markdown)


def _format_table(rows: list, cols: list, markdown: bool = False) -> str:
    body = [[_fmt(r.get(c), 4) for c in cols] for r in rows]
    return _grid(cols, body, markdown)


def _grid(header: list, rows: list, markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _fmt(v, digits: int = 6) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no inf/nan; the CSV keeps them
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def _safe_name(run: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", run)


# ------------------------------------------------------------------- verdict
def verdict(table: ProbeTable, regret_tolerance: float = 0.01) -> str:
    """A short plain-language reading of ``table``: does it show the pitfall?

    The pitfall is shown when reconstruction fails to rank checkpoints by
    feature quality: choosing the best-reconstructing checkpoint costs more
    than ``regret_tolerance`` probe accuracy, or better reconstruction goes
    with reliably *worse* features. It is not shown when the correlation is
    reliably positive (bootstrap interval above 0, at least
    ``MIN_RELIABLE_N`` checkpoints) and choosing by reconstruction costs
    (almost) nothing. Anything else is called inconclusive.
    """
    ckpts = table.checkpoints()
    parts = []
    c = table.correlation("checkpoints", "psnr", "probe_accuracy")
    reg = next((r for r in table.regrets if r.criterion == "psnr" and r.target == "probe_accuracy"), None)
    if c is None or not _finite(c.spearman):
        parts.append(
            f"Too few checkpoints ({len(ckpts)}) with varying scores to relate reconstruction to probe accuracy; "
            "probe at least 3 (save them with checkpoint_every: k, or probe several runs)."
        )
        shown = None
    else:
        ci = f"Spearman {c.spearman:+.2f}, 95% CI [{c.spearman_low:+.2f}, {c.spearman_high:+.2f}], n={c.n}"
        if c.n < MIN_RELIABLE_N:
            parts.append(f"Across only {c.n} checkpoints ({ci}) a bootstrap interval means little; "
                         f"probe at least {MIN_RELIABLE_N} to judge the correlation.")
        elif _finite(c.spearman_low) and c.spearman_low > 0:
            parts.append(f"Across checkpoints, better reconstruction went with better linear-probe accuracy ({ci}).")
        elif _finite(c.spearman_high) and c.spearman_high < 0:
            parts.append(f"Across checkpoints, better reconstruction went with WORSE linear-probe accuracy ({ci}).")
        else:
            parts.append(f"Across checkpoints, reconstruction quality did not reliably predict linear-probe "
                         f"accuracy ({ci}: the interval includes 0).")
        shown = None
        if reg is not None:
            pts = 100 * reg.regret
            if reg.regret > regret_tolerance:
                parts.append(f"Choosing the best-reconstructing checkpoint ({reg.chosen}, probe "
                             f"{reg.chosen_value:.3f}) instead of the best probe ({reg.best}, {reg.best_value:.3f}) "
                             f"loses {pts:.1f} accuracy points.")
            else:
                parts.append(f"Choosing the best-reconstructing checkpoint ({reg.chosen}) loses only {pts:.1f} "
                             f"accuracy points against the best probe ({reg.best}).")
            reliable = c.n >= MIN_RELIABLE_N
            negative = reliable and _finite(c.spearman_high) and c.spearman_high < 0
            positive = reliable and _finite(c.spearman_low) and c.spearman_low > 0
            if reg.regret > regret_tolerance or negative:
                shown = True
            elif positive:
                shown = False
        den = table.correlation("checkpoints", "psnr_corrupted", "probe_accuracy")
        den_reg = next((r for r in table.regrets if r.criterion == "psnr_corrupted"), None)
        if den is not None and _finite(den.spearman) and den_reg is not None:
            parts.append(f"Restoring corrupted held-out images (psnr_corrupted) relates to probe accuracy with "
                         f"Spearman {den.spearman:+.2f} [{den.spearman_low:+.2f}, {den.spearman_high:+.2f}]; "
                         f"choosing by it loses {100 * den_reg.regret:.1f} points.")
        runs = table.correlation("runs", "psnr", "probe_accuracy")
        if runs is not None and _finite(runs.spearman):
            parts.append(f"Across runs (last checkpoint of each), Spearman {runs.spearman:+.2f} "
                         f"[{runs.spearman_low:+.2f}, {runs.spearman_high:+.2f}], n={runs.n}.")
        if shown is True:
            parts.append("These data SHOW the pitfall: do not select or tune these auto-encoders by "
                         "reconstruction error; select by probe accuracy.")
        elif shown is False:
            parts.append("These data do NOT show the pitfall: here reconstruction error was a fair guide to "
                         "feature quality (which need not hold for other data or architectures).")
        else:
            parts.append("The evidence is inconclusive: no reliable relation either way, though choosing by "
                         "reconstruction cost little here; probe more checkpoints or runs to decide.")
    best = max((r for r in ckpts if _finite(r.get("probe_accuracy"))), key=lambda r: r["probe_accuracy"], default=None)
    untrained = [r["probe_accuracy"] for r in table.rows if r["kind"] == "untrained" and _finite(r.get("probe_accuracy"))]
    raw = [r["probe_accuracy"] for r in table.rows if r["kind"] == "raw_pixels" and _finite(r.get("probe_accuracy"))]
    if best is not None and (untrained or raw):
        ref = []
        if untrained:
            ref.append(f"untrained encoder {max(untrained):.3f}")
        if raw:
            ref.append(f"raw pixels {raw[0]:.3f}")
        parts.append(f"Best checkpoint probe accuracy {best['probe_accuracy']:.3f} ({best['name']}) vs "
                     + ", ".join(ref) + ".")
        if untrained and best["probe_accuracy"] <= max(untrained) + regret_tolerance:
            parts.append("Pre-training did not make the pooled features more linearly separable than the "
                         "untrained encoder's.")
        raw_row = next((r for r in table.rows if r["kind"] == "raw_pixels"), None)
        if raw_row is not None and _finite(raw_row.get("probe_accuracy")) and \
                raw_row["probe_accuracy"] > best["probe_accuracy"]:
            parts.append(f"Raw pixels ({raw_row.get('feature_dim')} numbers per image) beat every pooled encoder "
                         f"({best.get('feature_dim')} numbers) under a linear probe: compare checkpoints with each "
                         "other and with the untrained encoder, or probe with pooling='avgmax'/'flatten'.")
    return " ".join(parts)


# --------------------------------------------------------------------- probe
def _feature_scores(f_lab, y_lab, f_test, y_test, knn_k, seed) -> dict:
    probe = feats.linear_probe_accuracy(f_lab, y_lab, f_test, y_test, seed=seed)
    return {
        "probe_accuracy": probe.accuracy,
        "probe_l2": probe.l2,
        "knn_accuracy": feats.knn_accuracy(f_lab, y_lab, f_test, y_test, k=knn_k),
        "feature_dim": int(f_lab.shape[1]),
    }


def _finetune_accuracy(model, x_lab, y_lab, x_test, y_test, epochs: int, seed: int) -> float:
    from .models import build

    keras.utils.set_random_seed(seed)
    num_classes = int(max(y_lab.max(), y_test.max())) + 1
    clf = build("classifier", model.arch, encoder=model, num_classes=num_classes)
    clf.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    clf.fit(x_lab, y_lab, epochs=epochs, batch_size=64, verbose=0)
    return float(clf.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])


def _arch_info(arch) -> dict:
    return {"skips": arch.skips, "corruption": arch.corruption, "corruption_level": arch.corruption_level}


def probe_run(
    run_dir_or_checkpoints: Any,
    labelled_ds: Any,
    heldout_ds: Any,
    *,
    out_dir: str | Path | None = None,
    pooling: str = "avg",
    knn_k: int = 10,
    corruption: tuple | None = ("masking", 0.25),
    baselines: bool = True,
    finetune_epochs: int = 0,
    max_labelled: int | None = None,
    max_heldout: int | None = None,
    n_boot: int = 1000,
    regret_tolerance: float = 0.01,
    tensorboard: bool = True,
    seed: int = 0,
    verbose: bool = False,
) -> ProbeTable:
    """Probe every checkpoint of one or more pre-training runs; return a :class:`ProbeTable`.

    ``run_dir_or_checkpoints``: anything :func:`find_checkpoints` accepts.
    ``labelled_ds`` (fits the probe) and ``heldout_ds`` (scores everything):
    ``(images, labels)`` numpy tuples of raw pixels (uint8) or tf.data
    Datasets of ``(image, label)`` as :func:`keras_skipae.data.load` returns.
    ``corruption``: ``(kind, level)`` applied (seeded) to the held-out images
    for the ``*_corrupted`` metrics, or None. ``baselines`` adds raw pixels
    (flattened; their "reconstruction" is the identity) and, per run, the same
    architecture untrained (epoch 0). ``finetune_epochs > 0`` also fine-tunes
    a classifier from each encoder on the labelled set. With ``out_dir``
    everything is written there (:meth:`ProbeTable.save`).

    >>> table = probe_run("runs/ae", (x_lab, y_lab), (x_test, y_test), out_dir="runs/ae/probe")
    >>> table.correlation("checkpoints", "psnr", "probe_accuracy").spearman
    """
    checkpoints = find_checkpoints(run_dir_or_checkpoints)
    if not checkpoints:
        raise ValueError("probe_run: nothing to probe (no checkpoints found)")
    img_lab, y_lab = _arrays(labelled_ds, "labelled_ds", max_labelled, seed)
    img_test, y_test = _arrays(heldout_ds, "heldout_ds", max_heldout, seed)
    _arrays_ok(y_lab, y_test)

    rows: list = []
    inputs: dict = {}  # normalisation key -> (x_lab, x_test, x_test_corrupted)

    def model_inputs(arch):
        key = (tuple(arch.input_shape), arch.pixel_scale, tuple(arch.channel_mean()), tuple(arch.channel_std()))
        if key not in inputs:
            x_lab, x_test = normalise(img_lab, arch), normalise(img_test, arch)
            x_bad = corrupt(x_test, arch, corruption[0], corruption[1], seed=seed) if corruption else None
            inputs[key] = (x_lab, x_test, x_bad)
        return inputs[key]

    def measure(model, row: dict) -> dict:
        x_lab, x_test, x_bad = model_inputs(model.arch)
        row.update(_arch_info(model.arch))
        both = feats.features_and_reconstruction(model, pooling)  # one traced predict for all inputs
        restored, features = both.predict(np.concatenate([x_test, x_lab]), batch_size=256, verbose=0)
        restored_bad = None if x_bad is None else both.predict(x_bad, batch_size=256, verbose=0)[0]
        row.update(reconstruction_scores(x_test, restored[: len(x_test)], model.arch, restored_bad))
        row.update(_feature_scores(features[len(x_test):], y_lab, features[: len(x_test)], y_test, knn_k, seed))
        if finetune_epochs > 0:
            row["finetune_accuracy"] = _finetune_accuracy(model, x_lab, y_lab, x_test, y_test, finetune_epochs, seed)
        if verbose and "name" in row:
            print(f"probe: {row['name']}: psnr {row['psnr']:.2f} probe {row['probe_accuracy']:.4f} "
                  f"knn {row['knn_accuracy']:.4f}", flush=True)
        return row

    untrained_done: dict = {}
    untrained_runs: set = set()
    first_arch = None
    for ckpt in checkpoints:
        model = ckpt.load()
        if getattr(model, "kind", "") != "autoencoder":
            raise ValueError(f"{ckpt.name}: {ckpt.source} is a {getattr(model, 'kind', type(model).__name__)!r}, "
                             "not a keras_skipae autoencoder; probe pre-training checkpoints")
        first_arch = first_arch or model.arch
        if baselines and ckpt.run not in untrained_runs:
            untrained_runs.add(ckpt.run)
            # without a corruption layer the global seed initialises the encoder identically in every run;
            # runs that differ only in their corruption share one untrained model, measured once
            fresh_arch = model.arch.replace(corruption="none", corruption_level=0.0)
            key = json.dumps(fresh_arch.to_dict(), sort_keys=True)
            if key not in untrained_done:
                from .models import build

                keras.utils.set_random_seed(seed)
                untrained_done[key] = measure(build("autoencoder", fresh_arch), {})
            row = {"run": ckpt.run, "name": f"{ckpt.run}@untrained", "kind": "untrained", "epoch": 0,
                   "checkpoint": "", **{k: v for k, v in untrained_done[key].items() if k not in ("name",)}}
            row.update(ckpt.arch_info(model.arch))
            rows.append(row)
        row = measure(model, {
            "run": ckpt.run, "name": ckpt.name, "kind": "checkpoint", "epoch": ckpt.epoch,
            "checkpoint": "" if isinstance(ckpt.source, keras.Model) else str(ckpt.source),
            "val_loss": ckpt.val_loss,
        })
        row.update(ckpt.arch_info(model.arch))
        rows.append(row)
    if baselines:
        x_lab, x_test, x_bad = model_inputs(first_arch)
        from .analysis.reconstruction import image_quality

        raw = {"run": "raw_pixels", "name": "raw_pixels", "kind": "raw_pixels", "epoch": None, "checkpoint": ""}
        raw.update(image_quality(x_test, x_test, first_arch))
        if x_bad is not None:
            raw.update({k + "_corrupted": v for k, v in image_quality(x_test, x_bad, first_arch).items()})
        f_lab, f_test = x_lab.reshape(len(x_lab), -1), x_test.reshape(len(x_test), -1)
        probe = feats.linear_probe_accuracy(f_lab, y_lab, f_test, y_test, seed=seed)
        raw.update({"probe_accuracy": probe.accuracy, "probe_l2": probe.l2,
                    "knn_accuracy": feats.knn_accuracy(f_lab, y_lab, f_test, y_test, k=knn_k),
                    "feature_dim": int(f_lab.shape[1])})
        rows.append(raw)

    table = ProbeTable(rows=[{k: v for k, v in r.items() if v is not None or k in ("epoch",)} for r in rows])
    table.settings = {
        "pooling": pooling, "knn_k": knn_k, "corruption": list(corruption) if corruption else None,
        "labelled": int(len(y_lab)), "heldout": int(len(y_test)), "n_boot": n_boot, "seed": seed,
        "finetune_epochs": finetune_epochs, "regret_tolerance": regret_tolerance,
    }
    table.correlations = relate(table.rows, n_boot=n_boot, seed=seed)
    table.regrets = regrets(table.rows)
    table.verdict = verdict(table, regret_tolerance)
    if out_dir is not None:
        table.save(out_dir, tensorboard=tensorboard)
    return table


def _arrays_ok(y_lab: np.ndarray, y_test: np.ndarray) -> None:
    missing = sorted(set(np.unique(y_test)) - set(np.unique(y_lab)))
    if missing:
        raise ValueError(f"held-out labels {missing[:10]} never occur in the labelled set; the probe cannot "
                         "predict them (use a stratified labelled subset, e.g. keras_skipae.data.split)")


def relate(rows: list, *, n_boot: int = 1000, seed: int = 0) -> list:
    """Correlations of reconstruction (``psnr``, ``psnr_corrupted``) with feature quality.

    Scopes: ``checkpoints`` (all trained checkpoints), ``runs`` (the last
    checkpoint of each run, when there are 3 or more runs) and ``run:NAME``
    (psnr vs probe accuracy over one run's epochs, when it has 3 or more).
    """
    ckpts = [r for r in rows if r["kind"] == "checkpoint"]
    by_run: dict = {}
    for r in ckpts:
        by_run.setdefault(r["run"], []).append(r)
    last = [max(rs, key=lambda r: r["epoch"] if r["epoch"] is not None else -1) for rs in by_run.values()]
    out = []
    scopes = [("checkpoints", ckpts)] + ([("runs", last)] if len(last) >= 3 else [])
    for scope, rs in scopes:
        for x in RECON_X:
            for y in FEATURE_Y:
                if any(_finite(r.get(x)) for r in rs):
                    out.append(correlate([r.get(x, math.nan) for r in rs], [r.get(y, math.nan) for r in rs],
                                         scope=scope, x_name=x, y_name=y, n_boot=n_boot, seed=seed))
    if len(by_run) > 1:
        for run, rs in by_run.items():
            if len(rs) >= 3:
                out.append(correlate([r["psnr"] for r in rs], [r["probe_accuracy"] for r in rs],
                                     scope=f"run:{run}", x_name="psnr", y_name="probe_accuracy",
                                     n_boot=n_boot, seed=seed))
    return out


def regrets(rows: list) -> list:
    """Regret in probe accuracy of choosing a checkpoint by each reconstruction criterion."""
    ckpts = [r for r in rows if r["kind"] == "checkpoint"]
    out = []
    for criterion, higher in (("psnr", True), ("psnr_corrupted", True), ("val_loss", False)):
        if any(_finite(r.get(criterion)) for r in ckpts):
            out.append(regret(ckpts, criterion, "probe_accuracy", higher_is_better=higher))
    return out
