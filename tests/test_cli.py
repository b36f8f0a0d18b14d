"""The `skipae` command: help, one-line errors, kill -9 resume, two-worker training."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import keras_skipae as ks
from keras_skipae.cli import main

from test_recipes import tiny_recipe, write_tiny_data, write_tiny_recipe


def _skipae(*args, env=None, python_code=None, **kwargs):
    """The skipae command in a new process (``python_code``: a script that runs it, given the same arguments)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    start = ["-c", python_code] if python_code else ["-m", "keras_skipae.cli"]
    return subprocess.Popen([sys.executable, *start, *args], env=full_env,
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


#: runs the skipae command with os.replace wrapped: just before the COUNT-th rename onto a file named NAME (the
#: moment an atomic write has its new content in a temporary file but not yet in place), the process SIGKILLs itself
KILL_BEFORE_RENAME = """
import os, signal, sys
name, count = os.environ["SKIPAE_TEST_KILL_BEFORE"].rsplit(":", 1)
seen = 0
original = os.replace
def replace(src, dst, *args, **kwargs):
    global seen
    if os.path.basename(os.fspath(dst)) == name:
        seen += 1
        if seen == int(count):
            print(f"test: kill -9 before renaming onto {os.fspath(dst)}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return original(src, dst, *args, **kwargs)
os.replace = replace
sys.argv = ["skipae", *sys.argv[1:]]
from keras_skipae.cli import main
main()
"""

EPOCHS = 4


def _kill_recipe(tmp_path) -> list:
    data = write_tiny_data(tmp_path, n_train=256)
    raw = tiny_recipe(data, pretrain_epochs=EPOCHS)
    raw["stages"] = {"pretrain": raw["stages"]["pretrain"]}
    raw["summary"] = []
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    return ["run", str(recipe), "--run-dir", str(tmp_path / "run")]


def _kill(command: list, moment: str, run) -> str:
    """Run ``command`` and SIGKILL it at ``moment``: ``after backup K`` (from outside, once the backup of epoch K
    is committed, so somewhere in epoch K + 1) or ``before NAME:COUNT`` (from inside, see KILL_BEFORE_RENAME)."""
    if moment.startswith("before "):
        proc = _skipae(env={"SKIPAE_TEST_KILL_BEFORE": moment.split(" ", 1)[1]}, python_code=KILL_BEFORE_RENAME,
                       *command)
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == -signal.SIGKILL, f"the run was not killed {moment}:\n{output[-3000:]}"
        return output
    epoch = int(moment.split()[-1])
    state = run / "pretrain/backup/state.json"
    proc = _skipae(*command)
    deadline = time.time() + 180
    while proc.poll() is None and time.time() < deadline:
        try:
            if json.loads(state.read_text())["epoch"] >= epoch:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before the backup of epoch {epoch}:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    output, _ = proc.communicate()
    return output


def _assert_consistent_after_a_kill(run) -> int:
    """Every file under its final name is whole and loads; the backup names weights that exist. Returns the epoch
    the backup holds (0: none), after checking that history.csv already has that epoch's row."""
    for path in run.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue  # temporary files of the killed process: never under a real name
        if path.suffix == ".keras":
            ks.load(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    state_file = run / "pretrain/backup/state.json"
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    assert (run / "pretrain/backup" / state["weights"]).is_file(), state
    epochs = [int(r.split(",")[0]) for r in (run / "pretrain/history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= state["epoch"], (epochs, state)
    return int(state["epoch"])


def _check_kill_and_resume(tmp_path, moment: str) -> list:
    run = tmp_path / "run"
    command = _kill_recipe(tmp_path)
    _kill(command, moment, run)
    backed_up = _assert_consistent_after_a_kill(run)
    proc = _skipae(*command)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    if backed_up:
        assert f"Resuming from the backup of epoch {backed_up}" in output
    else:
        assert "Resuming" not in output
    for epoch in range(1, EPOCHS + 1):
        assert (f"Epoch {epoch}/{EPOCHS}" in output) == (epoch > backed_up), (moment, epoch, backed_up, output[-3000:])
    rows = (run / "pretrain/history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, EPOCHS + 1))
    for path in run.rglob("*.keras"):
        if not path.name.startswith("."):
            ks.load(path)
    assert json.loads((run / "metrics.json").read_text())["stages"]["pretrain"]["epochs"] == EPOCHS
    assert not (run / "pretrain/backup").exists(), "the backup goes once the stage is committed"
    leftovers = [p for p in run.rglob("*") if ".tmp" in p.name]
    assert all(p.name.startswith(".") for p in leftovers), f"a temporary file under a real name: {leftovers}"
    return leftovers


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill_9_during_training_then_the_same_command_resumes(tmp_path):
    """The most exposed moment: epoch 2's backup weights are in place but state.json still names epoch 1."""
    _check_kill_and_resume(tmp_path, "before state.json:2")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("moment", [
    "after backup 1",                   # from outside, somewhere in epoch 2 (the original test; in every run)
    *(pytest.param(m, marks=pytest.mark.slow) for m in (
        "after backup 2",                   # from outside, somewhere in epoch 3
        "before state.json:1",              # epoch 1's weights written, no state yet: starts afresh
        "before epoch_0003.weights.h5:1",   # epoch 3's backup weights still in their temporary file
        "before last.keras:2",              # epoch 2's checkpoint written, not yet in place
        "before history.csv:3",             # epoch 3's history row written, not yet in place
        "before stage.json:1",              # every epoch trained, the stage not yet committed
    )),
])
def test_kill_9_at_many_moments_then_the_same_command_resumes(tmp_path, moment):
    _check_kill_and_resume(tmp_path, moment)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_resumed_run_leaves_no_temporary_file_of_the_killed_process(tmp_path):
    leftovers = _check_kill_and_resume(tmp_path, "before last.keras:2")
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weights(path) -> list:
    return ks.load(path).get_weights()


def _run_cluster(tmp_path, cluster: dict, tasks: list, *, pretrain_epochs: int) -> tuple:
    """Write a tiny recipe whose masking noise is drawn in the pipeline (seeded per batch, before the batch is
    split over the replicas, so that every set-up corrupts the same pixels), start one ``skipae run
    --strategy multi_worker`` process per TF_CONFIG task of ``cluster`` into one run directory, and return
    the recipe's path, the run directory and each process's output after checking it exited 0."""
    raw = tiny_recipe(write_tiny_data(tmp_path), pretrain_epochs=pretrain_epochs, finetune_epochs=1)
    raw["stages"]["pretrain"]["corruption"] = "pipeline"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    run = tmp_path / "run"
    procs = [_skipae("run", str(recipe), "--strategy", "multi_worker", "--run-dir", str(run),
                     "--stage", "pretrain", "--stage", "finetune",
                     env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}) for task in tasks]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
        assert "strategy multi_worker (2 replica(s))" in output
    return recipe, run, outputs


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_train_one_recipe_with_multi_worker(tmp_path):
    """Two processes under MultiWorkerMirroredStrategy end with bit-identical weights, and with the weights (to
    float rounding) of one process training the same recipe on one device with the same global batch of 16.

    The one-process reference uses the default strategy (``auto`` on a machine without GPUs): under an explicit
    strategy (``one_device``, ``mirrored``) Keras draws one batch to build the model before training, so the
    training pipeline's reshuffling and noise start one iteration later and the figures differ (see
    test_recipes.py::test_the_strategy_does_not_change_what_a_stage_trains_on)."""
    from keras_skipae import recipes

    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    recipe, run, outputs = _run_cluster(tmp_path, {"worker": workers},
                                        [{"type": "worker", "index": i} for i in range(2)], pretrain_epochs=2)
    for output in outputs:
        assert "global batch 16 = 8 per replica" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["stages"]) == ["pretrain", "finetune"]
    assert (run / "finetune/.worker1/stage.json").exists(), "the second worker kept its files apart"
    # each worker's stage entry names the model file that worker wrote
    assert json.loads((run / "finetune/.worker1/stage.json").read_text())["model"] == "finetune/.worker1/model.keras"
    assert json.loads((run / "finetune/stage.json").read_text())["model"] == "finetune/model.keras"
    assert not (run / "finetune/.worker1/logs").exists(), "only the chief writes TensorBoard logs"

    single = recipes.run(recipe, run_dir=tmp_path / "single", strategy="auto", only=["pretrain", "finetune"],
                         echo=lambda line: None)
    assert json.loads((tmp_path / "single/environment.json").read_text())["replicas"] == 1
    for stage in ("pretrain", "finetune"):
        chief, worker = _weights(run / stage / "model.keras"), _weights(run / stage / ".worker1/model.keras")
        assert len(chief) == len(worker) > 0
        for a, b in zip(chief, worker):
            np.testing.assert_array_equal(a, b, err_msg=f"{stage}: the two workers' weights differ")
        for a, b in zip(chief, _weights(tmp_path / "single" / stage / "model.keras"), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{stage}: multi-worker vs one process")
        with open(run / stage / "history.csv") as f, open(tmp_path / "single" / stage / "history.csv") as g:
            rows, reference = list(csv.DictReader(f)), list(csv.DictReader(g))
        for key in ("loss", "val_loss"):
            assert [float(r[key]) for r in rows] == pytest.approx([float(r[key]) for r in reference], rel=1e-5), key
    with open(run / "pretrain/history.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0], "pre-training lowered the loss"
    for name, value in single["stages"]["finetune"]["metrics"].items():
        assert metrics["stages"]["finetune"]["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert metrics["stages"]["pretrain"]["best_epoch"] == single["stages"]["pretrain"]["best_epoch"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_chief_and_a_worker_train_one_recipe(tmp_path):
    """TF_CONFIG with a ``chief`` task, as Vertex AI and Kubeflow's TFJob write it: the chief (not worker 0)
    writes the run directory's shared files, the worker keeps its own in ``.worker0``, and both processes end
    with bit-identical weights."""
    chief, worker = (f"127.0.0.1:{p}" for p in _free_ports(2))
    _, run, _ = _run_cluster(tmp_path, {"chief": [chief], "worker": [worker]},
                             [{"type": "chief", "index": 0}, {"type": "worker", "index": 0}], pretrain_epochs=1)
    assert list(json.loads((run / "metrics.json").read_text())["stages"]) == ["pretrain", "finetune"]
    assert json.loads((run / "finetune/stage.json").read_text())["model"] == "finetune/model.keras"
    assert json.loads((run / "finetune/.worker0/stage.json").read_text())["model"] == "finetune/.worker0/model.keras"
    assert (run / "finetune/logs").exists() and not (run / "finetune/.worker0/logs").exists(), \
        "the chief writes TensorBoard logs, the worker does not"
    for stage in ("pretrain", "finetune"):
        weights = _weights(run / stage / "model.keras"), _weights(run / stage / ".worker0/model.keras")
        assert len(weights[0]) == len(weights[1]) > 0
        for a, b in zip(*weights):
            np.testing.assert_array_equal(a, b, err_msg=f"{stage}: the chief's and the worker's weights differ")


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
    assert "the quickstart recipe is missing" in result.output and "reinstall keras_skipae" in result.output
