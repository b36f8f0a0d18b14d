"""keras_skipae.probe.verdict: what the correlations and regret say, in a few sentences."""

from keras_skipae import probe


def _table(psnr, acc, untrained=None):
    rows = [{"run": "r", "name": f"r@e{i}", "kind": "checkpoint", "epoch": i, "psnr": p, "probe_accuracy": a,
             "knn_accuracy": a} for i, (p, a) in enumerate(zip(psnr, acc), start=1)]
    if untrained is not None:
        rows.append({"run": "r", "name": "r@untrained", "kind": "untrained", "epoch": 0, "psnr": 5.0,
                     "probe_accuracy": untrained})
    table = probe.ProbeTable(rows)
    table.correlations = probe.relate(rows, n_boot=200)
    table.regrets = probe.regrets(rows)
    table.verdict = probe.verdict(table)
    return table


def test_verdict_says_when_the_data_do_not_show_the_pitfall():
    t = _table([10, 12, 14, 16, 18, 20, 22, 24], [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85], untrained=0.4)
    assert "do NOT show the pitfall" in t.verdict
    assert "untrained encoder 0.400" in t.verdict


def test_verdict_shows_the_pitfall_when_reconstruction_misleads():
    t = _table([10, 12, 14, 16, 18, 20, 22, 24], [0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5], untrained=0.9)
    assert "WORSE" in t.verdict and "SHOW the pitfall" in t.verdict
    assert "loses 35.0 accuracy points" in t.verdict
    assert "did not make the pooled features more linearly separable" in t.verdict


def test_verdict_with_too_few_checkpoints():
    assert "Too few checkpoints (2)" in _table([10, 12], [0.5, 0.6]).verdict


def test_verdict_is_inconclusive_with_few_agreeing_checkpoints():
    t = _table([10, 12, 14], [0.5, 0.6, 0.7])
    assert "means little" in t.verdict and "inconclusive" in t.verdict
    assert "do NOT show" not in t.verdict
