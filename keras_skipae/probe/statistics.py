"""Correlation with bootstrap intervals, and the regret of a selection rule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

METHODS = ("pearson", "spearman", "kendall")


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
    usable = [r for r in rows if _finite(r.get(criterion)) and _finite(r.get(target))]
    if not usable:
        raise ValueError(f"regret: no row has both {criterion!r} and {target!r}")
    pick = max if higher_is_better else min
    chosen = pick(usable, key=lambda r: r[criterion])
    best = max(usable, key=lambda r: r[target])
    return Regret(
        criterion, target, str(chosen[label]), float(chosen[target]), str(best[label]), float(best[target]),
        float(best[target] - chosen[target]),
    )


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
