"""The probe's results: :class:`ProbeTable` (rows, correlations, regret, verdict) and its files and text.

:func:`format_table` is the one aligned-text / Markdown table formatter
(the probe's and the tuner's reports); :func:`correlation_table` formats
correlations with their bootstrap intervals.

>>> table = ProbeTable.from_json("runs/pitfall/probe/probe.json")
>>> print(correlation_table(table.correlations, markdown=True))
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import tensorflow as tf

from ..atomic import write_text_atomic
from . import plots
from .statistics import Correlation, Regret, finite, regrets, relate
from .verdict import verdict

COLUMNS = (
    "run", "name", "kind", "epoch", "checkpoint", "skips", "corruption", "corruption_level",
    "mse", "psnr", "ssim", "mse_corrupted", "psnr_corrupted", "ssim_corrupted", "val_loss",
    "probe_accuracy", "probe_l2", "knn_accuracy", "finetune_accuracy", "feature_dim",
)
STAGE_PREFIX = "probe_accuracy_stage"  # the per-stage probes of ``stages=True`` / ``grid`` > 1, one column each


def stage_columns(rows: list) -> list:
    """The ``probe_accuracy_stage*`` columns present in ``rows``, in stage order (global pooling before the grid)."""
    return sorted({k for r in rows for k in r if k.startswith(STAGE_PREFIX)},
                  key=lambda k: (len(k.split("_")[2]), k))


@dataclass
class ProbeTable:
    """Everything :func:`keras_skipae.probe.probe_run` measured. ``rows``: one dict per checkpoint or baseline."""

    rows: list
    correlations: list = field(default_factory=list)
    regrets: list = field(default_factory=list)
    verdict: str = ""
    settings: dict = field(default_factory=dict)

    def checkpoints(self) -> list:
        return [r for r in self.rows if r["kind"] == "checkpoint"]

    @classmethod
    def from_json(cls, path, *, recompute: bool = False) -> ProbeTable:
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
        """Strict JSON (inf and NaN become null), written atomically."""
        return write_text_atomic(path, json.dumps(_json_safe(self.to_dict()), indent=2) + "\n")

    def to_csv(self, path) -> Path:
        """One row per checkpoint/baseline; correlations go to ``<stem>_correlations.csv``."""
        path = Path(path)
        cols = [c for c in COLUMNS if any(c in r for r in self.rows)] + stage_columns(self.rows)
        write_text_atomic(path, _csv(cols, ({k: _fmt(r.get(k)) for k in cols} for r in self.rows)))
        if self.correlations:
            fields = list(self.correlations[0].to_dict())
            write_text_atomic(path.with_name(path.stem + "_correlations.csv"),
                              _csv(fields, ({k: _fmt(v) for k, v in c.to_dict().items()} for c in self.correlations)))
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
                        if finite(r.get(k)):
                            tf.summary.scalar(f"reconstruction/{k}", r[k], step=step)
                    for k in ("probe_accuracy", "knn_accuracy", "finetune_accuracy"):
                        if finite(r.get(k)):
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
        lines = [rows_table(self.rows, cols)]
        stages = stage_columns(self.rows)
        if stages:
            lines += ["", "linear probe of each encoder stage's features (stageS: global average; _gridG: G x G cells):",
                      rows_table([r for r in self.rows if any(c in r for c in stages)], ["name", *stages])]
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
    """Correlations as an aligned text (or Markdown) table, each coefficient with its 95% interval.

    >>> print(correlation_table(table.correlations, markdown=True))
    """
    header = ["scope", "x", "y", "n", "pearson [95% CI]", "spearman [95% CI]", "kendall [95% CI]"]
    rows = []
    for c in correlations:
        cells = [c.scope, c.x, c.y, str(c.n)]
        for m in ("pearson", "spearman", "kendall"):
            v, lo, hi = getattr(c, m), getattr(c, m + "_low"), getattr(c, m + "_high")
            cells.append("n/a" if not finite(v) else f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]" if finite(lo)
                         else f"{v:+.2f}")
        rows.append(cells)
    return format_table(header, rows, markdown)


def rows_table(rows: list, cols: list, markdown: bool = False) -> str:
    """The columns ``cols`` of dict ``rows`` as a table (numbers to 4 significant digits, missing cells empty)."""
    return format_table(cols, [[_fmt(r.get(c), 4) for c in cols] for r in rows], markdown)


def format_table(header: list, rows: list, markdown: bool = False) -> str:
    """``rows`` of cells under ``header`` as left-aligned text columns, or as a Markdown table.

    >>> print(format_table(["trial", "probe"], [["3", "0.71"], ["12", "0.69"]]))
    trial  probe
    -----  -----
    3      0.71
    12     0.69
    """
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _csv(fields: list, rows: Iterable[dict]) -> str:
    buffer = io.StringIO(newline="")
    w = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buffer.getvalue()


def _fmt(v, digits: int = 6) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


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
