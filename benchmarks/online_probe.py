"""What the online probe costs: one probed pre-training epoch against an unprobed one, side by side.

The quickstart's network (tiny preset, 32/64 channels, 28x28x1) pre-trains
for an epoch on N images with and without an :class:`OnlineProbe` of 1,000
labelled and 1,000 held-out images (the recipes' sizes); the two alternate,
repeated, and the probe's own seconds are read from its log. Prints the
machine's float32 matmul GFLOP/s and CPU flags beside the figures; ``--json``
writes them.

    python benchmarks/online_probe.py                 # 20,000 images, 3 repeats each
    python benchmarks/online_probe.py --smoke         # seconds: the script works
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from machine import describe, machine


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 512 images, 1 repeat, 200+200 probed")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    import keras

    import keras_skipae as ks
    from keras_skipae.probe.online import OnlineProbe

    n, repeats, probed = (512, 1, 200) if args.smoke else (args.images, args.repeats, 1000)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n + 2 * probed)
    images = rng.normal(0, 1, (n + 2 * probed, 28, 28, 1)).astype("float32")
    images += labels[:, None, None, None] * 0.1  # a little class signal for the probe to find
    x = images[:n]
    ae = ks.build("autoencoder", "tiny", input_shape=(28, 28, 1), widths=(32, 64), convs_per_stage=2,
                  corruption="masking", corruption_level=0.5)
    ae.compile(keras.optimizers.Adam(1e-3), "mse")
    ae.fit(x[:256], x[:256], batch_size=128, epochs=1, verbose=0)  # trace once before timing
    # a stage probes with one OnlineProbe over all its epochs: the first probed epoch builds the feature
    # model and chooses the penalty; the later ones reuse both. Unprobed and probed fits alternate.
    epochs = 1 if args.smoke else 3
    plain, first, later = [], [], []
    for _ in range(repeats):
        plain.append(_timed(lambda: ae.fit(x, x, batch_size=128, epochs=epochs, verbose=0)) / epochs)
        probe = OnlineProbe(images[n:n + probed], labels[n:n + probed], images[n + probed:], labels[n + probed:])
        ae.fit(x, x, batch_size=128, epochs=epochs, verbose=0, callbacks=[probe])
        first.append(probe.seconds[0])
        later += probe.seconds[1:]
    steady = statistics.median(later) if later else statistics.median(first)
    result = {
        **machine(),
        "images": n, "probed": [probed, probed], "repeats": repeats, "epochs_per_fit": epochs,
        "epoch_seconds": statistics.median(plain), "epoch_seconds_range": [min(plain), max(plain)],
        "first_probe_seconds": statistics.median(first), "probe_seconds": steady,
        "probe_seconds_range": [min(later or first), max(later or first)],
    }
    result["probe_share_of_epoch"] = round(steady / result["epoch_seconds"], 4)
    result["first_probe_share_of_epoch"] = round(result["first_probe_seconds"] / result["epoch_seconds"], 4)
    print(describe(result))
    print(f"pre-training epoch on {n} images: {result['epoch_seconds']:.2f} s (median of {repeats} fits of "
          f"{epochs} epochs, range {min(plain):.2f}-{max(plain):.2f})")
    print(f"probe ({probed} + {probed} images): first probed epoch {result['first_probe_seconds']:.2f} s "
          f"({100 * result['first_probe_share_of_epoch']:.1f}%), later epochs {steady:.2f} s, "
          f"{100 * result['probe_share_of_epoch']:.1f}% of an unprobed epoch")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
