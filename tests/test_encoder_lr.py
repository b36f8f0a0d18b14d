"""Fine-tuning protocols: the encoder's own learning-rate scale and its frozen first epochs."""

import numpy as np
import pytest
import tensorflow as tf
import yaml
from test_recipes import tiny_recipe, write_tiny_data

import keras
import keras_skipae as ks
from keras_skipae import recipes, train
from keras_skipae.train.encoder_lr import EncoderScaledAdam, EncoderScaledSGD, encoder_variable_paths


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 16, 16, 1)).astype("float32")
    y = rng.integers(0, 4, n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _classifier(trainer):
    with trainer.scope():
        return ks.build("classifier", "tiny", input_shape=(16, 16, 1), num_classes=4, widths=[4, 8], head_width=8)


def _weights(model):
    return {v.path: np.array(v.numpy()) for v in model.trainable_variables}


def _moved(before, after, encoder: bool):
    return {p: float(np.abs(after[p] - before[p]).max()) for p in before if p.startswith("encoder_") == encoder}


def test_encoder_paths_are_the_encoder_layers_trainable_variables():
    model = _classifier(train.Trainer(strategy="one_device"))
    paths = encoder_variable_paths(model)
    assert paths and all(p.startswith("encoder_conv") for p in paths)
    assert {p for p in (v.path for v in model.trainable_variables) if p.startswith("encoder_")} == set(paths)


@pytest.mark.parametrize("strategy", ["one_device", "mirrored"])
def test_a_frozen_encoder_does_not_move_until_its_epochs_are_over(strategy):
    trainer = train.Trainer(strategy=strategy, seed=0)
    model = _classifier(trainer)
    ds = _data()  # 4 batches: 1 frozen epoch = 4 steps
    start = _weights(model)
    opt = {"name": "adam", "learning_rate": 0.01, "encoder_frozen_epochs": 1, "weight_decay": 0.05}
    trainer.fit(model, ds, epochs=1, optimizer=opt, verbose=0)
    frozen = _weights(model)
    assert isinstance(model.optimizer, EncoderScaledAdam) and model.optimizer.frozen_steps == 4
    assert max(_moved(start, frozen, encoder=True).values()) == 0.0, "neither Adam nor weight decay moves it"
    assert min(_moved(start, frozen, encoder=False).values()) > 0.0, "the head trains while the encoder waits"

    # one fit of 2 epochs: the encoder moves in the second only
    trainer = train.Trainer(strategy=strategy, seed=0)
    model = _classifier(trainer)
    start = _weights(model)
    trainer.fit(model, _data(), epochs=2, optimizer=opt, verbose=0)
    assert min(_moved(start, _weights(model), encoder=True).values()) > 0.0


def test_the_encoder_learns_at_its_scale_of_the_heads_rate():
    # plain SGD: a step is -lr * gradient, so the encoder's first step is exactly scale x the unscaled one
    steps = {}
    for scale in (1.0, 0.1):
        trainer = train.Trainer(strategy="one_device", seed=0)
        model = _classifier(trainer)
        start = _weights(model)
        ds = _data().take(1)
        trainer.fit(model, ds, epochs=1, verbose=0,
                    optimizer={"name": "sgd", "momentum": 0.0, "learning_rate": 0.05, "encoder_lr_scale": scale})
        steps[scale] = {p: _weights(model)[p] - start[p] for p in start}
    assert isinstance(model.optimizer, EncoderScaledSGD)
    for path, full in steps[1.0].items():
        expected = full * 0.1 if path.startswith("encoder_") else full
        np.testing.assert_allclose(steps[0.1][path], expected, rtol=1e-4, atol=1e-7, err_msg=path)


def test_the_default_protocol_uses_keras_own_optimisers():
    opt = train.make_optimizer({"name": "adam"}, 10, 2, encoder_paths=["encoder_conv1/kernel"])
    assert type(opt) is keras.optimizers.Adam


def test_a_scaled_protocol_without_encoder_variables_says_why():
    with pytest.raises(ValueError, match="no encoder variables were given"):
        train.make_optimizer({"name": "adam", "encoder_lr_scale": 0.1}, 10, 2)
    with pytest.raises(ValueError, match="encoder_lr_scale must be >= 0"):
        train.make_optimizer({"name": "adam", "encoder_lr_scale": -1}, 10, 2, encoder_paths=["x"])
    trainer = train.Trainer(strategy="one_device")
    with trainer.scope():
        frozen = ks.build("classifier", "tiny", input_shape=(16, 16, 1), num_classes=4, widths=[4, 8],
                          head_width=8, freeze_encoder=True)
    with pytest.raises(ValueError, match="is its encoder frozen with freeze_encoder"):
        trainer.fit(frozen, _data(), epochs=1, optimizer={"name": "adam", "encoder_lr_scale": 0.1}, verbose=0)


def test_a_checkpoint_with_the_scaled_optimiser_loads_in_safe_mode(tmp_path):
    trainer = train.Trainer(strategy="one_device", seed=0)
    model = _classifier(trainer)
    trainer.fit(model, _data(), epochs=1, verbose=0,
                optimizer={"name": "adam", "encoder_lr_scale": 0.25, "encoder_frozen_epochs": 0.5})
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, EncoderScaledAdam)
    assert loaded.optimizer.encoder_lr_scale == 0.25 and loaded.optimizer.frozen_steps == 2
    assert loaded.optimizer.encoder_paths == encoder_variable_paths(model)
    assert int(loaded.optimizer.iterations.numpy()) == 4


