"""keras_skipae.probe.checkpoints: what to probe, found through keras_skipae.runs.RunDir."""

import json

import numpy as np
import yaml

import keras_skipae as ks
from keras_skipae import probe, runs
from test_probe import make_images


def fake_run(root, stages=("pretrain",), epochs=(1, 2)):
    """A run directory in the runner's layout, with untrained models as checkpoints (nothing trained)."""
    model = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4,))
    entries = {}
    for stage in stages:
        (root / stage / "checkpoints").mkdir(parents=True)
        for epoch in epochs:
            model.save(root / stage / "checkpoints" / f"epoch_{epoch:03d}.keras")
        model.save(root / stage / "model.keras")
        rows = "".join(f"{e},0.5,{0.4 - 0.1 * e}\n" for e in epochs)
        (root / stage / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
        entries[stage] = {"kind": "autoencoder", "model": f"{stage}/model.keras",
                          "corruption": {"kind": "masking", "level": 0.25, "where": "pipeline"}}
    entries["finetune"] = {"kind": "classifier", "model": "finetune/model.keras"}
    (root / "metrics.json").write_text(json.dumps({"stages": entries}))
    return root


def test_checkpoints_of_every_autoencoder_stage_with_their_validation_loss(tmp_path):
    run = fake_run(tmp_path / "run", stages=("pretrain", "more"))
    found = probe.find_checkpoints(run)
    assert [c.name for c in found] == ["run/pretrain@e001", "run/pretrain@e002", "run/more@e001", "run/more@e002"]
    assert [round(c.val_loss, 6) for c in found[:2]] == [0.3, 0.2]  # the stage's history.csv, by epoch
    assert all(c.corruption == {"corruption": "masking (pipeline)", "corruption_level": 0.25} for c in found)


def test_model_files_given_directly_are_asked_about_their_run(tmp_path):
    run = fake_run(tmp_path / "run")
    (ckpt,) = probe.find_checkpoints(run / "pretrain" / "checkpoints" / "epoch_002.keras")
    assert (ckpt.run, ckpt.epoch) == ("pretrain", 2)  # a periodic checkpoint is named after its stage
    assert ckpt.corruption == {"corruption": "masking (pipeline)", "corruption_level": 0.25}
    (final,) = probe.find_checkpoints(run / "pretrain" / "model.keras")
    assert (final.run, final.epoch, final.corruption) == ("pretrain", None, ckpt.corruption)  # its stage's name
    loose = tmp_path / "epoch_007.keras"  # outside any run: named after itself, no recorded corruption
    (run / "pretrain" / "model.keras").rename(loose)
    (alone,) = probe.find_checkpoints(loose)
    assert (alone.run, alone.epoch, alone.corruption) == ("epoch_007", 7, None)
    assert runs.stage_of(run / "pretrain" / "checkpoints" / "epoch_002.keras")[1] == "pretrain"


def test_files_from_several_runs_are_told_apart_by_their_folders(tmp_path):
    seeds = [fake_run(tmp_path / "search" / f"seed_{s}") for s in (0, 1)]
    found = probe.find_checkpoints([run / "pretrain" / "model.keras" for run in seeds]
                                   + [run / "pretrain" / "checkpoints" / "epoch_002.keras" for run in seeds]
                                   + [seeds[0] / "pretrain" / "checkpoints" / "epoch_001.keras"])
    assert [c.name for c in found] == ["seed_0/pretrain", "seed_1/pretrain", "seed_0/pretrain@e002",
                                       "seed_1/pretrain@e002", "seed_0/pretrain@e001"]
    one_run = probe.find_checkpoints([seeds[0] / "pretrain" / "checkpoints" / f"epoch_00{e}.keras" for e in (1, 2)])
    assert [c.name for c in one_run] == ["pretrain@e001", "pretrain@e002"], "one folder: names stay short"


def test_folders_without_metrics_json_are_searched_for_checkpoints(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "metrics.json").unlink()
    assert [c.name for c in probe.find_checkpoints(run)] == ["run@e001", "run@e002"]
    assert [c.name for c in probe.find_checkpoints(run / "pretrain")] == ["pretrain@e001", "pretrain@e002"]


def test_pipeline_corruption_checkpoints_are_labelled_with_their_training_corruption(tmp_path):
    from keras_skipae import recipes

    images, labels = make_images(96, seed=9)
    npz = tmp_path / "bands.npz"
    np.savez(npz, x_train=images[:64], y_train=labels[:64], x_test=images[64:], y_test=labels[64:])
    recipe = {
        "name": "pipe", "data": {"source": f"npz:{npz}", "val_fraction": 0.25},
        "model": {"preset": "tiny", "overrides": {"widths": [4], "corruption": "masking", "corruption_level": 0.3}},
        "stages": {"pretrain": {"kind": "pretrain", "corruption": "pipeline", "epochs": 1, "batch_size": 16,
                                "checkpoint_every": 1, "val_on": "none",
                                "eval_on": "none"}},
    }
    run = tmp_path / "run"
    recipes.run(recipes.validate(recipe), run_dir=run, echo=lambda line: None)
    assert ks.load(run / "pretrain" / "model.keras").arch.corruption == "none"  # the pipeline corrupted

    (ckpt,) = probe.find_checkpoints(run)
    assert ckpt.corruption == {"corruption": "masking (pipeline)", "corruption_level": 0.3}
    assert probe.find_checkpoints(ckpt.source)[0].corruption == ckpt.corruption
    assert probe.find_checkpoints({"pipe": [ckpt.source]})[0].corruption == ckpt.corruption
    table = probe.probe_run(run, (images[:64], labels[:64]), (images[64:], labels[64:]), n_boot=0)
    for row in table.rows[:2]:
        assert row["kind"] in ("untrained", "checkpoint")
        assert (row["corruption"], row["corruption_level"]) == ("masking (pipeline)", 0.3)

    # what the run recorded is the truth, not a re-reading of its recipe
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    saved["model"]["preset"] = "no-such-preset"
    (run / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert probe.find_checkpoints(run)[0].corruption == ckpt.corruption
    results = json.loads((run / "metrics.json").read_text())
    results["stages"]["pretrain"]["corruption"]["where"] = "model"
    (run / "metrics.json").write_text(json.dumps(results))
    assert probe.find_checkpoints(run)[0].corruption is None  # the model's own arch is right


def test_history_csv_reader_the_probe_uses(tmp_path):
    odd = tmp_path / "history.csv"
    odd.write_text("loss,val_loss\n0.5,\n0.4,0.45\n")  # no epoch column, a blank cell
    assert runs.read_history(odd) == {1: {"loss": 0.5}, 2: {"loss": 0.4, "val_loss": 0.45}}
    assert runs.read_history(tmp_path / "missing.csv") == {}
