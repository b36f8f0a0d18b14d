"""LiteRT (.tflite) exports: parity run by the ai-edge-litert interpreter, batch resizing, layout, int8 weights."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from test_export import KINDS, assert_matches, keras_outputs, models, samples, write_run_dir  # noqa: F401 - fixtures

import keras_skipae as ks
from keras_skipae import export
from keras_skipae.cli import main as cli


@pytest.fixture(scope="module")
def litert_exports(models, samples, tmp_path_factory):
    base = tmp_path_factory.mktemp("litert")
    return {kind: export.litert(model, base, sample_images=samples, seed=0) for kind, model in models.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_litert_export_layout_signature_and_parity(kind, litert_exports):
    result = litert_exports[kind]
    assert result.path.name == "model.tflite" and result.path.parent.name == "1" and result.path.parent.parent.name == kind
    assert (result.format, result.name, result.version) == ("litert", kind, 1)
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["model.export_report.json", "model.tflite"]
    assert not [p for p in result.path.parent.parent.iterdir() if p.name.startswith(".")], "staging left behind"
    assert result.parity.passed and {c.output for c in result.parity.checks} == set(export.OUTPUTS[kind])
    assert all(c.runtime == "ai-edge-litert interpreter" for c in result.parity.checks)
    assert any("sample images" in c.inputs for c in result.parity.checks)
    report = json.loads(result.report_path.read_text())
    assert report["parity"]["passed"] and report["format"] == "litert" and report["input_size"] == [32, 32]
    assert report["quantize"] is None and "ai-edge-litert" in report["versions"]

    spec = result.signatures["serving_default"]
    assert spec["inputs"]["images"] == {"dtype": "uint8", "shape": [None, 32, 32, 3]}  # fixed size, dynamic batch
    assert set(spec["outputs"]) == set(export.OUTPUTS[kind])
    if kind == "segmenter":
        assert spec["outputs"]["mask"] == {"dtype": "uint8", "shape": [None, 32, 32]}


@pytest.mark.parametrize("kind", KINDS)
def test_litert_session_resizes_the_batch(kind, litert_exports, models):
    session = export.LiteRTSession(litert_exports[kind].path)
    rng = np.random.default_rng(11)
    for batch in (1, 5, 2):  # each size re-allocates the interpreter's tensors
        images = rng.integers(0, 256, size=(batch, 32, 32, 3), dtype=np.uint8)
        outputs = session.run(images)
        assert_matches(outputs, keras_outputs(models[kind], images), kind)
        assert next(iter(outputs.values())).shape[0] == batch
    with pytest.raises(ValueError, match=r"signature serving_default expects images: uint8 \[batch, 32, 32, 3\].*dtype float32"):
        session.run(images.astype(np.float32))
    with pytest.raises(ValueError, match="height 16"):
        session.run(images[:, :16])


def test_litert_runs_with_the_plain_interpreter(litert_exports, models, samples):
    """The five lines of the README: ai-edge-litert's Interpreter, resize for the batch, named outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(litert_exports["classifier"].path))
    run = interpreter.get_signature_runner("serving_default")  # resizes its input to the batch it is given
    outputs = run(images=samples)
    assert_matches(outputs, keras_outputs(models["classifier"], samples), "classifier")


