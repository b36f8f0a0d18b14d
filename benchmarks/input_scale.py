"""Input at scale: folder:, packed: and Keras's image_dataset_from_directory on 10k-300k JPEGs, side by side.

For each size, synthetic 96x96 JPEG sets (10 classes; 1,000 distinct images
written under many names, so decoding costs what real files cost) are read
three ways, each in a fresh process so that its peak memory is its own:

- ``folder``: ``data.load("folder:DIR")`` (decoded at load up to
  ``stream_above`` files, headers only above it) into ``pretrain_pipeline``;
- ``packed``: ``data.pack`` once (timed apart), then ``data.load("packed:DIR")``
  into ``pretrain_pipeline``;
- ``packed_plain``: the same as ``packed`` with ``SKIPAE_DATA_XLA=0``: the
  per-batch conversion to the model's units as plain TensorFlow operations
  instead of one XLA-compiled function (what the fusion is worth);
- ``keras``: ``keras.utils.image_dataset_from_directory`` with the same
  batch size, scaled to [0, 1].

Each reports the seconds from the load call to the first batch, images per
second over the next 50 batches of 64 (``--batches``), images per CPU-second
over the same batches (the process's CPU time, all threads), and the
process's peak resident memory. The methods take turns for ``--repeats``
rounds (default 3): medians, ranges, and the ratios to Keras of the medians
and repeat by repeat (of images per second and, for ``packed``, of images
per CPU-second). Last,
in this process, the per-batch conversion to the model's units alone (in
memory: no reading, no decoding), XLA-fused against plain operations, in
2 x max(repeats, 3) alternating rounds of 100 calls. Prints
the machine's float32 matmul GFLOP/s and CPU flags beside the figures;
``--json`` writes them.

    python benchmarks/input_scale.py                        # 10k, 100k, 300k, 3 repeats (minutes, about 8 GB of disk)
    python benchmarks/input_scale.py --sizes 300000 --repeats 5 --batches 200
    python benchmarks/input_scale.py --sizes 10000,100000
    python benchmarks/input_scale.py --smoke                # seconds: the script works (not a measurement)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import describe, machine, peak_rss_mib

METHODS = ("folder", "packed", "packed_plain", "keras")
CLASSES = 10


def make_set(root: Path, n: int, pool: list) -> Path:
    """``root/train/cNN/i.jpg``: n files, the pool's images under many names (written once, then kept)."""
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for c in range(CLASSES):
        (root / "train" / f"c{c:02d}").mkdir(parents=True)
    for i in range(n):
        (root / "train" / f"c{i % CLASSES:02d}" / f"{i:07d}.jpg").write_bytes(pool[i % len(pool)])
    done.write_text(str(n))
    return root


def jpeg_pool(count: int, size: int = 96) -> list:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    pool = []
    for _ in range(count):
        a, b, c = rng.random(3) * 6
        base = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * xx * yy + a)], -1)
        image = ((base * 0.4 + 0.5) * 255 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=90)
        pool.append(buf.getvalue())
    return pool


@contextlib.contextmanager
def xla_setting(flag: str | None):
    """``SKIPAE_DATA_XLA=flag`` inside the block (``None``: as it is), restored after it."""
    before = os.environ.get("SKIPAE_DATA_XLA")
    if flag is not None:
        os.environ["SKIPAE_DATA_XLA"] = flag
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SKIPAE_DATA_XLA", None)
        else:
            os.environ["SKIPAE_DATA_XLA"] = before


