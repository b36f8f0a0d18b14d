"""Recipes: validated YAML descriptions of runs, studies and searches, and the stage runner.

- :mod:`~keras_skipae.recipes.schema`: every recipe section on one strict base
  (:class:`Recipe` for staged runs, :class:`StudyConfig`, :class:`TuneConfig`).
- :mod:`~keras_skipae.recipes.loading`: YAML, ``--set`` overrides and errors
  naming the file and key path (:func:`load_recipe`, :func:`validate`).
- :mod:`~keras_skipae.recipes.runner`: :func:`run`, the stages in order into a
  run directory (read it back with :class:`keras_skipae.runs.RunDir`).
- :mod:`~keras_skipae.recipes.evaluation`: :func:`evaluate_model`.
- :mod:`~keras_skipae.recipes.seeds`: :func:`run_seeds`, a recipe once per seed, then the comparison.
- :mod:`~keras_skipae.recipes.study`: :func:`run_study`, a grid of runs then the probe.

>>> from keras_skipae import recipes
>>> results = recipes.run("quickstart", overrides=["pretrain.epochs=1"], run_dir="runs/try")
>>> results["stages"]["finetune"]["metrics"]["accuracy"]

Everything is checked against the schema before anything runs: an unknown
key, a wrong type, an out-of-range value, a stage that refers to a later or
missing stage, or a data path that does not exist fails with the key's full
path and what is allowed (:class:`RecipeError`).
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ..data.locate import resolve_source
from ..lazy import lazy_attributes as _lazy_attributes
from ..recipe_library import shipped_recipes
from .environment import environment
from .loading import (
    RECIPES_DIR,
    apply_overrides,
    find_recipe,
    format_errors,
    load_recipe,
    parse_override,
    quickstart_recipe,
    read_yaml,
    validate,
)
from .schema import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    Recipe,
    RecipeError,
    SearchSpace,
    StageConfig,
    StudyConfig,
    TrainerConfig,
    TuneConfig,
    parse_seeds,
)

# public name -> the submodule that defines it, imported on first access: loading and validating a recipe
# needs neither Keras nor TensorFlow (a mistyped key is reported at once), running one does
_LAZY = {
    "corrupted_for_evaluation": ".evaluation",
    "corruption_record": ".evaluation",
    "evaluate_model": ".evaluation",
    "pipeline_for": ".evaluation",
    "run": ".runner",
    "summary_table": ".runner",
    "run_seeds": ".seeds",
    "seed_recipe": ".seeds",
    "load_study": ".study",
    "run_study": ".study",
}

if _TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .evaluation import corrupted_for_evaluation, corruption_record, evaluate_model, pipeline_for
    from .runner import run, summary_table
    from .seeds import run_seeds, seed_recipe
    from .study import load_study, run_study


def stages_of_kind(recipe: Recipe, kind: str) -> list[str]:
    """Names of the recipe's stages of ``kind`` (pretrain, finetune, evaluate), in order."""
    return recipe.stages_of_kind(kind)


__all__ = [
    "RECIPES_DIR",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Recipe",
    "RecipeError",
    "SearchSpace",
    "StageConfig",
    "StudyConfig",
    "TrainerConfig",
    "TuneConfig",
    "apply_overrides",
    "corrupted_for_evaluation",
    "corruption_record",
    "environment",
    "evaluate_model",
    "find_recipe",
    "format_errors",
    "load_recipe",
    "load_study",
    "parse_override",
    "pipeline_for",
    "quickstart_recipe",
    "shipped_recipes",
    "read_yaml",
    "resolve_source",
    "parse_seeds",
    "run",
    "run_seeds",
    "run_study",
    "seed_recipe",
    "stages_of_kind",
    "summary_table",
    "validate",
]

__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, __all__)
