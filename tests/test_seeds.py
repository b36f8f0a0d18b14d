"""Seeded repeats: one run directory per seed, a comparison with intervals, resumable, honest verdicts."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_recipes import write_tiny_recipe

from keras_skipae import recipes
from keras_skipae.cli import main
from keras_skipae.compare import Interval, PairedDifference, compare_runs
from keras_skipae.recipes import RecipeError, parse_seeds


def test_seed_lists_parse_and_bad_ones_say_why():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("1-2,9") == [1, 2, 9]
    for bad, why in (("4-1", "is empty"), ("a-b", "whole numbers"), ("1,1", "listed twice")):
        with pytest.raises(ValueError, match=why):
            parse_seeds(bad)


def test_two_seeds_give_two_runs_and_a_comparison(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    report = recipes.run_seeds(recipe, [0, 3], run_dir=tmp_path / "seeds", echo=lambda line: None)
    for seed in (0, 3):
        run = tmp_path / "seeds" / f"seed_{seed}"
        recorded = recipes.validate(__import__("yaml").safe_load((run / "recipe.yaml").read_text()))
        assert recorded.seed == seed and recorded.data.split_seed == seed, "a seed drives init and the split"
        assert set(json.loads((run / "metrics.json").read_text())["stages"]) == {"pretrain", "finetune", "scratch"}
    assert not (tmp_path / "seeds" / "seed_1").exists(), "only the seeds asked for ran"
    accuracies = report.stages["finetune"]["accuracy"].values
    assert len(accuracies) == 2
    saved = json.loads((tmp_path / "seeds" / "comparison.json").read_text())
    assert saved["seeds"] == [0, 3] and saved["interval"] == "t"
    acc = saved["stages"]["finetune"]["metrics"]["accuracy"]
    assert acc["n"] == 2 and acc["low"] <= acc["mean"] <= acc["high"]
    assert acc["mean"] == pytest.approx(np.mean(acc["values"]))
    (diff,) = saved["differences"]
    assert (diff["first"], diff["second"], diff["metric"]) == ("finetune", "scratch", "accuracy")
    per_seed = np.array(report.stages["finetune"]["accuracy"].values) - np.array(report.stages["scratch"]["accuracy"].values)
    assert diff["interval"]["values"] == pytest.approx(per_seed.tolist())
    for name in ("comparison.csv", "comparison.md", "comparison.png"):
        assert (tmp_path / "seeds" / name).stat().st_size > 0
    # skipae compare rebuilds the same report from the finished runs
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "seeds"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "comparison.json").read_text())
    assert again["differences"][0]["interval"] == diff["interval"]


@pytest.mark.slow
def test_a_seeded_run_killed_in_its_second_seed_finishes_only_what_was_missing(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    out = tmp_path / "seeds"
    cmd = [sys.executable, "-m", "keras_skipae.cli", "run", str(recipe), "--seeds", "0-2", "--run-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "seed_1" / "pretrain" / "history.csv").exists():
        time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its second seed was under way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "seed_0" / "scratch" / "stage.json").exists(), "seed 0 had finished"
    assert not (out / "seed_1" / "scratch" / "stage.json").exists(), "killed during seed 1"
    finished = {p: p.stat().st_mtime_ns for p in (out / "seed_0").rglob("*") if p.is_file()}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[pretrain] already complete" in result.stdout
    for path, mtime in finished.items():
        if path.name not in ("environment.json", "metrics.json", ".skipae.lock"):
            assert path.stat().st_mtime_ns == mtime, f"{path} of the finished seed was rewritten"
    for seed in (0, 1, 2):
        assert (out / f"seed_{seed}" / "scratch" / "stage.json").exists()
    assert json.loads((out / "comparison.json").read_text())["seeds"] == [0, 1, 2]


def _difference(values, higher_is_better=True):
    return PairedDifference("finetune", "scratch", "accuracy", higher_is_better, list(range(len(values))),
                            Interval.of(values), 0.5)


def test_a_verdict_is_never_stronger_than_its_interval():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 8))
        d = _difference(rng.normal(rng.normal(0, 0.02), 0.02, size=n).tolist())
        text = d.verdict
        i = d.interval
        if n < 2:
            assert "anecdote" in text
        elif i.low > 0:
            assert "raised" in text and "better" in text
        elif i.high < 0:
            assert "lowered" in text and "worse" in text
        else:
            assert "do not show a difference" in text and "raised" not in text and "lowered" not in text
    assert "raised accuracy by +2.0 points [+1.8, +2.2] over 3 seeds" in _difference([0.019, 0.02, 0.021]).verdict
    assert "do not show a difference: +2.0 points [-0.5, +4.5]" in _difference([0.01, 0.02, 0.03]).verdict
    lower_mse = PairedDifference("finetune", "scratch", "mse", False, [0, 1, 2], Interval.of([-0.19, -0.2, -0.21]), 0.01)
    assert "lowered mse" in lower_mse.verdict and "finetune is better" in lower_mse.verdict


def test_intervals_are_student_t():
    i = Interval.of([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert (i.mean, i.std) == (2.0, 1.0) and i.low == pytest.approx(2 - half) and i.high == pytest.approx(2 + half)


def test_compare_needs_finished_runs(tmp_path):
    with pytest.raises(ValueError, match="neither a finished run directory"):
        compare_runs([tmp_path])
    with pytest.raises(RecipeError, match="give the seeds to run"):
        recipes.run_seeds(write_tiny_recipe(tmp_path), None, run_dir=tmp_path / "x", echo=lambda line: None)


def _fake_runs(tmp_path, stages: dict, summary: list, n: int = 3, first: int = 0, recorded: dict | None = None):
    """Finished run directories seed_F..F+n-1 whose stages carry the given per-seed metrics (one value a seed);
    ``recorded``: more sections of the recorded recipe (``data``, ``model``, ``stages``)."""
    from keras_skipae.runs import RunDir
    for i, seed in enumerate(range(first, first + n)):
        run = RunDir(tmp_path / f"seed_{seed}")
        run.path.mkdir(parents=True)
        extra = json.loads(json.dumps(recorded or {}))
        if "data" in extra:
            extra["data"]["split_seed"] = seed
        run.write_recipe({"name": "fake", "seed": seed, "summary": summary, **extra})
        results = {"stages": {}}
        for name, (kind, metrics) in stages.items():
            results["stages"][name] = {"kind": kind, "model": f"{name}/model.keras",
                                       "metrics": {k: v[i] for k, v in metrics.items()}, "seconds": 1.0}
        run.write_results(results)
    return tmp_path


def test_compare_names_the_pairs_it_cannot_compare(tmp_path):
    acc = {"accuracy": [0.80, 0.81, 0.82]}
    root = _fake_runs(tmp_path, {"pretrain": ("autoencoder", {"mse": [0.1, 0.1, 0.1]}),
                                 "finetune": ("classifier", acc),
                                 "noeval": ("classifier", {}),
                                 "scratch": ("classifier", {"accuracy": [0.79, 0.80, 0.81]})},
                      ["pretrain", "finetune", "noeval", "scratch"])
    report = compare_runs([root])
    skipped = {(s.first, s.second) for s in report.skipped}
    assert ("pretrain", "finetune") in skipped and ("finetune", "noeval") in skipped
    assert "pretrain vs finetune: not compared: pretrain is a autoencoder and finetune a classifier" in report.verdict
    assert "noeval has no accuracy" in report.verdict
    assert [(d.first, d.second) for d in report.differences] == [("finetune", "scratch")]


def test_compare_adjusts_p_values_for_the_pairs_tested_and_the_verdict_uses_them(tmp_path):
    from keras_skipae.compare import holm
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # a gain whose own interval excludes zero (p ~ 0.03) among many pairs: not claimed after Holm
    base = [0.80, 0.70, 0.75, 0.78]
    stages = {"a": ("classifier", {"accuracy": [b + d for b, d in zip(base, [0.010, 0.012, 0.030, 0.015])]}),
              "scratch": ("classifier", {"accuracy": base})}
    for k in range(4):
        stages[f"other{k}"] = ("classifier", {"accuracy": [b + 0.1 * ((k + s) % 3) for s, b in enumerate(base)]})
    root = _fake_runs(tmp_path, stages, list(stages), n=4)
    report = compare_runs([root])
    pair = next(d for d in report.differences if (d.first, d.second) == ("a", "scratch"))
    assert pair.interval.low > 0 and pair.p_value < 0.05
    assert pair.p_holm > 0.05 and pair.p_holm >= pair.p_value
    assert "do not show a difference once corrected" in pair.verdict
    assert "p (Holm)" in report.markdown()


def test_named_pairs_compare_runs_of_two_recipes_that_share_those_stages(tmp_path):
    """A search (three arms, seeds 0-2) and its confirmation (two of the arms, seeds 3-5) pool over six seeds
    for the pair they share; without pairs, or with a pair the confirmation lacks, the missing stage is named."""
    search = _fake_runs(tmp_path / "search", {"ft": ("classifier", {"accuracy": [0.81, 0.82, 0.80]}),
                                              "other": ("classifier", {"accuracy": [0.7, 0.7, 0.7]}),
                                              "scratch": ("classifier", {"accuracy": [0.80, 0.80, 0.79]})},
                        ["ft", "other", "scratch"])
    confirm = _fake_runs(tmp_path / "confirm", {"ft": ("classifier", {"accuracy": [0.79, 0.81, 0.83]}),
                                                "scratch": ("classifier", {"accuracy": [0.78, 0.80, 0.81]})},
                         ["ft", "scratch"], first=3)
    report = compare_runs([search, confirm], pairs=[("ft", "scratch")])
    (pair,) = report.differences
    assert report.seeds == [0, 1, 2, 3, 4, 5] and len(pair.interval.values) == 6
    assert pair.interval.mean == pytest.approx(np.mean([0.01, 0.02, 0.01, 0.01, 0.01, 0.02]))
    with pytest.raises(ValueError, match="runs lack stages others finished.*other"):
        compare_runs([search, confirm])
    with pytest.raises(ValueError, match="runs lack stages others finished.*other"):
        compare_runs([search, confirm], pairs=[("other", "scratch")])
    with pytest.raises(ValueError, match="no stage 'scratc' in any run; stages: ft, other, scratch"):
        compare_runs([search, confirm], pairs=[("ft", "scratc")])
    # the same run twice, or two runs of one seed, would count a seed twice and narrow the interval
    with pytest.raises(ValueError, match="given more than once"):
        compare_runs([search, search / "seed_1"], pairs=[("ft", "scratch")])
    again = _fake_runs(tmp_path / "again", {"ft": ("classifier", {"accuracy": [0.8] * 3}),
                                            "scratch": ("classifier", {"accuracy": [0.79] * 3})}, ["ft", "scratch"])
    with pytest.raises(ValueError, match="seeds repeated across runs"):
        compare_runs([search, again], pairs=[("ft", "scratch")])


def test_compare_refuses_to_pool_runs_that_ran_the_compared_stages_differently(tmp_path):
    """Seeds of two configurations pooled would make one interval of two experiments: the first differing key
    of the data, the model, a compared stage or a stage it starts from is named; the per-seed split seed and
    stages not compared may differ."""
    acc = {"ft": ("classifier", {"accuracy": [0.81, 0.82, 0.80]}),
           "scratch": ("classifier", {"accuracy": [0.80, 0.80, 0.79]})}
    stages = {"pretrain": {"kind": "pretrain", "epochs": 4, "init": None},
              "ft": {"kind": "finetune", "init": "pretrain", "epochs": 40},
              "scratch": {"kind": "finetune", "init": None, "epochs": 40},
              "other": {"kind": "finetune", "init": None, "epochs": 5}}
    base = {"data": {"source": "idx:", "labels_per_class": 100}, "model": {"preset": "tiny"}, "stages": stages}

    def variant(name, first, change=None):
        recorded = json.loads(json.dumps(base))
        if change:
            change(recorded)
        return _fake_runs(tmp_path / name, acc, ["ft", "scratch"], first=first, recorded=recorded)

    same = variant("same", 3, lambda r: r["stages"]["other"].update(epochs=50))  # a stage not compared
    assert len(compare_runs([variant("base", 0), same]).differences[0].interval.values) == 6
    longer = variant("longer", 6, lambda r: r["stages"]["ft"].update(epochs=20))
    with pytest.raises(ValueError, match=r"ran stages\.ft\.epochs differently \(40 vs 20\).*compare each set"):
        compare_runs([tmp_path / "base", longer])
    pretrained = variant("pretrained", 9, lambda r: r["stages"]["pretrain"].update(epochs=8))
    with pytest.raises(ValueError, match=r"stages\.pretrain\.epochs differently \(4 vs 8\)"):
        compare_runs([tmp_path / "base", pretrained], pairs=[("ft", "scratch")])
    assert compare_runs([tmp_path / "base", pretrained], pairs=[("scratch", "scratch")])  # scratch alone is equal
    fewer = variant("fewer", 12, lambda r: r["data"].update(labels_per_class=20))
    with pytest.raises(ValueError, match=r"ran data\.labels_per_class differently \(100 vs 20\)"):
        compare_runs([tmp_path / "base", fewer])
