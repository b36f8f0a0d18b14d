"""keras_skipae: convolutional auto-encoders with symmetric skip connections.

Pre-train a denoising skip auto-encoder (Dong et al., arXiv 1611.09119;
RED-Net, Mao et al., arXiv 1603.09056), then carry its encoder into an
all-convolutional classifier or an FCN segmenter.

Public API:

- :func:`build` (kind, preset, **overrides) -> keras.Model
- :func:`presets` () -> {name: description}
- :func:`transfer` (source, target, strict=True) -> :class:`TransferReport`
- :func:`unfreeze_encoder` (model) -> model
- :func:`encoder_model` (model) -> keras.Model from the input to the encoder's features
- :func:`load` (path) -> keras.Model
- :func:`embed` (model or run, source, out=...) -> writes the encoder's features of a data source
- :class:`Arch`: the architecture fields that presets set and overrides change

Example::

    import keras_skipae as ks
    ae = ks.build("autoencoder", "tiny")
    ae.compile("adam", "mse")
    ae.fit(images, images, epochs=5)            # images normalised to [0, 1]
    clf = ks.build("classifier", "tiny", encoder=ae, num_classes=10)
    print(clf.transfer_report)

``import keras_skipae`` is light: the names that need Keras (and so
TensorFlow) are imported on first use (PEP 562), so that ``skipae --help``
answers at once and the ``skipae`` command can quiet TensorFlow's start-up
logging before TensorFlow loads.
"""

import sys as _sys
import types as _types
from typing import TYPE_CHECKING as _TYPE_CHECKING

from .arch import Arch
from .lazy import lazy_attributes as _lazy_attributes
from .presets import presets

__version__ = "0.1.0"

# public name -> the submodule that defines it; imported on first access
_LAZY = {
    "build": ".factory",
    "encoder_model": ".models",
    "unfreeze_encoder": ".models",
    "load": ".saving",
    "embed": ".embed",
    "TransferError": ".transfer",
    "TransferReport": ".transfer",
    "transfer": ".transfer",
}

__all__ = [
    "Arch",
    "TransferError",
    "TransferReport",
    "__version__",
    "build",
    "embed",
    "encoder_model",
    "load",
    "presets",
    "transfer",
    "unfreeze_encoder",
]

if _TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .embed import embed
    from .factory import build
    from .models import encoder_model, unfreeze_encoder
    from .saving import load
    from .transfer import TransferError, TransferReport, transfer


__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, __all__)


_PUBLIC_FUNCTIONS_NAMED_LIKE_MODULES = frozenset({"embed", "presets", "transfer"})


class _Package(_types.ModuleType):
    """Keeps a public function when the import system records a submodule of the same name.

    Importing ``keras_skipae.transfer`` (the module) sets the package attribute
    ``transfer``; the public name is the function ``transfer``, so that
    assignment is dropped and :func:`__getattr__` resolves the function.
    """

    def __setattr__(self, name, value):
        if isinstance(value, _types.ModuleType) and name in _PUBLIC_FUNCTIONS_NAMED_LIKE_MODULES:
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
