"""Inference speed of the three ways to run an exported keras_skipae model.

For the ``allconv-c`` auto-encoder and classifier: the Keras model call, the
loaded SavedModel signature (``tf.saved_model.load(...).signatures[...]``), an
ONNX Runtime session on the tf2onnx export, and the LiteRT interpreter
(ai-edge-litert) on the ``.tflite`` export: float32, full int8 (weights and
activations, ``quantize="int8"``, calibrated on 64 images) and dynamic-range
int8 weights (``quantize="dynamic_int8"``). All run the same graph on the same
normalised input (the ``normalised`` signature), so the numbers compare
runtimes, not pre-processing. Reported per runtime: batch-1 median latency over
``--calls`` timed calls after warm-up, and batch-64 throughput in images per
second, with ratios to the Keras call. The runtimes take turns call by call, so
a busy machine slows all of them alike (the ratios hold up better than the
absolute figures). The LiteRT interpreter gets ``--threads`` threads, or one
per CPU (ONNX Runtime's default is one per physical core).

Targets on a 2-core CPU: ONNX batch-1 latency at most 0.75x the SavedModel's,
SavedModel batch-64 throughput within 5% of the best of Keras, SavedModel and
ONNX Runtime, and the int8 LiteRT file's batch-1 latency at most the float32
one's.
Prints the machine's float32 matmul GFLOP/s and CPU flags beside the figures.

    python benchmarks/inference.py                # 400 calls, 12 batches: about 2 minutes on 2 quiet cores
    python benchmarks/inference.py --quick        # 200 calls, 8 batches: about 1.5 minutes
    python benchmarks/inference.py --smoke        # seconds: the script works (tiny preset, 5 calls, 2 batches)
    python benchmarks/inference.py --investigate  # adds ORT thread/spinning/optimisation variants, XLA
    python benchmarks/inference.py --no-litert --batches 40   # Keras, SavedModel and ONNX Runtime only, longer
    python benchmarks/inference.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from machine import describe, machine  # noqa: E402  (before TensorFlow: its kernel choice)

import numpy as np
import onnxruntime as ort
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import export

SIGNATURE = export.SIGNATURE_NORMALISED
PRESET = "allconv-c"
SMOKE_PRESET = "tiny"  # --smoke: the same exports and runtimes of a few-thousand-parameter model



def latency_ms(calls: dict, x, n: int, warmup: int) -> dict:
    """Median and 90th percentile (ms) of ``n`` timed batch calls of each runtime.

    The runtimes take turns call by call (in rotating order), so that load from
    other processes on a shared machine falls on all of them alike.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name](x)
    times = {name: [] for name in names}
    for i in range(n):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            calls[name](x)
            times[name].append((time.perf_counter() - start) * 1e3)
    result = {}
    for name, t in times.items():
        t.sort()
        result[name] = {"median_ms": statistics.median(t), "p90_ms": t[int(0.9 * (len(t) - 1))]}
    return result


