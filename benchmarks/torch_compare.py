"""Training speed of the same auto-encoder in skipae's Trainer, a hand-written Keras ``fit`` and PyTorch eager.

The network is the ``allconv-c`` skip auto-encoder (masking corruption, six
3x3 convolutions, six transposed ones, two skips merged by sum then ReLU),
batch 64, Adam, MSE, float32, on in-memory random images (the input pipeline
is not what is measured). The PyTorch model is built by walking the Keras
model's graph layer by layer (Conv2D -> ``nn.Conv2d``, Conv2DTranspose ->
``nn.ConvTranspose2d``, Add, ReLU, the masking corruption), and the two
parameter counts and every layer's output shape must agree, so both sides
train the same network (same layers, shapes and arithmetic; PyTorch pads a
stride-2 convolution one pixel on each side where TensorFlow's ``same`` pads
the bottom and right, which moves no work). PyTorch runs channels-first (its
default) and channels-last.

Sides, each in a fresh process per repeat, repeats alternating side by side
(trainer, keras, torch, torch channels-last, trainer, ...): one warm-up epoch,
then ``--images`` images timed (for the Keras sides from the second epoch's
start to the end of training, so every callback's epoch-end work counts). Reported per side: median images/s over the
repeats, the range and spread ((max - min) / median), and the ratio of each
Keras side to PyTorch eager (channels-first) per repeat and of the medians.
Each timed run also records the share of CPU time the hypervisor took from
this machine (``steal`` in /proc/stat) while it ran, and the process's CPU time
over all its threads: images per CPU-second (CPU time per image, spin-waiting
included, so comparable between the TensorFlow sides but not between
TensorFlow and PyTorch, whose OpenMP threads spin while they wait) and cores
busy (CPU-seconds per wall second). On a machine that sometimes keeps fewer
of a process's cores busy at once (seen on a 2-core virtual machine: the same
CPU time per image, 1.1-1.5 cores busy instead of 1.9), images per second
moves between repeats far more than images per CPU-second; the two ratios
are printed side by side.

Targets (issue 19): the trainer at least 0.97x the hand-written ``fit``; at
least 1.0x PyTorch eager on an AVX2-only CPU (1.15x with AVX-512).

    python benchmarks/torch_compare.py                 # 512 images, 3 repeats: about 8 minutes on 2 cores
    python benchmarks/torch_compare.py --smoke         # seconds: the script works (tiny preset, 64 images, 1 repeat)
    python benchmarks/torch_compare.py --json out.json
    python benchmarks/torch_compare.py --xla           # also the trainer with its step compiled by XLA
    python benchmarks/torch_compare.py --eigen         # also the trainer with TensorFlow's oneDNN kernels off

The script starts TensorFlow as the ``skipae`` command does: with its oneDNN kernels on x86-64 CPUs
(``machine.py``); ``--eigen`` adds the trainer without them, side by side.

Needs PyTorch (``pip install torch``, CPU build); without it the PyTorch sides are left out and said so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from machine import describe, machine  # noqa: E402  (before TensorFlow: its kernel choice)

BATCH = 64
PRESET = "allconv-c"
SMOKE_PRESET = "tiny"
SIDES = ("trainer", "keras", "torch", "torch_cl")
#: sides run only when asked: --xla, the trainer with its training step compiled by XLA (Trainer(jit_compile=True));
#: --eigen, the trainer on TensorFlow's default kernels where oneDNN is not on by default (TF_ENABLE_ONEDNN_OPTS=0)
EXTRA_SIDES = ("trainer_xla", "trainer_eigen")


def _steal() -> tuple[int, int]:
    """(steal jiffies, all jiffies) of the whole machine from /proc/stat; (0, 0) where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def _images(preset: str, n: int):
    import numpy as np

    import keras_skipae as ks

    arch = ks.build("autoencoder", preset).arch
    return np.random.default_rng(0).standard_normal((n, *arch.input_shape)).astype("float32")


