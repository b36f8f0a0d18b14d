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
