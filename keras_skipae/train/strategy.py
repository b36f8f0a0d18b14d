"""Choosing a tf.distribute strategy and a mixed-precision policy by name.

``make_strategy("auto")`` mirrors over all local GPUs when there are several
and otherwise uses the default strategy; ``"mirrored"`` mirrors over the local
GPUs, or over the logical CPU devices when there are no GPUs (so distribution
can be tested on a CPU); ``"multi_worker"`` reads the cluster from ``TF_CONFIG``;
``"tpu"`` connects to the TPU the resolver finds; ``"one_device"`` pins to the
first GPU, else the CPU.

``resolve_mixed_precision("auto")`` picks ``mixed_float16`` on GPUs of compute
capability 7.0 or newer, ``mixed_bfloat16`` on CPUs with native bfloat16
(AVX512_BF16 or AMX), and float32 otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tensorflow as tf

from ..choices import CLUSTERS, PRECISIONS, STRATEGIES

#: what srun sets in each task of a Slurm job step; SlurmClusterResolver reads these
SLURM_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")
SLURM_PORT = 8888


def make_strategy(name: str = "auto", cluster: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute.Strategy`` for ``name`` (one of :data:`STRATEGIES`).

    ``cluster`` (``multi_worker`` only): where the cluster is described, see
    :func:`cluster_resolver`.

    >>> strategy = make_strategy("mirrored")
    >>> strategy.num_replicas_in_sync
    2
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    # one strategy object per kind and process: several MirroredStrategy instances over the
    # same devices reuse collective instance keys and can mix up their all-reduces
    if name in _STRATEGY_CACHE:
        return _STRATEGY_CACHE[name]
    strategy = _multi_worker(cluster) if name == "multi_worker" else _new_strategy(name)
    if strategy is not tf.distribute.get_strategy():  # the default strategy is never cached
        _STRATEGY_CACHE[name] = strategy
    return strategy


_STRATEGY_CACHE: dict[str, tf.distribute.Strategy] = {}


def _new_strategy(name: str) -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.NotFoundError) as exc:
            raise RuntimeError(
                f"no TPU found ({exc}); use strategy 'auto' on CPUs and GPUs, or set TPU_NAME"
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    device = "/gpu:0" if gpus else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)


def cluster_resolver(cluster: str = "auto"):
    """The cluster of a multi-worker run: a TF_CONFIG or a Slurm cluster resolver.

    Args:
        cluster: ``tf_config`` reads ``TF_CONFIG`` (with or without a ``chief``:
            Vertex AI and Kubeflow's TFJob give one, Ray Train workers only);
            ``slurm`` reads the variables ``srun`` sets in each task (one task
            per worker; port ``SKIPAE_SLURM_PORT``, default 8888; on GPU nodes
            each task gets its share of ``SLURM_GPUS_ON_NODE``); ``auto`` takes
            ``TF_CONFIG`` when it is set, else Slurm's variables when they are.

    Returns:
        A ``tf.distribute.cluster_resolver.ClusterResolver``.

    Raises:
        ValueError: an unknown ``cluster``, a ``TF_CONFIG`` that is not valid
            JSON of a cluster and a task, or neither description present.
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; choose one of: {', '.join(CLUSTERS)}")
    has_slurm = all(v in os.environ for v in SLURM_VARIABLES)
    if cluster == "auto":
        cluster = "tf_config" if "TF_CONFIG" in os.environ or not has_slurm else "slurm"
    if cluster == "slurm":
        if not has_slurm:
            missing = [v for v in SLURM_VARIABLES if v not in os.environ]
            raise ValueError(f"cluster: slurm, but {', '.join(missing)} not set: start one task per worker with srun "
                             "inside the job (see docs/cluster.md)")
        tasks = _slurm_tasks_per_node()
        gpus = int(os.environ.get("SLURM_GPUS_ON_NODE", "0") or 0)
        port = int(os.environ.get("SKIPAE_SLURM_PORT", SLURM_PORT))
        if gpus:
            return tf.distribute.cluster_resolver.SlurmClusterResolver(
                port_base=port, gpus_per_node=gpus, gpus_per_task=max(1, gpus // tasks), auto_set_gpu=True)
        # CPU nodes: one "device slot" per task, and leave the devices alone
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port, gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise ValueError("multi_worker needs a cluster: set TF_CONFIG (JSON of the cluster and this task) or run "
                         "under Slurm's srun (cluster: slurm); see docs/cluster.md")
    try:
        parsed = json.loads(config)
        parsed["cluster"], parsed["task"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            "TF_CONFIG is not valid: expected JSON like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}} '
            f"({exc})"
        ) from None
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def _slurm_tasks_per_node() -> int:
    """The most tasks on one node, from ``SLURM_STEP_TASKS_PER_NODE`` (``2(x3),1`` -> 2)."""
    counts = [int(part.split("(")[0]) for part in os.environ["SLURM_STEP_TASKS_PER_NODE"].split(",") if part]
    return max(counts or [1])


def _multi_worker(cluster: str = "auto") -> tf.distribute.Strategy:
    resolver = cluster_resolver(cluster)  # before anything initialises the TF runtime
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as exc:
        raise RuntimeError(
            f"{exc}: create the multi_worker strategy (Trainer) before any other TensorFlow work in the process"
        ) from None


def cpu_supports_bfloat16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512_BF16 or AMX_BF16, from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_mixed_precision(policy: str | None) -> str:
    """The dtype policy name for ``policy`` (None and "float32" mean float32; "auto" picks by hardware)."""
    if policy in (None, "float32", "none"):
        return "float32"
    if policy not in PRECISIONS:
        raise ValueError(f"unknown mixed_precision {policy!r}; choose one of: None, {', '.join(PRECISIONS)}")
    if policy != "auto":
        return policy
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        if details.get("compute_capability", (0, 0)) >= (7, 0):
            return "mixed_float16"
        return "float32"
    return "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(role, ())) for role in ("chief", "worker")))


def worker_info(strategy: tf.distribute.Strategy) -> tuple[int, bool]:
    """(task index, is_chief) for this process; (0, True) outside multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                                 and "chief" not in resolver.cluster_spec().as_dict())
    return int(task_id), bool(is_chief)
