"""Joint semi-supervised training: the unlabelled denoising loss trains the shared encoder; files are the plain model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import keras_skipae as ks
from keras_skipae.recipes import runner
from keras_skipae.train import Trainer
from keras_skipae.train.joint import build_joint, joint_dataset

from test_recipes import tiny_recipe, write_tiny_data

SHAPE = (16, 16, 1)


def _models(seed=0):
    ae = ks.build("autoencoder", "tiny", input_shape=SHAPE, widths=(4, 8), corruption="masking",
                  corruption_level=0.3)
    clf = ks.build("classifier", "tiny", input_shape=SHAPE, widths=(4, 8), num_classes=3, encoder=ae)
    return ae, clf


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + SHAPE).astype("float32"), rng.integers(0, 3, n)


@pytest.mark.parametrize("ladder", [False, True])
def test_the_unlabelled_loss_reaches_the_encoders_gradients(ladder):
    ae, clf = _models()
    joint = build_joint(clf, ae, weight=2.0, ladder=ladder)
    joint.compile("adam", "sparse_categorical_crossentropy")
    x, y = _data()
    encoder_vars = [v for v in clf.trainable_weights if v.path.startswith("encoder_")]
    decoder_vars = [v for v in joint.autoencoder.trainable_weights if v.path.startswith("decoder_")]
    tf.random.set_seed(0)
    with tf.GradientTape(persistent=True) as tape:
        unlabelled = joint.unlabelled_loss(tf.constant(x))
    grads = tape.gradient(unlabelled, encoder_vars + decoder_vars)
    assert all(g is not None for g in grads)
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads[:len(encoder_vars)]), \
        "the unlabelled loss does not reach the encoder"
    # the encoder the auto-encoder trains is the classifier's own: the same variables
    ae_encoder = {id(v) for v in joint.autoencoder.trainable_weights if v.path.startswith("encoder_")}
    assert ae_encoder == {id(v) for v in encoder_vars}


def test_a_joint_step_moves_the_encoder_differently_than_the_supervised_loss_alone():
    x, y = _data()
    lab = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    unl = tf.data.Dataset.from_tensor_slices(x).batch(8)

    def encoder_after(weight):
        ks_seed = Trainer(seed=0)
        with ks_seed.scope():
            ae, clf = _models()
        model = build_joint(clf, ae, weight=weight) if weight else clf
        ds = joint_dataset(lab, unl) if weight else lab
        ks_seed.fit(model, ds, epochs=1, optimizer={"name": "sgd", "learning_rate": 0.1}, verbose=0)
        return clf.get_layer("encoder_conv1").get_weights()[0]

    alone, small, large = encoder_after(0), encoder_after(0.01), encoder_after(10.0)
    assert not np.allclose(alone, large)
    assert np.abs(large - alone).max() > np.abs(small - alone).max()


def test_a_joint_stage_saves_the_plain_classifier_and_resumes(tmp_path):
    x, y = _data()
    lab = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    unl = tf.data.Dataset.from_tensor_slices(x).batch(8)

    class Kill(Exception):
        pass

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise Kill()

    trainer = Trainer(seed=0)
    with trainer.scope():
        ae, clf = _models()
    with pytest.raises(Kill):
        trainer.fit(build_joint(clf, ae), joint_dataset(lab, unl), lab, epochs=3, run_dir=tmp_path / "s",
                    callbacks=[Stop()], verbose=0)
    with trainer.scope():
        ae, clf = _models()
    joint = build_joint(clf, ae)
    history = trainer.fit(joint, joint_dataset(lab, unl), lab, epochs=3, run_dir=tmp_path / "s", verbose=0)
    assert len(history.history["loss"]) == 2                 # epochs 2 and 3: resumed after epoch 1
    model = ks.load(tmp_path / "s" / "model.keras")          # safe_mode=True
    assert model.kind == "classifier" and type(model).__name__ == "SkipClassifier"
    assert not [layer for layer in model.layers if layer.name.startswith("decoder_")]
    best = ks.load(tmp_path / "s" / "checkpoints" / "best.keras")
    np.testing.assert_allclose(best.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_joint_training_runs_under_mirrored_strategy():
    x, y = _data()
    lab = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    unl = tf.data.Dataset.from_tensor_slices(x).batch(8)
    trainer = Trainer(strategy="mirrored", seed=0)
    assert trainer.num_replicas == 2
    with trainer.scope():
        ae, clf = _models()
        joint = build_joint(clf, ae, weight=1.0, ladder=True)
    before = clf.get_layer("encoder_conv1").get_weights()[0].copy()
    history = trainer.fit(joint, joint_dataset(lab, unl), lab, epochs=1, verbose=0)
    assert np.isfinite(history.history["unlabelled_loss"][0])
    assert not np.allclose(before, clf.get_layer("encoder_conv1").get_weights()[0])


def test_a_recipe_with_a_joint_stage(tmp_path):
    data = write_tiny_data(tmp_path)
    recipe = tiny_recipe(data)
    recipe["stages"]["joint"] = {"kind": "finetune", "init": "pretrain", "train_on": "labelled", "epochs": 2,
                                 "batch_size": 8, "joint": {"weight": 0.5, "batch_size": 16}}
    recipe["stages"]["joint_scratch"] = {"kind": "finetune", "init": None, "train_on": "labelled", "epochs": 1,
                                         "batch_size": 8, "joint": {"loss": "ladder"}}
    for plain in ("finetune", "scratch"):  # what this test is not about
        del recipe["stages"][plain]
    recipe["summary"] = ["joint", "joint_scratch"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    lines = []
    results = runner.run(path, run_dir=tmp_path / "run", echo=lines.append)
    assert "accuracy" in results["stages"]["joint"]["metrics"]
    assert any("joint: + 0.5 x reconstruction loss on unlabelled" in line for line in lines)
    model = ks.load(tmp_path / "run" / "joint" / "model.keras")
    assert model.kind == "classifier"
    history = (tmp_path / "run" / "joint" / "history.csv").read_text()
    assert "unlabelled_loss" in history


def test_a_joint_stage_says_when_it_cannot_run(tmp_path):
    from keras_skipae.recipes import RecipeError
    data = write_tiny_data(tmp_path)
    recipe = tiny_recipe(data)
    recipe["stages"] = {"joint": {"kind": "finetune", "init": None, "train_on": "labelled", "epochs": 1,
                                  "batch_size": 8, "joint": {"batch_size": 500}}}
    recipe["summary"] = []
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(RecipeError, match=r"joint: 'unlabelled' holds \d+ images, fewer than one batch of 500"):
        runner.run(path, run_dir=tmp_path / "run", echo=lambda line: None)


@pytest.mark.parametrize("stage, message", [
    ({"kind": "pretrain", "joint": {}}, "finetune stage"),
    ({"kind": "finetune", "probe": {}}, "pre-training stage"),
    ({"kind": "pretrain", "monitor": "val_probe_accuracy"}, "add probe"),
    ({"kind": "pretrain", "monitor": "val_novel"}, "val_novel:max"),
])
def test_stage_options_are_checked_where_they_belong(tmp_path, stage, message):
    from keras_skipae.recipes import RecipeError, validate
    recipe = tiny_recipe(write_tiny_data(tmp_path))
    recipe["stages"]["extra"] = stage
    with pytest.raises(RecipeError, match=message):
        validate(recipe)
