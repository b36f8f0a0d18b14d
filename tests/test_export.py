"""Exports of every model kind: SavedModel and ONNX, parity, the serving contract, the command.

Artefacts are shared through module-scoped fixtures (each export costs about a
second). TF Serving itself cannot run here, so the contract is tested with
what is real: ``saved_model_cli`` on the exported directory, and the exact
requests the kit's clients send (REST JSON, a gRPC ``PredictRequest``)
converted to tensors the way TF Serving does and run through the loaded
signature.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

import keras_skipae as ks
from keras_skipae import export
from keras_skipae.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("autoencoder", "classifier", "segmenter")


def _load_kit_module(relative: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tfs_client():
    return _load_kit_module("export/tfserving/client.py", "skipae_tfserving_client")


@pytest.fixture(scope="module")
def models():
    """Tiny models of each kind; the classifier's and segmenter's inputs are standardised per channel."""
    keras.utils.set_random_seed(1)
    norm = {"mean": (0.49, 0.48, 0.45), "std": (0.25, 0.24, 0.26)}
    return {
        "autoencoder": ks.build("autoencoder", "tiny", mean=(0.5,), std=(0.25,)),
        "classifier": ks.build("classifier", "tiny", **norm),
        "segmenter": ks.build("segmenter", "tiny", num_classes=5, **norm),
    }


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(7).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def saved(models, samples, tmp_path_factory):
    base = tmp_path_factory.mktemp("savedmodel")
    return {kind: export.saved_model(model, base, sample_images=samples, seed=0) for kind, model in models.items()}


@pytest.fixture(scope="module")
def loaded(saved):
    return {kind: tf.saved_model.load(str(result.path)) for kind, result in saved.items()}


def keras_outputs(model, images_uint8):
    """What serving_default must return, computed here independently of the exporter."""
    arch = model.arch
    x = (images_uint8.astype("float32") * arch.pixel_scale - np.array(arch.channel_mean(), "float32")) / np.array(
        arch.channel_std(), "float32"
    )
    y = model.predict(x, verbose=0)
    if model.kind == "classifier":
        return {"probabilities": y, "class_id": y.argmax(-1)}
    if model.kind == "segmenter":
        return {"logits": y, "mask": y.argmax(-1)}
    pixels = (y * np.array(arch.channel_std()) + np.array(arch.channel_mean())) / arch.pixel_scale
    return {"reconstruction": np.clip(pixels, 0, 255)}


def assert_matches(outputs, expected, kind):
    assert set(outputs) == set(expected)
    for name, want in expected.items():
        got = np.asarray(outputs[name])
        if name in ("class_id", "mask"):
            assert (got == want).mean() >= 0.999, name
        elif name == "reconstruction":  # pixel units: 1e-4 in normalised units is 1e-4 * 255 * std here
            np.testing.assert_allclose(got, want, atol=1e-4 * 255 * 0.25 + 1e-4)
        else:
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_importing_the_exporter_loads_no_converter_or_runner():
    """tf2onnx, onnx, onnxruntime and the LiteRT interpreter load when an export runs, not on import."""
    code = (
        "import sys, keras_skipae; assert 'keras_skipae.export' not in sys.modules; "
        "import keras_skipae.export; "
        "print(sorted(m for m in ('tf2onnx', 'onnx', 'onnxruntime', 'ai_edge_litert', 'keras_skipae.recipes') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- SavedModel
@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_layout_signatures_and_parity(kind, saved, loaded):
    result = saved[kind]
    assert result.path == result.path.parent / "1" and result.path.parent.name == kind
    assert (result.path / "saved_model.pb").is_file() and (result.path / "variables").is_dir()
    assert not [p for p in result.path.parent.iterdir() if p.name.startswith(".")], "temporary directory left behind"
    assert result.parity.passed
    checked = {(c.signature, c.output) for c in result.parity.checks}
    outputs = export.OUTPUTS[kind]
    assert checked == {(s, o) for s in export.SIGNATURES for o in outputs}
    assert any("sample images" in c.inputs for c in result.parity.checks)

    report = json.loads(result.report_path.read_text())
    assert result.report_path.parent.name == "assets.extra"
    assert report["parity"]["passed"] and report["kind"] == kind and report["version"] == 1
    assert report["arch"]["mean"] == list(result_arch(kind))

    sig = loaded[kind].signatures["serving_default"]
    (spec,) = sig.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8
    assert spec.shape.as_list() == ([None, None, None, 3] if kind == "segmenter" else [None, 32, 32, 3])
    assert set(sig.structured_outputs) == set(outputs)
    assert loaded[kind].signatures["normalised"].structured_input_signature[1]["images"].dtype == tf.float32


def result_arch(kind):
    return (0.5,) if kind == "autoencoder" else (0.49, 0.48, 0.45)


@pytest.mark.parametrize("kind", KINDS)
def test_serving_default_takes_pixels_any_batch(kind, models, loaded):
    rng = np.random.default_rng(3)
    size = (45, 38) if kind == "segmenter" else (32, 32)  # the segmenter takes any height and width
    images = rng.integers(0, 256, size=(5, *size, 3), dtype=np.uint8)
    model = models[kind]
    if kind == "segmenter":  # the Keras reference at another size: same weights, dynamic input
        model = export.float32_model(model, dynamic_spatial=True)
    out = loaded[kind].signatures["serving_default"](images=tf.constant(images))
    assert_matches({k: v.numpy() for k, v in out.items()}, keras_outputs(model, images), kind)
    if kind == "segmenter":
        assert out["mask"].dtype == tf.uint8 and out["mask"].shape == (5, *size)
    if kind == "autoencoder":
        rec = out["reconstruction"].numpy()
        assert rec.min() >= 0 and rec.max() <= 255


@pytest.fixture(scope="module")
def saved_model_cli(saved, samples, tmp_path_factory):
    """``saved_model_cli show --all`` on two exports and ``run`` on one, as parallel processes."""
    work = tmp_path_factory.mktemp("saved_model_cli")
    np.save(work / "x.npy", samples)
    commands = {
        "show_classifier": ["show", "--all", "--dir", str(saved["classifier"].path)],
        "show_segmenter": ["show", "--all", "--dir", str(saved["segmenter"].path)],
        "run_classifier": [
            "run", "--dir", str(saved["classifier"].path), "--tag_set", "serve", "--signature_def", "serving_default",
            "--inputs", f"images={work / 'x.npy'}", "--outdir", str(work / "out"),
        ],
    }
    processes = {
        key: subprocess.Popen(["saved_model_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for key, args in commands.items()
    }
    results = {}
    for key, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"saved_model_cli {key} failed:\n{stderr[-2000:]}"
        results[key] = stdout
    results["outdir"] = work / "out"
    return results


@pytest.mark.parametrize("kind, hw", [("classifier", "32, 32"), ("segmenter", "-1, -1")])
def test_saved_model_cli_show_lists_signatures(kind, hw, saved_model_cli):
    text = saved_model_cli[f"show_{kind}"]
    default = text.split("signature_def['serving_default']:")[1].split("signature_def[")[0]
    normalised = text.split("signature_def['normalised']:")[1].split("signature_def[")[0]
    assert "dtype: DT_UINT8" in default and f"shape: (-1, {hw}, 3)" in default
    assert "dtype: DT_FLOAT" in normalised and f"shape: (-1, {hw}, 3)" in normalised
    for name in export.OUTPUTS[kind]:
        assert f"outputs['{name}']" in default and f"outputs['{name}']" in normalised
    if kind == "segmenter":
        assert "outputs['mask'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, -1, -1)" in default


def test_saved_model_cli_run_returns_expected_outputs(saved_model_cli, models, samples):
    outputs = {name: np.load(saved_model_cli["outdir"] / f"{name}.npy") for name in ("probabilities", "class_id")}
    assert_matches(outputs, keras_outputs(models["classifier"], samples), "classifier")


# --------------------------------------------------------------------------- the request contract
def tf_serving_rest_to_tensor(body: dict, signature) -> tf.Tensor:
    """What TF Serving does with a row-format ``:predict`` body: one tensor of the signature's dtype."""
    ((name, spec),) = signature.structured_input_signature[1].items()
    instances = body["instances"]
    if instances and isinstance(instances[0], dict):
        instances = [instance[name] for instance in instances]
    array = np.asarray(instances)
    if array.dtype == object:
        raise ValueError("instances of different shapes cannot be batched")
    if spec.dtype.is_integer and not np.array_equal(array, np.round(array)):
        raise ValueError("non-integer values for an integer input")
    return tf.constant(array, dtype=spec.dtype)