def throughput(calls: dict, x, batches: int, warmup: int) -> dict:
    """Images per second of each runtime over ``batches`` calls, taking turns batch by batch."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name](x)
    spent = dict.fromkeys(names, 0.0)
    for i in range(batches):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            calls[name](x)
            spent[name] += time.perf_counter() - start
    return {name: batches * len(x) / spent[name] for name in names}


def ort_session(path: Path, threads: int | None, level: str = "ALL", spinning: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def litert_calls(model, kind: str, workdir: Path, threads: int | None) -> dict:
    """name -> callable(x) for the LiteRT float32, int8 and dynamic-range int8 exports of ``model``."""
    litert_float = export.litert(model, workdir / "litert" / f"{kind}.tflite", signature=SIGNATURE, seed=0)
    calibration = np.random.default_rng(1).integers(0, 256, (64, *model.arch.input_shape), dtype=np.uint8)
    litert_int8 = export.litert(model, workdir / "litert" / f"{kind}_int8.tflite", signature=SIGNATURE,
                                quantize="int8", calibration_images=calibration, seed=0)
    litert_dynamic = export.litert(model, workdir / "litert" / f"{kind}_dynamic_int8.tflite", signature=SIGNATURE,
                                   quantize="dynamic_int8", seed=0)
    for name, result in (("int8", litert_int8), ("dynamic_int8", litert_dynamic)):
        print(f"  {kind}: LiteRT {name} vs Keras: " + "; ".join(m.describe() for m in result.accuracy_change.measures),
              file=sys.stderr)
    litert_threads = threads or os.cpu_count()
    sessions = {name: export.LiteRTSession(r.path, num_threads=litert_threads)
                for name, r in (("litert", litert_float), ("litert int8", litert_int8), ("litert dyn int8", litert_dynamic))}
    return {name: (lambda x, s=s: s.run(x)) for name, s in sessions.items()}


def runtimes(kind: str, workdir: Path, threads: int | None, investigate: bool = False, preset: str = PRESET,
             litert: bool = True) -> dict:
    """name -> callable(x) for the Keras model, the SavedModel signature, the ORT session and (``litert``) LiteRT.

    With ``investigate``, variants too: ORT with 1 or 2 threads, without
    spinning, with basic graph optimisations only; the SavedModel's restored
    function called directly; the serving graph compiled with XLA.
    """
    model = ks.build(kind, preset)
    saved = export.saved_model(model, workdir / "savedmodel", name=kind, seed=0)
    onnx_result = export.onnx(model, workdir / "onnx" / f"{kind}.onnx", signature=SIGNATURE, seed=0)
    loaded = tf.saved_model.load(str(saved.path))
    signature = loaded.signatures[SIGNATURE]
    session = ort_session(onnx_result.path, threads)
    calls = {
        "keras": lambda x: model(x, training=False),
        "savedmodel": lambda x: signature(images=tf.constant(x)),
        "onnxruntime": lambda x: session.run(None, {"images": x}),
    }
    if litert:
        calls.update(litert_calls(model, kind, workdir, threads))
    if investigate:
        variants = {
            "ort 1 thread": ort_session(onnx_result.path, 1),
            "ort 2 threads": ort_session(onnx_result.path, 2),
            "ort no spin": ort_session(onnx_result.path, threads, spinning=False),
            "ort basic opt": ort_session(onnx_result.path, threads, level="BASIC"),
        }
        for name, variant in variants.items():
            calls[name] = lambda x, variant=variant: variant.run(None, {"images": x})
        function = getattr(loaded, SIGNATURE)  # the restored tf.function; keep `loaded` alive with it
        calls["sm function"] = lambda x, loaded=loaded: function(tf.constant(x))
        module = export.ServingModule(model, validate=False, forward_deconv=True)  # as the SavedModel
        xla = tf.function(module.normalised.python_function, input_signature=module.normalised.input_signature, jit_compile=True)
        calls["tf xla"] = lambda x: xla(tf.constant(x))
        # the serving graph without its asserts, with and without the transposed convolutions' rewrite
        for name, forward in (("tf forward", True), ("tf transposed", False)):
            fn = export.ServingModule(model, validate=False, forward_deconv=forward).normalised
            calls[name] = lambda x, fn=fn: fn(tf.constant(x))
    return calls


def bench(kind: str, workdir: Path, args) -> list:
    calls = runtimes(kind, workdir, args.threads, args.investigate, args.preset, litert=not args.no_litert)
    rng = np.random.default_rng(0)
    arch = ks.build(kind, args.preset).arch
    one = export.normalise(rng.integers(0, 256, (1, *arch.input_shape), dtype=np.uint8), arch)
    batch = export.normalise(rng.integers(0, 256, (64, *arch.input_shape), dtype=np.uint8), arch)
    latency = latency_ms(calls, one, args.calls, args.warmup)
    rates = throughput(calls, batch, args.batches, 1 if args.smoke else 3)
    rows = []
    for name in calls:
        row = {"model": kind, "runtime": name, **latency[name], "images_per_s": rates[name]}
        rows.append(row)
        print(f"  {kind:12s} {name:14s} {row['median_ms']:7.2f} ms   {row['images_per_s']:8.0f} img/s", file=sys.stderr)
    keras_row = rows[0]
    for row in rows:
        row["latency_vs_keras"] = row["median_ms"] / keras_row["median_ms"]
        row["throughput_vs_keras"] = row["images_per_s"] / keras_row["images_per_s"]
    return rows


def targets(rows: list) -> list:
    """(description, value, passed) for the two targets, per model."""
    results = []
    for kind in dict.fromkeys(r["model"] for r in rows):
        by = {r["runtime"]: r for r in rows if r["model"] == kind}
        ratio = by["onnxruntime"]["median_ms"] / by["savedmodel"]["median_ms"]
        results.append((f"{kind}: ONNX batch-1 latency / SavedModel's <= 0.75", ratio, ratio <= 0.75))
        best = max(by[name]["images_per_s"] for name in ("keras", "savedmodel", "onnxruntime"))
        share = by["savedmodel"]["images_per_s"] / best
        results.append((f"{kind}: SavedModel batch-64 throughput / best >= 0.95", share, share >= 0.95))
        if "litert" in by:
            ratio = by["litert int8"]["median_ms"] / by["litert"]["median_ms"]
            results.append((f"{kind}: LiteRT int8 batch-1 latency / float32's <= 1.0", ratio, ratio <= 1.0))
    return results


def table(rows: list) -> str:
    lines = [
        "| model | runtime | batch-1 median ms | p90 ms | vs Keras | batch-64 img/s | vs Keras |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['latency_vs_keras']:.2f}x | {r['images_per_s']:.0f} | {r['throughput_vs_keras']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 batch-1 calls and 8 batches of 64 (about 1.5 minutes)")
    parser.add_argument("--calls", type=int, default=None, help="timed batch-1 calls (at least 200; default 400)")
    parser.add_argument("--batches", type=int, default=None, help="timed batches of 64 (default 12)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 20, --smoke 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads and LiteRT threads (default: ORT's choice; one per CPU for LiteRT)")
    parser.add_argument("--kinds", default="autoencoder,classifier", help="comma-separated model kinds")
    parser.add_argument("--investigate", action="store_true",
                        help="add rows for ORT thread/spinning/optimisation variants, the SavedModel function, XLA")
    parser.add_argument("--no-litert", action="store_true",
                        help="leave the LiteRT files out (the dynamic-range int8 one alone takes minutes at batch 64)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds, not a measurement: the tiny preset, 5 batch-1 calls, 2 batches of 64, 2 warm-up calls")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and targets to this file")
    args = parser.parse_args(argv)
    args.preset = SMOKE_PRESET if args.smoke else PRESET
    args.calls = args.calls or (5 if args.smoke else 200 if args.quick else 400)
    args.batches = args.batches or (2 if args.smoke else 8 if args.quick else 12)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.smoke else 20)
    if args.calls < 200 and not args.smoke:
        parser.error("--calls must be at least 200 for a stable median")

    from importlib.metadata import version

    print(f"tensorflow {tf.__version__}, onnxruntime {ort.__version__}, ai-edge-litert {version('ai-edge-litert')}, "
          f"{os.cpu_count()} CPUs", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            rows += bench(kind.strip(), Path(tmp), args)
    figures = machine()
    if args.smoke:
        print(f"smoke run: figures are not measurements ({args.preset} preset, {args.calls} calls, {args.batches} batches)")
    print(describe(figures))
    print(table(rows))
    print()
    checks = targets(rows)
    for description, value, passed in checks:
        print(f"{'PASS' if passed else 'MISS'} {description}: {value:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"smoke": args.smoke, "preset": args.preset, **figures, "rows": rows,
                        "targets": [{"target": d, "value": v, "passed": p} for d, v, p in checks]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
