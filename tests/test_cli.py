"""The `skipae` command: help, one-line errors, kill -9 resume, two-worker training."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

import keras_skipae as ks
from keras_skipae.cli import main

from test_recipes import tiny_recipe, write_tiny_data, write_tiny_recipe


def _skipae(*args, env=None, **kwargs):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "keras_skipae.cli", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_help_lists_the_commands_a_newcomer_needs():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "pretrain", "finetune", "evaluate", "quickstart", "presets"):
        assert f"  {command} " in result.output
    run_help = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--set KEY=VALUE" in run_help and "--strategy" in run_help and "skipae run quickstart" in run_help


def test_recipe_errors_reach_the_user_as_one_line_and_a_hint(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "pretrain.epoch=3"])
    assert result.exit_code == 1
    assert "error: invalid recipe" in result.output
    assert "stages.pretrain.epoch: unknown key (did you mean 'epochs'?)" in result.output
    assert "hint: run with --debug" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "finetune.optimizer.learning_rate=-1"])
    assert "stages.finetune.optimizer.learning_rate: Input should be greater than 0 (got -1)" in result.output
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "data.source=npz:/no/such.npz"])
    assert "error: data.source: no usable source: 'npz:/no/such.npz'" in result.output
    debug = CliRunner().invoke(main, ["--debug", "run", str(recipe), "--set", "pretrain.epoch=3"])
    assert debug.exception is not None and type(debug.exception).__name__ == "RecipeError"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_training_then_the_same_command_resumes(tmp_path):
    data = write_tiny_data(tmp_path, n_train=512)
    raw = tiny_recipe(data, pretrain_epochs=4)
    raw["stages"] = {"pretrain": raw["stages"]["pretrain"]}
    raw["summary"] = []
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    command = ["run", str(recipe), "--run-dir", str(run)]
    state = run / "pretrain/backup/state.json"
    proc = _skipae(*command)
    deadline = time.time() + 180
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first backup:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)  # during epoch 2 (or later if the machine is fast)
    proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < 4

    proc = _skipae(*command)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    assert f"Resuming from the backup of epoch {killed_at}" in output
    assert f"Epoch {killed_at + 1}/4" in output and "Epoch 1/4" not in output
    rows = (run / "pretrain/history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]
    leftovers = [p for p in run.rglob("*") if ".tmp" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    for path in run.rglob("*.keras"):
        ks.load(path)
    assert json.loads((run / "metrics.json").read_text())["stages"]["pretrain"]["epochs"] == 4


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_train_one_recipe_with_multi_worker(tmp_path):
    recipe = write_tiny_recipe(tmp_path, pretrain_epochs=1, finetune_epochs=1)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(_skipae("run", str(recipe), "--strategy", "multi_worker", "--run-dir", str(tmp_path / "run"),
                             "--stage", "pretrain", "--stage", "finetune",
                             env={"TF_CONFIG": json.dumps(tf_config)}))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
        assert "strategy multi_worker (2 replica(s)), global batch 16 = 8 per replica" in output
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["stages"]) == ["pretrain", "finetune"]
    assert (run / "finetune/model.keras").exists()
    assert (run / "finetune/.worker1/stage.json").exists(), "the second worker kept its files apart"
    assert not (run / "finetune/.worker1/logs").exists(), "only the chief writes TensorBoard logs"


def test_single_stage_commands_share_a_run_directory(tmp_path):
    recipe = write_tiny_recipe(tmp_path, pretrain_epochs=1, finetune_epochs=1)
    run = str(tmp_path / "run")
    runner = CliRunner()
    first = runner.invoke(main, ["pretrain", str(recipe), "--run-dir", run])
    assert first.exit_code == 0, first.output
    assert "[pretrain] autoencoder on eval: loss" in first.output and "[finetune]" not in first.output
    second = runner.invoke(main, ["finetune", str(recipe), "--run-dir", run, "--stage", "finetune"])
    assert second.exit_code == 0, second.output
    assert "[finetune] encoder from pretrain: 4 layers copied" in second.output
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert list(metrics["stages"]) == ["pretrain", "finetune"]
    shown = runner.invoke(main, ["evaluate", run, "--stage", "finetune"])
    assert shown.exit_code == 0, shown.output
    accuracy = float(shown.output.split("accuracy")[1].split()[0])
    assert accuracy == pytest.approx(metrics["stages"]["finetune"]["metrics"]["accuracy"], abs=1e-4)


def test_quickstart_explains_where_its_recipe_must_be(tmp_path, monkeypatch):
    from keras_skipae.recipes import loading

    monkeypatch.setattr(loading, "RECIPES_DIR", tmp_path / "recipes")
    result = CliRunner().invoke(main, ["quickstart"])
    assert result.exit_code == 1
    assert "recipes/quickstart.yaml not found" in result.output and "source checkout" in result.output
