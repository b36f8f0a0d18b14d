"""The pieces every recipe section is made of: the strict base model, counts and the data subsets' pattern."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict
from pydantic import Strict as _NoCoercion

#: a count (epochs, batch size, seeds, ...): a YAML ``true`` or ``2.7`` is refused, not read as 1 or 2
Count = Annotated[int, _NoCoercion()]

#: what a stage trains, validates or evaluates on: the train split's parts, the eval split or another split
SUBSET = r"^(all|labelled|unlabelled|val|eval|split:[\w\-\[\]:%.+]+)$"


class Strict(BaseModel):
    """A recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)
