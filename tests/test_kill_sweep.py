"""Kill harness: `skipae run` and `skipae export` killed (SIGKILL) at a spread of moments.

After each kill the tree must be consistent, and the same command must finish
the work. A few moments run with the suite; the broad sweep (20 moments each)
is marked ``sweep`` and runs with ``pytest -m sweep tests/test_kill_sweep.py``
(it prints how many states were inconsistent).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from test_recipes import write_tiny_recipe

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
STAGES = ("pretrain", "finetune", "scratch")


def _skipae(*args: str) -> list[str]:
    return [sys.executable, "-m", "keras_skipae.cli", *args]


def _run_killed_at(cmd: list[str], delay: float) -> bool:
    """Start ``cmd``, SIGKILL it after ``delay`` seconds; True when it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _checkpoint_epoch(path: Path) -> int | None:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("skipae_checkpoint.json"))["epoch"] if "skipae_checkpoint.json" in z.namelist() else None


def run_problems(run_dir: Path, finished: bool) -> list[str]:
    """What is inconsistent in a run directory (empty when it is consistent)."""
    problems = []
    metrics = run_dir / "metrics.json"
    recorded = json.loads(metrics.read_text())["stages"] if metrics.exists() else {}
    for stage in STAGES:
        folder = run_dir / stage
        marker = folder / "stage.json"
        if marker.exists():
            entry = json.loads(marker.read_text())
            if not (folder / "model.keras").exists():
                problems.append(f"{stage}: committed without model.keras")
            if stage in recorded and recorded[stage] != entry:
                problems.append(f"{stage}: metrics.json and stage.json disagree")
            if (folder / "backup").exists():
                problems.append(f"{stage}: committed but its backup is still there")
        history = folder / "history.csv"
        if history.exists():
            epochs = [int(line.split(",")[0]) for line in history.read_text().splitlines()[1:]]
            if epochs != list(range(1, len(epochs) + 1)):
                problems.append(f"{stage}: history.csv epochs {epochs}")
            best = folder / "checkpoints" / "best.keras"
            if best.exists():
                epoch = _checkpoint_epoch(best)
                if epoch is None or epoch > len(epochs):
                    problems.append(f"{stage}: best.keras is of epoch {epoch}, history has {len(epochs)}")
                if marker.exists() and json.loads(marker.read_text()).get("best_epoch") not in (None, epoch):
                    problems.append(f"{stage}: stage.json best_epoch differs from best.keras's own")
        leftovers = [p.name for p in folder.rglob("*.tmp*")] if folder.exists() else []
        if leftovers and finished:
            problems.append(f"{stage}: temporary files left: {leftovers}")
        if finished and not marker.exists():
            problems.append(f"{stage}: not finished after the rerun")
    if finished and set(recorded) != set(STAGES):
        problems.append(f"metrics.json lists {sorted(recorded)}")
    return problems


def _sweep_run(tmp_path: Path, moments: int) -> tuple[int, list]:
    # 4 epochs per stage: most of the command's time is training, checkpoints and commits, not start-up
    recipe = write_tiny_recipe(tmp_path, pretrain_epochs=4, finetune_epochs=4)
    started = time.monotonic()
    subprocess.run(_skipae("run", str(recipe), "--run-dir", str(tmp_path / "whole")), check=True,
                   capture_output=True, env=ENV, timeout=900)
    duration = time.monotonic() - started
    bad = []
    for i in range(moments):
        run_dir = tmp_path / f"killed_{i}"
        cmd = _skipae("run", str(recipe), "--run-dir", str(run_dir))
        _run_killed_at(cmd, duration * (i + 0.5) / moments)
        problems = run_problems(run_dir, finished=False) if run_dir.exists() else []
        done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
        if done.returncode != 0:
            problems.append(f"rerun failed: {done.stderr[-500:]}")
        problems += run_problems(run_dir, finished=True)
        if problems:
            bad.append((i, problems))
    print(f"kill sweep (skipae run): {moments} moments over {duration:.1f} s, {len(bad)} inconsistent")
    return moments, bad


def export_problems(out: Path, formats: tuple[str, ...]) -> list[str]:
    versions = {}
    for fmt in formats:
        folder = out / fmt / "classifier"
        versions[fmt] = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.exists() else []
    problems = []
    if len({tuple(v) for v in versions.values()}) > 1:
        problems.append(f"formats hold different versions: {versions}")
    for version in versions.get("savedmodel", []):
        if not (out / "savedmodel" / "classifier" / version / "saved_model.pb").exists():
            problems.append(f"savedmodel/{version} is incomplete")
    for version in versions.get("onnx", []):
        if not (out / "onnx" / "classifier" / version / "model.onnx").exists():
            problems.append(f"onnx/{version} is incomplete")
    return problems


def _sweep_export(tmp_path: Path, moments: int) -> tuple[int, list]:
    recipe = write_tiny_recipe(tmp_path)
    run_dir = tmp_path / "run"
    subprocess.run(_skipae("run", str(recipe), "--run-dir", str(run_dir)), check=True, capture_output=True, env=ENV,
                   timeout=900)
    formats = ("savedmodel", "onnx")
    started = time.monotonic()
    subprocess.run(_skipae("export", str(run_dir), "--stage", "finetune", "--out", str(tmp_path / "whole")),
                   check=True, capture_output=True, env=ENV, timeout=900)
    duration = time.monotonic() - started
    bad = []
    for i in range(moments):
        out = tmp_path / f"export_{i}"
        cmd = _skipae("export", str(run_dir), "--stage", "finetune", "--out", str(out))
        _run_killed_at(cmd, duration * (i + 0.5) / moments)
        problems = export_problems(out, formats)
        done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
        if done.returncode != 0:
            problems.append(f"rerun failed: {done.stderr[-500:]}")
        problems += export_problems(out, formats)
        if not (out / "savedmodel" / "classifier").exists():
            problems.append("no export after the rerun")
        leftovers = [p.name for p in out.rglob(".tmp-*")] + [p.name for p in out.rglob(".old-*")]
        if leftovers:
            problems.append(f"leftovers after the rerun: {leftovers}")
        if problems:
            bad.append((i, problems))
    print(f"kill sweep (skipae export): {moments} moments over {duration:.1f} s, {len(bad)} inconsistent")
    return moments, bad


@pytest.mark.slow
def test_skipae_run_killed_at_a_few_moments_stays_consistent_and_finishes(tmp_path):
    _, bad = _sweep_run(tmp_path, 3)
    assert not bad, bad


@pytest.mark.sweep
def test_kill_sweep_skipae_run(tmp_path):
    _, bad = _sweep_run(tmp_path, 20)
    assert not bad, bad


@pytest.mark.sweep
def test_kill_sweep_skipae_export(tmp_path):
    _, bad = _sweep_export(tmp_path, 20)
    assert not bad, bad
