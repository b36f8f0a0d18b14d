"""What an export reports: its errors, the parity figures, the result, the report JSON.

Every format writes the same report (:func:`export_report`) next to its
artefact, and returns the same :class:`ExportResult`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from .. import __version__
from ..arch import Arch

FLOAT_TOLERANCE = 1e-4
LABEL_AGREEMENT = 0.999
REPORT_NAME = "export_report.json"


class ExportError(RuntimeError):
    """An export could not be written or is not valid."""


class ParityError(ExportError):
    """The exported artefact does not compute what the Keras model computes; ``.report`` has the figures."""

    def __init__(self, report: ParityReport):
        self.report = report
        failed = [c for c in report.checks if not c.passed]
        head = (
            f"{report.format} export failed its parity check against the Keras model "
            f"({len(failed)} of {len(report.checks)} checks failed); nothing was written to {report.artefact}"
        )
        lines = [head] + [f"FAILED {c.describe()}" for c in failed]
        super().__init__("\n".join(lines))


@dataclass
class ParityCheck:
    """One output of one signature on one set of inputs, compared with the Keras model."""

    signature: str
    inputs: str
    output: str
    metric: str  # "max_abs_diff" (at most limit) or "agreement" (at least limit)
    value: float
    limit: float
    passed: bool
    note: str = ""
    runtime: str = ""

    def describe(self) -> str:
        op = "<=" if self.metric == "max_abs_diff" else ">="
        runtime = f" [{self.runtime}]" if self.runtime else ""
        text = (
            f"{self.signature}/{self.output}{runtime} on {self.inputs}: {self.metric} {self.value:.3g} "
            f"(limit {op} {self.limit:g})"
        )
        return text + (f"; {self.note}" if self.note else "")


@dataclass
class ParityReport:
    """Figures of the parity check of one artefact; :attr:`passed` when every check passed."""

    format: str
    artefact: str
    reference: str
    checks: list = field(default_factory=list)
    seed: int | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> str:
        """The checks as a table, one per line."""
        head = f"parity of {self.format} export {self.artefact} ({'passed' if self.passed else 'FAILED'}):"
        return "\n".join([head] + [("  ok     " if c.passed else "  FAILED ") + c.describe() for c in self.checks])

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "artefact": self.artefact,
            "reference": self.reference,
            "passed": self.passed,
            "seed": self.seed,
            "float_tolerance": FLOAT_TOLERANCE,
            "label_agreement": LABEL_AGREEMENT,
            "checks": [asdict(c) for c in self.checks],
        }


@dataclass
class ChangeMeasure:
    """How far one output of a quantized artefact moved from the float Keras model's, on one set of inputs."""

    output: str
    inputs: str
    metric: str  # "agreement" (labels), "max_abs_diff" or "mean_abs_diff" (scores, in the output's units)
    value: float
    units: str = ""

    def describe(self) -> str:
        units = f" {self.units}" if self.units else ""
        return f"{self.output} on {self.inputs}: {self.metric} {self.value:.4g}{units}"


@dataclass
class AccuracyChange:
    """What quantization did to the outputs: label agreement and score differences against the float model.

    A quantized artefact cannot pass the float parity check by design; the
    export measures and reports this instead (and refuses non-finite outputs).
    """

    format: str
    artefact: str
    reference: str
    quantize: str
    signature: str
    measures: list = field(default_factory=list)
    seed: int | None = None
    runtime: str = ""

    def value(self, output: str, metric: str, inputs: str | None = None) -> float:
        """The measure of ``output`` by ``metric`` (on the sample images when there were some, else the first set)."""
        rows = [m for m in self.measures if m.output == output and m.metric == metric]
        if inputs is not None:
            rows = [m for m in rows if m.inputs == inputs]
        else:
            rows = [m for m in rows if "sample images" in m.inputs] or rows
        if not rows:
            raise KeyError(f"no {metric} measured for {output!r}")
        return rows[0].value

    def summary(self) -> str:
        """The measures as a table, one per line."""
        head = (
            f"accuracy change of the {self.quantize} {self.format} export {self.artefact} against {self.reference} "
            f"(no parity check: quantized weights change the outputs by design):"
        )
        return "\n".join([head] + ["  " + m.describe() for m in self.measures])

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "artefact": self.artefact,
            "reference": self.reference,
            "quantize": self.quantize,
            "signature": self.signature,
            "runtime": self.runtime,
            "seed": self.seed,
            "measures": [asdict(m) for m in self.measures],
        }


@dataclass
class ExportResult:
    """What an export wrote: the artefact, its signatures and the parity figures.

    A quantized export has no parity report (``parity`` is None) but an
    :class:`AccuracyChange` in ``accuracy_change``.
    """

    format: str
    path: Path
    kind: str
    name: str
    version: int | None
    signatures: dict
    parity: ParityReport | None
    report_path: Path
    accuracy_change: AccuracyChange | None = None

    def __str__(self) -> str:
        version = f" version {self.version}" if self.version is not None else ""
        checked = "parity passed" if self.parity is not None else f"{self.accuracy_change.quantize}, accuracy change measured"
        return f"{self.format} {self.kind} '{self.name}'{version} at {self.path} ({checked})"

    def summary(self) -> str:
        """The parity table, or the accuracy-change table of a quantized export."""
        return self.parity.summary() if self.parity is not None else self.accuracy_change.summary()


def report_beside(path: str | os.PathLike) -> Path:
    """The report of a single-file artefact, beside it: ``model.onnx`` -> ``model.export_report.json``."""
    path = Path(path)
    return path.with_name(path.stem + "." + REPORT_NAME)


def export_report(
    result_format: str,
    model,
    kind: str,
    arch: Arch,
    signatures: dict,
    parity: ParityReport | None,
    *,
    versions: dict | None = None,
    accuracy_change: AccuracyChange | None = None,
    **extra,
) -> dict:
    """The content of ``export_report.json``: what was exported, its signatures, parity and versions.

    ``versions`` adds the converter's and runtime's versions to the package's,
    TensorFlow's and Keras's; ``extra`` goes in after ``model_name``
    (``version``, ``opset``, ...). A quantized export reports its
    ``accuracy_change`` where the others report ``parity``.
    """
    checked = {"parity": parity.to_dict()} if parity is not None else {"parity": None}
    if accuracy_change is not None:
        checked["accuracy_change"] = accuracy_change.to_dict()
    return {
        "format": result_format,
        "kind": kind,
        "model_name": model.name,
        **extra,
        "arch": arch.to_dict(),
        "signatures": signatures,
        **checked,
        "versions": {"keras_skipae": __version__, "tensorflow": tf.__version__, "keras": keras.__version__, **(versions or {})},
    }
