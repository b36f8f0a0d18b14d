"""What a run directory records: every process's environment, model paths that stay right when the run moves."""

import json

import numpy as np
import yaml

import keras_skipae as ks
from keras_skipae import recipes
from keras_skipae.runs import RunDir

from test_recipes import tiny_recipe, write_tiny_data


def test_a_resumed_run_keeps_every_processs_environment(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_environment({"versions": {"keras_skipae": "0.1.0"}, "seed": 0})
    run.write_environment({"versions": {"keras_skipae": "0.2.0"}, "seed": 0})
    recorded = json.loads(run.environment_file.read_text())
    assert recorded["versions"]["keras_skipae"] == "0.2.0"                 # the latest at the top level
    assert [p["versions"]["keras_skipae"] for p in run.environments()] == ["0.1.0", "0.2.0"]


def test_an_environment_file_of_an_older_run_is_kept_as_its_first_process(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.environment_file.write_text(json.dumps({"versions": {"keras_skipae": "0.0.9"}, "seed": 1}))
    run.write_environment({"versions": {"keras_skipae": "0.1.0"}, "seed": 1})
    assert [p["versions"]["keras_skipae"] for p in run.environments()] == ["0.0.9", "0.1.0"]


def test_an_evaluated_file_outside_the_run_is_recorded_by_its_absolute_path(tmp_path):
    """``runs/a`` must not take ``runs/ab/model.keras`` for one of its own files."""
    data = write_tiny_data(tmp_path)
    (tmp_path / "runs" / "ab").mkdir(parents=True)
    model = ks.build("classifier", "tiny", input_shape=(16, 16, 1), widths=(4, 8), head_width=8, num_classes=4)
    outside = tmp_path / "runs" / "ab" / "model.keras"
    model.save(outside)
    recipe = tiny_recipe(data)
    recipe["stages"] = {"check": {"kind": "evaluate", "init": str(outside)}}
    recipe["summary"] = []
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    results = recipes.run(path, run_dir=tmp_path / "runs" / "a", echo=lambda line: None)
    assert results["stages"]["check"]["model"] == str(outside)


def _pretrained(tmp_path, **overrides):
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8), num_classes=4,
                  mean=(0.25,), std=(0.5,), **overrides)
    path = tmp_path / "pretrained.keras"
    ae.save(path)
    return ae, path


def _run_one(tmp_path, stages, **model):
    recipe = tiny_recipe(write_tiny_data(tmp_path))
    recipe["model"] = {"preset": "tiny", "overrides": {"widths": [4, 8], "head_width": 8, **model}}
    recipe["stages"] = stages
    recipe["summary"] = []
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return recipes.run(path, run_dir=tmp_path / "run", echo=lambda line: None)


def test_pretraining_on_from_a_saved_model_applies_the_stages_overrides_and_its_normalisation(tmp_path):
    ae, path = _pretrained(tmp_path, corruption="masking", corruption_level=0.3)
    stage = {"kind": "pretrain", "init": str(path), "epochs": 1, "batch_size": 16,
             "overrides": {"corruption_level": 0.6}}
    results = _run_one(tmp_path, {"more": stage})
    model = ks.load(tmp_path / "run" / "more" / "model.keras")
    assert model.arch.corruption_level == 0.6, "the stage's overrides were ignored"
    assert model.arch.mean == (0.25,) and model.arch.std == (0.5,), "the saved model's normalisation was replaced"
    assert results["stages"]["more"]["corruption"] == {"kind": "masking", "level": 0.6, "where": "model"}
    # it went on from the saved weights
    assert not np.allclose(model.get_layer("encoder_conv1").get_weights()[0], 0)


def test_pipeline_corruption_from_a_saved_model_corrupts_once(tmp_path):
    ae, path = _pretrained(tmp_path, corruption="masking", corruption_level=0.3)
    stage = {"kind": "pretrain", "init": str(path), "epochs": 1, "batch_size": 16, "corruption": "pipeline"}
    results = _run_one(tmp_path, {"more": stage})
    model = ks.load(tmp_path / "run" / "more" / "model.keras")
    assert model.arch.corruption == "none", "the model keeps its own corruption layer: inputs corrupted twice"
    assert not [layer for layer in model.layers if "corruption" in layer.name]
    assert results["stages"]["more"]["corruption"] == {"kind": "masking", "level": 0.3, "where": "pipeline"}


def test_finetuning_from_a_file_normalised_differently_is_refused(tmp_path):
    import pytest
    _, path = _pretrained(tmp_path)            # mean 0.25, std 0.5; the run normalises with mean 0, std 1
    stage = {"kind": "finetune", "init": str(path), "train_on": "labelled", "epochs": 1, "batch_size": 8}
    with pytest.raises(recipes.RecipeError, match=r"mean: \[0.25\], std: \[0.5\]"):
        _run_one(tmp_path, {"ft": stage})
    (tmp_path / "again").mkdir()
    results = _run_one(tmp_path / "again", {"ft": stage}, mean=[0.25], std=[0.5])   # the fix the error names
    assert "accuracy" in results["stages"]["ft"]["metrics"]
