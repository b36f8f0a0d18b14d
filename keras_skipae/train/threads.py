"""TensorFlow's CPU thread pools for one training process: set before the runtime starts, and recorded.

TensorFlow runs each op on an intra-op pool (the threads one convolution or
matmul splits over) and independent ops side by side on an inter-op pool;
both default to one thread per CPU the process may use. ``"auto"`` keeps
those defaults; an integer sets the pool's size. Either way :func:`apply_threads`
returns what the process runs with, which the runner writes to the run's
``environment.json``.

The pools can only be sized before TensorFlow's runtime starts in the process
(its first op, device listing or strategy): :class:`~keras_skipae.train.Trainer`
applies them first thing, and a second request for other sizes in the same
process is refused with what to do.

>>> apply_threads(intra_op="auto", inter_op=1)
{'intra_op_threads': 2, 'inter_op_threads': 1, 'cpus': 2, 'requested': {'intra_op': 'auto', 'inter_op': 1}, ...}
"""

from __future__ import annotations

import os

import tensorflow as tf

AUTO = "auto"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _size(value, what: str) -> int:
    if value in (None, AUTO):
        return 0  # TensorFlow's default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"trainer.{what}_threads: {value!r} is not 'auto' or an integer >= 1")
    return value


def apply_threads(intra_op: int | str = AUTO, inter_op: int | str = AUTO) -> dict:
    """Size TensorFlow's intra- and inter-op pools (``"auto"``: one thread per usable CPU, TensorFlow's own
    default); returns the record of what the process runs with.

    Raises ``RuntimeError`` when TensorFlow's runtime already started in this
    process with other sizes (they cannot change then).
    """
    wanted = (_size(intra_op, "intra_op"), _size(inter_op, "inter_op"))
    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    if wanted != current:
        try:
            threading.set_intra_op_parallelism_threads(wanted[0])
            threading.set_inter_op_parallelism_threads(wanted[1])
        except RuntimeError:
            raise RuntimeError(
                f"trainer threads (intra_op {intra_op}, inter_op {inter_op}): TensorFlow already started in this "
                f"process with intra_op {current[0] or AUTO}, inter_op {current[1] or AUTO}, and its thread pools "
                "cannot change now; create the Trainer before any other TensorFlow work, or run each setting in "
                "its own process (skipae run does)"
            ) from None
    cpus = usable_cpus()
    # read back from TensorFlow: what the process runs with, not what was asked
    intra, inter = threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()
    return {
        "intra_op_threads": intra or cpus,
        "inter_op_threads": inter or cpus,
        "cpus": cpus,
        "requested": {"intra_op": intra_op, "inter_op": inter_op},
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default (the CPU's best)"),
    }
