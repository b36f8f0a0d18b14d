"""The verdict: a few plain sentences on whether a probe's data show the pitfall.

The pitfall (Alberti et al., arXiv 1712.01655): reconstruction quality does
not rank auto-encoders by the quality of their features. The verdict says
what the correlations and the regret of :mod:`keras_skipae.probe.statistics`
support, including when the data do *not* show the pitfall or are too few
to tell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .statistics import finite

if TYPE_CHECKING:  # tables imports this module
    from .tables import ProbeTable

MIN_RELIABLE_N = 5  # fewer points than this: correlations are reported but not judged


def verdict(table: ProbeTable, regret_tolerance: float = 0.01) -> str:
    """A short plain-language reading of ``table``: does it show the pitfall?

    The pitfall is shown when reconstruction fails to rank checkpoints by
    feature quality: choosing the best-reconstructing checkpoint costs more
    than ``regret_tolerance`` probe accuracy, or better reconstruction goes
    with reliably *worse* features. It is not shown when the correlation is
    reliably positive (bootstrap interval above 0, at least
    ``MIN_RELIABLE_N`` checkpoints) and choosing by reconstruction costs
    (almost) nothing. Anything else is called inconclusive.

    >>> verdict(table)
    'Across checkpoints, better reconstruction went with WORSE linear-probe accuracy ...'
    """
    ckpts = table.checkpoints()
    parts = []
    c = table.correlation("checkpoints", "psnr", "probe_accuracy")
    reg = next((r for r in table.regrets if r.criterion == "psnr" and r.target == "probe_accuracy"), None)
    if c is None or not finite(c.spearman):
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
        elif finite(c.spearman_low) and c.spearman_low > 0:
            parts.append(f"Across checkpoints, better reconstruction went with better linear-probe accuracy ({ci}).")
        elif finite(c.spearman_high) and c.spearman_high < 0:
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
            negative = reliable and finite(c.spearman_high) and c.spearman_high < 0
            positive = reliable and finite(c.spearman_low) and c.spearman_low > 0
            if reg.regret > regret_tolerance or negative:
                shown = True
            elif positive:
                shown = False
        den = table.correlation("checkpoints", "psnr_corrupted", "probe_accuracy")
        den_reg = next((r for r in table.regrets if r.criterion == "psnr_corrupted"), None)
        if den is not None and finite(den.spearman) and den_reg is not None:
            parts.append(f"Restoring corrupted held-out images (psnr_corrupted) relates to probe accuracy with "
                         f"Spearman {den.spearman:+.2f} [{den.spearman_low:+.2f}, {den.spearman_high:+.2f}]; "
                         f"choosing by it loses {100 * den_reg.regret:.1f} points.")
        runs = table.correlation("runs", "psnr", "probe_accuracy")
        if runs is not None and finite(runs.spearman):
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
    best = max((r for r in ckpts if finite(r.get("probe_accuracy"))), key=lambda r: r["probe_accuracy"], default=None)
    untrained = [r["probe_accuracy"] for r in table.rows if r["kind"] == "untrained" and finite(r.get("probe_accuracy"))]
    raw = [r["probe_accuracy"] for r in table.rows if r["kind"] == "raw_pixels" and finite(r.get("probe_accuracy"))]
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
        if raw_row is not None and finite(raw_row.get("probe_accuracy")) and \
                raw_row["probe_accuracy"] > best["probe_accuracy"]:
            parts.append(f"Raw pixels ({raw_row.get('feature_dim')} numbers per image) beat every pooled encoder "
                         f"({best.get('feature_dim')} numbers) under a linear probe: compare checkpoints with each "
                         "other and with the untrained encoder, or probe with pooling='avgmax'/'flatten'.")
    return " ".join(parts)