def test_recipes_check_the_protocol_and_a_stage_runs_it(tmp_path):
    raw = tiny_recipe(write_tiny_data(tmp_path), finetune_epochs=2)
    bad = yaml.safe_load(yaml.safe_dump(raw))
    bad["stages"]["finetune"].update(freeze_encoder=True, optimizer={"encoder_lr_scale": 0.1})
    with pytest.raises(recipes.RecipeError, match="freeze_encoder: true keeps the encoder fixed"):
        recipes.validate(bad, check_paths=False)
    bad = yaml.safe_load(yaml.safe_dump(raw))
    bad["stages"]["finetune"]["optimizer"] = {"encoder_frozen_epochs": 2}
    with pytest.raises(recipes.RecipeError, match=r"stages\.finetune.*encoder would never train"):
        recipes.validate(bad, check_paths=False)
    bad["stages"]["finetune"]["optimizer"] = {"encoder_lr_scale": -0.5}
    with pytest.raises(recipes.RecipeError, match=r"stages\.finetune\.optimizer\.encoder_lr_scale"):
        recipes.validate(bad, check_paths=False)

    raw["stages"]["finetune"].update(optimizer={"encoder_frozen_epochs": 1, "encoder_lr_scale": 0.5},
                                     checkpoint_every=1, restore_best=False)
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    recipes.run(path, run_dir=tmp_path / "run", only=["pretrain", "finetune"], echo=lambda line: None)
    run = tmp_path / "run"
    transferred = ks.load(run / "pretrain/model.keras").get_layer("encoder_conv1").get_weights()[0]
    # epoch 1 (4 steps: 32 labelled images, batch 8) with the encoder frozen, epoch 2 at half the head's rate
    after = {e: keras.saving.load_model(run / f"finetune/checkpoints/epoch_00{e}.keras", safe_mode=True)
             for e in (1, 2)}
    np.testing.assert_array_equal(after[1].get_layer("encoder_conv1").get_weights()[0], transferred)
    assert np.abs(after[2].get_layer("encoder_conv1").get_weights()[0] - transferred).max() > 0
    assert isinstance(after[2].optimizer, EncoderScaledAdam)
    assert after[2].optimizer.frozen_steps == 4 and after[2].optimizer.encoder_lr_scale == 0.5
