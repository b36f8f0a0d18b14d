"""Where a multi-worker run finds its cluster: TF_CONFIG (with or without a chief) or Slurm's variables."""

import json

import pytest

from keras_skipae.train.strategy import SLURM_VARIABLES, cluster_resolver

SLURM = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NODELIST": "gpu[01-02]",
         "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}


@pytest.fixture
def clean(monkeypatch):
    for name in ("TF_CONFIG", "SLURM_GPUS_ON_NODE", "SKIPAE_SLURM_PORT") + SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_tf_config_with_a_chief(clean):
    clean.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                                          "task": {"type": "worker", "index": 1}}))
    r = cluster_resolver("auto")
    assert r.cluster_spec().as_dict() == {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    assert (r.task_type, r.task_id) == ("worker", 1)


def test_tf_config_of_workers_only(clean):
    clean.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}))
    r = cluster_resolver("tf_config")
    assert r.cluster_spec().as_dict() == {"worker": ["a:1", "b:2"]} and r.task_id == 0


def test_slurm_on_cpu_nodes(clean):
    for k, v in SLURM.items():
        clean.setenv(k, v)
    clean.setenv("SKIPAE_SLURM_PORT", "23456")
    r = cluster_resolver("auto")                      # no TF_CONFIG: Slurm's variables
    assert r.cluster_spec().as_dict() == {"worker": ["gpu01:23456", "gpu01:23457", "gpu02:23456", "gpu02:23457"]}
    assert (r.task_type, r.task_id) == ("worker", 1)


def test_tf_config_wins_under_auto_and_slurm_can_be_forced(clean):
    for k, v in SLURM.items():
        clean.setenv(k, v)
    clean.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["x:1"]}, "task": {"type": "worker", "index": 0}}))
    assert cluster_resolver("auto").cluster_spec().as_dict() == {"worker": ["x:1"]}
    assert len(cluster_resolver("slurm").cluster_spec().as_dict()["worker"]) == 4


@pytest.mark.parametrize("cluster, env, message", [
    ("slurm", {}, "SLURM_PROCID"),
    ("tf_config", {}, "set TF_CONFIG"),
    ("tf_config", {"TF_CONFIG": "{not json"}, "TF_CONFIG is not valid"),
    ("kubernetes", {}, "unknown cluster"),
])
def test_a_missing_or_bad_cluster_says_what_to_set(clean, cluster, env, message):
    for k, v in env.items():
        clean.setenv(k, v)
    with pytest.raises(ValueError, match=message):
        cluster_resolver(cluster)
