"""Benchmarks that cannot rot: each one with a --smoke mode runs here, in seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["input_scale.py", "online_probe.py", "profile_step.py", "torch_compare.py",
                                    "train_throughput.py"])
def test_each_benchmark_runs_as_a_script(tmp_path, script):
    """``python benchmarks/<script> --help`` from elsewhere, exactly as a user starts it: the script finds its
    helpers (``machine``) beside it and the package. The smoke runs below go through ``smoke_here`` (in this
    process: a TensorFlow start-up each saved); these scripts import TensorFlow only once they measure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--smoke" in result.stdout


@pytest.fixture
def smoke_here(tmp_path, capsys, monkeypatch):
    """``main(["--smoke", *args])`` of ``benchmarks/<script>`` in this process, from ``tmp_path``, as the script
    runs it (its folder first on ``sys.path``), the environment restored afterwards; its output as ``.stdout``."""
    import importlib.util

    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
        monkeypatch.setenv("SKIPAE_PROGRESS", "0")  # what input_scale sets for itself, undone after the test
        spec = importlib.util.spec_from_file_location(f"smoke_{Path(script).stem}", ROOT / "benchmarks" / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        capsys.readouterr()
        code = module.main(["--smoke", *args])
        out = capsys.readouterr()
        assert code in (None, 0) or isinstance(code, dict), out.err[-2000:]
        assert "GFLOP/s" in out.out
        return subprocess.CompletedProcess([script], 0, out.out, out.err)

    return run


def test_online_probe_benchmark_smoke(tmp_path, smoke_here):
    out = tmp_path / "probe.json"
    result = smoke_here("online_probe.py", "--json", str(out))
    assert "% of an unprobed epoch" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["matmul_gflops"] > 0 and figures["probe_seconds"] > 0 and figures["epoch_seconds"] > 0


def test_inference_benchmark_smoke(tmp_path, smoke_here):
    out = tmp_path / "inference.json"
    # one model kind: the script's paths are the same for both, and the auto-encoder's exports (LiteRT int8
    # included) are tested in tests/test_export*.py
    result = smoke_here("inference.py", "--kinds", "classifier", "--json", str(out))
    assert "smoke run: figures are not measurements" in result.stdout and "| onnxruntime |" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["smoke"] and figures["matmul_gflops"] > 0
    runtimes = {(r["model"], r["runtime"]) for r in figures["rows"]}
    assert {("classifier", "savedmodel"), ("classifier", "onnxruntime"), ("classifier", "litert int8"),
            ("classifier", "litert dyn int8")} <= runtimes
    assert all(r["median_ms"] > 0 and r["images_per_s"] > 0 for r in figures["rows"])
    assert len(figures["targets"]) == 3  # ONNX latency, SavedModel throughput, int8 LiteRT latency


def test_inference_benchmark_investigates_without_litert(tmp_path, smoke_here):
    """--investigate's variants (the serving graph with and without the deconvolution rewrite among them) run;
    --no-litert leaves the LiteRT files and their target out."""
    out = tmp_path / "inference.json"
    smoke_here("inference.py", "--kinds", "autoencoder", "--no-litert", "--investigate", "--json", str(out))
    figures = json.loads(out.read_text())
    runtimes = [r["runtime"] for r in figures["rows"]]
    assert {"savedmodel", "onnxruntime", "tf forward", "tf transposed", "tf xla", "ort 2 threads"} <= set(runtimes)
    assert not [r for r in runtimes if r.startswith("litert")]
    assert [t["target"].split(": ")[1] for t in figures["targets"]] == [
        "ONNX batch-1 latency / SavedModel's <= 0.75", "SavedModel batch-64 throughput / best >= 0.95"]


def test_input_pipeline_benchmark_smoke(tmp_path, smoke_here):
    out = tmp_path / "pipeline.json"
    result = smoke_here("input_pipeline.py", "--json", str(out))
    assert "smoke run: figures are not measurements" in result.stdout and "ratio pipeline / training step" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["smoke"] and figures["matmul_gflops"] > 0
    assert figures["cifar10"]["pipeline_images_per_s"] > 0 and figures["train_step_images_per_s"] > 0 and figures["ratio"] > 0
    assert figures["camvid"]["pipeline_images_per_s"] > 0 and figures["camvid"]["train_step_images_per_s"] > 0


@pytest.mark.parametrize("memory", [
    False,
    # the two peak-memory processes start TensorFlow twice and train again (27 s of CPU): in make test-slow
    pytest.param(True, marks=pytest.mark.slow),
])
def test_train_throughput_benchmark_smoke(tmp_path, smoke_here, memory):
    out = tmp_path / "train.json"
    # float32 only: mixed_bfloat16 is emulated, and slow, on CPUs without native bfloat16 (its path is the
    # same trainer with another policy, which tests/test_train.py covers)
    result = smoke_here("train_throughput.py", "--precision", "float32", "--out", str(out),
                        *(() if memory else ("--no-memory",)))
    assert "smoke run: figures are not measurements" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["smoke"] and figures["matmul_gflops"] > 0 and figures["source"].startswith("folder:")
    rates = figures["images_per_second"]
    assert rates["trainer/float32"] > 0 and rates["handwritten/float32"] > 0
    assert figures["range"]["trainer/float32"]["min"] > 0 and len(figures["paired_ratios_float32"]) >= 1
    assert figures["ratio_float32"] > 0
    if memory:
        assert figures["peak_rss_mib"]["trainer/float32"] > 0 and figures["memory_ratio"] > 0
    else:
        assert "peak_rss_mib" not in figures


def test_input_scale_benchmark_smoke(tmp_path, smoke_here):
    out = tmp_path / "scale.json"
    result = smoke_here("input_scale.py", "--workdir", str(tmp_path / "work"), "--json", str(out))
    assert "smoke run: figures are not measurements" in result.stdout and "packed/keras images/s" in result.stdout
    figures = json.loads(out.read_text())
    for row in figures["sizes"].values():
        assert row["packed_vs_plain_throughput"] > 0
        for method in ("folder", "packed", "packed_plain", "keras"):
            assert row[method]["first_batch_s"] > 0 and row[method]["images_per_s"] > 0 and row[method]["peak_rss_mb"] > 0
            assert row[method]["images_per_cpu_s"] > 0
        assert row["packed_vs_keras_per_cpu_s"] > 0
        assert len(row["packed_vs_keras_per_cpu_s_per_repeat"]) == len(row["packed"]["runs"])
    assert figures["conversion"]["plain_vs_fused"] > 0 and figures["conversion"]["fused"]["ms_per_batch"] > 0


def test_profile_step_benchmark_smoke(tmp_path, smoke_here):
    out = tmp_path / "profile.json"
    result = smoke_here("profile_step.py", "--json", str(out))
    assert "smoke run: figures are not measurements" in result.stdout and "| op type |" in result.stdout
    figures = json.loads(out.read_text())
    for kind in ("autoencoder", "classifier"):
        summary = figures["kinds"][kind]
        assert summary["ms_per_step"] > 0 and abs(sum(summary["phases"].values()) - 1) < 1e-6
        assert summary["op_types"], kind
        for part in ("forward", "backward", "optimizer"):
            assert summary["phases"][part] > 0, (kind, part)
    # the auto-encoder's training metrics (PSNR, SSIM) are told apart from its forward pass
    assert figures["kinds"]["autoencoder"]["phases"]["metrics"] > 0


def test_torch_compare_benchmark_smoke(tmp_path, smoke_here):
    """Runs with or without PyTorch installed; with it, the PyTorch network has the Keras one's parameter count."""
    import importlib.util
    out = tmp_path / "torch.json"
    result = smoke_here("torch_compare.py", "--json", str(out))
    figures = json.loads(out.read_text())
    assert figures["smoke"] and figures["sides"]["trainer"]["median"] > 0 and figures["sides"]["keras"]["median"] > 0
    # each side's work per image beside its speed: images per CPU-second and the cores it kept busy, per repeat
    for side in ("trainer", "keras"):
        run = figures["runs"][side][0]
        assert run["images_per_cpu_s"] > 0 and run["busy_cpus"] > 0
        assert run["busy_cpus"] == pytest.approx(run["images_per_s"] / run["images_per_cpu_s"])
        assert figures["sides"][side]["per_cpu_s_median"] > 0 and len(figures["sides"][side]["busy_cpus_per_repeat"]) == 1
    assert figures["ratios_per_cpu_s"]["trainer/keras"][0] > 0
    if importlib.util.find_spec("torch") is None:
        assert "PyTorch is not installed" in result.stdout
    else:
        assert {"torch", "torch_cl"} <= set(figures["sides"]) and "keras/torch" in figures["ratios"]


def test_profile_step_tells_the_phases_of_a_step_apart():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from profile_step import phase
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    prefix = "while/body/_1/while/cond/then/_291/while/cond/StatefulPartitionedCall/"
    assert phase(prefix + "autoencoder_1/encoder_conv1_act_1/Relu") == "forward"
    assert phase(prefix + "gradient_tape/autoencoder_1/encoder_conv3_1/convolution/Conv2DBackpropInput") == "backward"
    assert phase(prefix + "compile_loss/mse_loss/Mean") == "loss"
    assert phase(prefix + "SSIM/depthwise_2") == "metrics"
    assert phase(prefix + "compile_metrics/psnr/AssignAddVariableOp") == "metrics"
    assert phase(prefix + "adam/AssignSubVariableOp_3") == "optimizer"
    assert phase("IteratorGetNext") == "other"


def test_torch_compare_refuses_a_network_that_is_not_the_keras_one():
    pytest.importorskip("torch")
    import keras_skipae as ks
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from torch_compare import same_network, torch_model
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    keras_model = ks.build("autoencoder", "tiny")
    net = torch_model(keras_model)
    same_network(keras_model, net)  # the same network: passes
    first = next(m for m in net.modules() if type(m).__name__ == "Conv2d")
    first.stride = (2, 2)  # same parameters, other shapes
    with pytest.raises(RuntimeError, match="not the same network"):
        same_network(keras_model, net)
