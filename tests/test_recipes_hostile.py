"""Hostile or silently-wrong recipes are refused with one clear line, in bounded time and memory."""

import time

import pytest

from keras_skipae import recipes
from keras_skipae.recipes import RecipeError

# the "billion laughs": 12 levels of 20 references each expand to 20**12 strings
BOMB = "a0: &a0 [lol]\n" + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 20)}]\n" for i in range(1, 13))


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.monotonic()
    with pytest.raises(RecipeError, match=r"more than 200 YAML alias references") as err:
        recipes.load_recipe(path)
    assert time.monotonic() - started < 5
    assert len(str(err.value)) < 500, "the message does not repeat the input"


def test_an_oversized_recipe_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + "# padding\n" * 200)
    monkeypatch.setenv("SKIPAE_MAX_RECIPE_BYTES", "1000")
    with pytest.raises(RecipeError, match=r"larger than a recipe can be \(1000 bytes; SKIPAE_MAX_RECIPE_BYTES"):
        recipes.load_recipe(path)


def test_a_recipe_that_is_a_list_says_so(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- name: x\n- stages: {}\n")
    with pytest.raises(RecipeError, match=r"expected a mapping of keys at the top level, found a YAML list"):
        recipes.load_recipe(path)


RUN = {"name": "r", "data": {"source": "tfds:mnist"}, "stages": {"pretrain": {"kind": "pretrain"}}}


@pytest.mark.parametrize("key, value, message", [
    ("epochs", True, "stages.pretrain.epochs: Input should be a valid integer"),
    ("epochs", 2.7, "stages.pretrain.epochs: Input should be a valid integer"),
    ("batch_size", "64", "stages.pretrain.batch_size: Input should be a valid integer"),
])
def test_counts_are_whole_numbers_not_booleans_or_floats(key, value, message):
    raw = {**RUN, "stages": {"pretrain": {"kind": "pretrain", key: value}}}
    with pytest.raises(RecipeError, match=message):
        recipes.validate(raw, check_paths=False)


@pytest.mark.parametrize("name", ["..", ".", "..."])
def test_a_recipe_name_never_points_outside_runs(name):
    with pytest.raises(RecipeError, match=r"name: .*not a usable name"):
        recipes.validate({**RUN, "name": name}, check_paths=False)


def test_a_tune_recipe_must_name_its_search(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text("kind: tune\nname: t\n")
    with pytest.raises(RecipeError, match=r"space: required key is missing[\s\S]*tuner: required key is missing"):
        recipes.load_recipe(path, kind="tune")


def _npz(path, labels, n=40):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n, 8, 8, 1), dtype=np.uint8)
    np.savez(path, x_train=images, y_train=np.asarray(labels, np.int64), x_test=images[:8],
             y_test=np.zeros(8, np.int64))
    return path


def _classifier_recipe(npz, **stage):
    return recipes.validate({
        "name": "h", "data": {"source": f"npz:{npz}", "val_fraction": 0.0},
        "model": {"preset": "tiny", "overrides": {"widths": [4]}},
        "stages": {"clf": {"kind": "finetune", "train_on": "all", "val_on": "none", "eval_on": "none",
                           "epochs": 1, **stage}},
    })


def test_unlabelled_examples_never_reach_a_classifier(tmp_path):
    npz = _npz(tmp_path / "d.npz", [-1] * 10 + [0, 1] * 15)
    with pytest.raises(RecipeError, match=r"stages.clf.train_on: 'all' holds 10 unlabelled examples \(label -1\)"):
        recipes.run(_classifier_recipe(npz, batch_size=8), run_dir=tmp_path / "run", echo=lambda line: None)


def test_a_batch_larger_than_the_data_says_so(tmp_path):
    npz = _npz(tmp_path / "d.npz", [0, 1] * 20)
    with pytest.raises(ValueError, match=r"clf: the training data gives no batch at all: the stage's batch size is "
                                         r"larger than its training set"):
        recipes.run(_classifier_recipe(npz, batch_size=64, model="classifier"), run_dir=tmp_path / "run",
                    echo=lambda line: None)


def test_a_text_file_named_keras_and_a_foreign_layer_are_named(tmp_path):
    import subprocess
    import sys

    import keras_skipae as ks

    fake = tmp_path / "notes.keras"
    fake.write_text("not a model")
    with pytest.raises(ValueError, match=r"notes.keras is not a Keras model file: a .keras file is a zip archive"):
        ks.load(fake)
    foreign = tmp_path / "foreign.keras"
    subprocess.run([sys.executable, "-c", (
        "import keras\n"
        "@keras.saving.register_keras_serializable(package='elsewhere')\n"
        "class Twice(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return 2 * x\n"
        "i = keras.Input((4,)); keras.Model(i, Twice()(i)).save(%r)\n" % str(foreign))], check=True,
        capture_output=True, timeout=300)
    with pytest.raises(ValueError, match=r"foreign.keras uses a layer or object keras_skipae does not know: "
                                         r"'Twice' \(registered as 'elsewhere>Twice'\)"):
        ks.load(foreign)
