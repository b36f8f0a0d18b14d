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
- :class:`Arch`: the architecture fields that presets set and overrides change

Example::

    import keras_skipae as ks
    ae = ks.build("autoencoder", "tiny")
    ae.compile("adam", "mse")
    ae.fit(images, images, epochs=5)            # images normalised to [0, 1]
    clf = ks.build("classifier", "tiny", encoder=ae, num_classes=10)
    print(clf.transfer_report)
"""

from .arch import Arch
from .factory import build
from .models import encoder_model, unfreeze_encoder
from .presets import presets
from .saving import load
from .transfer import TransferError, TransferReport, transfer

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "TransferError",
    "TransferReport",
    "__version__",
    "build",
    "encoder_model",
    "load",
    "presets",
    "transfer",
    "unfreeze_encoder",
]
