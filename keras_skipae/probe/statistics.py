"""Correlation with bootstrap intervals, and the regret of a selection rule.

:func:`correlate` and :func:`regret` work on any series and rows;
:func:`relate` and :func:`regrets` apply them to a probe's rows: does
reconstruction (``psnr``, ``psnr_corrupted``) rank checkpoints as feature
quality (``probe_accuracy``, ``knn_accuracy``) does, and what does choosing
by reconstruction cost?
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

METHODS = ("pearson", "spearman", "kendall")
RECON_X = ("psnr", "psnr_corrupted")
FEATURE_Y = ("probe_accuracy", "knn_accuracy")


def finite(v) -> bool:
    """Whether ``v`` is a finite number (not None, NaN, inf or a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class Correlation:
    """Pearson, Spearman and Kendall correlation of ``x`` and ``y`` over ``n`` points.

    ``*_low``/``*_high`` bound a percentile bootstrap interval (resampling the
    points with replacement); NaN where it cannot be computed (fewer than 3
    points, or a constant series).
    """

    scope: str
    x: str
    y: str
    n: int
    pearson: float
    pearson_low: float
    pearson_high: float
    spearman: float
    spearman_low: float
    spearman_high: float
    kendall: float
    kendall_low: float
    kendall_high: float

    def to_dict(self) -> dict:
        return asdict(self)


def _coefficients(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan
    pearson = float(np.corrcoef(x, y)[0, 1])
    spearman = float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])
    kendall = float(stats.kendalltau(x, y).statistic)
    return pearson, spearman, kendall


def correlate(
    x, y, *, scope: str = "", x_name: str = "x", y_name: str = "y", n_boot: int = 1000, ci: float = 0.95, seed: int = 0
) -> Correlation:
    """Correlate two series (NaN pairs dropped), with bootstrap confidence intervals.

    >>> c = correlate(psnr, probe_acc, x_name="psnr", y_name="probe_accuracy")
    >>> c.spearman, (c.spearman_low, c.spearman_high)
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"correlate: x has {x.shape[0]} values but y has {y.shape[0]}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    point = _coefficients(x, y)
    bounds = [(math.nan, math.nan)] * 3
    if not math.isnan(point[0]) and n_boot > 0:
        rng = np.random.default_rng(seed)
        draws = np.array([_coefficients(x[i], y[i]) for i in rng.integers(0, len(x), (n_boot, len(x)))])
        alpha = (1.0 - ci) / 2.0
        bounds = []
        for col in draws.T:
            col = col[~np.isnan(col)]
            bounds.append(
                (float(np.quantile(col, alpha)), float(np.quantile(col, 1 - alpha))) if len(col) else (math.nan,) * 2
            )
    return Correlation(
        scope, x_name, y_name, int(len(x)),
        point[0], *bounds[0], point[1], *bounds[1], point[2], *bounds[2],
    )


@dataclass
class Regret:
    """What choosing by ``criterion`` costs in ``target``.

    ``chosen`` is the row the criterion picks; ``best`` the row with the best
    target; ``regret = best_value - chosen_value`` (in the target's units).
    """

    criterion: str
    target: str
    chosen: str
    chosen_value: float
    best: str
    best_value: float
    regret: float

    def to_dict(self) -> dict:
        return asdict(self)


def regret(rows: list, criterion: str, target: str, *, higher_is_better: bool = True, label: str = "name") -> Regret:
    """Regret of picking the row with the best ``criterion`` instead of the best ``target``.

    >>> regret(rows, "psnr", "probe_accuracy").regret   # accuracy points lost
    """
    usable = [r for r in rows if finite(r.get(criterion)) and finite(r.get(target))]
    if not usable:
        raise ValueError(f"regret: no row has both {criterion!r} and {target!r}")
    pick = max if higher_is_better else min
    chosen = pick(usable, key=lambda r: r[criterion])
    best = max(usable, key=lambda r: r[target])
    return Regret(
        criterion, target, str(chosen[label]), float(chosen[target]), str(best[label]), float(best[target]),
        float(best[target] - chosen[target]),
    )


def relate(rows: list, *, n_boot: int = 1000, seed: int = 0) -> list:
    """Correlations of reconstruction (``psnr``, ``psnr_corrupted``) with feature quality.

    Scopes: ``checkpoints`` (all trained checkpoints), ``runs`` (the last
    checkpoint of each run, when there are 3 or more runs) and ``run:NAME``
    (psnr vs probe accuracy over one run's epochs, when it has 3 or more).

    >>> [c.scope for c in relate(table.rows)]
    ['checkpoints', 'checkpoints', 'checkpoints', 'checkpoints', 'runs', ...]
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
                if any(finite(r.get(x)) for r in rs):
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
    """Regret in probe accuracy of choosing a checkpoint by each reconstruction criterion (and ``val_loss``).

    >>> [(r.criterion, r.regret) for r in regrets(table.rows)]
    """
    ckpts = [r for r in rows if r["kind"] == "checkpoint"]
    out = []
    for criterion, higher in (("psnr", True), ("psnr_corrupted", True), ("val_loss", False)):
        if any(finite(r.get(criterion)) for r in ckpts):
            out.append(regret(ckpts, criterion, "probe_accuracy", higher_is_better=higher))
    return out
