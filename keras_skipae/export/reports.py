"""What an export reports: its errors, the parity figures, the result, the report JSON.

Every format writes the same report (:func:`export_report`) next to its
artefact, and returns the same :class:`ExportResult`.
"""

from __future__ import annotations

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
class ExportResult:
    """What an export wrote: the artefact, its signatures and the parity figures."""

    format: str
    path: Path
    kind: str
    name: str
    version: int | None
    signatures: dict
    parity: ParityReport
    report_path: Path

    def __str__(self) -> str:
        version = f" version {self.version}" if self.version is not None else ""
        return f"{self.format} {self.kind} '{self.name}'{version} at {self.path} (parity passed)"


def export_report(
    result_format: str,
    model,
    kind: str,
    arch: Arch,
    signatures: dict,
    parity: ParityReport,
    *,
    versions: dict | None = None,
    **extra,
) -> dict:
    """The content of ``export_report.json``: what was exported, its signatures, parity and versions.

    ``versions`` adds the converter's and runtime's versions to the package's,
    TensorFlow's and Keras's; ``extra`` goes in after ``model_name``
    (``version``, ``opset``, ...).
    """
    return {
        "format": result_format,
        "kind": kind,
        "model_name": model.name,
        **extra,
        "arch": arch.to_dict(),
        "signatures": signatures,
        "parity": parity.to_dict(),
        "versions": {"keras_skipae": __version__, "tensorflow": tf.__version__, "keras": keras.__version__, **(versions or {})},
    }