def test_litert_parity_failure_writes_nothing(models, tmp_path, monkeypatch):
    original = export.LiteRTSession.run

    def drifted(self, images):  # a converter bug: probabilities shifted by 1e-3
        out = dict(original(self, images))
        out["probabilities"] = out["probabilities"] + 1e-3
        return out

    monkeypatch.setattr(export.LiteRTSession, "run", drifted)
    with pytest.raises(export.ParityError, match=r"litert export failed its parity check.*\n.*probabilities "
                                                  r"\[ai-edge-litert interpreter\].*max_abs_diff 0\.001"):
        export.litert(models["classifier"], tmp_path / "models", name="clf")
    assert not (tmp_path / "models").exists()  # not even the directories it would have created
    with pytest.raises(export.ParityError):
        export.litert(models["classifier"], tmp_path / "clf.tflite")
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "exported"  # with other formats: the SavedModel passed, but is not moved in alone
    with pytest.raises(export.ParityError, match="litert export failed"):
        export.export_model(models["classifier"], out, ["savedmodel", "litert"])
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_litert_versions_overwrite_and_file_path(models, tmp_path):
    clf = models["classifier"]
    first = export.litert(clf, tmp_path, name="clf")
    second = export.litert(clf, tmp_path, name="clf")
    assert (first.version, second.version) == (1, 2) and second.path == tmp_path / "clf" / "2" / "model.tflite"
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        export.litert(clf, tmp_path, name="clf", version=1)
    assert export.litert(clf, tmp_path, name="clf", version=1, overwrite=True).parity.passed
    assert sorted(p.name for p in (tmp_path / "clf").iterdir()) == ["1", "2"]

    single = export.litert(clf, tmp_path / "flat" / "clf.tflite")
    assert single.path.is_file() and single.report_path == tmp_path / "flat" / "clf.export_report.json"
    assert single.version is None and single.report_path.is_file()
    with pytest.raises(FileExistsError, match="another path"):
        export.litert(clf, tmp_path / "flat" / "clf.tflite")
    with pytest.raises(ValueError, match="name and version are for a base directory"):
        export.litert(clf, tmp_path / "x.tflite", version=3)
    with pytest.raises(ValueError, match="unknown quantize='int4'"):
        export.litert(clf, tmp_path, quantize="int4")


def test_litert_fixed_spatial_size(tmp_path):
    dynamic = ks.build("segmenter", "tiny", input_shape=(None, None, 3), num_classes=4)
    with pytest.raises(ValueError, match=r"LiteRT graphs have a fixed height and width.*pass input_size=\(height, width\)"):
        export.litert(dynamic, tmp_path)
    assert not (tmp_path / "segmenter").exists()
    result = export.litert(dynamic, tmp_path, input_size=(24, 40), seed=0)
    assert result.parity.passed and result.signatures["serving_default"]["inputs"]["images"]["shape"] == [None, 24, 40, 3]
    images = np.random.default_rng(2).integers(0, 256, size=(3, 24, 40, 3), dtype=np.uint8)
    assert_matches(export.LiteRTSession(result.path).run(images), keras_outputs(dynamic, images), "segmenter")
    with pytest.raises(ValueError, match=r"the LiteRT graph takes 24x40 images"):
        export.litert(dynamic, tmp_path, input_size=(24, 40), sample_images=np.zeros((1, 32, 32, 3), np.uint8))
    clf = ks.build("classifier", "tiny")
    with pytest.raises(ValueError, match="the classifier takes 32x32 images"):
        export.litert(clf, tmp_path, input_size=(64, 64))


