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


def test_three_seeds_give_three_runs_and_a_comparison(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    report = recipes.run_seeds(recipe, [0, 1, 2], run_dir=tmp_path / "seeds", echo=lambda line: None)
    for seed in (0, 1, 2):
        run = tmp_path / "seeds" / f"seed_{seed}"
        recorded = recipes.validate(__import__("yaml").safe_load((run / "recipe.yaml").read_text()))
        assert recorded.seed == seed and recorded.data.split_seed == seed, "a seed drives init and the split"
        assert set(json.loads((run / "metrics.json").read_text())["stages"]) == {"pretrain", "finetune", "scratch"}
    # the seeds differ: different splits and initialisations give different figures
    accuracies = report.stages["finetune"]["accuracy"].values
    assert len(accuracies) == 3
    saved = json.loads((tmp_path / "seeds" / "comparison.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and saved["interval"] == "t"
    acc = saved["stages"]["finetune"]["metrics"]["accuracy"]
    assert acc["n"] == 3 and acc["low"] <= acc["mean"] <= acc["high"]
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
