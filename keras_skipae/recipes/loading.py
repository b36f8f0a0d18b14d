"""Reading recipes: YAML files, ``--set`` overrides and errors that name the key path.

One loader for every recipe type (run, study, tune): the file is found (a path
or a name in the project's ``recipes/``), read as YAML with a size limit,
``--set KEY.PATH=VALUE`` overrides are applied, and the result is validated
against :mod:`keras_skipae.recipes.schema`. Every problem is a
:class:`RecipeError` that names the file, each bad key path, what is allowed
there and, for a misspelt key, the likely intended one.

>>> recipe = load_recipe("quickstart", ["pretrain.epochs=1"])
>>> study = load_recipe("recipes/pitfall_fashion_mnist.yaml", ["train.epochs=2"], kind="study")
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..data import DataError
from ..data.locate import resolve_source
from ..recipe_library import RECIPES_DIR  # inside the package, so an installed wheel has them
from .schema import RECIPE_TYPES, Recipe, RecipeError, apply_quick

#: limits that keep a hostile recipe from taking the machine (a YAML "billion laughs" alias bomb);
#: raise them with SKIPAE_MAX_RECIPE_BYTES / SKIPAE_MAX_RECIPE_ALIASES if a real recipe needs more
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_ALIASES = 200


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts alias references and stops past a limit."""

    max_aliases = MAX_RECIPE_ALIASES

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {self.max_aliases} YAML alias references (*name) at line "
                                     f"{mark.line + 1}; a recipe needs few (SKIPAE_MAX_RECIPE_ALIASES raises the limit)")
        return super().compose_node(parent, index)


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise RecipeError(f"{name}={value!r}: expected a whole number") from None


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe file from a path, or a name in the project's ``recipes/`` folder.

    >>> find_recipe("quickstart")     # recipes/quickstart.yaml
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (RECIPES_DIR / path, RECIPES_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")) if RECIPES_DIR.is_dir() else []
    hint = f"shipped recipes: {', '.join(shipped)} (skipae recipes describes them)" if shipped else (
        f"the package's recipe library {RECIPES_DIR} is missing: reinstall keras_skipae"
    )
    raise RecipeError(f"no recipe file {str(name_or_path)!r}; {hint}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"stage.key.sub=value"`` -> (["stage", "key", "sub"], value parsed as YAML)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set pretrain.epochs=3")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise RecipeError(f"--set {text!r}: empty part in key path {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {text!r}: value is not valid YAML ({exc})") from None
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str] | tuple = ()) -> dict:
    """Apply ``--set`` overrides to a raw recipe dict; in a run recipe a stage name may lead the key path.

    >>> apply_overrides(raw, ["pretrain.epochs=3", "data.labels_per_class=50", "seed=1"])
    """
    stages = raw.get("stages") if isinstance(raw.get("stages"), dict) else {}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] in stages and parts[0] not in Recipe.model_fields:
            parts = ["stages"] + parts
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise RecipeError(f"--set {text!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return raw


# ------------------------------------------------------------------------- errors
def _section_model(annotation) -> tuple[type[BaseModel] | None, bool]:
    """(the section model an annotation holds, whether a mapping/list key comes first)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _section_model(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin in (dict, list, tuple):
        args = typing.get_args(annotation)
        inner = args[-1] if args else None
        model, _ = _section_model(inner)
        return model, model is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed in the section that holds ``loc[-1]``."""
    model: type[BaseModel] | None = root
    skip_key = False
    for part in loc[:-1]:
        if skip_key:  # a stage name or list index: the section model stays
            skip_key = False
            continue
        field = (model.model_fields if model is not None else {}).get(str(part))
        if field is None:
            return []
        model, skip_key = _section_model(field.annotation)
    if skip_key or model is None:
        return []
    return list(model.model_fields)


def close_match(word: str, options: list[str]) -> str | None:
    """The option ``word`` was probably meant to be, or None."""
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return found[0] if found else None


def format_errors(exc: ValidationError, origin: str, root: type[BaseModel] = Recipe) -> str:
    """A pydantic error as one line per key path: what is wrong there and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, loc)
            close = close_match(str(loc[-1]), allowed)
            msg = "unknown key" + (f" (did you mean {close!r}?)" if close else "")
            if allowed:
                msg += f"; allowed keys here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], dict):
                shown = repr(err["input"])
                msg += f" (got {shown[:120] + '...' if len(shown) > 120 else shown})"
        lines.append(f"  {path}: {msg}" if loc else f"  {msg}")
    return f"invalid recipe {origin}:\n" + "\n".join(lines)


# ---------------------------------------------------------------------- validation
def recipe_kind(raw: dict) -> str:
    """``"run"``, ``"study"`` or ``"tune"``: a recipe's type from its ``kind:`` key."""
    kind = raw.get("kind") if "stages" not in raw else None
    return kind if isinstance(kind, str) else "run"


def validate(raw: Any, origin: str = "(dict)", check_paths: bool = True, *, kind: str = "run"):
    """Validate a raw recipe dict of type ``kind``; raises :class:`RecipeError` naming every bad key path."""
    if not isinstance(raw, dict):
        found = "empty" if raw is None else f"a YAML {type(raw).__name__}"
        raise RecipeError(f"invalid recipe {origin}: expected a mapping of keys at the top level, found {found}")
    found_type = recipe_kind(raw) if ("kind" in raw or "stages" in raw) else kind
    if found_type not in RECIPE_TYPES:
        raise RecipeError(f"{origin}: kind: {found_type!r} is not a recipe type; expected one of "
                          f"{', '.join(k for k in RECIPE_TYPES if k != 'run')} (or stages: for a run)")
    if found_type != kind:
        command = "run" if found_type == "run" else found_type
        raise RecipeError(f"{origin} is a {found_type!r} recipe, not a {kind!r} one; run it with "
                          f"`skipae {command} {origin}` (see its header comment)")
    cls = RECIPE_TYPES[kind]
    try:
        recipe = cls.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(format_errors(exc, origin, cls)) from None
    if check_paths:
        try:
            resolve_source(recipe.data.source)
        except DataError as exc:
            raise RecipeError(f"data.source: {exc}") from None
    return recipe


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's content; a syntax error is a :class:`RecipeError` naming the file and line.

    Files over 1 MiB and documents with more than 200 alias references are
    refused before they can take the machine's memory (see the limits above).
    """
    path = Path(path)
    max_bytes = _limit("SKIPAE_MAX_RECIPE_BYTES", MAX_RECIPE_BYTES)
    size = path.stat().st_size
    if size > max_bytes:
        raise RecipeError(f"{path}: {size} bytes is larger than a recipe can be ({max_bytes} bytes; "
                          "SKIPAE_MAX_RECIPE_BYTES raises the limit)")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    loader = _LimitedLoader(text)
    loader.max_aliases = _limit("SKIPAE_MAX_RECIPE_ALIASES", MAX_RECIPE_ALIASES)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    finally:
        loader.dispose()


def load_recipe(name_or_path: str | os.PathLike, overrides: list[str] | tuple = (),
                check_paths: bool = True, *, kind: str = "run", quick: bool = False):
    """Read, override and validate a recipe file (or a name in ``recipes/``) of type ``kind``.

    ``quick`` (study and tune recipes): apply the recipe's ``quick:`` section
    before the ``overrides``, so an explicit ``--set`` always wins.

    >>> recipe = load_recipe("quickstart", ["pretrain.epochs=1"])
    >>> study = load_recipe("pitfall_fashion_mnist", kind="study", quick=True)
    """
    path = find_recipe(name_or_path)
    raw = read_yaml(path)
    if isinstance(raw, dict):
        if quick:
            raw = apply_quick(raw, str(path))
        raw = apply_overrides(raw, overrides)
    return validate(raw, origin=str(path), check_paths=check_paths, kind=kind)


def quickstart_recipe() -> Path:
    """The shipped ``quickstart`` recipe, or a :class:`RecipeError` saying where it must be."""
    path = RECIPES_DIR / "quickstart.yaml"
    if not path.is_file():
        raise RecipeError(
            f"the quickstart recipe is missing from the package's recipe library (looked in {RECIPES_DIR}); "
            "reinstall keras_skipae"
        )
    return path

