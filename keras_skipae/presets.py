"""Named architectures, one registry.

``keras_skipae.presets()`` lists them; ``keras_skipae.build(kind, name)`` uses
them; keyword overrides to ``build`` change any :class:`~keras_skipae.arch.Arch`
field. Each preset's docstring says where its numbers come from.
"""

from __future__ import annotations

from typing import Any, Callable

from .arch import Arch

_REGISTRY: dict[str, Callable[[], Arch]] = {}
DEFAULT_PRESET = "allconv-c"


def register_preset(name: str):
    """Decorator: register a zero-argument function returning an :class:`Arch`."""

    def wrap(fn: Callable[[], Arch]):
        if name in _REGISTRY:
            raise ValueError(f"preset {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def get_preset(name: str) -> Arch:
    if name not in _REGISTRY:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(sorted(_REGISTRY))}")
    arch = _REGISTRY[name]()
    return arch


class PresetTable(dict):
    """``{name: description}``; prints as one aligned line per preset."""

    def __str__(self) -> str:
        width = max(map(len, self), default=0)
        return "\n".join(f"{name:<{width}}  {text}" for name, text in self.items())


def resolve_arch(preset: str | Arch | None = None, **overrides: Any) -> Arch:
    """The :class:`Arch` for ``preset`` (a name, an Arch or None) with ``overrides`` applied."""
    if isinstance(preset, Arch):
        arch = preset
    else:
        arch = get_preset(preset or DEFAULT_PRESET)
    return arch.replace(**overrides) if overrides else arch


def presets() -> PresetTable:
    """Every preset's name and one-line description.

    Returns:
        A ``{name: description}`` mapping that prints as a table.

    Examples:
        >>> print(keras_skipae.presets())
    """
    return PresetTable((name, fn().description) for name, fn in sorted(_REGISTRY.items()))


@register_preset("allconv-c")
def allconv_c() -> Arch:
    """Dong et al. (arXiv 1611.09119), all-convolutional setting for 32x32 images.

    The encoder is the convolutional trunk of Springenberg et al.'s All-CNN-C
    (arXiv 1412.6806): two stages of three 3x3 convolutions, 96 then 192
    channels, each stage ending in a stride-2 convolution instead of pooling.
    The classifier head is All-CNN-C's (3x3 conv 192, 1x1 conv 192, 1x1 conv to
    the classes, global average pooling), with its dropout of 0.5. The decoder
    mirrors the encoder with a skip every two layers, merged by sum then ReLU,
    as in RED-Net. The corruption (masking 25% of pixels) is this package's
    default choice, not a number taken from the paper.
    """
    return Arch(
        input_shape=(32, 32, 3),
        widths=(96, 192),
        convs_per_stage=3,
        downsample="strided",
        head_width=192,
        head_dropout=0.5,
        corruption="masking",
        corruption_level=0.25,
        description="Dong et al.'s All-CNN-C encoder (96/192, strided convs) for 32x32 RGB",
    )


def _rednet(layers: int) -> Arch:
    return Arch(
        input_shape=(None, None, 3),
        widths=(64,),
        convs_per_stage=layers,
        downsample="none",
        skip_every=2,
        head_width=64,
        corruption="gaussian",
        corruption_level=0.1,
        description=(
            f"RED-Net {2 * layers}: {layers} conv + {layers} deconv 3x3 layers of 64 channels, "
            "skip every 2, full resolution"
        ),
    )


@register_preset("rednet10")
def rednet10() -> Arch:
    """RED-Net-10 (Mao et al., arXiv 1603.09056): 5 conv + 5 deconv layers.

    3x3 kernels, 64 channels, no down-sampling, a symmetric skip every two
    layers merged by sum then ReLU. Gaussian noise of std 0.1 (about 25/255, a
    common denoising level in that paper's experiments) is the corruption.
    """
    return _rednet(5)


@register_preset("rednet20")
def rednet20() -> Arch:
    """RED-Net-20 (Mao et al., arXiv 1603.09056): 10 conv + 10 deconv layers, as rednet10."""
    return _rednet(10)


@register_preset("rednet30")
def rednet30() -> Arch:
    """RED-Net-30 (Mao et al., arXiv 1603.09056): 15 conv + 15 deconv layers, as rednet10."""
    return _rednet(15)


@register_preset("tiny")
def tiny() -> Arch:
    """A few thousand parameters: two stages (8, 16 channels) of two convs.

    Not from a paper: sized so tests and CPU demos build and train in seconds
    while keeping every structural feature (strided down-sampling, skips).
    """
    return Arch(
        input_shape=(32, 32, 3),
        widths=(8, 16),
        convs_per_stage=2,
        downsample="strided",
        head_width=16,
        corruption="masking",
        corruption_level=0.25,
        description="a few thousand parameters (8/16 channels, 2 convs per stage), for tests and demos",
    )
