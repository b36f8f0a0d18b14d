"""Training throughput and peak memory: skipae's Trainer against a hand-written Keras ``fit``.

Both train the identical ``allconv-c`` auto-encoder (batch 64, Adam, MSE) on the
same images:

- **trainer**: ``keras_skipae.train.Trainer.fit`` on the real input pipeline
  (``data.load`` of the CIFAR-10 JPEG zip -> ``data.pretrain_pipeline``, cached,
  shuffled, prefetched), with every callback a recipe run installs (checkpoints,
  backup for resume, CSV history, TensorBoard) writing to a temporary run dir;
- **hand-written**: ``model.compile("adam", "mse")`` and ``model.fit(x, x,
  batch_size=64)`` on the same images already decoded, normalised and held as
  in-memory tensors.

Throughput: each repeat runs both, alternating (trainer, hand-written, trainer,
...), each for one warm-up epoch (tracing, not timed) and ``--epochs`` timed
epochs; epochs are timed from one epoch start to the next, so the trainer's
epoch-end work (checkpoint saves) counts. The median over repeats is reported,
with each side's range and its spread ((max - min) / median; the target is
under 10%), and the trainer / hand-written ratio of each repeat.
Peak memory: each side runs once more in its own subprocess, which reports its
peak resident set size (Linux's ``VmHWM``, its own from exec; ``ru_maxrss`` would carry this
parent's peak into both); the two run at the same time.

Targets (issue 4): trainer/hand-written >= 0.95 in float32; trainer in
``mixed_bfloat16`` >= 1.3x the float32 hand-written figure on CPUs with native
bfloat16; trainer peak RSS <= 1.2x the hand-written one.

Prints the machine's float32 matmul GFLOP/s and CPU flags beside the figures.

    python benchmarks/train_throughput.py --quick          # about 2-3 minutes on 2 cores
    python benchmarks/train_throughput.py --out bench.json # longer, steadier figures
    python benchmarks/train_throughput.py --smoke          # seconds: the script works (tiny preset, synthetic JPEG zip)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, machine, peak_rss_mib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.zip"
BATCH = 64
SMOKE_IMAGES = 64  # one batch per epoch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="CIFAR-10 JPEG zip (folder source); synthetic 32x32 images when it does not exist")
    p.add_argument("--images", type=int, default=2048, help="training images per epoch")
    p.add_argument("--preset", default=None, help="architecture (default allconv-c, the issue's figures; --smoke: tiny)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat (after one warm-up epoch)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of trainer and hand-written")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "both"], default="both")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--quick", action="store_true", help="512 images, 1 timed epoch, 2 repeats")
    p.add_argument("--smoke", action="store_true",
                   help="seconds, not a measurement: the tiny preset on 64 images of a synthetic JPEG zip it writes "
                        "(not --data), 1 timed epoch, 1 repeat")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--child", choices=["trainer", "handwritten"], help=argparse.SUPPRESS)
    p.add_argument("--child-precision", default="float32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke and args.data != str(DEFAULT_DATA):
        p.error("--smoke writes its own synthetic JPEG zip; it takes no --data")
    if args.quick:
        args.images, args.epochs, args.repeats = 512, 1, 2
    if args.smoke:
        args.images, args.epochs, args.repeats = SMOKE_IMAGES, 1, 1
    if args.preset is None:
        args.preset = "tiny" if args.smoke else "allconv-c"
    return args



# ------------------------------------------------------------------------------ data
def write_smoke_zip(directory: str) -> str:
    """A CIFAR-10-like JPEG zip (10 classes of 32x32 images, train split) of ``SMOKE_IMAGES`` images; its path."""
    from keras_skipae.data import testing

    classes = [f"class{c}" for c in range(10)]
    per_class = -(-SMOKE_IMAGES // len(classes))
    return testing.write_folder_tree(os.path.join(directory, "cifar10_jpg"), per_class, classes=classes, size=(32, 32),
                                     fmt="jpg", as_zip=True)


def load_images(path: str, n: int):
    """``n`` training images as a ``data.load`` dataset (the real zip, or synthetic arrays)."""
    from keras_skipae import data

    if Path(path).exists():
        ds = data.load(f"folder:{path}", "train")
        source = f"folder:{path}"
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        ds = data.load((images, np.zeros(n, "int32")), "train")
        source = "synthetic"
    return data.sample(ds, n, seed=0), source


def arch_for(ds, preset: str = "allconv-c"):
    from keras_skipae import data
    from keras_skipae.models import resolve_arch

    mean, std = data.compute_stats(ds)
    return resolve_arch(preset, input_shape=(32, 32, 3), mean=mean, std=std)


class EpochTimer:
    """Wall time from each epoch's start to the next one's (the last ends at train end)."""

    def __init__(self):
        import keras

        timer = self

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.mark()

            def on_train_end(self, logs=None):
                timer.mark()

        self.callback = _CB()
        self.marks: list[float] = []

    def mark(self):
        self.marks.append(time.perf_counter())

    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


# ------------------------------------------------------------------------ the two sides
def run_trainer(ds, arch, precision: str, epochs: int):
    """Images/second of Trainer.fit over the timed epochs (epoch 1 is warm-up)."""
    import keras_skipae as ks
    from keras_skipae import data, train

    trainer = train.Trainer(mixed_precision=None if precision == "float32" else precision, seed=0)
    with trainer.scope():
        model = ks.build("autoencoder", arch)
    pipeline = data.pretrain_pipeline(ds, arch, BATCH, training=True, seed=0)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer.fit(model, pipeline, epochs=1 + epochs, optimizer="adam", run_dir=run_dir, stage="benchmark",
                    verbose=0, callbacks=[timer.callback])
    steps = int(pipeline.cardinality())
    return [steps * BATCH / s for s in timer.epoch_seconds()[1:]]


def in_memory_tensors(ds, arch):
    """The same images decoded and normalised once, as a float32 tensor."""
    import numpy as np
    import tensorflow as tf

    from keras_skipae import data

    images, _ = data.to_numpy(ds)
    x = (images.astype("float32") * arch.pixel_scale - np.asarray(arch.channel_mean(), "float32")) / np.asarray(
        arch.channel_std(), "float32")
    return tf.constant(x)


def run_handwritten(x, arch, precision: str, epochs: int):
    """Images/second of a minimal model.compile + model.fit on in-memory tensors."""
    import keras

    import keras_skipae as ks

    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = ks.build("autoencoder", arch)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile("adam", "mse")
    timer = EpochTimer()
    model.fit(x, x, batch_size=BATCH, epochs=1 + epochs, verbose=0, callbacks=[timer.callback])
    steps = -(-int(x.shape[0]) // BATCH)
    return [steps * BATCH / s for s in timer.epoch_seconds()[1:]]


# -------------------------------------------------------------------------------- memory
def child(args) -> None:
    ds, _ = load_images(args.data, args.images)
    arch = arch_for(ds, args.preset)
    if args.child == "trainer":
        run_trainer(ds, arch, args.child_precision, args.epochs)
    else:
        run_handwritten(in_memory_tensors(ds, arch), arch, args.child_precision, args.epochs)
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}))


def peak_rss(args, sides: list[str], precision: str) -> dict[str, float]:
    """Peak RSS (MiB) of each side, run at the same time in separate processes (RSS does not depend on speed)."""
    procs = {}
    for side in sides:
        cmd = [sys.executable, __file__, "--child", side, "--child-precision", precision, "--data", args.data,
               "--images", str(args.images), "--epochs", str(args.epochs), "--preset", args.preset]
        procs[side] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peaks = {}
    for side, proc in procs.items():
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"memory run of {side} failed:\n{err[-2000:]}")
        peaks[side] = json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]
    return peaks


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    started = time.time()
    with contextlib.ExitStack() as stack:
        if args.smoke:  # a fresh clone has no ../shared/data: a tiny JPEG zip, read by the same folder source
            args.data = write_smoke_zip(stack.enter_context(tempfile.TemporaryDirectory()))
        result = measure(args, started)
    if args.smoke:
        print("smoke run: figures are not measurements")
    print(describe(result))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def measure(args, started: float) -> dict:
    import tensorflow as tf

    from keras_skipae.train import cpu_supports_bfloat16

    ds, source = load_images(args.data, args.images)
    arch = arch_for(ds, args.preset)
    x = in_memory_tensors(ds, arch)
    precisions = ["float32", "mixed_bfloat16"] if args.precision == "both" else [args.precision]
    runs: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for precision in precisions:
            for side in ("trainer", "handwritten"):
                if side == "handwritten" and precision != "float32":
                    continue  # the bfloat16 target compares with the float32 hand-written figure
                fn = run_trainer if side == "trainer" else run_handwritten
                rates = fn(ds if side == "trainer" else x, arch, precision, args.epochs)
                runs.setdefault(f"{side}/{precision}", []).extend(rates)
                print(f"repeat {repeat + 1}: {side:11s} {precision:14s} "
                      + " ".join(f"{r:7.1f}" for r in rates) + " images/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    spread = {k: {"min": round(min(v), 1), "max": round(max(v), 1),
                  "spread_of_median": round((max(v) - min(v)) / med[k], 3)} for k, v in runs.items()}
    paired = []  # trainer / hand-written, epoch by epoch of the same repeat (run side by side)
    if "trainer/float32" in runs and "handwritten/float32" in runs:
        paired = [round(a / b, 3) for a, b in zip(runs["trainer/float32"], runs["handwritten/float32"])]
    result = {
        "source": source, "preset": args.preset, "images": args.images, "batch": BATCH, "timed_epochs": args.epochs,
        "repeats": args.repeats, "tensorflow": tf.__version__, "cpu_bfloat16": cpu_supports_bfloat16(),
        "images_per_second": {k: round(v, 1) for k, v in med.items()},
        "range": spread,
        "paired_ratios_float32": paired,
        "ratio_float32": round(med["trainer/float32"] / med["handwritten/float32"], 3)
        if "trainer/float32" in med else None,
        "bf16_speedup_vs_handwritten_float32": round(med["trainer/mixed_bfloat16"] / med["handwritten/float32"], 3)
        if "trainer/mixed_bfloat16" in med and "handwritten/float32" in med else None,
    }
    if not args.no_memory:
        peaks = peak_rss(args, ["trainer", "handwritten"], "float32")
        trainer_mib, hand_mib = peaks["trainer"], peaks["handwritten"]
        result["peak_rss_mib"] = {"trainer/float32": round(trainer_mib), "handwritten/float32": round(hand_mib)}
        result["memory_ratio"] = round(trainer_mib / hand_mib, 3)
    result["seconds"] = round(time.time() - started, 1)
    result.update(machine(), smoke=args.smoke)
    return result


if __name__ == "__main__":
    main()
