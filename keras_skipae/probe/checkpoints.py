"""What to probe: auto-encoder checkpoints found in run directories, files or memory.

Runs are read only through :class:`keras_skipae.runs.RunDir`: its finished
stages, each stage's periodic checkpoints and ``history.csv`` (for the
validation loss of each checkpoint's epoch), and the corruption each stage
recorded when its data pipeline, not its model, corrupted the inputs.

>>> [c.name for c in find_checkpoints("runs/pitfall/skips-on_moderate")]
['skips-on_moderate@e002', 'skips-on_moderate@e004', ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import keras

from ..kinds import KINDS
from ..runs import CHECKPOINTS_DIR, MODEL_FILE, RunDir, checkpoint_epoch, stage_of
from ..saving import load

Source = Union[str, Path, keras.Model]


def arch_info(arch) -> dict:
    """``skips``, ``corruption``, ``corruption_level`` as a model's own architecture states them."""
    return {"skips": arch.skips, "corruption": arch.corruption, "corruption_level": arch.corruption_level}


@dataclass
class Checkpoint:
    """One auto-encoder to probe: ``run`` name, ``epoch`` (None if unknown), a path or a model."""

    run: str
    epoch: int | None
    source: Source
    val_loss: float | None = None
    corruption: dict | None = None  # training corruption when the model's arch does not record it

    def arch_info(self, arch) -> dict:
        """``skips``, ``corruption``, ``corruption_level`` of this checkpoint's training."""
        return {**arch_info(arch), **(self.corruption or {})}

    @property
    def name(self) -> str:
        return f"{self.run}@e{self.epoch:03d}" if self.epoch is not None else self.run

    def load(self) -> keras.Model:
        if isinstance(self.source, keras.Model):
            return self.source
        return load(self.source, compile=False)


def _file_corruption(item: Any) -> dict | None:
    """The recorded training corruption of the stage a ``.keras`` file belongs to; None for models in memory.

    See :attr:`keras_skipae.runs.StageResult.training_corruption`: set only for
    stages whose data pipeline corrupted the inputs (the model's arch then says "none").
    """
    if not isinstance(item, (str, Path)):
        return None
    run, stage = stage_of(item)
    return run.stage_corruption(stage)


def _stage_checkpoints(name: str, run: RunDir, stage: str) -> list:
    """The stage's periodic checkpoints (else its ``model.keras``), with val_loss and training corruption."""
    losses = {epoch: row["val_loss"] for epoch, row in run.history(stage).items() if "val_loss" in row}
    trained = run.stage_corruption(stage)
    found = [Checkpoint(name, epoch, path, losses.get(epoch), trained) for epoch, path in run.checkpoints(stage)]
    model = run.model_file(stage)
    if not found and model.exists():
        found.append(Checkpoint(name, None, model, corruption=trained))
    return found


def _folder(c: Checkpoint) -> Path | None:
    """The stage folder a checkpoint file lies in (None for a model in memory)."""
    if not isinstance(c.source, (str, Path)):
        return None
    folder = Path(c.source).resolve().parent
    return folder.parent if folder.name == CHECKPOINTS_DIR else folder


def _distinct_names(found: list) -> list:
    """Rename runs whose name stands for files in several folders (``seed_0/pretrain``, ``seed_1/pretrain``).

    Every checkpoint of such a run is named by as many of its folders as it
    takes to tell the folders apart, so no table row, run grouping or plot
    label mixes two runs.
    """
    groups: dict[str, list] = {}
    for c in found:
        groups.setdefault(c.run, []).append(c)
    for run, group in groups.items():
        folders = {_folder(c) for c in group}
        if len(folders) < 2 or None in folders:
            continue
        deepest = max(len(f.parts) for f in folders)
        for depth in range(2, deepest + 1):
            names = {f: "/".join(f.parts[-depth:]) for f in folders}
            if len(set(names.values())) == len(names):
                break
        for c in group:
            # keep what the name said beyond its folder (a loose file's own name)
            tail = run.split("/")[-1]
            c.run = names[_folder(c)] + ("" if tail == _folder(c).name else f"/{tail}")
    return found


def find_checkpoints(source: Any) -> list:
    """Every auto-encoder checkpoint in ``source``, as :class:`Checkpoint` objects.

    ``source`` may be a run directory (its ``metrics.json`` lists the stages;
    each auto-encoder stage's ``checkpoints/epoch_EEE.keras``, else its
    ``model.keras``; without ``metrics.json``, every stage folder holding
    checkpoints), a ``.keras`` file, a model, a list of any of these, or a
    dict ``{run_name: [paths or models in epoch order]}``.

    >>> [c.name for c in find_checkpoints("runs/pitfall/skips-on_masking-0.25")]
    ['skips-on_masking-0.25@e002', 'skips-on_masking-0.25@e004']
    """
    if isinstance(source, Checkpoint):
        return [source]
    if isinstance(source, keras.Model):
        return [Checkpoint(source.name, None, source)]
    if isinstance(source, dict):
        out = []
        for run, items in source.items():
            items = items if isinstance(items, (list, tuple)) else [items]
            for i, item in enumerate(items, start=1):
                epoch = checkpoint_epoch(item) if isinstance(item, (str, Path)) else None
                out.append(Checkpoint(str(run), epoch if epoch is not None else i, item,
                                      corruption=_file_corruption(item)))
        return out
    if isinstance(source, (list, tuple)):
        return _distinct_names([c for item in source for c in find_checkpoints(item)])
    path = Path(source)
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path} is not a .keras model; give a run directory, a .keras file or a list of them")
        run, stage = stage_of(path)
        epoch = checkpoint_epoch(path.name)
        periodic = epoch is not None and path.parent != run.stage_dir(stage)  # in the stage's checkpoints/
        # a periodic checkpoint and a stage's model.keras are named after the stage folder, any other file itself
        name = stage if periodic or path.name == MODEL_FILE else path.stem
        return [Checkpoint(name, epoch, path, corruption=run.stage_corruption(stage))]
    if not path.is_dir():
        raise FileNotFoundError(f"no run directory or model at {path}")
    run = RunDir(path)
    if run.metrics_file.is_file():
        stages = [name for name, stage in run.stages().items() if stage.kind in KINDS and KINDS[stage.kind].denoising]
    else:
        stages = run.checkpoint_stages()
    found = []
    for stage in stages:
        found += _stage_checkpoints(path.name if len(stages) == 1 else f"{path.name}/{stage}", run, stage)
    if not found:
        raise FileNotFoundError(
            f"no auto-encoder checkpoints under {path}: expected STAGE/checkpoints/epoch_EEE.keras or "
            "STAGE/model.keras for an autoencoder stage in metrics.json (train with checkpoint_every: k)"
        )
    return found
