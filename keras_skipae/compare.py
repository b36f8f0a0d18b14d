"""Comparing training methods over seeds: per-stage intervals, paired differences, a verdict.

One seed is an anecdote. :func:`compare_runs` reads finished run directories
of one recipe run with different seeds (through :class:`keras_skipae.runs.RunDir`)
and reports, for every stage and metric, the per-seed values, their mean,
standard deviation and 95% t-interval; and for every pair of stages, the
paired per-seed difference with its 95% t-interval and the paired t-test's
p-value, beside its Holm-adjusted p-value (Holm's step-down correction over
every pair tested in one comparison, so testing 15 pairs does not make a
chance difference look real). The verdict is never stronger than the
evidence: a difference is claimed only when its Holm-adjusted p-value is
below 0.05 (and so its whole interval lies on one side of zero). A requested
pair that cannot be compared (its stages are of different kinds, or one has
no figure for the metric, e.g. ``eval_on: none``) is listed by name with the
reason, never dropped in silence.

>>> report = compare_runs(["runs/q/seed_0", "runs/q/seed_1", "runs/q/seed_2"], pairs=[("finetune", "scratch")])
>>> print(report.verdict)
>>> report.write("runs/q")       # comparison.{json,csv,md} and comparison.png
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from .atomic import write_json_atomic, write_text_atomic
from .kinds import KINDS
from .runs import COMPARISON_FILE, RunDir, RunError, seed_dirs

CONFIDENCE = 0.95
INTERVAL_METHOD = "t"  # Student's t over seeds (paired for differences)
# metrics reported as fractions are shown in points (x100)
_FRACTIONS = ("accuracy", "top5_accuracy", "mean_iou", "pixel_accuracy", "ssim")


def primary_metric(kind: str) -> tuple[str, str]:
    """(metric, "max" or "min"): the metric a kind is judged by (its best-epoch monitor, without ``val_``)."""
    name, mode = KINDS[kind].monitor
    return name.removeprefix("val_"), mode


@dataclass
class Interval:
    """Mean, standard deviation and 95% t-interval of ``values`` (no interval from fewer than 2)."""

    values: list[float]
    mean: float
    std: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values) -> Interval:
        v = np.asarray([float(x) for x in values], np.float64)
        n = len(v)
        mean = float(v.mean()) if n else math.nan
        if n < 2:
            return cls(v.tolist(), mean, math.nan, math.nan, math.nan, n)
        std = float(v.std(ddof=1))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        return cls(v.tolist(), mean, std, mean - half, mean + half, n)


@dataclass
class PairedDifference:
    """``first`` minus ``second`` on ``metric``, seed by seed."""

    first: str
    second: str
    metric: str
    higher_is_better: bool
    seeds: list[int]
    interval: Interval
    p_value: float
    #: Holm-adjusted over every pair of the comparison (equal to p_value for a single pair)
    p_holm: float = math.nan

    @property
    def verdict(self) -> str:
        return _pair_verdict(self)


@dataclass
class SkippedPair:
    """A requested pair that could not be compared, and why."""

    first: str
    second: str
    reason: str


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (NaN stays NaN and is not counted).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    indexed = [(p, i) for i, p in enumerate(p_values) if math.isfinite(p)]
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass
class Comparison:
    """Per-stage intervals, paired differences and the verdict of several seeds' runs."""

    seeds: list[int]
    runs: list[str]
    stages: dict[str, dict[str, Interval]]             # stage -> metric -> interval over seeds
    kinds: dict[str, str]
    differences: list[PairedDifference] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> mean wall time per seed
    skipped: list[SkippedPair] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        lines = [d.verdict for d in self.differences]
        lines += [f"{s.first} vs {s.second}: not compared: {s.reason}" for s in self.skipped]
        if not self.differences and not self.skipped:
            return "no pair of stages to compare (name two or more stages in the recipe's summary)"
        if len(self.differences) > 1:
            lines.append(f"{len(self.differences)} pairs tested: a difference is claimed only where its "
                         "Holm-adjusted p-value is below 0.05")
        return "\n".join(lines)

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict:
        return {
            "seeds": self.seeds, "runs": self.runs, "confidence": CONFIDENCE, "interval": INTERVAL_METHOD,
            "stages": {s: {"kind": self.kinds[s], "seconds_per_seed": self.seconds.get(s),
                           "metrics": {m: asdict(i) for m, i in ms.items()}} for s, ms in self.stages.items()},
            "differences": [{**asdict(d), "verdict": d.verdict} for d in self.differences],
            "skipped": [asdict(x) for x in self.skipped],
            "verdict": self.verdict,
        }

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["row", "stage", "metric", "n", "mean", "std", "ci_low", "ci_high", "p_value", "p_holm"]
                        + [f"seed_{s}" for s in self.seeds])
        for stage, metrics in self.stages.items():
            for metric, i in metrics.items():
                writer.writerow(["stage", stage, metric, i.n, i.mean, i.std, i.low, i.high, "", ""] + i.values)
        for d in self.differences:
            i = d.interval
            writer.writerow(["difference", f"{d.first} - {d.second}", d.metric, i.n, i.mean, i.std, i.low, i.high,
                             d.p_value, d.p_holm] + i.values)
        return out.getvalue()

    def markdown(self) -> str:
        lines = [f"Seeds: {', '.join(map(str, self.seeds))} ({len(self.seeds)}); "
                 f"{int(CONFIDENCE * 100)}% intervals by Student's t over seeds.", "",
                 "| stage | metric | mean | 95% interval | std | per seed |", "|---|---|---|---|---|---|"]
        for stage, metrics in self.stages.items():
            for metric, i in metrics.items():
                lines.append(f"| {stage} | {metric} | {_fmt(i.mean, metric)} | {_range(i, metric)} | "
                             f"{_fmt(i.std, metric)} | {', '.join(_fmt(v, metric) for v in i.values)} |")
        if self.differences:
            lines += ["", "| paired difference | metric | mean | 95% interval | p (paired t) | p (Holm) |",
                      "|---|---|---|---|---|---|"]
            for d in self.differences:
                lines.append(f"| {d.first} - {d.second} | {d.metric} | {_fmt(d.interval.mean, d.metric, True)} | "
                             f"{_range(d.interval, d.metric, True)} | {_p(d.p_value)} | {_p(d.p_holm)} |")
        lines += ["", "Verdict:", ""] + [f"- {line}" for line in self.verdict.splitlines()] + [""]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()

    def write(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """``comparison.json``, ``.csv``, ``.md`` and ``comparison.png`` in ``out_dir``."""
        out_dir = Path(out_dir)
        paths = {"json": write_json_atomic(out_dir / COMPARISON_FILE, self.to_dict()),
                 "csv": write_text_atomic(out_dir / COMPARISON_FILE.replace(".json", ".csv"), self.csv_text()),
                 "md": write_text_atomic(out_dir / COMPARISON_FILE.replace(".json", ".md"), self.markdown())}
        paths["png"] = self.plot(out_dir / COMPARISON_FILE.replace(".json", ".png"))
        return paths

    def plot(self, path: str | os.PathLike) -> Path:
        """Each stage's primary metric: one dot per seed, the mean and its 95% interval."""
        from matplotlib.figure import Figure  # the plot is the only user of matplotlib

        path = Path(path)
        shown = [(s, primary_metric(self.kinds[s])[0]) for s in self.stages]
        shown = [(s, m) for s, m in shown if m in self.stages[s]]
        fig = Figure(figsize=(1.6 + 1.3 * max(1, len(shown)), 3.6))
        ax = fig.add_subplot()
        for x, (stage, metric) in enumerate(shown):
            i = self.stages[stage][metric]
            ax.scatter([x] * i.n, i.values, color="0.6", s=14, zorder=2)
            if i.n >= 2:
                ax.errorbar([x], [i.mean], yerr=[[i.mean - i.low], [i.high - i.mean]], fmt="o", color="C0",
                            capsize=5, zorder=3)
            else:
                ax.scatter([x], [i.mean], color="C0", zorder=3)
        ax.set_xticks(range(len(shown)), [f"{s}\n{m}" for s, m in shown])
        ax.set_title(f"{len(self.seeds)} seeds, mean and {int(CONFIDENCE * 100)}% interval", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
        return path


def _scale(metric: str) -> float:
    return 100.0 if metric in _FRACTIONS else 1.0


def _fmt(v: float, metric: str, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    value = v * _scale(metric)
    digits = 1 if metric in _FRACTIONS else 4
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _range(i: Interval, metric: str, signed: bool = False) -> str:
    if i.n < 2:
        return "- (one seed)"
    return f"[{_fmt(i.low, metric, signed)}, {_fmt(i.high, metric, signed)}]"


def _p(p: float) -> str:
    return "-" if not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _pair_verdict(d: PairedDifference) -> str:
    i, metric = d.interval, d.metric
    unit = " points" if metric in _FRACTIONS else ""
    what = f"{d.first} vs {d.second}, {metric}"
    if i.n < 2:
        return (f"{what}: {_fmt(i.mean, metric, True)}{unit} from one seed: an anecdote, not evidence "
                "(run more seeds for an interval)")
    corrected = math.isfinite(d.p_holm) and d.p_holm != d.p_value
    p_text = f"p={_p(d.p_value)}" + (f", Holm-adjusted {_p(d.p_holm)}" if corrected else "")
    shown = f"{_fmt(i.mean, metric, True)}{unit} {_range(i, metric, True)} over {i.n} seeds (paired t, {p_text})"
    # without a correction (one pair, or a difference made on its own) the interval decides
    if (i.low > 0 or i.high < 0) and (not corrected or d.p_holm < 1 - CONFIDENCE):
        up = i.low > 0
        better = up == d.higher_is_better
        return f"{what}: {d.first} {'raised' if up else 'lowered'} {metric} by {shown}: {d.first} is " \
               f"{'better' if better else 'worse'} in these runs"
    if i.low > 0 or i.high < 0:
        return (f"{what}: these runs do not show a difference once corrected for the pairs tested: {shown} "
                "(the interval alone excludes zero)")
    return f"{what}: these runs do not show a difference: {shown}"


def _seed_of(recipe: dict | None, fallback: int) -> int:
    seed = (recipe or {}).get("seed")
    return int(seed) if isinstance(seed, int) else fallback


def expand_runs(paths) -> list[Path]:
    """Run directories from ``paths``: each a run directory, or a parent holding ``seed_S/`` run directories."""
    found: list[Path] = []
    for p in map(Path, paths):
        if RunDir(p).metrics_file.is_file():
            found.append(p)
            continue
        children = seed_dirs(p)
        if not children:
            raise RunError(f"{p}: neither a finished run directory (metrics.json) nor a folder of seed_S/ runs")
        found += children
    return found


#: recorded recipe keys that differ from seed to seed by design (the seed draws the split)
_PER_SEED_KEYS = {("data", "split_seed")}


def _first_difference(a, b, path: tuple) -> tuple[tuple, object, object] | None:
    """The first key path (and both values) where two recorded recipe sections differ; None when equal."""
    if path in _PER_SEED_KEYS:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), (*path, key))
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def _stage_closure(stages: dict, names) -> list[str]:
    """``names`` and the stages they start from (``init``), recursively: a fine-tuned arm is its pre-training too."""
    seen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in seen or name not in stages:
            continue
        seen.append(name)
        init = (stages[name] or {}).get("init")
        if isinstance(init, str):
            todo.append(init)
    return seen


def _check_one_configuration(runs: list[RunDir], recipes: list[dict | None], compared) -> None:
    """Refuse to pool runs whose recorded recipes ran the compared stages differently.

    Seeds pool only when they repeat one configuration: the data and model
    sections (less the per-seed split seed) and every compared stage with the
    stages it starts from must be equal in every run. Runs without a recorded
    recipe are not checked.
    """
    recorded = [(r, raw) for r, raw in zip(runs, recipes) if raw]
    if len(recorded) < 2:
        return
    (first, base), rest = recorded[0], recorded[1:]
    sections = ["data", "model"] + [("stages", s) for s in _stage_closure(base.get("stages") or {}, sorted(compared))]
    for run, raw in rest:
        for section in sections:
            path = (section,) if isinstance(section, str) else section
            a, b = base, raw
            for key in path:
                a = a.get(key) if isinstance(a, dict) else None
                b = b.get(key) if isinstance(b, dict) else None
            found = _first_difference(a, b, path)
            if found:
                where, x, y = found
                raise RunError(
                    f"compare: {first.path} and {run.path} ran {'.'.join(map(str, where))} differently ({x!r} vs "
                    f"{y!r}): seeds pool only when they repeat one configuration; compare each set of runs alone")


def compare_runs(run_dirs, pairs: list[tuple[str, str]] | None = None) -> Comparison:
    """Compare finished run directories of one recipe, one per seed (see the module docstring).

    ``pairs``: (first, second) stages whose per-seed difference first - second
    is tested; None: every pair of the recorded recipe's ``summary`` stages,
    in order. Stages missing from a run are an error naming the run: with
    ``pairs``, only the stages they name must be in every run, so runs of two
    recipes that share those stages (a search and its confirmation on new
    seeds) compare together, provided they ran those stages (and the data,
    the model and the stages those start from) the same way.
    """
    runs = [RunDir(p) for p in expand_runs(run_dirs)] if run_dirs else []
    if not runs:
        raise RunError("compare: give at least one finished run directory")
    paths = [r.path.resolve() for r in runs]
    repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
    if repeated:
        raise RunError(f"compare: {', '.join(repeated)} given more than once (a parent folder and one of its "
                       "seed_S runs?); each run counts once")
    recorded = [r.recipe() for r in runs]  # each recipe.yaml read once
    seeds = [_seed_of(raw, i) for i, raw in enumerate(recorded)]
    twice = {s: [str(r.path) for r, t in zip(runs, seeds) if t == s] for s in seeds if seeds.count(s) > 1}
    if twice:
        raise RunError(f"compare: seeds repeated across runs {twice}: the same seed draws the same split and "
                       "noise, so those runs are not independent; compare runs of distinct seeds")
    finished = [r.stages() for r in runs]
    for r, stages in zip(runs, finished):
        if not stages:
            raise RunError(f"{r.path}: no finished stage to compare (is the run complete?)")
    # with pairs named, only their stages must be in every run (runs of two recipes that share them compare)
    required = set(finished[0]) if pairs is None else {s for pair in pairs for s in pair}
    anywhere = set().union(*finished)
    unknown = sorted(required - anywhere)
    if unknown:
        raise RunError(f"compare: no stage {', '.join(map(repr, unknown))} in any run; stages: {', '.join(sorted(anywhere))}")
    names = [s for s in finished[0] if all(s in f for f in finished)]
    missing = {str(r.path): sorted(required - set(f)) for r, f in zip(runs, finished) if required - set(f)}
    if missing:
        raise RunError(f"compare: runs lack stages others finished: {missing}; finish them (rerun the same command) "
                       "or leave those runs out")
    _check_one_configuration(runs, recorded, required if pairs is not None else set(names))
    kinds = {s: finished[0][s].kind for s in names}
    table = {s: {m: Interval.of([f[s].metrics[m] for f in finished])
                 for m in finished[0][s].metrics if all(m in f[s].metrics for f in finished)} for s in names}
    seconds = {s: float(np.mean([f[s].seconds for f in finished])) for s in names
               if all(f[s].seconds is not None for f in finished)}
    if pairs is None:
        summary = [s for s in ((recorded[0] or {}).get("summary") or []) if s in names]
        pairs = [(a, b) for i, a in enumerate(summary) for b in summary[i + 1:]]
    differences, skipped = [], []
    for a, b in pairs:
        for stage in (a, b):
            if stage not in names:
                raise RunError(f"compare: no stage {stage!r} finished in every run; stages: {', '.join(names)}")
        metric, mode = primary_metric(kinds[a])
        if kinds[a] != kinds[b]:
            skipped.append(SkippedPair(a, b, f"{a} is a {kinds[a]} and {b} a {kinds[b]}: no common metric"))
            continue
        lacking = [s for s in (a, b) if metric not in table[s]]
        if lacking:
            skipped.append(SkippedPair(a, b, f"{' and '.join(lacking)} has no {metric} in every run (evaluated "
                                             "with eval_on: none?)"))
            continue
        diff = np.array(table[a][metric].values) - np.array(table[b][metric].values)
        p = float(stats.ttest_1samp(diff, 0.0).pvalue) if len(diff) >= 2 and np.ptp(diff) > 0 else (
            0.0 if len(diff) >= 2 and diff[0] != 0 else math.nan)
        differences.append(PairedDifference(a, b, metric, mode == "max", seeds, Interval.of(diff), p))
    for d, adjusted in zip(differences, holm([d.p_value for d in differences])):
        d.p_holm = adjusted
    return Comparison(seeds, [str(r.path) for r in runs], table, kinds, differences, seconds, skipped)


def load_comparison(path: str | os.PathLike) -> dict:
    """A written ``comparison.json``."""
    return json.loads(Path(path).read_text())