# ------------------------------------------------------------------------------ Keras sides
def time_keras(preset: str, images: int, trainer: bool, xla: bool = False) -> tuple[float, float]:
    """(images per second, images per CPU-second) of the second of two epochs, timed from its start to the end of
    training, so that the epoch-end work of every callback (the trainer's checkpoints and logs run after this
    one's) counts."""
    import tempfile

    import keras
    import tensorflow as tf

    import keras_skipae as ks

    x = _images(preset, images)
    marks = {}
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: marks.setdefault("start", _clocks()) if epoch == 1 else None,
        on_train_end=lambda logs: marks.setdefault("end", _clocks()))
    if trainer:
        from keras_skipae import train
        t = train.Trainer(seed=0, jit_compile=xla)
        with t.scope():
            model = ks.build("autoencoder", preset)
        ds = tf.data.Dataset.from_tensor_slices((x, x)).batch(BATCH).cache().prefetch(2)
        with tempfile.TemporaryDirectory() as run_dir:
            t.fit(model, ds, epochs=2, optimizer="adam", run_dir=run_dir, stage="bench", verbose=0, callbacks=[timer])
    else:
        keras.utils.set_random_seed(0)
        model = ks.build("autoencoder", preset)
        model.compile("adam", "mse", jit_compile=False)  # as the trainer compiles on every device
        xt = tf.constant(x)
        model.fit(xt, xt, batch_size=BATCH, epochs=2, verbose=0, callbacks=[timer])
    return _rates(images, marks["start"], marks["end"])


def _clocks() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds over all its threads)."""
    return time.perf_counter(), time.process_time()


def _rates(images: int, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """(images per wall second, images per CPU-second of the whole process) between two :func:`_clocks` readings."""
    return images / (end[0] - start[0]), images / max(end[1] - start[1], 1e-9)


# ------------------------------------------------------------------------------ PyTorch side
def torch_model(keras_model):
    """The Keras auto-encoder as a torch.nn.Module, layer for layer (NCHW)."""
    import torch
    from torch import nn

    layers, order, shapes = nn.ModuleDict(), [], {}
    for layer in keras_model.layers:
        kind = type(layer).__name__
        cfg = layer.get_config()
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        names = [t.name for t in inputs]
        if kind == "InputLayer":
            continue
        if kind in ("Conv2D", "Conv2DTranspose"):
            (k, k2), (s, s2) = cfg["kernel_size"], cfg["strides"]
            if (k, s) != (k2, s2) or cfg["padding"] != "same" or tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) \
                    or cfg.get("groups", 1) != 1:
                raise ValueError(f"{layer.name}: only square 'same' convolutions without dilation or groups are mapped")
            c_in, c_out = layer.input.shape[-1], cfg["filters"]
            if kind == "Conv2D":
                module = nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=cfg["use_bias"])
            else:
                module = nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=k // 2, output_padding=s - 1,
                                            bias=cfg["use_bias"])
            layers[layer.name] = module
            if cfg["activation"] not in ("linear", None):
                raise ValueError(f"{layer.name}: fused activation {cfg['activation']} not mapped")
        elif kind == "Activation":
            if cfg["activation"] not in ("relu", "linear"):
                raise ValueError(f"{layer.name}: activation {cfg['activation']} not mapped")
        elif kind == "Add" and len(names) != 2:
            raise ValueError(f"{layer.name}: an Add of {len(names)} inputs is not mapped")
        elif kind not in ("Add", "MaskingCorruption"):
            raise ValueError(f"{layer.name}: layer type {kind} not mapped to PyTorch")
        order.append((layer.name, kind, cfg, names, layer.output.name))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def forward(self, x):
            values = {keras_model.inputs[0].name: x}
            shapes.clear()
            for name, kind, cfg, names, out in order:
                args = [values[n] for n in names]
                if kind in ("Conv2D", "Conv2DTranspose"):
                    y = self.layers[name](args[0])
                elif kind == "Activation":
                    y = torch.relu(args[0]) if cfg["activation"] == "relu" else args[0]
                elif kind == "Add":
                    y = args[0] + args[1]
                else:  # masking corruption while training: each pixel zeroed with probability `level`
                    y = args[0] * (torch.rand_like(args[0][:, :1]) >= cfg["level"]) if self.training else args[0]
                values[out] = y
                shapes[out] = tuple(y.shape)
            return values[keras_model.outputs[0].name]

    net = Net()
    net.shapes = shapes  # each Keras tensor's shape in the last forward pass (NCHW)
    return net


def same_network(keras_model, net) -> None:
    """Refuses a PyTorch net that is not the Keras model: parameter count and every layer's output shape."""
    import torch

    n_torch = sum(p.numel() for p in net.parameters())
    if n_torch != keras_model.count_params():
        raise RuntimeError(f"not the same network: PyTorch {n_torch} parameters, Keras {keras_model.count_params()}")
    h, w, c = keras_model.arch.input_shape
    with torch.no_grad():
        net.eval()
        net(torch.zeros(2, c, h, w))
        net.train()
    for layer in keras_model.layers[1:]:
        b, hh, ww, cc = layer.output.shape
        if net.shapes.get(layer.output.name) != (2, cc, hh, ww):
            raise RuntimeError(f"not the same network: {layer.name} gives {net.shapes.get(layer.output.name)} in "
                               f"PyTorch, (2, {cc}, {hh}, {ww}) in Keras")


