"""Optional features and the extras that install them: a missing one is a one-line error naming the extra.

``pip install keras_skipae`` installs what training needs; the exporters and
the tuner come with extras:

===========  ======================================  ==========================
extra        what it adds                            packages
===========  ======================================  ==========================
``onnx``     ``skipae export --format onnx``         tf2onnx, onnx, onnxruntime
``litert``   ``skipae export --format litert``       ai-edge-litert
``tune``     ``skipae tune``, ``keras_skipae.tune``  keras-tuner, scikit-learn
``parquet``  ``skipae embed --out FILE.parquet``     pyarrow
``all``      every one of them
``test``     the test suite's tools, and ``all``
===========  ======================================  ==========================
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: extra -> the modules it provides
EXTRAS = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",), "tune": ("keras_tuner", "sklearn"),
          "parquet": ("pyarrow",)}


class MissingExtra(ImportError):
    """An optional feature's packages are not installed; the message names the extra that installs them."""


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` saying which extra installs it.

    Args:
        module: the module to import, e.g. ``"tf2onnx"`` or ``"ai_edge_litert.interpreter"``.
        extra: the extra of keras_skipae that installs it (a key of :data:`EXTRAS`).
        feature: what needs it, for the message (default: the extra's name).

    Returns:
        The imported module.

    Raises:
        MissingExtra: ``module`` cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        parts = module.split(".")
        ours = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if missing not in ours and not (missing is None and "None in sys.modules" in str(exc)):
            raise  # installed but broken (a shared library that fails to load): the real error, not "install it"
        raise MissingExtra(f"{feature or extra} needs the [{extra}] extra (missing: {missing or module}): "
                           f"pip install 'keras_skipae[{extra}]'") from None
