"""Moved to :mod:`keras_skipae.recipes.study`; this shim goes when its last importer (a test) moves."""

from ..recipes.schema import StudyConfig, StudyData  # noqa: F401
from ..recipes.study import load_study, load_study_data, pretrain_batches, run_study  # noqa: F401