def test_litert_mixed_precision_model_exports_a_float32_graph(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = ks.build("classifier", "tiny")
    finally:
        keras.config.set_dtype_policy(previous)
    result = export.litert(model, tmp_path)
    assert result.parity.passed and "mixed precision" in result.parity.reference
    assert result.signatures["serving_default"]["outputs"]["probabilities"]["dtype"] == "float32"


def test_litert_dynamic_int8_reports_its_accuracy_change(samples, tmp_path, monkeypatch):
    keras.utils.set_random_seed(3)
    model = ks.build("classifier", "tiny", widths=(32, 64))  # kernels above the converter's 1024-weight threshold
    float_result = export.litert(model, tmp_path / "float.tflite", sample_images=samples)
    result = export.litert(model, tmp_path, sample_images=samples, quantize="dynamic_int8", seed=0)
    assert result.path.stat().st_size < 0.5 * float_result.path.stat().st_size  # the weights are int8
    assert result.parity is None and "dynamic_int8, accuracy change measured" in str(result)
    change = result.accuracy_change
    assert {(m.output, m.metric) for m in change.measures} == {
        ("class_id", "agreement"), ("probabilities", "max_abs_diff"), ("probabilities", "mean_abs_diff")
    }
    assert 0 < change.value("probabilities", "max_abs_diff") < 0.05  # changed, a little
    assert change.value("probabilities", "mean_abs_diff") <= change.value("probabilities", "max_abs_diff")
    assert 0.0 <= change.value("class_id", "agreement") <= 1.0
    assert "accuracy change of the dynamic_int8 litert export" in result.summary()
    report = json.loads(result.report_path.read_text())
    assert report["quantize"] == "dynamic_int8" and report["parity"] is None
    assert any("sample images" in m["inputs"] for m in report["accuracy_change"]["measures"])

    def broken(self, images):
        out = dict(original(self, images))
        out["probabilities"] = np.full_like(out["probabilities"], np.nan)
        return out

    original = export.LiteRTSession.run
    monkeypatch.setattr(export.LiteRTSession, "run", broken)
    with pytest.raises(export.ExportError, match="produces non-finite probabilities"):
        export.litert(model, tmp_path / "nan", quantize="dynamic_int8")
    assert not (tmp_path / "nan").exists()


def _conv_input_types(path) -> dict:
    """{op name: the dtypes of its activation input} for the convolutions of a .tflite file."""
    session = export.LiteRTSession(path)
    tensors = {t["index"]: t for t in session.interpreter.get_tensor_details()}
    types = {}
    for op in session.interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "TRANSPOSE_CONV"):
            activation = op["inputs"][2] if op["op_name"] == "TRANSPOSE_CONV" else op["inputs"][0]
            types.setdefault(op["op_name"], set()).add(np.dtype(tensors[activation]["dtype"]).name)
    return types


def test_litert_int8_runs_every_convolution_in_int8_calibrated_on_images(samples, tmp_path):
    """The auto-encoder's convolutions and transposed convolutions all take int8 activations (a dynamic-range
    or float export would feed them float32), calibrated on the images given, with the accuracy change reported."""
    keras.utils.set_random_seed(4)
    model = ks.build("autoencoder", "tiny")
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (40, *model.arch.input_shape), dtype=np.uint8)
    with pytest.raises(ValueError, match="quantize='int8' sets its activation ranges from images of your data"):
        export.litert(model, tmp_path / "none.tflite", quantize="int8")
    assert not list(tmp_path.iterdir()), "a refused export writes nothing"
    result = export.litert(model, tmp_path / "ae_int8.tflite", sample_images=samples, quantize="int8",
                           calibration_images=calibration, seed=0)
    types = _conv_input_types(result.path)
    assert types == {"CONV_2D": {"int8"}, "TRANSPOSE_CONV": {"int8"}}, types
    assert _conv_input_types(export.litert(model, tmp_path / "ae_dyn.tflite", quantize="dynamic_int8").path)[
        "TRANSPOSE_CONV"] == {"float32"}
    assert result.signatures["serving_default"]["inputs"]["images"]["dtype"] == "uint8"  # the interface is unchanged
    report = json.loads(result.report_path.read_text())
    assert report["quantize"] == "int8" and report["calibration_images"] == 40 and report["parity"] is None
    change = result.accuracy_change
    assert 0 < change.value("reconstruction", "mean_abs_diff") < 20  # pixel units: changed, a little
    # sample images alone calibrate too, and the report says the change was measured on them
    alone = export.litert(model, tmp_path / "ae_samples.tflite", sample_images=samples, quantize="int8")
    assert json.loads(alone.report_path.read_text())["calibrated_on"].startswith("sample_images")
    with pytest.raises(ValueError, match="calibration_images are for quantize='int8'"):
        export.litert(model, tmp_path / "dyn.tflite", quantize="dynamic_int8", calibration_images=calibration)


