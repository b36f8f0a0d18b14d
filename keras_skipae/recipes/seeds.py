"""Seeded repeats of a recipe: one run directory per seed, then the comparison.

A seed drives everything random in a run: the weights' initialisation, the
labelled/unlabelled/validation split (``data.split_seed``), shuffling and
augmentation. :func:`run_seeds` runs the whole recipe once per seed into
``RUN/seed_S/`` and writes ``RUN/comparison.{json,csv,md,png}``
(:func:`keras_skipae.compare.compare_runs`). Running the same command again
skips finished seeds and resumes an interrupted one where it stopped (each
seed's run directory resumes as any run does).

>>> report = run_seeds("quickstart", [0, 1, 2, 3, 4], run_dir="runs/quickstart_seeds")
>>> print(report.verdict)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..compare import Comparison, compare_runs
from ..runs import seed_dir
from .loading import apply_overrides, load_recipe, validate
from .runner import run
from .schema import Recipe, RecipeError


def seed_recipe(recipe: Recipe, seed: int) -> Recipe:
    """``recipe`` for one seed: that seed for initialisation, shuffling, augmentation and the data split."""
    raw = recipe.model_dump(mode="json")
    raw["seed"] = seed
    raw["data"]["split_seed"] = seed
    raw["seeds"] = None
    return validate(raw, check_paths=False)




def run_seeds(
    recipe: Recipe | str | os.PathLike,
    seeds: list[int] | None = None,
    *,
    overrides: list[str] | tuple = (),
    run_dir: str | os.PathLike | None = None,
    strategy: str | None = None,
    mixed_precision: str | None = None,
    echo: Callable[[str], Any] = print,
) -> Comparison:
    """Run ``recipe`` once per seed (``seeds``, else the recipe's ``seeds:``) and compare the seeds' results.

    Returns the :class:`~keras_skipae.compare.Comparison` (table, paired
    differences of the ``summary`` stages, verdict), also written to ``run_dir``.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        recipe = validate(apply_overrides(recipe.model_dump(), overrides))
    seeds = list(seeds) if seeds is not None else recipe.seeds
    if not seeds:
        raise RecipeError(f"recipe {recipe.name!r}: give the seeds to run (--seeds 0-4, or seeds: [0, 1, 2] in the recipe)")
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"seeds {seeds}: a seed is listed twice")
    parent = Path(run_dir or recipe.run_dir or Path("runs") / recipe.name)
    for i, seed in enumerate(seeds, start=1):
        started = time.time()
        echo(f"=== seed {seed} ({i}/{len(seeds)}) -> {seed_dir(parent, seed)}")
        run(seed_recipe(recipe, seed), run_dir=seed_dir(parent, seed), strategy=strategy,
            mixed_precision=mixed_precision, echo=echo)
        echo(f"=== seed {seed} done in {time.time() - started:.0f} s")
    report = compare_runs([seed_dir(parent, s) for s in seeds])
    report.write(parent)
    echo(report.markdown())
    return report
