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


def test_the_trainer_sizes_the_pools_keeps_what_auto_leaves_and_refuses_a_change_after_start():
    """In one fresh process (TensorFlow starts once): a size set before is kept by auto, an integer is set
    and read back; after the runtime starts the same sizes again (another seed, skipae evaluate) are fine,
    and another size is refused with what to do."""
    done = _python(
        "import json, tensorflow as tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "from keras_skipae.train import Trainer\n"
        "t = Trainer(inter_op_threads=2)\n"
        "tf.constant(1.0) + 1.0\n"  # the runtime has started: the sizes hold
        "again, auto = Trainer(inter_op_threads=2), Trainer()\n"
        "try:\n"
        "    Trainer(intra_op_threads=3)\n"
        "    refused = ''\n"
        "except RuntimeError as exc:\n"
        "    refused = str(exc)\n"
        "print(json.dumps([t.threads, auto.threads, tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads(), refused]))\n"
    )
    assert done.returncode == 0, done.stderr
    record, auto, intra, inter, refused = json.loads(done.stdout.strip().splitlines()[-1])
    assert (intra, inter) == (1, 2)
    assert record["intra_op_threads"] == 1 and record["inter_op_threads"] == 2 and record["cpus"] >= 1
    assert record["requested"] == {"intra_op": "auto", "inter_op": 2}
    assert auto["intra_op_threads"] == 1 and auto["requested"] == {"intra_op": "auto", "inter_op": "auto"}
    assert "TensorFlow already started in this process" in refused
    assert "create the Trainer before any other TensorFlow work" in refused


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
