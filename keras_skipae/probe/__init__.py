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

One module per job:

- :mod:`.checkpoints`: :class:`Checkpoint`, :func:`find_checkpoints` (runs read through ``keras_skipae.runs``)
- :mod:`.features`: pooled encoder features, linear probe, k-NN
- :mod:`.reconstruction`: MSE / PSNR / SSIM on clean and corrupted images
- :mod:`.statistics`: correlations with bootstrap intervals, regret (:func:`relate`, :func:`regrets`)
- :mod:`.verdict`: the plain-language :func:`verdict`
- :mod:`.tables`: :class:`ProbeTable` and its files, :func:`correlation_table`, :func:`format_table`
- :mod:`.plots`: the scatter and over-epochs figures (matplotlib imported only to draw)
- :mod:`.measure`: :func:`probe_run` and its data, :func:`probe_data`

Example::

    from keras_skipae import probe
    labelled, heldout = probe.probe_data("idx:", labels_per_class=100)
    table = probe.probe_run("runs/pretrain", labelled, heldout, out_dir="runs/pretrain/probe")
    print(table)            # rows, correlations, regret, verdict
    print(table.verdict)
"""

from .checkpoints import Checkpoint, find_checkpoints
from .measure import probe_data, probe_run
from .statistics import Correlation, Regret, regrets, relate
from .tables import ProbeTable, correlation_table, format_table
from .verdict import MIN_RELIABLE_N, verdict

__all__ = [
    "MIN_RELIABLE_N",
    "Checkpoint",
    "Correlation",
    "ProbeTable",
    "Regret",
    "correlation_table",
    "find_checkpoints",
    "format_table",
    "probe_data",
    "probe_run",
    "regrets",
    "relate",
    "verdict",
]