def child(method: str, directory: str, batches: int, batch_size: int) -> dict:
    """One measurement, in this (fresh) process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    start = time.perf_counter()
    if method == "keras":
        import keras

        ds = keras.utils.image_dataset_from_directory(directory, labels=None, image_size=(96, 96),
                                                      batch_size=batch_size, shuffle=True, seed=0, verbose=False)
        ds = ds.map(lambda x: (x / 255.0, x / 255.0), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    else:
        from keras_skipae import data
        from keras_skipae.models import resolve_arch

        source = f"{'folder' if method == 'folder' else 'packed'}:{directory}"
        loaded = data.load(source, "train")
        arch = resolve_arch("tiny", input_shape=(96, 96, 3))
        with xla_setting("0" if method == "packed_plain" else None):  # read when the pipeline is built
            ds = data.pretrain_pipeline(loaded, arch, batch_size, training=True, seed=0, cache=False)
    iterator = iter(ds)
    next(iterator)
    first = time.perf_counter() - start
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    # images per CPU-second (all the process's threads, spin-waiting included): CPU time an image costs, which moves
    # less than wall time where the machine keeps fewer of the process's cores busy in some windows than in others
    return {"first_batch_s": round(first, 2), "images_per_s": round(batches * batch_size / seconds, 1),
            "images_per_cpu_s": round(batches * batch_size / max(cpu, 1e-9), 1), "peak_rss_mb": round(peak_rss_mib(), 1)}


def measure(jobs: dict, batches: int, batch_size: int, smoke: bool) -> dict:
    """``{method: directory}`` -> ``{method: figures}``, each method in a fresh process of its own, one at a time;
    the smoke run measures every method in turn in one process (one TensorFlow start-up; its figures are not
    measurements, the peak memory least of all)."""
    groups = [list(jobs)] if smoke else [[method] for method in jobs]
    figures = {}
    for methods in groups:
        cmd = [sys.executable, __file__, "--child", ",".join(methods), "--dir", ",".join(str(jobs[m]) for m in methods),
               "--batches", str(batches), "--batch-size", str(batch_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"{', '.join(methods)} on {', '.join(str(jobs[m]) for m in methods)} failed:\n"
                             f"{proc.stderr[-3000:]}")
        figures.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return figures


FIGURES = ("first_batch_s", "images_per_s", "images_per_cpu_s", "peak_rss_mb")


def repeated(jobs: dict, repeats: int, batches: int, batch_size: int, smoke: bool) -> dict:
    """:func:`measure` ``repeats`` times, the methods taking turns (folder, packed, packed_plain, keras; then
    packed, packed_plain, keras, folder; ...), so that a drift of the machine's speed falls on every method alike.
    Per method: each figure's median (under its own name), its range and spread ((max - min) / median), and every
    repeat's figures under ``runs``."""
    order = list(jobs)
    runs = []
    for r in range(repeats):  # each round starts with another method, so none always follows the same one
        turn = order[r % len(order):] + order[:r % len(order)]
        runs.append(measure({m: jobs[m] for m in turn}, batches, batch_size, smoke))
    out = {}
    for method in jobs:
        mine = [run[method] for run in runs]
        row = {"runs": mine}
        for key in FIGURES:
            values = [r[key] for r in mine]
            median = statistics.median(values)
            row[key] = round(median, 2)
            row[key + "_range"] = [min(values), max(values)]
            row[key + "_spread"] = round((max(values) - min(values)) / median, 3) if median else None
        out[method] = row
    return out


def per_repeat(row: dict, first: str, second: str, key: str) -> list:
    """``first``'s figure over ``second``'s, repeat by repeat (the runs that took turns)."""
    return [round(a[key] / b[key], 2) for a, b in zip(row[first]["runs"], row[second]["runs"])]


def pack(folder: Path, out: Path) -> float:
    """Seconds to pack ``folder`` into ``out`` (in this process: the readers are timed in fresh ones)."""
    from keras_skipae import data

    os.environ["SKIPAE_PROGRESS"] = "0"
    start = time.perf_counter()
    data.pack(f"folder:{folder}", out, shard_size=2048)
    return time.perf_counter() - start


