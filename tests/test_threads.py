"""The trainer's CPU thread pools: set from the recipe before TensorFlow starts, read back and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from keras_skipae import recipes

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)


def test_the_trainer_sizes_tensorflows_pools_and_records_what_it_got():
    """In a fresh process: the sizes asked for are what TensorFlow reports, and what the record says."""
    done = _python(
        "import json, tensorflow as tf\n"
        "from keras_skipae.train import Trainer\n"
        "t = Trainer(intra_op_threads=1, inter_op_threads=2)\n"
        "tf.constant(1.0) + 1.0\n"  # the runtime has started: the sizes hold
        "print(json.dumps([t.threads, tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads()]))\n"
        "Trainer(intra_op_threads=1, inter_op_threads=2)\n"  # the same sizes again (another seed): fine
    )
    assert done.returncode == 0, done.stderr
    record, intra, inter = json.loads(done.stdout.strip().splitlines()[-1])
    assert (intra, inter) == (1, 2)
    assert record["intra_op_threads"] == 1 and record["inter_op_threads"] == 2 and record["cpus"] >= 1
    assert record["requested"] == {"intra_op": 1, "inter_op": 2}


def test_auto_leaves_the_pools_as_the_process_set_them():
    """auto neither resets a size set before (by the user, or an earlier recipe in the same process) nor fails
    once TensorFlow runs: a second run, or skipae evaluate after a run, in one process."""
    done = _python(
        "import json, tensorflow as tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "from keras_skipae.train import Trainer\n"
        "t = Trainer()\n"
        "tf.constant(1.0) + 1.0\n"
        "again = Trainer()\n"
        "print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(), again.threads]))\n"
    )
    assert done.returncode == 0, done.stderr
    intra, record = json.loads(done.stdout.strip().splitlines()[-1])
    assert intra == 1 and record["intra_op_threads"] == 1 and record["requested"]["intra_op"] == "auto"


def test_other_sizes_after_tensorflow_started_are_refused_with_what_to_do():
    done = _python(
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1.0\n"
        "from keras_skipae.train import Trainer\n"
        "Trainer(intra_op_threads=1, inter_op_threads=1)\n"
    )
    assert done.returncode != 0
    assert "TensorFlow already started in this process" in done.stderr
    assert "create the Trainer before any other TensorFlow work" in done.stderr


def _raw(tmp_path, **trainer):
    import numpy as np
    np.savez(tmp_path / "x.npz", x_train=np.zeros((4, 8, 8, 1), np.uint8), y_train=np.arange(4) % 2)
    return {"name": "t", "data": {"source": f"npz:{tmp_path / 'x.npz'}"}, "stages": {"p": {"kind": "pretrain"}},
            "trainer": trainer}


@pytest.mark.parametrize("value", [0, -1, 1.5, "two"])
def test_a_recipe_refuses_a_bad_thread_count(tmp_path, value):
    assert recipes.validate(_raw(tmp_path, inter_op_threads=2, intra_op_threads="auto")).trainer.inter_op_threads == 2
    with pytest.raises(recipes.RecipeError, match="inter_op_threads"):
        recipes.validate(_raw(tmp_path, inter_op_threads=value))


def test_the_recipes_thread_counts_reach_the_trainer(tmp_path, monkeypatch):
    from keras_skipae.recipes import runner

    class Reached(Exception):
        pass

    def fake_trainer(**kwargs):
        raise Reached(kwargs)

    monkeypatch.setattr(runner, "Trainer", fake_trainer)
    recipe = recipes.validate(_raw(tmp_path, intra_op_threads=2, inter_op_threads=1))
    with pytest.raises(Reached) as reached:
        recipes.run(recipe, run_dir=tmp_path / "run", echo=lambda line: None)
    kwargs = reached.value.args[0]
    assert kwargs["intra_op_threads"] == 2 and kwargs["inter_op_threads"] == 1