def test_sample_and_calibration_images_are_spread_over_the_set(tmp_path):
    """A set sorted by class gives images of every class, not of the first: evenly spaced indices."""
    labels = np.repeat(np.arange(10), 30).astype(np.uint8)  # 300 images, sorted by class
    images = np.broadcast_to(labels[:, None, None, None], (300, 4, 4, 1)).copy()
    np.save(tmp_path / "sorted.npy", images)
    picked = export.load_sample_images(tmp_path / "sorted.npy", limit=10)
    assert sorted(int(v) for v in picked[:, 0, 0, 0]) == list(range(10))
    assert len(export.load_sample_images(tmp_path / "sorted.npy", limit=500)) == 300


def test_cli_exports_litert(models, tmp_path, samples):
    run = write_run_dir(tmp_path, models)
    out = tmp_path / "exported"
    np.save(tmp_path / "samples.npy", samples)
    result = CliRunner().invoke(
        cli, ["export", str(run), "--format", "savedmodel,litert", "--out", str(out), "--samples", str(tmp_path / "samples.npy")]
    )
    assert result.exit_code == 0, result.output
    assert (out / "litert" / "classifier" / "1" / "model.tflite").is_file()
    assert (out / "litert" / "classifier" / "1" / "model.export_report.json").is_file()
    assert (out / "savedmodel" / "classifier" / "1" / "saved_model.pb").is_file()
    assert "parity of litert export" in result.output and "ai-edge-litert interpreter" in result.output
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 1 and "unknown export format" in result.output and "TFLite is 'litert'" in result.output


def test_litert_client_command_on_grayscale_images(tmp_path, capsys):
    from PIL import Image
    from test_export import _load_kit_module

    client = _load_kit_module("export/litert/client.py", "skipae_litert_client")
    model = ks.build("classifier", "tiny", input_shape=(28, 28, 1), mean=(0.29,), std=(0.35,))
    result = export.litert(model, tmp_path / "gray.tflite")
    images = np.random.default_rng(4).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image, mode="L").save(paths[-1])
    assert client.main([str(result.path), *map(str, paths)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = keras_outputs(model, images[..., None])
    assert [line["class_id"] for line in lines] == expected["class_id"].tolist()
    loaded = client.load_model(result.path)
    assert client.input_spec(loaded) == {"name": "images", "dtype": "uint8", "shape": [None, 28, 28, 1]}
    assert client.predict(loaded, images[0])["probabilities"].shape == (1, 10)  # one image, then a batch of 3
    assert client.predict(loaded, images[..., None])["class_id"].tolist() == expected["class_id"].tolist()
    with pytest.raises(ValueError, match=r"the LiteRT model expects images: uint8 \[batch, 28, 28, 1\]; got dtype float32"):
        client.predict(loaded, images.astype(np.float32))


def test_cli_quantized_litert_reports_its_accuracy_change(models, tmp_path, samples):
    run = write_run_dir(tmp_path, models)
    out = tmp_path / "exported"
    np.save(tmp_path / "samples.npy", samples)
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "litert", "--quantize", "dynamic_int8",
                                      "--out", str(out), "--samples", str(tmp_path / "samples.npy")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "litert" / "classifier" / "1" / "model.export_report.json").read_text())
    assert "dynamic_int8" in json.dumps(report)
    # int8: 256 evenly spaced images of --calibration set the ranges; the parity samples stay 8
    many = np.random.default_rng(1).integers(0, 256, (300, *samples.shape[1:]), dtype=np.uint8)
    np.save(tmp_path / "many.npy", many)
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "litert", "--quantize", "int8", "--out", str(out),
                                      "--samples", str(tmp_path / "many.npy"), "--calibration", str(tmp_path / "many.npy")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "litert" / "classifier" / "2" / "model.export_report.json").read_text())
    assert report["quantize"] == "int8" and report["calibration_images"] == export.CALIBRATION_LIMIT
    assert report["calibrated_on"] == "calibration_images"
    assert any(m["inputs"].startswith("8 sample images") for m in report["accuracy_change"]["measures"])
    refused = CliRunner().invoke(cli, ["export", str(run), "--format", "litert", "--quantize", "dynamic_int8",
                                       "--out", str(out), "--calibration", str(tmp_path / "many.npy")])
    assert refused.exit_code != 0 and "--calibration is for --quantize int8" in refused.output
