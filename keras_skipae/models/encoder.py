"""The one encoder definition shared by the auto-encoder, classifier and segmenter.

Layers are named deterministically from their position:
``encoder_conv{k}`` (k = 1..n over all stages), with ``encoder_conv{k}_bn`` and
``encoder_conv{k}_act`` beside it, ``encoder_pool{s}`` for max-pooling after
stage ``s``. Those names are what :func:`keras_skipae.transfer` matches on, so
the same :class:`~keras_skipae.arch.Arch` yields the same encoder everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from ..arch import Arch
from ..layers import PadToMultiple

ENCODER_PREFIX = "encoder_"


@dataclass
class EncoderOp:
    """One step of the encoder, as the decoder needs to mirror it."""

    is_conv: bool  # a conv layer (True) or a pooling layer (False)
    name: str
    stride: int
    in_channels: int
    out_channels: int
    output: object  # the symbolic tensor this step produced
    index: int = 0  # 1-based conv index (0 for pools)


@dataclass
class EncoderGraph:
    """Symbolic tensors of an encoder applied to an input."""

    input: object  # after padding
    output: object
    ops: list = field(default_factory=list)
    stage_outputs: list = field(default_factory=list)  # one per stage, after its down-sampling


def regularizer(arch: Arch):
    return keras.regularizers.L2(arch.weight_decay) if arch.weight_decay > 0 else None


def conv_unit(x, filters, arch: Arch, name: str, kernel_size=3, strides=1, activate=True, transpose=False):
    """3x3 (transposed) convolution, optional batch norm, activation; layers named from ``name``."""
    layer = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    x = layer(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=not arch.batch_norm,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer(arch),
        name=name,
    )(x)
    if arch.batch_norm:
        x = keras.layers.BatchNormalization(name=name + "_bn")(x)
    if activate:
        x = activation(arch, name + "_act")(x)
    return x


def activation(arch: Arch, name: str):
    if arch.activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.1, name=name)
    return keras.layers.Activation(arch.activation, name=name)


def build_encoder(x, arch: Arch) -> EncoderGraph:
    """Apply the encoder to tensor ``x`` (already normalised, maybe corrupted).

    Returns the tensors the decoder and heads attach to. Inputs whose height or
    width is unknown or not a multiple of the total stride are padded at the
    bottom/right first (layer ``encoder_pad``), so any size goes through.
    """
    stride = arch.total_stride
    h, w = arch.input_shape[0], arch.input_shape[1]
    if stride > 1 and (h is None or w is None or h % stride or w % stride):
        x = PadToMultiple(stride, name=ENCODER_PREFIX + "pad")(x)
    graph = EncoderGraph(input=x, output=None)
    in_ch = arch.channels
    k = 0
    for s, width in enumerate(arch.widths, start=1):
        for c in range(1, arch.convs_per_stage + 1):
            k += 1
            strided = arch.downsample == "strided" and c == arch.convs_per_stage
            name = f"{ENCODER_PREFIX}conv{k}"
            x = conv_unit(x, width, arch, name, strides=2 if strided else 1)
            graph.ops.append(EncoderOp(True, name, 2 if strided else 1, in_ch, width, x, index=k))
            in_ch = width
        if arch.downsample == "maxpool":
            name = f"{ENCODER_PREFIX}pool{s}"
            x = keras.layers.MaxPooling2D(2, padding="same", name=name)(x)
            graph.ops.append(EncoderOp(False, name, 2, in_ch, in_ch, x))
        graph.stage_outputs.append(x)
    graph.output = x
    return graph


def is_encoder_layer(layer) -> bool:
    return layer.name.startswith(ENCODER_PREFIX)


def encoder_layers(model) -> list:
    """The encoder's layers of any keras_skipae model, in graph order."""
    return [layer for layer in model.layers if is_encoder_layer(layer)]


def set_encoder_trainable(model, trainable: bool) -> None:
    for layer in encoder_layers(model):
        layer.trainable = trainable


def encoder_output_layer_name(arch: Arch) -> str:
    """Name of the layer whose output is the encoder's output."""
    if arch.downsample == "maxpool":
        return f"{ENCODER_PREFIX}pool{len(arch.widths)}"
    name = f"{ENCODER_PREFIX}conv{arch.num_layers}"
    return name + "_act"


def encoder_model(model) -> keras.Model:
    """A model from ``model``'s input to its encoder's output, sharing its layers.

    Useful to extract features, e.g. for a linear probe or a head of your own.
    Corruption layers in front of the encoder are inactive at inference, so the
    features are of the clean input.

    Args:
        model: any keras_skipae model.

    Returns:
        A functional ``keras.Model`` (batch, H / stride, W / stride, widths[-1]).
    """
    last = model.get_layer(encoder_output_layer_name(model.arch))
    return keras.Model(model.inputs, last.output, name=model.name + "_encoder")
