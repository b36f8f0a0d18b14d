"""Where a training step's time goes, per op, from TensorFlow's profiler: the auto-encoder and the classifier.

For each model kind, ``keras_skipae.train.Trainer.fit`` trains the ``allconv-c``
network (batch 64, Adam, float32) on in-memory random images (so the input
pipeline is not what is measured) for one warm-up epoch, then one epoch under
``tf.profiler.experimental``. The trace (``*.xplane.pb``, also readable in
TensorBoard's profile plugin) is summarised with the profiler's own
``framework_op_stats`` tool:

- the share of the ops' self-time in the forward pass, the loss, the training
  metrics (Keras computes a model's compiled metrics on every training batch),
  the backward pass (ops under ``gradient_tape/``) and the optimiser update;
- the op types that take the most self-time, with their share.

Prints the machine's float32 matmul GFLOP/s and CPU flags beside the figures.

    python benchmarks/profile_step.py                 # both kinds, 16 profiled steps: about 2 minutes on 2 cores
    python benchmarks/profile_step.py --keep traces/  # keep the traces for TensorBoard (--logdir traces/)
    python benchmarks/profile_step.py --smoke         # seconds: the script works (tiny preset, 2 steps)
    python benchmarks/profile_step.py --json profile.json
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from machine import describe, machine  # noqa: E402

BATCH = 64
PRESET = "allconv-c"
SMOKE_PRESET = "tiny"


PHASES = ("forward", "loss", "metrics", "backward", "optimizer", "other")


def phase(name: str) -> str:
    """Which part of the step an op belongs to, from its name scope in the traced graph: the backward pass
    (ops under ``gradient_tape/``), the loss, the training metrics (Keras computes them on every batch, their
    state updates included), the optimiser's update, the model's forward pass, or other (the input, the step
    counter). Scopes are read in that order, so a metric's variable update counts as the metric's."""
    lowered = name.lower()
    if "gradient_tape" in lowered or "/gradients/" in lowered:
        return "backward"
    if "compile_loss" in lowered:
        return "loss"
    if any(part in lowered for part in ("/ssim/", "/psnr/", "compile_metrics", "metric")):
        return "metrics"
    if "adam" in lowered or "optimizer" in lowered:
        return "optimizer"
    if "statefulpartitionedcall/" in lowered and any(part in lowered for part in ("autoencoder", "classifier",
                                                                                  "segmenter", "encoder")):
        return "forward"
    return "other"


def op_stats(xplane: str) -> list[dict]:
    """The profiler's framework_op_stats rows: {type, operation, self_us, occurrences}."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    raw, ok = plugin.xspace_to_tools_data([xplane], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler could not read {xplane}")
    table = json.loads(raw)[0]
    columns = [c["id"] for c in table["cols"]]
    rows = []
    for row in table["rows"]:
        values = dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"])))
        if values.get("type") in (None, "IDLE"):
            continue
        rows.append({"type": values["type"], "operation": values["operation"], "self_us": float(values["total_self_time"]),
                     "occurrences": int(values["occurrences"] or 0)})
    return rows


def summarise(rows: list[dict], steps: int, top: int) -> dict:
    total = sum(r["self_us"] for r in rows) or 1.0
    phases = collections.Counter()
    types = collections.Counter()
    for r in rows:
        phases[phase(r["operation"])] += r["self_us"]
        types[r["type"]] += r["self_us"]
    return {
        "steps": steps,
        "ms_per_step": total / 1000 / steps,
        "phases": {k: phases[k] / total for k in PHASES},
        "op_types": [{"type": t, "share": us / total, "ms_per_step": us / 1000 / steps} for t, us in types.most_common(top)],
    }


def profile(kind: str, preset: str, steps: int, logdir: Path) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae import train

    trainer = train.Trainer(seed=0)
    with trainer.scope():
        model = ks.build(kind, preset)
    shape = model.arch.input_shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps * BATCH, *shape)).astype("float32")
    y = x if kind == "autoencoder" else rng.integers(0, model.arch.num_classes, steps * BATCH)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache().prefetch(2)

    class Profile(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                tf.profiler.experimental.start(str(logdir))

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                tf.profiler.experimental.stop()

    with tempfile.TemporaryDirectory() as run_dir:
        trainer.fit(model, ds, epochs=2, optimizer="adam", run_dir=run_dir, stage=f"profile-{kind}", verbose=0,
                    callbacks=[Profile()])
    traces = sorted(glob.glob(str(logdir / "**" / "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    return op_stats(traces[-1])  # the newest: a --keep folder may hold earlier runs' traces


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default="autoencoder,classifier")
    p.add_argument("--steps", type=int, default=16, help="profiled steps per kind (after a warm-up epoch of as many)")
    p.add_argument("--top", type=int, default=8, help="op types listed per kind")
    p.add_argument("--keep", type=Path, default=None, help="keep the traces here (TensorBoard --logdir)")
    p.add_argument("--smoke", action="store_true", help="seconds, not a measurement: the tiny preset, 2 steps")
    p.add_argument("--json", type=Path, default=None, help="also write the summaries to this file")
    args = p.parse_args(argv)
    preset, steps = (SMOKE_PRESET, 2) if args.smoke else (PRESET, args.steps)
    figures = machine()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            rows = profile(kind, preset, steps, base / kind)
            results[kind] = summarise(rows, steps, args.top)
    if args.smoke:
        print(f"smoke run: figures are not measurements ({preset} preset, {steps} steps)")
    print(describe(figures))
    for kind, s in results.items():
        ph = s["phases"]
        print(f"\n{kind} ({preset}, batch {BATCH}, float32): {s['ms_per_step']:.1f} ms of op self-time per step "
              "(summed over threads): "
              + ", ".join(f"{k} {ph[k]:.0%}" for k in PHASES))
        print("| op type | share of self-time | ms per step |\n|---|---:|---:|")
        for t in s["op_types"]:
            print(f"| {t['type']} | {t['share']:.1%} | {t['ms_per_step']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"smoke": args.smoke, "preset": preset, **figures, "kinds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
