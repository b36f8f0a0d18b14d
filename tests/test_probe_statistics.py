"""keras_skipae.probe.statistics: correlations with bootstrap intervals, and the regret of a selection rule."""

import math

import pytest

from keras_skipae.probe import statistics as stats


def test_correlate_monotone_and_too_few_points():
    c = stats.correlate([1, 2, 3, 4, 5, 6], [2, 4, 5, 8, 9, 12], x_name="psnr", y_name="acc", n_boot=200)
    assert c.spearman == pytest.approx(1.0) and c.kendall == pytest.approx(1.0)
    assert c.spearman_low <= c.spearman <= c.spearman_high
    anti = stats.correlate([1, 2, 3, 4], [4, 3, 2, 1], n_boot=50)
    assert anti.pearson == pytest.approx(-1.0)
    assert math.isnan(stats.correlate([1, 2], [1, 2]).spearman)


def test_regret_of_choosing_by_reconstruction():
    rows = [{"name": "a", "psnr": 30.0, "probe_accuracy": 0.6}, {"name": "b", "psnr": 25.0, "probe_accuracy": 0.8}]
    r = stats.regret(rows, "psnr", "probe_accuracy")
    assert (r.chosen, r.best) == ("a", "b") and r.regret == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no row has both"):
        stats.regret(rows, "ssim", "probe_accuracy")
