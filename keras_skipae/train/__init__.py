"""Training: strategies, mixed precision, optimisers, callbacks and metrics.

>>> from keras_skipae import train
>>> trainer = train.Trainer(strategy="auto", mixed_precision=None, seed=0)
>>> with trainer.scope():
...     model = keras_skipae.build("autoencoder", "tiny")
>>> trainer.fit(model, train_ds, val_ds, epochs=3, run_dir="runs/demo/pretrain")
"""

import importlib as _importlib

# public name -> the submodule that defines it, imported on first use (PEP 562): loading a saved model
# needs the schedules and metrics, not the trainer, its callbacks or the data pipelines
_LAZY = {
    "AtomicBackupAndRestore": ".callbacks", "HistoryCSV": ".callbacks", "ModelCheckpoints": ".callbacks",
    "ReconstructionImages": ".callbacks", "TerminateOnNaN": ".callbacks", "TrainingDiverged": ".callbacks",
    "save_model_atomic": ".callbacks", "write_json_atomic": ".callbacks",
    "PSNR": ".metrics", "SSIM": ".metrics", "MeanIoUIgnore": ".metrics", "PixelAccuracy": ".metrics",
    "loss_for": "..kinds", "metrics_for": "..kinds",
    "STRATEGIES": ".strategy", "cpu_supports_bfloat16": ".strategy", "make_strategy": ".strategy",
    "resolve_mixed_precision": ".strategy",
    "OptimizerSpec": ".trainer", "Trainer": ".trainer", "make_optimizer": ".trainer", "set_seed": ".trainer",
    "WarmupSchedule": ".schedules",
    "METRIC_NAMES": "..kinds",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "METRIC_NAMES",
    "PSNR",
    "SSIM",
    "STRATEGIES",
    "AtomicBackupAndRestore",
    "HistoryCSV",
    "MeanIoUIgnore",
    "ModelCheckpoints",
    "OptimizerSpec",
    "PixelAccuracy",
    "ReconstructionImages",
    "TerminateOnNaN",
    "Trainer",
    "TrainingDiverged",
    "WarmupSchedule",
    "cpu_supports_bfloat16",
    "loss_for",
    "make_optimizer",
    "make_strategy",
    "metrics_for",
    "resolve_mixed_precision",
    "save_model_atomic",
    "set_seed",
    "write_json_atomic",
]
