"""The architecture description shared by every model kind.

An :class:`Arch` is plain, validated data: the encoder's stages, the decoder's
skips, the corruption used for denoising pre-training, the heads' sizes and
the input normalisation. Every builder reads the same ``Arch``, which is what
makes the encoder's layers identical (names and shapes) across the
auto-encoder, the classifier and the segmenter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

# The architecture's typed choices, defined once: the Arch's validation, the recipe schema, the tuner's search
# space and the command line's options all read these (training, probing and tuning choices: choices.py).
Downsample = Literal["strided", "maxpool", "none"]
Merge = Literal["add", "concat"]
Corruption = Literal["none", "gaussian", "masking", "salt_pepper", "block_masking", "block_noise"]
LossOn = Literal["all", "corrupted"]
SkipDropoutPer = Literal["example", "batch"]
OutputActivation = Literal["linear", "sigmoid"]
Activation = Literal["relu", "elu", "gelu", "swish", "leaky_relu", "tanh"]
ModelKind = Literal["autoencoder", "classifier", "segmenter"]

DOWNSAMPLE_MODES = get_args(Downsample)
MERGE_MODES = get_args(Merge)
CORRUPTIONS = get_args(Corruption)
#: corruptions that act on square patches of ``corruption_block`` pixels rather than on single pixels
BLOCK_CORRUPTIONS = ("block_masking", "block_noise")
LOSS_ON = get_args(LossOn)
SKIP_DROPOUT_PER = get_args(SkipDropoutPer)
OUTPUT_ACTIVATIONS = get_args(OutputActivation)
ACTIVATIONS = get_args(Activation)
MODEL_KINDS = get_args(ModelKind)


DEFAULT_CORRUPTION_LEVEL = 0.25


def parse_corruption(text: str | None) -> tuple[str, float] | None:
    """``"masking:0.25"`` -> ("masking", 0.25); ``"masking"`` -> ("masking", 0.25); ``"none"``/"" -> None.

    The command line's form of a corruption (the probe's held-out noise, for example).

    >>> parse_corruption("salt_pepper:0.1")
    ('salt_pepper', 0.1)
    """
    if text is None or text.strip() in ("", "none"):
        return None
    mode, _, level = text.strip().partition(":")
    if mode not in CORRUPTIONS or mode == "none":
        raise ValueError(f"corruption {text!r}: the kind must be one of {', '.join(c for c in CORRUPTIONS if c != 'none')}"
                         " (or 'none'), as KIND:LEVEL, e.g. masking:0.25")
    try:
        value = float(level) if level else DEFAULT_CORRUPTION_LEVEL
    except ValueError:
        raise ValueError(f"corruption {text!r}: the level {level!r} is not a number; expected KIND:LEVEL such as "
                         "masking:0.25") from None
    return mode, value


@dataclass(frozen=True)
class Arch:
    """Every number that defines a keras_skipae network.

    Encoder: ``len(widths)`` stages of ``convs_per_stage`` 3x3 convolutions;
    between stages the resolution halves by ``downsample``. Decoder (auto-encoder
    only): the mirror of the encoder in transposed convolutions, joined to it by
    a symmetric skip every ``skip_every`` layers. Inputs are already normalised:
    ``normalised = (pixel * pixel_scale - mean) / std`` per channel; the numbers
    are recorded so that exporters can bake them into a serving graph.
    """

    input_shape: tuple = (32, 32, 3)
    widths: tuple = (96, 192)
    convs_per_stage: int = 3
    downsample: str = "strided"
    batch_norm: bool = False
    activation: str = "relu"
    # decoder (auto-encoder)
    skips: bool = True
    skip_every: int = 2
    merge: str = "add"
    residual_output: bool = False
    output_activation: str = "linear"
    # denoising corruption, active in training only
    corruption: str = "masking"
    corruption_level: float = 0.25
    corruption_block: int = 4         # patch side in pixels of block_masking / block_noise
    loss_on: str = "all"              # reconstruction loss on "all" pixels or only the "corrupted" ones
    skip_dropout: float = 0.0         # probability that a symmetric skip is dropped in training
    skip_dropout_per: str = "example"  # drawn per "example" or once per "batch"
    # heads
    num_classes: int = 10
    head_width: int = 192
    head_dropout: float = 0.0
    weight_decay: float = 0.0
    # input normalisation, recorded for export
    pixel_scale: float = 1.0 / 255.0
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    description: str = field(default="", compare=False)

    def __post_init__(self):
        _validate(self)

    # ------------------------------------------------------------------ derived
    @property
    def channels(self) -> int:
        return int(self.input_shape[-1])

    @property
    def num_layers(self) -> int:
        """Number of 3x3 convolutions in the encoder."""
        return len(self.widths) * self.convs_per_stage

    @property
    def total_stride(self) -> int:
        """How much the encoder shrinks height and width."""
        return 1 if self.downsample == "none" else 2 ** len(self.widths)

    def channel_mean(self) -> list:
        return _per_channel(self.mean, self.channels, "mean")

    def channel_std(self) -> list:
        return _per_channel(self.std, self.channels, "std")

    def pixel_bounds(self) -> tuple:
        """Per-channel normalised values of a black and of a white pixel: (low, high) lists."""
        mean, std = self.channel_mean(), self.channel_std()
        low = [(0.0 - m) / s for m, s in zip(mean, std)]
        high = [(255.0 * self.pixel_scale - m) / s for m, s in zip(mean, std)]
        return low, high

    def normalise(self, pixels):
        """Pixel values (0..255, numpy) -> the model's float32 units, ``(pixel * pixel_scale - mean) / std``.

        The numpy form of :func:`keras_skipae.data.transforms.normalise` (the
        pipelines' TensorFlow form); exporters and the probe use this one.
        """
        mean = np.asarray(self.channel_mean(), np.float32)
        std = np.asarray(self.channel_std(), np.float32)
        return (np.asarray(pixels).astype(np.float32) * np.float32(self.pixel_scale) - mean) / std

    def denormalise(self, x, *, clip: bool = True):
        """The inverse of :meth:`normalise`: model units -> pixel values (0..255 float32, clipped unless told)."""
        mean = np.asarray(self.channel_mean(), np.float32)
        std = np.asarray(self.channel_std(), np.float32)
        pixels = (np.asarray(x, np.float32) * std + mean) / np.float32(self.pixel_scale)
        return np.clip(pixels, 0.0, 255.0) if clip else pixels

    def normalised_range(self) -> tuple:
        """The (low, high) a pixel of 0 and of 255 map to, over all channels."""
        low, high = self.pixel_bounds()
        return min(low), max(high)

    # -------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        check_fields(d)
        return cls(**{k: _coerce(k, v) for k, v in d.items()})

    def replace(self, **overrides: Any) -> "Arch":
        check_fields(overrides)
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in overrides.items()})


FIELDS = tuple(f.name for f in dataclasses.fields(Arch))
_TUPLE_FIELDS = ("input_shape", "widths", "mean", "std")


def check_fields(d: dict) -> None:
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"unknown architecture field(s) {unknown}; valid fields are: {', '.join(FIELDS)}"
        )


def _coerce(name: str, value: Any) -> Any:
    if name in _TUPLE_FIELDS:
        if isinstance(value, (int, float)) or value is None:
            value = (value,)
        return tuple(value)
    return value


def _per_channel(values: tuple, channels: int, name: str) -> list:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(
            f"`{name}` has {len(values)} values but the input has {channels} channels; "
            f"give one value or one per channel"
        )
    return values


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"invalid architecture field `{name}`={value!r}: expected {allowed}")


def _choice(arch: Arch, name: str, choices: tuple) -> None:
    if getattr(arch, name) not in choices:
        _fail(name, getattr(arch, name), "one of " + ", ".join(repr(c) for c in choices))


def _validate(a: Arch) -> None:
    shape = a.input_shape
    if len(shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in shape[:2]):
        _fail("input_shape", shape, "(height, width, channels) with positive ints or None for height/width")
    if not isinstance(shape[2], int) or shape[2] < 1:
        _fail("input_shape", shape, "a positive channel count as its last entry")
    if not a.widths or not all(isinstance(w, int) and w > 0 for w in a.widths):
        _fail("widths", a.widths, "a non-empty list of positive ints, one per stage")
    if not isinstance(a.convs_per_stage, int) or a.convs_per_stage < 1:
        _fail("convs_per_stage", a.convs_per_stage, "a positive int")
    if not isinstance(a.skip_every, int) or a.skip_every < 1:
        _fail("skip_every", a.skip_every, "a positive int")
    for name, choices in (
        ("downsample", DOWNSAMPLE_MODES),
        ("merge", MERGE_MODES),
        ("corruption", CORRUPTIONS),
        ("output_activation", OUTPUT_ACTIVATIONS),
        ("activation", ACTIVATIONS),
        ("loss_on", LOSS_ON),
        ("skip_dropout_per", SKIP_DROPOUT_PER),
    ):
        _choice(a, name, choices)
    for name in ("batch_norm", "skips", "residual_output"):
        if not isinstance(getattr(a, name), bool):
            _fail(name, getattr(a, name), "true or false")
    if a.corruption == "gaussian":
        if not (a.corruption_level >= 0):
            _fail("corruption_level", a.corruption_level, "a standard deviation >= 0 for gaussian noise")
    elif not (0.0 <= a.corruption_level < 1.0):
        _fail("corruption_level", a.corruption_level, "a fraction in [0, 1) for masking, salt_pepper and the block "
              "corruptions (the share of pixels covered)")
    if not isinstance(a.corruption_block, int) or isinstance(a.corruption_block, bool) or a.corruption_block < 1:
        _fail("corruption_block", a.corruption_block, "a positive int (the side of a square patch, in pixels)")
    if not (0.0 <= a.skip_dropout < 1.0):
        _fail("skip_dropout", a.skip_dropout, "a probability in [0, 1)")
    if a.loss_on == "corrupted" and (a.corruption == "none" or a.corruption_level == 0):
        _fail("loss_on", a.loss_on, "'all' without a corruption: 'corrupted' counts only corrupted pixels, and "
              "there would be none (set corruption and corruption_level, or loss_on: all)")
    if a.loss_on == "corrupted" and a.corruption == "gaussian":
        _fail("loss_on", a.loss_on, "'all' with gaussian noise, which corrupts every pixel; 'corrupted' needs "
              "masking, salt_pepper, block_masking or block_noise")
    if not isinstance(a.num_classes, int) or a.num_classes < 1:
        _fail("num_classes", a.num_classes, "a positive int")
    if not isinstance(a.head_width, int) or a.head_width < 1:
        _fail("head_width", a.head_width, "a positive int")
    if not (0.0 <= a.head_dropout < 1.0):
        _fail("head_dropout", a.head_dropout, "a fraction in [0, 1)")
    if not (a.weight_decay >= 0):
        _fail("weight_decay", a.weight_decay, "a number >= 0")
    if not (a.pixel_scale > 0):
        _fail("pixel_scale", a.pixel_scale, "a number > 0")
    if any(float(s) <= 0 for s in a.std):
        _fail("std", a.std, "positive numbers")
    _per_channel(a.mean, a.channels, "mean")
    _per_channel(a.std, a.channels, "std")
