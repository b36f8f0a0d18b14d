"""The probe's figures: reconstruction against features (scatter), and both over epochs.

matplotlib is imported only when a figure is drawn, and through its
object-oriented API (``matplotlib.figure.Figure``, written by the Agg
renderer), so probing never imports pyplot nor changes the caller's backend.
"""

from __future__ import annotations

from pathlib import Path

from .statistics import finite

LABELS = {
    "psnr": "PSNR on clean held-out images (dB)",
    "psnr_corrupted": "PSNR restoring corrupted images (dB)",
    "probe_accuracy": "linear-probe accuracy",
    "knn_accuracy": "k-NN accuracy",
}


def _figure(panels: int):
    """A figure of ``panels`` side-by-side axes: ``(figure, axes row)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * panels, 4.2))
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _runs(rows: list) -> dict:
    runs: dict = {}
    for r in rows:
        if r["kind"] == "checkpoint":
            runs.setdefault(r["run"], []).append(r)
    for rs in runs.values():
        rs.sort(key=lambda r: (r["epoch"] is None, r["epoch"] or 0))
    return runs


def _baseline_lines(ax, rows: list, y: str) -> None:
    styles = {"raw_pixels": ("k", ":"), "untrained": ("grey", "--")}
    seen = set()
    for r in rows:
        if r["kind"] in styles and finite(r.get(y)) and (r["kind"], round(r[y], 4)) not in seen:
            seen.add((r["kind"], round(r[y], 4)))
            color, style = styles[r["kind"]]
            ax.axhline(r[y], color=color, linestyle=style, linewidth=1,
                       label=f"{r['kind'].replace('_', ' ')} ({r[y]:.3f})")


def scatter(rows: list, path: Path, y: str = "probe_accuracy") -> Path:
    """Reconstruction (clean and, if measured, corrupted) against ``y``, one colour per run."""
    xs = [x for x in ("psnr", "psnr_corrupted") if any(finite(r.get(x)) for r in rows if r["kind"] == "checkpoint")]
    fig, axes = _figure(len(xs))
    runs = _runs(rows)
    for ax, x in zip(axes, xs):
        for i, (run, rs) in enumerate(runs.items()):
            pts = [(r[x], r[y]) for r in rs if finite(r.get(x)) and finite(r.get(y))]
            if not pts:
                continue
            ax.plot(*zip(*pts), "-o", color=f"C{i % 10}", markersize=4, linewidth=0.8, alpha=0.85, label=run)
            ax.plot(*pts[-1], "o", color=f"C{i % 10}", markersize=8, markeredgecolor="k")
        _baseline_lines(ax, rows, y)
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel(LABELS.get(y, y))
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle("Reconstruction vs feature quality (line: epochs of one run; big dot: last)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)


def over_epochs(rows: list, path: Path, metrics: tuple = ("psnr", "probe_accuracy")) -> Path:
    """Each metric over epochs, one line per run; untrained encoders at epoch 0."""
    fig, axes = _figure(len(metrics))
    runs = _runs(rows)
    untrained = {r["run"]: r for r in rows if r["kind"] == "untrained"}
    for ax, m in zip(axes, metrics):
        for i, (run, rs) in enumerate(runs.items()):
            pts = [(r["epoch"], r[m]) for r in rs if r["epoch"] is not None and finite(r.get(m))]
            if run in untrained and finite(untrained[run].get(m)):
                pts.insert(0, (0, untrained[run][m]))
            if pts:
                ax.plot(*zip(*pts), "-o", color=f"C{i % 10}", markersize=4, label=run)
        if m != "psnr":
            _baseline_lines(ax, [r for r in rows if r["kind"] == "raw_pixels"], m)
        ax.set_xlabel("epoch (0 = untrained)")
        ax.set_ylabel(LABELS.get(m, m))
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)
