"""The recipes that ship inside the package: where they are and what each is for.

Light on purpose (no TensorFlow, no schema): ``skipae recipes`` lists them
in a fraction of a second. Loading and checking a recipe is
:mod:`keras_skipae.recipes.loading`.
"""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent / "recipes" / "library"


def shipped_recipes() -> dict[str, str]:
    """``{name: first line of its header}`` of every shipped recipe, by name."""
    out = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "# ")
        out[path.stem] = first.lstrip("# ").split(" — ", 1)[-1].strip()
    return out