def time_torch(preset: str, images: int, channels_last: bool) -> tuple[float, float]:
    import torch

    import keras_skipae as ks

    torch.manual_seed(0)
    keras_model = ks.build("autoencoder", preset)
    net = torch_model(keras_model)
    same_network(keras_model, net)
    x = torch.from_numpy(_images(preset, images)).permute(0, 3, 1, 2).contiguous()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()

    def epoch():
        for i in range(0, images, BATCH):
            batch = x[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(net(batch), batch)
            loss.backward()
            opt.step()

    epoch()
    start = _clocks()
    epoch()
    return _rates(images, start, _clocks())


# ------------------------------------------------------------------------------ driver
def child(side: str, preset: str, images: int) -> dict:
    steal0, all0 = _steal()
    if side in ("trainer", "keras", "trainer_xla", "trainer_eigen"):
        rate, per_cpu = time_keras(preset, images, trainer=side != "keras", xla=side == "trainer_xla")
    else:
        rate, per_cpu = time_torch(preset, images, channels_last=side == "torch_cl")
    steal1, all1 = _steal()
    return {"side": side, "images_per_s": rate, "images_per_cpu_s": per_cpu,
            "busy_cpus": rate / per_cpu,  # CPU-seconds the process ran per wall second: how many cores it kept busy
            "steal_share": (steal1 - steal0) / max(1, all1 - all0)}


def run_child(side: str, preset: str, images: int) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--preset", preset, "--images", str(images)]
    env = {**os.environ, **({"TF_ENABLE_ONEDNN_OPTS": "0"} if side == "trainer_eigen" else {})}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent, env=env)
    if done.returncode:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="timed images per side and repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preset", default=None, help=f"default {PRESET} (--smoke: {SMOKE_PRESET})")
    p.add_argument("--smoke", action="store_true", help="seconds, not a measurement: tiny preset, 64 images, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--xla", action="store_true", help="also time the trainer with its step compiled by XLA")
    p.add_argument("--eigen", action="store_true",
                   help="also time the trainer with TensorFlow's oneDNN kernels off (TF_ENABLE_ONEDNN_OPTS=0)")
    p.add_argument("--child", choices=SIDES + EXTRA_SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    preset = args.preset or (SMOKE_PRESET if args.smoke else PRESET)
    if args.child:
        print(json.dumps(child(args.child, preset, args.images)))
        return 0
    images, repeats = (BATCH, 1) if args.smoke else (args.images, args.repeats)
    sides = list(SIDES)
    if importlib.util.find_spec("torch") is None:
        sides = ["trainer", "keras"]
        print("PyTorch is not installed: its sides are left out (pip install torch, CPU build)")
    if args.xla:
        sides.insert(1, "trainer_xla")
    if args.eigen:
        sides.insert(1, "trainer_eigen")
    runs = {side: [] for side in sides}
    for repeat in range(repeats):
        for side in sides:
            # a measurement runs each side in a fresh process; the smoke run stays in this one (seconds)
            result = child(side, preset, images) if args.smoke else run_child(side, preset, images)
            runs[side].append(result)
            print(f"repeat {repeat + 1}: {side:9s} {result['images_per_s']:7.1f} img/s  "
                  f"{result['images_per_cpu_s']:6.1f} img/CPU-s  {result['busy_cpus']:.2f} cores busy  "
                  f"(steal {result['steal_share']:.0%})", flush=True)

    figures = machine()
    rates = {s: [r["images_per_s"] for r in rs] for s, rs in runs.items()}
    per_cpu = {s: [r["images_per_cpu_s"] for r in rs] for s, rs in runs.items()}
    med = {s: statistics.median(v) for s, v in rates.items()}
    med_cpu = {s: statistics.median(v) for s, v in per_cpu.items()}

    def spread(v):
        return round((max(v) - min(v)) / statistics.median(v), 3)

    summary = {s: {"median": round(med[s], 1), "min": round(min(v), 1), "max": round(max(v), 1),
                   "spread_of_median": spread(v), "per_cpu_s_median": round(med_cpu[s], 2),
                   "per_cpu_s_spread_of_median": spread(per_cpu[s]),
                   "busy_cpus_per_repeat": [round(r["busy_cpus"], 2) for r in runs[s]]} for s, v in rates.items()}
    pairs = [("trainer", "keras"), ("trainer_xla", "trainer"), ("trainer", "trainer_eigen")]
    if "torch" in rates:
        pairs += [(s, "torch") for s in ("trainer", "keras", "trainer_xla", "trainer_eigen") if s in rates]
    pairs = [(a, b) for a, b in pairs if a in rates and b in rates]
    ratios = {f"{a}/{b}": [round(x / y, 3) for x, y in zip(rates[a], rates[b])] for a, b in pairs}
    cpu_ratios = {f"{a}/{b}": [round(x / y, 3) for x, y in zip(per_cpu[a], per_cpu[b])] for a, b in pairs}
    if args.smoke:
        print("smoke run: figures are not measurements")
    print(describe(figures))
    print(f"\n{preset} auto-encoder, batch {BATCH}, float32, {images} images timed, {repeats} repeat(s)")
    print("| side | median img/s | range | spread | img per CPU-second | its spread | cores busy per repeat |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    for s, v in summary.items():
        print(f"| {s} | {v['median']:.1f} | {v['min']:.1f}-{v['max']:.1f} | {v['spread_of_median']:.0%} "
              f"| {v['per_cpu_s_median']:.1f} | {v['per_cpu_s_spread_of_median']:.0%} "
              f"| {', '.join(f'{b:.2f}' for b in v['busy_cpus_per_repeat'])} |")
    for name, values in ratios.items():
        a, b = name.split("/")
        print(f"{name}: img/s per repeat {', '.join(f'{r:.2f}' for r in values)}; of the medians {med[a] / med[b]:.2f}"
              f" | img per CPU-second per repeat {', '.join(f'{r:.2f}' for r in cpu_ratios[name])}; of the medians "
              f"{med_cpu[a] / med_cpu[b]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"smoke": args.smoke, "preset": preset, "images": images, "repeats": repeats,
                                         **figures, "sides": summary, "runs": runs, "ratios": ratios,
                                         "ratios_per_cpu_s": cpu_ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
