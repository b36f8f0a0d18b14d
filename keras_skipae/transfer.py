"""Carry encoder weights from one keras_skipae model to another, by layer name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras

from .models.encoder import encoder_layers
from .saving import load


@dataclass
class TransferReport:
    """What :func:`transfer` copied, and what it could not.

    ``copied``: encoder layer names whose weights were copied.
    ``missing``: (layer name, side) for encoder layers with weights present in
    only one model; side is ``"source"`` or ``"target"`` (where it is absent).
    ``mismatched``: (layer name, source shapes, target shapes).
    """

    copied: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def __str__(self) -> str:
        rows = [("layer", "status", "detail")]
        rows += [(name, "copied", "") for name in self.copied]
        rows += [(name, "missing", f"absent from {side}") for name, side in self.missing]
        rows += [
            (name, "mismatched", f"source {_shapes(src)} vs target {_shapes(dst)}")
            for name, src, dst in self.mismatched
        ]
        widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        summary = (
            f"TransferReport: {len(self.copied)} copied, {len(self.missing)} missing, "
            f"{len(self.mismatched)} mismatched"
        )
        return summary + "\n" + "\n".join(lines)


def _shapes(shapes) -> str:
    return ", ".join("x".join(str(d) for d in s) for s in shapes)


class TransferError(ValueError):
    """Raised by a strict transfer; ``.report`` holds the full report."""

    def __init__(self, message, report: TransferReport):
        super().__init__(message)
        self.report = report


def _weighted_encoder_layers(model) -> dict:
    return {layer.name: layer for layer in encoder_layers(model) if layer.weights}


def transfer(source, target: keras.Model, *, strict: bool = True) -> TransferReport:
    """Copy the encoder weights of ``source`` into ``target``, matched by layer name.

    Every encoder layer with weights (``encoder_conv{k}`` and its batch norm)
    is compared first; nothing is copied until all fit (with ``strict``).

    Args:
        source: a built keras_skipae model or a path to a saved ``.keras`` file.
        target: the model to copy into.
        strict: refuse when any encoder layer is missing or of another shape;
            ``False`` copies the layers that match and reports the rest.

    Returns:
        A :class:`TransferReport`: ``copied``, ``missing``, ``mismatched``.

    Raises:
        TransferError: with ``strict``, anything that does not fit (it carries
            the report), or a source without encoder layers.

    Examples:
        >>> report = transfer(autoencoder, classifier)
        >>> print(report)
    """
    if isinstance(source, (str, Path)):
        source = load(source)
    src = _weighted_encoder_layers(source)
    dst = _weighted_encoder_layers(target)
    report = TransferReport()
    for name in sorted(set(src) | set(dst), key=_layer_order(src, dst)):
        if name not in dst:
            report.missing.append((name, "target"))
        elif name not in src:
            report.missing.append((name, "source"))
        else:
            s_shapes = [tuple(w.shape) for w in src[name].weights]
            d_shapes = [tuple(w.shape) for w in dst[name].weights]
            if s_shapes != d_shapes:
                report.mismatched.append((name, s_shapes, d_shapes))
            else:
                report.copied.append(name)
    if not src:
        raise TransferError(f"source model {source.name!r} has no encoder layers (names starting 'encoder_')", report)
    if strict and not report.ok:
        raise TransferError(
            f"encoder of {source.name!r} does not fit {target.name!r}; nothing was copied. "
            "Build both from the same preset and widths, or pass strict=False to copy what matches.\n"
            + str(report),
            report,
        )
    for name in report.copied:
        dst[name].set_weights(src[name].get_weights())
    return report


def _layer_order(src: dict, dst: dict):
    order = {name: i for i, name in enumerate(list(dst) + [n for n in src if n not in dst])}
    return order.__getitem__
