"""The machine line every benchmark prints beside its figures: float32 matmul GFLOP/s and the CPU's vector flags."""

from __future__ import annotations

import time


def machine() -> dict:
    """float32 2048x2048 matmul GFLOP/s under TensorFlow (best of 5) and the CPU's vector flags."""
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    tf.matmul(a, a).numpy()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        tf.matmul(a, a).numpy()
        best = min(best, time.perf_counter() - start)
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            line = next(line for line in f if line.startswith("flags"))
        flags = sorted({f for f in line.split() if f.startswith(("avx", "amx", "fma"))})
    except (OSError, StopIteration):
        pass
    return {"matmul_gflops": round(2 * 2048**3 / best / 1e9, 1), "cpu_flags": flags}
