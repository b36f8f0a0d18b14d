"""TensorFlow's CPU thread pools for one training process: set before the runtime starts, and recorded.

TensorFlow runs each op on an intra-op pool (the threads one convolution or
matmul splits over) and independent ops side by side on an inter-op pool;
both default to one thread per CPU the process may use. ``"auto"`` leaves a
pool as it is (TensorFlow's default, or what the process set before); an
integer sets the pool's size. Either way :func:`apply_threads`
returns what the process runs with, which the runner writes to the run's
``environment.json``.

The pools can only be sized before TensorFlow's runtime starts in the process
(its first op, device listing or strategy): :class:`~keras_skipae.train.Trainer`
applies them first thing, and a later request for another size in the same
process is refused with what to do.

>>> apply_threads(intra_op="auto", inter_op=1)
{'intra_op_threads': 2, 'inter_op_threads': 1, 'cpus': 2, 'requested': {'intra_op': 'auto', 'inter_op': 1},
 'onednn': True, ...}
"""

from __future__ import annotations

import os

import tensorflow as tf

try:  # where TensorFlow says whether it runs its oneDNN kernels; private, so read with care
    from tensorflow.python.util import _pywrap_util_port
except ImportError:  # a TensorFlow build without it
    _pywrap_util_port = None

AUTO = "auto"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs its oneDNN kernels (None where TensorFlow cannot say).

    TensorFlow decides at start-up from ``TF_ENABLE_ONEDNN_OPTS`` and the CPU
    (by default only CPUs with AVX-512 VNNI, bfloat16 or AMX get them); the
    ``skipae`` command asks for them on x86-64 (:func:`keras_skipae.tf_startup.prefer_onednn`).
    """
    if _pywrap_util_port is None or not hasattr(_pywrap_util_port, "IsMklEnabled"):
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _size(value, what: str) -> int | None:
    """The pool size asked for: None for ``auto`` (leave the pool as it is), else an integer >= 1."""
    if value in (None, AUTO):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"trainer.{what}_threads: {value!r} is not 'auto' or an integer >= 1")
    return value


def apply_threads(intra_op: int | str = AUTO, inter_op: int | str = AUTO) -> dict:
    """Size TensorFlow's intra- and inter-op pools; returns the record of what the process runs with.

    ``"auto"`` leaves a pool as it is: TensorFlow's default (one thread per
    usable CPU, or ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``)
    unless the process set it before. Raises ``RuntimeError`` when an integer
    asks for another size after TensorFlow's runtime started in this process
    (the pools cannot change then).
    """
    threading = tf.config.threading
    getters = (threading.get_intra_op_parallelism_threads, threading.get_inter_op_parallelism_threads)
    setters = (threading.set_intra_op_parallelism_threads, threading.set_inter_op_parallelism_threads)
    for value, what, get, set_ in zip((intra_op, inter_op), ("intra_op", "inter_op"), getters, setters):
        wanted = _size(value, what)
        if wanted is None or wanted == get():
            continue
        try:
            set_(wanted)
        except RuntimeError:
            raise RuntimeError(
                f"trainer.{what}_threads {wanted}: TensorFlow already started in this process with "
                f"{what} {get() or AUTO}, and its thread pools cannot change now; create the Trainer before any "
                "other TensorFlow work, or run each setting in its own process (skipae run does)"
            ) from None
    cpus = usable_cpus()

    def effective(configured: int, variable: str) -> int:
        # read back from TensorFlow; 0 means its default, which an environment variable may set
        if configured:
            return configured
        try:
            return int(os.environ.get(variable, "0")) or cpus
        except ValueError:
            return cpus

    return {
        "intra_op_threads": effective(getters[0](), "TF_NUM_INTRAOP_THREADS"),
        "inter_op_threads": effective(getters[1](), "TF_NUM_INTEROP_THREADS"),
        "cpus": cpus,
        "requested": {"intra_op": intra_op, "inter_op": inter_op},
        "onednn": onednn_enabled(),
        "onednn_variable": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default (the CPU's best)"),
    }
