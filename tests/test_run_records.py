"""What a run directory records: every process's environment, model paths that stay right when the run moves."""

import json

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
