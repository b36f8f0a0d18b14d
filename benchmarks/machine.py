"""The machine line every benchmark prints beside its figures (float32 matmul GFLOP/s, the CPU's vector flags, whether
TensorFlow runs its oneDNN kernels), the kernel choice every benchmark starts TensorFlow with (the ``skipae``
command's), and the peak-memory reading the benchmarks that measure memory share."""

from __future__ import annotations

import os
import time

from keras_skipae.tf_startup import prefer_onednn

# every benchmark imports this module before TensorFlow: TensorFlow then starts on the kernels the skipae command
# starts it on (oneDNN on x86-64 CPUs unless TF_ENABLE_ONEDNN_OPTS is set), in the script and in its child processes
prefer_onednn()


def machine() -> dict:
    """float32 2048x2048 matmul GFLOP/s under TensorFlow (best of 5), the CPU's vector flags, oneDNN on or off."""
    import tensorflow as tf

    from keras_skipae.train.threads import onednn_enabled

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
    # an instruction-set cap (ONEDNN_MAX_CPU_ISA for oneDNN, in TensorFlow and PyTorch alike; ATEN_CPU_CAPABILITY for
    # PyTorch's own kernels) runs an AVX-512 CPU on its AVX2 code paths: the flags above are the CPU's, not the cap's
    caps = {name: os.environ[name] for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(name)}
    return {"matmul_gflops": round(2 * 2048**3 / best / 1e9, 1), "cpu_flags": flags, "onednn": onednn_enabled(),
            "isa_caps": caps}


def describe(figures: dict) -> str:
    """The machine line: ``machine: float32 matmul N GFLOP/s, flags ..., oneDNN on|off``."""
    onednn = {True: "on", False: "off"}.get(figures.get("onednn"), "unknown")
    caps = figures.get("isa_caps") or {}
    capped = "".join(f", capped by {name}={value}" for name, value in caps.items())
    return (f"machine: float32 matmul {figures['matmul_gflops']} GFLOP/s, flags {' '.join(figures['cpu_flags'])}, "
            f"TensorFlow's oneDNN kernels {onednn}{capped}")


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
