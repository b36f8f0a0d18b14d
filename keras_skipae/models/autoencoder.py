"""Encoder + mirrored decoder joined by symmetric skip connections (RED-Net style)."""

from __future__ import annotations

import keras

from ..arch import Arch
from ..layers import CORRUPTION_LAYERS, PACKAGE, CorruptedPixelsOnly, CorruptionWithMask, CropToReference, SkipDropout
from .base import SkipAEModel
from .encoder import activation, build_encoder, conv_unit, regularizer

DECODER_PREFIX = "decoder_"


def corruption_layer(arch: Arch, name: str = "corruption"):
    """The arch's training-only corruption layer, or None when it has none."""
    if arch.corruption == "none" or arch.corruption_level == 0:
        return None
    low, high = arch.pixel_bounds()
    if arch.loss_on == "corrupted":
        return CorruptionWithMask(arch.corruption, arch.corruption_level, low=low, high=high,
                                  block=arch.corruption_block, name=name)
    return CORRUPTION_LAYERS[arch.corruption](arch.corruption_level, low=low, high=high, block=arch.corruption_block,
                                              name=name)


def build_decoder(graph, arch: Arch, taps: list | None = None):
    """Mirror the encoder ops in reverse with transposed convolutions.

    After the mirror of encoder op ``k`` the tensor has the shape of op
    ``k-1``'s output; if op ``k-1`` is conv layer ``i`` with ``i % skip_every
    == 0`` (and skips are on), that conv's output joins here: summed then
    activated (``merge="add"``) or concatenated (``merge="concat"``).
    Returns the pre-activation output at the padded input resolution. With a
    ``taps`` list, ``(encoder op, decoder tensor)`` pairs are appended to it:
    each decoder tensor after a mirror step, beside the encoder op whose
    output it mirrors (what a ladder network's layer costs compare).
    """
    x = graph.output
    ops = graph.ops
    for pos in range(len(ops) - 1, -1, -1):
        op = ops[pos]
        prev = ops[pos - 1] if pos > 0 else None
        last = prev is None
        out_channels = arch.channels if last else op.in_channels
        name = f"{DECODER_PREFIX}{'deconv' if op.is_conv else 'unpool'}{op.index or pos + 1}"
        if last:
            x = keras.layers.Conv2DTranspose(
                out_channels,
                3,
                strides=op.stride,
                padding="same",
                kernel_regularizer=regularizer(arch),
                name=name,
            )(x)
            break
        skip = (
            arch.skips
            and prev.is_conv
            and prev.index % arch.skip_every == 0
        )
        bridge = prev.output
        if skip and arch.skip_dropout > 0:
            bridge = SkipDropout(arch.skip_dropout, per=arch.skip_dropout_per,
                                 name=f"{DECODER_PREFIX}skip{prev.index}_dropout")(bridge)
        if skip and arch.merge == "add":
            x = conv_unit(x, out_channels, arch, name, strides=op.stride, activate=False, transpose=True)
            x = keras.layers.Add(name=f"{DECODER_PREFIX}skip{prev.index}_add")([x, bridge])
            x = activation(arch, f"{DECODER_PREFIX}skip{prev.index}_act")(x)
        else:
            x = conv_unit(x, out_channels, arch, name, strides=op.stride, transpose=True)
            if skip:
                x = keras.layers.Concatenate(name=f"{DECODER_PREFIX}skip{prev.index}_concat")([x, bridge])
        if taps is not None and not (skip and arch.merge == "concat"):  # concatenated: not the encoder's shape
            taps.append((prev, x))
    return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class SkipAutoEncoder(SkipAEModel):
    """Denoising convolutional auto-encoder with symmetric skip connections.

    Input: normalised images. In training the input is corrupted (``arch.corruption``)
    before the encoder; the target is the clean input. Output ``reconstruction``
    is in the same normalised units as the input.

    Harder pretext tasks, all in training only: block corruptions
    (``block_masking``, ``block_noise``, patches of ``corruption_block``
    pixels); ``loss_on="corrupted"`` (the training loss counts only the
    corrupted pixels, :class:`~keras_skipae.layers.CorruptedPixelsOnly`);
    ``skip_dropout`` (each symmetric skip dropped with that probability,
    :class:`~keras_skipae.layers.SkipDropout`). Validation and test figures
    always count every pixel.
    """

    kind = "autoencoder"

    def build_graph(self, inputs, arch):
        x, mask = corrupt_input(inputs, arch)
        graph = build_encoder(x, arch)
        return reconstruct(graph, inputs, arch, mask)


def corrupt_input(inputs, arch: Arch, name: str = "corruption"):
    """``(x, mask)``: ``inputs`` through the arch's training-time corruption (mask None unless loss_on=corrupted)."""
    corrupt = corruption_layer(arch, name)
    if isinstance(corrupt, CorruptionWithMask):
        x, mask = corrupt(inputs)
        return x, mask
    return (inputs if corrupt is None else corrupt(inputs)), None


def reconstruct(graph, inputs, arch: Arch, mask=None, taps: list | None = None):
    """The decoder on an encoder ``graph`` of ``inputs``, through to the ``reconstruction`` output.

    ``mask`` (from :func:`corrupt_input`) restricts the training loss to the
    corrupted pixels; ``taps`` collects the decoder's intermediate tensors (see
    :func:`build_decoder`).
    """
    y = build_decoder(graph, arch, taps)
    if arch.residual_output:
        y = keras.layers.Add(name=DECODER_PREFIX + "residual_add")([y, graph.input])
    if y.shape[1] != inputs.shape[1] or y.shape[2] != inputs.shape[2] or y.shape[1] is None:
        y = CropToReference(name=DECODER_PREFIX + "crop")([y, inputs])
    if mask is None:
        return keras.layers.Activation(arch.output_activation, dtype="float32", name="reconstruction")(y)
    y = keras.layers.Activation(arch.output_activation, dtype="float32", name=DECODER_PREFIX + "output")(y)
    return CorruptedPixelsOnly(dtype="float32", name="reconstruction")([y, inputs, mask])
