"""Does the input pipeline keep the auto-encoder's training step fed?

Measures, in one run:

1. CIFAR-10 from its JPEG zip: ``data.load`` (read the zip once, decode and
   check every JPEG in a parallel tf.data pass, keep the uint8 images) and the
   full pre-training pipeline on it (shuffle, batch, normalise, random crop
   with padding + flip, masking corruption in the pipeline) at batch 64:
   images per second for one whole epoch and for the first epoch including
   the load.
2. The ``allconv-c`` auto-encoder's training step at the same batch size: a
   plain ``keras.Model.fit`` on tensors already in memory, timed per step after
   warm-up. Its images per second are what training consumes.
3. Their ratio. Target: the pipeline delivers at least 5x what the step
   consumes.
4. CamVid (``segfolder:``, 367 PNG frames 360x480 with masks): load, and the
   pre-training pipeline taking random ``--camvid-crop`` crops (flip,
   corruption) for a fully-convolutional ``allconv-c``, with the training
   step's rate at that crop size. Reported as measured.

Prints the machine's float32 matmul GFLOP/s and CPU flags beside the figures.

    python benchmarks/input_pipeline.py                 # about 2 minutes on a quiet 2-core machine
    python benchmarks/input_pipeline.py --quick         # about 1 minute (CIFAR-10 test split, fewer steps)
    python benchmarks/input_pipeline.py --smoke         # seconds: the script works (tiny synthetic data, tiny preset)
    python benchmarks/input_pipeline.py --json out.json --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from machine import describe, machine  # noqa: E402  (before TensorFlow: its kernel choice)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_skipae as ks  # noqa: E402
from keras_skipae import data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 5.0
PRESET = "allconv-c"
SMOKE_PRESET = "tiny"  # --smoke: every structural feature of allconv-c's step, a few thousand parameters
SMOKE_BATCH = 16



def write_smoke_data(root: Path) -> Path:
    """What a fresh clone lacks, tiny: ``cifar10/cifar10_jpg.zip`` (10 classes of 32x32 JPEGs, 8 per class per
    split) and a CamVid-like ``camvid/`` (48 train frames of 48x64 PNGs, masks of 11 classes and ignore label 11)."""
    from keras_skipae.data import testing

    classes = [f"class{c}" for c in range(10)]
    testing.write_folder_tree(str(root / "cifar10" / "cifar10_jpg"), {"train": 8, "test": 8}, classes=classes,
                              size=(32, 32), fmt="jpg", as_zip=True)
    testing.write_segfolder(str(root / "camvid"), {"train": 48}, size=(48, 64), num_classes=11, ignore_label=11)
    return root


def pipeline_rate(pipeline: tf.data.Dataset, batch_size: int, max_batches: int | None = None) -> tuple[float, int]:
    """Images per second over one pass of ``pipeline`` (or its first ``max_batches``), after one warm-up batch."""
    it = iter(pipeline)
    next(it)
    n = 0
    start = time.perf_counter()
    for _ in it:
        n += 1
        if max_batches is not None and n >= max_batches:
            break
    elapsed = time.perf_counter() - start
    return n * batch_size / elapsed, n


def train_step_rate(arch_overrides: dict, batch_size: int, steps: int, shape, warmup: int = 2,
                    preset: str = PRESET) -> float:
    """Images per second the allconv-c auto-encoder's training step consumes (fit on in-memory tensors).

    The pipelines timed here corrupt the inputs (``corruption="pipeline"``), so
    the model is built as it is for that configuration: ``corruption="none"``
    (no masking layer in the step), which is the training step being fed.
    """
    model = ks.build("autoencoder", preset, **{**arch_overrides, "corruption": "none"})
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    x = np.random.default_rng(0).normal(size=(batch_size, *shape)).astype("float32")
    ds = tf.data.Dataset.from_tensors((x, x)).repeat().prefetch(2)  # cached tensors: no input cost
    times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(ds, steps_per_epoch=steps + warmup, epochs=1, verbose=0, callbacks=[StepTimer()])
    step = float(np.median(times[warmup:]))
    return batch_size / step


def cifar10(args) -> dict:
    zip_path = Path(args.data_dir) / "cifar10" / "cifar10_jpg.zip"
    split = "test" if args.quick or args.smoke else "train"
    start = time.perf_counter()
    ds = data.load(f"folder:{zip_path}", split)
    load_s = time.perf_counter() - start
    n = ds.info.num_examples
    arch = ks.build("autoencoder", args.preset).arch
    pipe = data.pretrain_pipeline(ds, arch, args.batch_size, seed=0, augment=True, corruption="pipeline")
    start = time.perf_counter()
    epoch_images = sum(int(x.shape[0]) for x, _ in pipe)
    epoch_s = time.perf_counter() - start
    steady, _ = pipeline_rate(pipe, args.batch_size)
    return {
        "split": split,
        "images": n,
        "load_s": load_s,
        "load_images_per_s": n / load_s,
        "first_epoch_images_per_s": epoch_images / epoch_s,
        "pipeline_images_per_s": steady,
        "end_to_end_images_per_s": epoch_images / (load_s + epoch_s),
    }


def camvid(args) -> dict:
    root = Path(args.data_dir) / "camvid"
    start = time.perf_counter()
    ds = data.load(f"segfolder:{root}", "train", ignore_label=11)
    load_s = time.perf_counter() - start
    crop = (args.camvid_crop, args.camvid_crop)
    arch = ks.build("autoencoder", args.preset, input_shape=(None, None, 3)).arch
    pipe = data.pretrain_pipeline(
        ds, arch, args.batch_size, seed=0, augment=True, corruption="pipeline", crop_size=crop
    )
    epochs = 1 if args.smoke else 2 if args.quick else 4
    rates = [pipeline_rate(pipe, args.batch_size)[0] for _ in range(epochs)]
    return {
        "images": ds.info.num_examples,
        "crop": list(crop),
        "load_s": load_s,
        "load_images_per_s": ds.info.num_examples / load_s,
        "pipeline_images_per_s": float(np.median(rates)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="holds cifar10/ and camvid/ (default ../shared/data)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (--smoke 16)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 8, --quick 4, --smoke 2)")
    parser.add_argument("--camvid-crop", type=int, default=None,
                        help="CamVid crop size for the fully-convolutional run (default 64, --smoke 32)")
    parser.add_argument("--quick", action="store_true", help="CIFAR-10 test split (10k), fewer steps: under a minute")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds, not a measurement: tiny synthetic CIFAR-10 zip and CamVid folder written to a "
                             "temporary directory (no --data-dir), the tiny preset, batch 16, 2 steps")
    parser.add_argument("--skip-camvid", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.smoke and args.data_dir is not None:
        parser.error("--smoke writes its own tiny data; it takes no --data-dir")
    args.preset = SMOKE_PRESET if args.smoke else PRESET
    args.batch_size = args.batch_size or (SMOKE_BATCH if args.smoke else 64)
    args.camvid_crop = args.camvid_crop or (32 if args.smoke else 64)
    if not args.smoke:
        args.data_dir = args.data_dir or str(ROOT.parent / "shared" / "data")
        return run(args)
    with tempfile.TemporaryDirectory() as tmp:  # a fresh clone has no ../shared/data
        args.data_dir = str(write_smoke_data(Path(tmp)))
        return run(args)


def run(args) -> int:
    steps = args.steps or (2 if args.smoke else 4 if args.quick else 8)
    if not (Path(args.data_dir) / "cifar10" / "cifar10_jpg.zip").is_file():
        print(f"no CIFAR-10 zip under {args.data_dir}/cifar10/; pass --data-dir", file=sys.stderr)
        return 2

    if args.smoke:
        print("smoke run: figures are not measurements (tiny synthetic data, the tiny preset)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, batch {args.batch_size}")
    results = {"batch_size": args.batch_size, "cpus": os.cpu_count(), "tensorflow": tf.__version__, "smoke": args.smoke}
    c = cifar10(args)
    results["cifar10"] = c
    print(
        f"CIFAR-10 ({c['split']}, {c['images']} JPEGs from the zip): load+decode {c['load_s']:.1f} s "
        f"({c['load_images_per_s']:.0f} img/s); pre-training pipeline {c['pipeline_images_per_s']:.0f} img/s "
        f"(first epoch {c['first_epoch_images_per_s']:.0f} img/s, with the load {c['end_to_end_images_per_s']:.0f} img/s)"
    )
    consume = train_step_rate({}, args.batch_size, steps, (32, 32, 3), preset=args.preset)
    results["train_step_images_per_s"] = consume
    ratio = c["pipeline_images_per_s"] / consume
    results["ratio"] = ratio
    results["ratio_with_load"] = c["end_to_end_images_per_s"] / consume
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"{args.preset} auto-encoder training step: {consume:.0f} img/s (median of {steps} steps, float32)")
    print(
        f"ratio pipeline / training step: {ratio:.1f}x ({verdict} the {TARGET_RATIO:.0f}x target); "
        f"first epoch including the load: {results['ratio_with_load']:.1f}x"
    )
    if not args.skip_camvid and (Path(args.data_dir) / "camvid").is_dir():
        cv = camvid(args)
        size = args.camvid_crop
        cv["train_step_images_per_s"] = train_step_rate(
            {"input_shape": (None, None, 3)}, args.batch_size, max(2, steps // 3), (size, size, 3), warmup=1,
            preset=args.preset,
        )
        cv["ratio"] = cv["pipeline_images_per_s"] / cv["train_step_images_per_s"]
        results["camvid"] = cv
        print(
            f"CamVid ({cv['images']} PNG frames + masks): load+decode {cv['load_s']:.1f} s "
            f"({cv['load_images_per_s']:.0f} img/s); pre-training pipeline with random {size}x{size} crops "
            f"{cv['pipeline_images_per_s']:.0f} img/s; training step at {size}x{size} "
            f"{cv['train_step_images_per_s']:.1f} img/s; ratio {cv['ratio']:.1f}x"
        )
    results.update(machine())
    print(describe(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
