"""Features out: ks.embed / skipae embed write an encoder's features with ids and labels."""

import numpy as np
import pytest
from click.testing import CliRunner

import keras_skipae as ks
from keras_skipae.cli import main
from keras_skipae.probe.features import feature_model


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("embed") / "small.npz"
    x = rng.integers(0, 256, (40, 16, 16, 1)).astype("uint8")
    y = (np.arange(40) % 4).astype("int32")
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    return f"npz:{path}", x, y


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 1), widths=(4, 8), mean=(100.0 / 255,), std=(0.3,))
    path = tmp_path_factory.mktemp("model") / "ae.keras"
    ae.save(path)
    return path


def test_embed_writes_the_pooled_features_ids_and_labels(source, model_file, tmp_path):
    src, x, y = source
    result = ks.embed(model_file, src, out=tmp_path / "f.npz", batch_size=16)
    got = np.load(tmp_path / "f.npz")
    assert result.examples == 40 and got["features"].shape == (40, 8)
    np.testing.assert_array_equal(got["ids"], np.arange(40))
    np.testing.assert_array_equal(got["labels"], y)
    model = ks.load(model_file)
    expected = feature_model(model).predict(model.arch.normalise(x), verbose=0)
    # in the source's order: row i is the features of the image with id i
    np.testing.assert_allclose(got["features"], expected, rtol=1e-4, atol=1e-5)


def test_embed_a_stages_feature_maps_as_npy(source, model_file, tmp_path):
    src, _, _ = source
    result = ks.embed(model_file, src, out=tmp_path / "maps.npy", split="test", stage=1, pooling="none")
    maps = np.load(tmp_path / "maps.npy")
    assert maps.shape == (10, 8, 8, 4) == (result.examples,) + result.feature_shape
    assert np.load(tmp_path / "maps.ids.npy").shape == (10,) and np.load(tmp_path / "maps.labels.npy").shape == (10,)


def test_embed_streams_parquet_one_row_group_per_batch(source, model_file, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    src, _, y = source
    ks.embed(model_file, src, out=tmp_path / "f.npz", batch_size=16, stage=1, pooling="none")
    result = ks.embed(model_file, src, out=tmp_path / "f.parquet", batch_size=16, stage=1, pooling="none")
    assert result.examples == 40 and result.feature_shape == (8, 8, 4)
    reader = pq.ParquetFile(tmp_path / "f.parquet")
    assert reader.metadata.num_row_groups == 3, "batches of 16, 16 and 8 each written as they came"
    assert reader.schema_arrow.metadata[b"keras_skipae.feature_shape"] == b"8,8,4"
    table = reader.read()
    reference = np.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(table["id"].to_numpy(), np.arange(40))
    np.testing.assert_array_equal(table["label"].to_numpy(), y)
    features = np.stack(table["features"].to_numpy(zero_copy_only=False)).reshape(40, 8, 8, 4)
    np.testing.assert_allclose(features, reference["features"], rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "f.parquet"], "no temporary file is left"


def test_parquet_without_pyarrow_names_the_extra(source, model_file, tmp_path, monkeypatch):
    from keras_skipae.extras import MissingExtra
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtra, match=r"writing f.parquet needs the \[parquet\] extra"):
        ks.embed(model_file, source[0], out=tmp_path / "f.parquet")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, message", [({"out": "f.csv"}, "one of .npz"), ({"pooling": "none"}, "give stage"),
                                             ({"stage": 9}, "stages 1..2")])
def test_embed_refuses_what_it_cannot_write(source, model_file, tmp_path, kwargs, message):
    src, _, _ = source
    kwargs = {"out": tmp_path / "f.npz", **kwargs}
    if isinstance(kwargs["out"], str):
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(ValueError, match=message):
        ks.embed(model_file, src, **kwargs)
    assert not list(tmp_path.glob("f.*")), "nothing half-written is left"


def test_skipae_embed(source, model_file, tmp_path):
    src, _, _ = source
    result = CliRunner().invoke(main, ["embed", str(model_file), src, "--out", str(tmp_path / "f.npz"),
                                       "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "10 examples x (8,) features" in result.output
    assert np.load(tmp_path / "f.npz")["features"].shape == (10, 8)