def conversion_speed(batch_size: int, repeats: int, calls: int) -> dict:
    """Milliseconds per batch of the pipelines' conversion to the model's units (cast, channels, normalisation) on
    an in-memory uint8 batch of 96x96x3 images: one XLA-compiled function against the plain operations
    (``SKIPAE_DATA_XLA=0``), ``calls`` calls each, the two taking turns ``repeats`` times in this process. No
    reading or decoding: what the fusion saves per batch, apart from the end-to-end windows' noise."""
    import tensorflow as tf

    from keras_skipae.data import pipeline
    from keras_skipae.models import resolve_arch

    arch = resolve_arch("tiny", input_shape=(96, 96, 3))
    with tf.device("/CPU:0"):  # where tf.data runs it, also on a machine with a GPU
        x = tf.constant(np.random.default_rng(0).integers(0, 256, (batch_size, 96, 96, 3), dtype=np.uint8))
    functions = {}
    for name, flag in (("fused", "1"), ("plain", "0")):
        with xla_setting(flag), tf.device("/CPU:0"):  # read when the function is traced, here
            functions[name] = tf.function(lambda b: pipeline._to_units(b, arch))
            functions[name](x)
    times = {name: [] for name in functions}
    for r in range(repeats):
        for name in (("fused", "plain") if r % 2 == 0 else ("plain", "fused")):
            start = time.perf_counter()
            with tf.device("/CPU:0"):
                for _ in range(calls):
                    functions[name](x)
            times[name].append((time.perf_counter() - start) / calls * 1e3)
    out = {name: {"ms_per_batch": round(statistics.median(t), 3), "range": [round(min(t), 3), round(max(t), 3)]}
           for name, t in times.items()}
    out["plain_vs_fused"] = round(out["plain"]["ms_per_batch"] / out["fused"]["ms_per_batch"], 2)
    out["per_repeat"] = [round(p / f, 2) for p, f in zip(times["plain"], times["fused"])]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000", help="comma-separated image counts")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per method (--smoke: 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workdir", default="/tmp/skipae_input_scale", help="where the image sets and packs go (kept)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 300 images, 3 batches (not a measurement)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # comma-separated methods, measured in turn
    parser.add_argument("--dir", help=argparse.SUPPRESS)  # their directories, in the same order
    args = parser.parse_args(argv)
    if args.child:
        methods, dirs = args.child.split(","), args.dir.split(",")
        if not set(methods) <= set(METHODS) or len(dirs) != len(methods):
            parser.error(f"--child takes methods of {METHODS} and as many --dir entries")
        print(json.dumps({m: child(m, d, args.batches, args.batch_size) for m, d in zip(methods, dirs)}))
        return {}
    sizes = [300] if args.smoke else [int(s) for s in args.sizes.split(",")]
    batches = 3 if args.smoke else args.batches
    repeats = 1 if args.smoke else args.repeats
    if repeats < 1:
        parser.error(f"--repeats {repeats}: give 1 or more")
    work = Path(args.workdir if not args.smoke else args.workdir + "_smoke")
    figures = {**machine(), "batches": batches, "batch_size": args.batch_size, "repeats": repeats, "sizes": {}}
    print(describe(figures))
    if args.smoke:
        print("smoke run: figures are not measurements")
    pool = jpeg_pool(50 if args.smoke else 1000)
    print(f"medians of {repeats} alternating repeat(s), range in brackets")
    print(f"{'images':>8} {'method':>12} {'first batch s':>22} {'images/s':>22} {'img/CPU-s':>10} {'peak MB':>8}")
    for n in sizes:
        folder = make_set(work / f"jpeg_{n}", n, pool)
        packed = work / f"packed_{n}"
        pack_s = None
        if not (packed / "metadata.json").exists():
            pack_s = pack(folder, packed)
        row = {"pack_s": None if pack_s is None else round(pack_s, 1)}
        jobs = {"folder": folder, "packed": packed, "packed_plain": packed, "keras": folder / "train"}
        row.update(repeated(jobs, repeats, batches, args.batch_size, smoke=args.smoke))
        for method in METHODS:
            r = row[method]
            first_s = f"{r['first_batch_s']} [{r['first_batch_s_range'][0]}-{r['first_batch_s_range'][1]}]"
            rate = f"{r['images_per_s']} [{r['images_per_s_range'][0]}-{r['images_per_s_range'][1]}]"
            print(f"{n:>8} {method:>12} {first_s:>22} {rate:>22} {r['images_per_cpu_s']:>10} {r['peak_rss_mb']:>8}")
        row["packed_vs_keras_throughput"] = round(row["packed"]["images_per_s"] / row["keras"]["images_per_s"], 2)
        row["folder_vs_keras_first_batch"] = round(row["folder"]["first_batch_s"] / row["keras"]["first_batch_s"], 2)
        row["packed_vs_keras_throughput_per_repeat"] = per_repeat(row, "packed", "keras", "images_per_s")
        row["packed_vs_keras_per_cpu_s"] = round(row["packed"]["images_per_cpu_s"] / row["keras"]["images_per_cpu_s"], 2)
        row["packed_vs_keras_per_cpu_s_per_repeat"] = per_repeat(row, "packed", "keras", "images_per_cpu_s")
        row["packed_vs_plain_throughput"] = round(row["packed"]["images_per_s"] / row["packed_plain"]["images_per_s"], 2)
        row["packed_vs_plain_throughput_per_repeat"] = per_repeat(row, "packed", "packed_plain", "images_per_s")
        row["folder_vs_keras_first_batch_per_repeat"] = per_repeat(row, "folder", "keras", "first_batch_s")
        print(f"{n:>8} packed/keras images/s {row['packed_vs_keras_throughput']}x of the medians "
              f"(per repeat {row['packed_vs_keras_throughput_per_repeat']}), folder/keras first batch "
              f"{row['folder_vs_keras_first_batch']}x (per repeat {row['folder_vs_keras_first_batch_per_repeat']})"
              + (f", packing took {row['pack_s']} s" if pack_s else ""))
        print(f"{n:>8} packed/keras images per CPU-second {row['packed_vs_keras_per_cpu_s']}x of the medians "
              f"(per repeat {row['packed_vs_keras_per_cpu_s_per_repeat']})")
        print(f"{n:>8} packed (XLA-fused conversion) / packed_plain images/s {row['packed_vs_plain_throughput']}x "
              f"(per repeat {row['packed_vs_plain_throughput_per_repeat']})")
        figures["sizes"][str(n)] = row
    conv = conversion_speed(args.batch_size, 3 if args.smoke else 2 * max(repeats, 3), 5 if args.smoke else 100)
    figures["conversion"] = conv
    print(f"conversion to the model's units, {args.batch_size}x96x96x3 uint8 in memory: XLA-fused "
          f"{conv['fused']['ms_per_batch']} ms [{conv['fused']['range'][0]}-{conv['fused']['range'][1]}], plain "
          f"{conv['plain']['ms_per_batch']} ms [{conv['plain']['range'][0]}-{conv['plain']['range'][1]}] a batch: "
          f"plain/fused {conv['plain_vs_fused']}x (per repeat {conv['per_repeat']})")
    first, last = str(sizes[0]), str(sizes[-1])
    growth = figures["sizes"][last]["packed"]["peak_rss_mb"] / figures["sizes"][first]["packed"]["peak_rss_mb"] - 1
    figures["packed_memory_growth"] = round(growth, 3)
    print(f"packed peak memory from {first} to {last} images: {growth:+.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
