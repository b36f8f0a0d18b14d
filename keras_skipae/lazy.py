"""Lazy package attributes (PEP 562): a public name is imported from its submodule on first access.

``import keras_skipae``, ``keras_skipae.data`` and ``keras_skipae.recipes`` stay light this way, so the
command line answers ``--help``, ``skipae recipes`` and a recipe's validation errors without waiting for
TensorFlow; the names that need Keras or TensorFlow load it when they are first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable


def lazy_attributes(package: str, table: dict[str, str],
                    public: Iterable[str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``table`` comes from its submodule.

    Args:
        package: the package's ``__name__``.
        table: public name -> the submodule that defines it, relative (``".factory"``).
        public: the package's ``__all__``, which :func:`dir` lists beside what is already loaded.
    """
    public = tuple(public)

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        loaded = vars(sys.modules[package])
        return sorted(n for n in set(loaded) | set(public) if n.startswith("__") or not n.startswith("_"))

    return __getattr__, __dir__
