"""The choice lists outside the architecture, each written once: training, probing, tuning.

The recipe schema, the command line's options, the trainer, the probe and the
tuner all read these; the architecture's own choices (downsampling, merge,
corruption, activations, model kinds) are in :mod:`keras_skipae.arch`.
"""

from __future__ import annotations

from typing import Literal, get_args

Strategy = Literal["auto", "mirrored", "multi_worker", "tpu", "one_device"]
#: where a multi-worker run learns its cluster: TF_CONFIG (Vertex AI, Kubeflow, Ray, by hand) or Slurm's variables
Cluster = Literal["auto", "tf_config", "slurm"]
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16", "auto"]
OptimizerName = Literal["sgd", "adam", "adamw"]
Schedule = Literal["constant", "step", "cosine"]
#: where a pre-training stage corrupts its inputs: in the model's layer, in the data pipeline, or nowhere
CorruptionWhere = Literal["model", "pipeline", "none"]
Pooling = Literal["avg", "max", "avgmax", "flatten"]
TuneAlgorithm = Literal["random", "bayesian", "hyperband"]
TuneObjective = Literal["probe_accuracy", "val_reconstruction_loss"]

STRATEGIES = get_args(Strategy)
CLUSTERS = get_args(Cluster)
PRECISIONS = get_args(Precision)
OPTIMIZERS = get_args(OptimizerName)
SCHEDULES = get_args(Schedule)
CORRUPTION_MODES = get_args(CorruptionWhere)
POOLINGS = get_args(Pooling)
TUNE_ALGORITHMS = get_args(TuneAlgorithm)
TUNE_OBJECTIVES = get_args(TuneObjective)
