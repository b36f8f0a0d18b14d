"""The machine line every benchmark prints beside its figures (float32 matmul GFLOP/s, the CPU's vector flags), and
the peak-memory reading the benchmarks that measure memory share."""

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


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's ``VmHWM`` starts afresh when a process execs; ``ru_maxrss`` does not: it keeps the peak of the
    process that forked this one, so a benchmark's child started by a parent holding TensorFlow would report
    the parent's memory, not its own. ``ru_maxrss`` only where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
