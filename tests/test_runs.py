"""RunDir: reading a run directory, and one writer per run directory."""

import json
import subprocess
import sys
import textwrap

import pytest

from keras_skipae.runs import RunDir, RunDirLocked, RunError, read_history, resolve_model


def fake_run(root):
    (root / "pretrain" / "checkpoints").mkdir(parents=True)
    for e in (2, 4):
        (root / "pretrain" / "checkpoints" / f"epoch_{e:03d}.keras").write_text("x")
    (root / "pretrain" / "model.keras").write_text("x")
    (root / "pretrain" / "history.csv").write_text("epoch,loss,val_loss\n1,0.5,0.6\n2,0.4,0.45\n")
    (root / "metrics.json").write_text(json.dumps({"stages": {"pretrain": {
        "kind": "autoencoder", "model": "pretrain/model.keras", "metrics": {"mse": 0.1},
        "corruption": {"kind": "masking", "level": 0.25, "where": "pipeline"}}}}))
    return RunDir(root)


def test_rundir_reads_stages_history_and_checkpoints(tmp_path):
    run = fake_run(tmp_path / "run")
    stage = run.stage()
    assert stage.name == "pretrain" and stage.kind == "autoencoder" and stage.metrics == {"mse": 0.1}
    assert stage.model == tmp_path / "run" / "pretrain" / "model.keras"
    assert stage.training_corruption == {"corruption": "masking (pipeline)", "corruption_level": 0.25}
    assert run.history("pretrain")[2] == {"loss": 0.4, "val_loss": 0.45}
    assert run.history("pretrain") == read_history(tmp_path / "run" / "pretrain" / "history.csv")
    assert [e for e, _ in run.checkpoints("pretrain")] == [2, 4]
    assert resolve_model(tmp_path / "run") == stage.model
    with pytest.raises(RunError, match="no stage 'finetune' has finished here; finished stages: pretrain"):
        run.stage("finetune")
    with pytest.raises(RunError, match="neither a .keras file nor a run directory"):
        resolve_model(tmp_path)


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from keras_skipae.runs import RunDir
        RunDir({str(run.path)!r}).lock()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirLocked, match=rf"is in use: process {holder.pid} .*another run directory"):
            run.lock()
    finally:
        holder.kill()
        holder.wait()
    # the operating system released the killed holder's lock: no stale lock
    assert run.lock() is True
    assert run.lock() is False  # already ours
    run.unlock()


def test_skipae_run_refuses_a_run_directory_another_process_writes(tmp_path):
    from click.testing import CliRunner
    from test_recipes import write_tiny_recipe

    from keras_skipae.cli import main

    recipe = write_tiny_recipe(tmp_path)
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from keras_skipae.runs import RunDir
        RunDir({str(run_dir)!r}).lock()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, ["run", str(recipe), "--run-dir", str(run_dir)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert f"is in use: process {holder.pid}" in result.output
    assert not (run_dir / "recipe.yaml").exists(), "the refused run wrote nothing"