def tf_serving_rest_response(outputs: dict) -> dict:
    """TF Serving's row-format answer: one entry per instance, named only when there are several outputs."""
    arrays = {k: v.numpy() for k, v in outputs.items()}
    batch = len(next(iter(arrays.values())))
    if len(arrays) == 1:
        (value,) = arrays.values()
        return {"predictions": value.tolist()}
    return {"predictions": [{k: v[i].tolist() for k, v in arrays.items()} for i in range(batch)]}


@pytest.mark.parametrize("kind", KINDS)
def test_rest_request_through_loaded_signature(kind, tfs_client, saved, loaded, models, samples):
    spec = {"signature": "serving_default",
            "input": {"name": "images", **saved[kind].signatures["serving_default"]["inputs"]["images"]},
            "outputs": saved[kind].signatures["serving_default"]["outputs"]}
    batch = tfs_client.check_images(samples, spec)
    wire = json.dumps(tfs_client.rest_request(batch))              # what the client POSTs
    body = json.loads(wire)                                           # what the server parses
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == len(samples)
    signature = loaded[kind].signatures[body["signature_name"]]
    outputs = signature(images=tf_serving_rest_to_tensor(body, signature))
    answer = json.loads(json.dumps(tf_serving_rest_response(outputs)))
    parsed = tfs_client.parse_rest_response(answer, spec)
    assert_matches(parsed, keras_outputs(models[kind], samples), kind)


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
def test_grpc_predict_request_through_loaded_signature(kind, tfs_client, loaded, models, samples):
    from tensorflow_serving.apis import predict_pb2

    request = tfs_client.predict_request(samples, model=kind, version=1)
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert received.model_spec.name == kind and received.model_spec.version.value == 1
    signature = loaded[kind].signatures[received.model_spec.signature_name]
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in received.inputs.items()}
    outputs = signature(**inputs)
    response = predict_pb2.PredictResponse()
    for name, tensor in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
    parsed = tfs_client.parse_predict_response(predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    assert_matches(parsed, keras_outputs(models[kind], samples), kind)


def metadata_like_tf_serving(saved_model_dir: Path) -> dict:
    """The body of ``GET /v1/models/<name>/metadata``, built from the SavedModel's signature map."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    proto = saved_model_pb2.SavedModel.FromString((saved_model_dir / "saved_model.pb").read_bytes())
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in proto.meta_graphs[0].signature_def.items():
        signature_map.signature_def[key].CopyFrom(value)
    return json.loads(json.dumps({
        "model_spec": {"name": "classifier", "version": "1"},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
    }))


def test_client_checks_bad_requests_before_sending(tfs_client, saved):
    spec = tfs_client.signature_from_metadata(metadata_like_tf_serving(saved["classifier"].path))
    assert spec["input"] == {"name": "images", "dtype": "uint8", "shape": [None, 32, 32, 3]}
    assert set(spec["outputs"]) == {"probabilities", "class_id"}
    expected = r"signature serving_default expects images: uint8 \[batch, 32, 32, 3\]"
    with pytest.raises(ValueError, match=expected + ".*dtype float32"):
        tfs_client.check_images(np.zeros((2, 32, 32, 3), np.float32), spec)
    with pytest.raises(ValueError, match=expected + ".*channels 1"):
        tfs_client.check_images(np.zeros((2, 32, 32, 1), np.uint8), spec)
    with pytest.raises(ValueError, match=expected + ".*rank 5"):
        tfs_client.check_images(np.zeros((1, 2, 32, 32, 3), np.uint8), spec)
    assert tfs_client.check_images(np.zeros((32, 32, 3), np.uint8), spec).shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="no signature 'predict'.*normalised, serving_default"):
        tfs_client.signature_from_metadata(metadata_like_tf_serving(saved["classifier"].path), "predict")


def test_bad_requests_fail_in_the_graph_naming_the_signature(models, saved, loaded):
    # normalised signature fed raw pixels: a clear in-graph error, not a silently wrong answer
    pixels = np.full((1, 32, 32, 3), 200.0, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"signature normalised expects images: float32 \[batch, 32, 32, 3\].*raw pixels go to signature"):
        loaded["classifier"].signatures["normalised"](images=tf.constant(pixels))
    # float pixels for serving_default: our check (the one the LiteRT session and parity run before anything
    # reaches a runtime) names the signature, the expected input and what came instead
    with pytest.raises(ValueError) as info:
        export.check_images(pixels, export.signature_spec(models["classifier"]))
    assert str(info.value) == ("signature serving_default expects images: uint8 [batch, 32, 32, 3] "
                               "(raw pixels 0..255); got dtype float32")
    # the SavedModel signature itself is typed: TensorFlow refuses the float tensor before the graph runs
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input #0\(zero-based\) was expected to be a uint8 "
                                                              r"tensor but is a float tensor"):
        loaded["classifier"].signatures["serving_default"](images=tf.constant(pixels))
    # TF Serving runs the graph in a C++ session that does not check fed tensors against the
    # placeholder's shape (Python's Session.run does): the graph's own asserts must name the signature
    expected = r"signature serving_default expects images: uint8 \[batch, 32, 32, 3\]"
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session, graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(saved["classifier"].path))
        sig = meta.signature_def["serving_default"]
        feed = graph.get_tensor_by_name(sig.inputs["images"].name)._as_tf_output()
        fetch = [graph.get_tensor_by_name(sig.outputs["class_id"].name)._as_tf_output()]
        (ok,) = session._call_tf_sessionrun(None, {feed: np.zeros((2, 32, 32, 3), np.uint8)}, fetch, [], None)
        assert ok.shape == (2,)
        for bad, what in ((np.zeros((2, 32, 32, 1), np.uint8), "channel count"), (np.zeros((2, 32, 32), np.uint8), "rank")):
            with pytest.raises(tf.errors.InvalidArgumentError, match=expected + ".*" + what):
                session._call_tf_sessionrun(None, {feed: bad}, fetch, [], None)
    # the same asserts in a graph traced without a fixed input shape
    module = export.ServingModule(models["classifier"])
    loose = tf.function(module._serve_pixels, input_signature=[tf.TensorSpec(None, tf.uint8)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected + ".*channel count"):
        loose(tf.zeros((1, 32, 32, 1), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected + ".*rank"):
        loose(tf.zeros((32, 32, 3), tf.uint8))


def test_normalise_agrees_with_the_arch(models):
    for model in models.values():
        arch = model.arch
        black_white = np.stack([np.zeros((1, 1, arch.channels), np.uint8), np.full((1, 1, arch.channels), 255, np.uint8)])
        x = export.normalise(black_white, arch)
        low, high = arch.pixel_bounds()
        np.testing.assert_allclose(x[0, 0, 0], low, rtol=1e-6)
        np.testing.assert_allclose(x[1, 0, 0], high, rtol=1e-6)
        np.testing.assert_allclose(export.denormalise(x, arch), black_white, atol=1e-3)


#: bfloat16 keeps 8 significant bits (relative step 2**-8); a few layers of rounding stay well inside 2**-5 of the
#: output's scale, in the model's normalised units. Probabilities (at most 1) get an absolute 2e-3.
BF16_TOLERANCE = 2**-5
BF16_PROBABILITY_TOLERANCE = 2e-3


def _trained_mixed_bfloat16(kind: str):
    """A tiny model of ``kind`` built and briefly trained under mixed_bfloat16 (so that biases and batch-norm
    statistics are no longer their initial zeros and ones)."""
    keras.utils.set_random_seed(2)
    norm = {"mean": (0.49, 0.48, 0.45), "std": (0.25, 0.24, 0.26)}
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = ks.build(kind, "tiny", **norm, **({"num_classes": 5} if kind == "segmenter" else {}))
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(2)
    x = model.arch.normalise(rng.integers(0, 256, size=(32, 32, 32, 3), dtype=np.uint8))
    if kind == "classifier":
        y, loss = rng.integers(0, 10, 32), "sparse_categorical_crossentropy"
    elif kind == "segmenter":
        y, loss = rng.integers(0, 5, (32, 32, 32)), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        y, loss = x, "mse"
    model.compile(keras.optimizers.Adam(1e-2), loss)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model


# the classifier in every run; the other two kinds (the same float32 cast of the serving graph) in make test-slow
@pytest.mark.parametrize("kind", [k if k == "classifier" else pytest.param(k, marks=pytest.mark.slow) for k in KINDS])
def test_mixed_precision_model_exports_a_float32_graph_that_matches_it(kind, tmp_path):
    model = _trained_mixed_bfloat16(kind)
    assert not export.is_float32(model) and model.get_layer("encoder_conv1").compute_dtype == "bfloat16"
    result = export.saved_model(model, tmp_path)
    assert result.parity.passed and "mixed precision" in result.parity.reference
    fn = tf.saved_model.load(str(result.path)).signatures["serving_default"]
    # the exported graph computes in float32: no half or bfloat16 tensor anywhere in it
    graph = fn.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    reduced = {tf.float16.as_datatype_enum, tf.bfloat16.as_datatype_enum}
    assert not [n.name for n in nodes if any(a.type in reduced or reduced & set(a.list.type) for a in n.attr.values())]
    scores = {"classifier": "probabilities", "segmenter": "logits", "autoencoder": "reconstruction"}[kind]
    assert fn.structured_outputs[scores].dtype == tf.float32
    # the export against the mixed-precision model itself (not a float32 twin of it), within bfloat16's rounding
    images = np.random.default_rng(3).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    got = {k: v.numpy() for k, v in fn(images=tf.constant(images)).items()}
    want = keras_outputs(model, images)  # model.predict: bfloat16 compute, float32 outputs
    assert set(got) == set(want)
    diff = np.abs(got[scores] - want[scores])
    if kind == "classifier":
        tolerance = BF16_PROBABILITY_TOLERANCE
    else:
        tolerance = BF16_TOLERANCE * max(1.0, float(np.abs(got[scores]).max()))
        if kind == "autoencoder":  # pixel units (0..255) back to the model's normalised units
            diff = diff * model.arch.pixel_scale / np.asarray(model.arch.channel_std())
            tolerance = BF16_TOLERANCE
    assert diff.max() <= tolerance, f"{scores}: max |export - mixed model| {diff.max():.4g} > {tolerance:.4g}"
    if kind != "autoencoder":
        label = "class_id" if kind == "classifier" else "mask"
        top2 = np.sort(got[scores], axis=-1)[..., -2:]
        decided = (top2[..., 1] - top2[..., 0]) > 2 * tolerance  # not a near-tie that rounding may flip
        np.testing.assert_array_equal(got[label][decided], want[label][decided])


# --------------------------------------------------------------------------- the command and the kit
def write_run_dir(root: Path, models) -> Path:
    """A run directory in the trainer's layout: metrics.json lists stages in order."""
    run = root / "run"
    stages = {"pretrain": "autoencoder", "finetune": "classifier"}
    for stage, kind in stages.items():
        (run / stage).mkdir(parents=True)
        models[kind].save(run / stage / "model.keras")
    metrics = {"stages": {s: {"kind": k, "model": f"{s}/model.keras", "metrics": {}} for s, k in stages.items()}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_cli_exports_the_last_stage_of_a_run(models, tmp_path, samples):
    run = write_run_dir(tmp_path, models)
    out = tmp_path / "exported"
    np.save(tmp_path / "samples.npy", samples)
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(run), "--out", str(out), "--samples", str(tmp_path / "samples.npy")])
    assert result.exit_code == 0, result.output
    assert (out / "savedmodel" / "classifier" / "1" / "saved_model.pb").is_file()
    assert (out / "onnx" / "classifier" / "1" / "model.onnx").is_file()
    assert "parity of savedmodel export" in result.output and "sample images" in result.output

    result = runner.invoke(cli, ["export", str(run), "--stage", "pretrain", "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "onnx" / "autoencoder" / "1" / "model.onnx").is_file()

    result = runner.invoke(cli, ["export", str(run), "--stage", "nope", "--out", str(out)])
    assert result.exit_code == 1 and "no stage 'nope'" in result.output and "pretrain, finetune" in result.output
    result = runner.invoke(cli, ["export", str(run), "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 1 and "unknown export format" in result.output
    shutil.rmtree(run / "finetune")
    result = runner.invoke(cli, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_models_config_template_parses():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = (ROOT / "export" / "tfserving" / "models.config").read_text()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    names = [c.name for c in config.model_config_list.config]
    assert names and all(c.base_path == f"/models/{c.name}" for c in config.model_config_list.config)
    assert all(c.model_platform == "tensorflow" for c in config.model_config_list.config)


def test_load_sample_images_from_a_folder(tmp_path):
    for i in range(3):
        tf.io.write_file(str(tmp_path / f"{i}.png"), tf.io.encode_png(np.full((8, 9, 3), i, np.uint8)))
    images = export.load_sample_images(tmp_path, limit=2)
    assert images.shape == (2, 8, 9, 3) and images.dtype == np.uint8
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .png"):
        export.load_sample_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="expected a .npy/.npz file or a folder"):
        export.load_sample_images(tmp_path / "0.png")


# --------------------------------------------------------------------------- the kit's clients, end to end
class FakeTFServing:
    """A REST endpoint that answers like TF Serving: metadata, and ``:predict`` through the loaded signature."""

    def __init__(self, name: str, saved_model_dir: Path):
        import http.server
        import threading

        signatures = tf.saved_model.load(str(saved_model_dir)).signatures
        metadata = metadata_like_tf_serving(saved_model_dir)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == f"/v1/models/{name}/metadata":
                    return self._answer(200, metadata)
                self._answer(404, {"error": f"Servable not found for request: {self.path}"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != f"/v1/models/{name}:predict":
                    return self._answer(404, {"error": f"Servable not found for request: {self.path}"})
                try:
                    signature = signatures[body.get("signature_name", "serving_default")]
                    outputs = signature(images=tf_serving_rest_to_tensor(body, signature))
                except Exception as exc:  # noqa: BLE001 - reported to the client like TF Serving does
                    return self._answer(400, {"error": str(exc)})
                self._answer(200, tf_serving_rest_response(outputs))

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_rest_client_command_against_a_tf_serving_like_endpoint(tfs_client, saved, models, samples, tmp_path, capsys):
    from PIL import Image

    paths = []
    for i, image in enumerate(samples[:2]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    server = FakeTFServing("classifier", saved["classifier"].path)
    try:
        assert tfs_client.main([*map(str, paths), "--model", "classifier", "--port", str(server.port)]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        expected = keras_outputs(models["classifier"], samples[:2])
        assert [line["class_id"] for line in lines] == expected["class_id"].tolist()
        np.testing.assert_allclose([line["probability"] for line in lines], expected["probabilities"].max(-1), atol=1e-4)
        with pytest.raises(ValueError, match=r"signature serving_default expects images: uint8 \[batch, 32, 32, 3\]"):
            tfs_client.rest_predict(samples[:, :16], port=server.port, model="classifier")
        with pytest.raises(RuntimeError, match="TF Serving answered 404"):
            tfs_client.rest_predict(samples, port=server.port, model="nope")
        # images of different sizes, a missing file: one line naming the files, no traceback
        Image.fromarray(samples[0][:16]).save(tmp_path / "small.png")
        capsys.readouterr()
        assert tfs_client.main([str(paths[0]), str(tmp_path / "small.png"), "--port", str(server.port)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: the images are not all one size") and "small.png" in err
        assert "Traceback" not in err and len(err.splitlines()) == 1
        assert tfs_client.main([str(tmp_path / "missing.png"), "--port", str(server.port)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "missing.png" in err and "Traceback" not in err
    finally:
        server.close()
