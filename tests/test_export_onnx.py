"""ONNX exports: tf2onnx conversion, dynamic axes, parity with the Keras model, the kit's ONNX Runtime client."""

from __future__ import annotations

import json

import numpy as np
import onnx as onnx_lib
import onnxruntime
import pytest
from test_export import KINDS, _load_kit_module, assert_matches, keras_outputs, models, samples  # noqa: F401 - fixtures

import keras_skipae as ks
from keras_skipae import export


@pytest.fixture(scope="module")
def ort_client():
    return _load_kit_module("export/onnx/client.py", "skipae_onnx_client")


@pytest.fixture(scope="module")
def onnx_exports(models, samples, tmp_path_factory):
    base = tmp_path_factory.mktemp("onnx")
    return {kind: export.onnx(model, base / f"{kind}.onnx", sample_images=samples, seed=0) for kind, model in models.items()}


# --------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_checked_dynamic_and_matches_keras(kind, onnx_exports, models, ort_client):
    result = onnx_exports[kind]
    assert result.parity.passed and {c.output for c in result.parity.checks} == set(export.OUTPUTS[kind])
    assert json.loads(result.report_path.read_text())["parity"]["passed"]
    proto = onnx_lib.load(str(result.path))
    onnx_lib.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dynamic = [bool(d.dim_param) or not d.HasField("dim_value") for d in dims]
    assert dynamic == ([True, True, True, False] if kind == "segmenter" else [True, False, False, False])

    session = ort_client.load_session(result.path, threads=1)
    size = (27, 50) if kind == "segmenter" else (32, 32)
    images = np.random.default_rng(5).integers(0, 256, size=(2, *size, 3), dtype=np.uint8)
    model = export.float32_model(models[kind], dynamic_spatial=True) if kind == "segmenter" else models[kind]
    assert_matches(ort_client.predict(session, images), keras_outputs(model, images), kind)
    with pytest.raises(ValueError, match=r"the ONNX model expects images: uint8 .*dtype float32"):
        ort_client.predict(session, images.astype(np.float32))


def test_onnx_normalised_signature(models, tmp_path):
    result = export.onnx(models["autoencoder"], tmp_path / "ae.onnx", signature="normalised", seed=1)
    assert result.signatures["normalised"]["inputs"]["images"]["dtype"] == "float32"
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(3, 32, 32, 3)).astype(np.float32)
    (rec,) = session.run(["reconstruction"], {"images": x})
    np.testing.assert_allclose(rec, models["autoencoder"].predict(x, verbose=0), atol=1e-4)


def test_onnx_client_command_on_grayscale_images(ort_client, tmp_path, capsys):
    from PIL import Image

    model = ks.build("classifier", "tiny", input_shape=(28, 28, 1), mean=(0.29,), std=(0.35,))
    result = export.onnx(model, tmp_path / "gray.onnx")
    images = np.random.default_rng(4).integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image, mode="L").save(paths[-1])
    assert ort_client.main([str(result.path), *map(str, paths)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = keras_outputs(model, images[..., None])
    assert [line["class_id"] for line in lines] == expected["class_id"].tolist()
