"""Export safety: versions, overwrite, atomic writes, parity failures that write nothing, all formats or none."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_export import models  # noqa: F401 - fixture

from keras_skipae import export
from keras_skipae.export import staging


# --------------------------------------------------------------------------- safety: versions, atomicity, failures
def test_versions_overwrite_and_atomic_writes(models, tmp_path):
    clf = models["classifier"]
    first = export.saved_model(clf, tmp_path, name="clf")
    second = export.saved_model(clf, tmp_path, name="clf")
    assert (first.version, second.version) == (1, 2)
    stamp = (first.path / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        export.saved_model(clf, tmp_path, name="clf", version=1)
    assert (first.path / "saved_model.pb").stat().st_mtime_ns == stamp
    again = export.saved_model(clf, tmp_path, name="clf", version=1, overwrite=True)
    assert again.parity.passed and sorted(p.name for p in (tmp_path / "clf").iterdir()) == ["1", "2"]

    onnx_path = tmp_path / "clf.onnx"
    export.onnx(clf, onnx_path)
    with pytest.raises(FileExistsError, match="already exists"):
        export.onnx(clf, onnx_path)
    with pytest.raises(ValueError, match="invalid model name"):
        export.saved_model(clf, tmp_path, name="../escape")
    with pytest.raises(ValueError, match="positive integers"):
        export.saved_model(clf, tmp_path, version=0)
    with pytest.raises(TypeError, match="needs a keras_skipae model"):
        export.saved_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), tmp_path)
    with pytest.raises(ValueError, match=r"sample_images do not fit the model.*channels 1"):
        export.saved_model(clf, tmp_path, sample_images=np.zeros((2, 32, 32, 1), np.uint8))


def test_parity_failure_fails_the_export_and_writes_nothing(models, tmp_path, monkeypatch):
    original = export.ServingModule._outputs

    def drifted(self, x, pixel_units):  # an exporter bug: probabilities shifted by 1e-3
        out = original(self, x, pixel_units)
        out["probabilities"] = out["probabilities"] + 1e-3
        return out

    monkeypatch.setattr(export.ServingModule, "_outputs", drifted)
    with pytest.raises(export.ParityError, match=r"probabilities \[tf.saved_model.load\] on random uint8 4x32x32x3: max_abs_diff 0\.001") as info:
        export.saved_model(models["classifier"], tmp_path, name="clf")
    assert not info.value.report.passed
    assert list((tmp_path / "clf").iterdir()) == []
    with pytest.raises(export.ParityError, match="onnx export failed its parity check"):
        export.onnx(models["classifier"], tmp_path / "clf.onnx")
    assert list(tmp_path.glob("*clf.onnx*")) == []
    with pytest.raises(export.ParityError):  # directories the failed export would have created are not left behind
        export.onnx(models["classifier"], tmp_path / "new" / "deep" / "clf.onnx")
    assert not (tmp_path / "new").exists()


def _versions(directory: Path) -> list:
    """Everything under a model directory: version directories and any leftover (hidden) names."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_export_model_writes_all_formats_or_none(models, tmp_path, monkeypatch):
    original = export.ServingModule._outputs

    def onnx_drifted(self, x, pixel_units):  # only the ONNX graph (built without asserts) is wrong
        out = original(self, x, pixel_units)
        if not self.validate:
            out["probabilities"] = out["probabilities"] + 1e-3
        return out

    monkeypatch.setattr(export.ServingModule, "_outputs", onnx_drifted)
    out = tmp_path / "exported"
    with pytest.raises(export.ParityError, match="onnx export failed its parity check"):
        export.export_model(models["classifier"], out)
    assert _versions(out / "savedmodel" / "classifier") == []  # the SavedModel passed, but is not moved in alone
    assert _versions(out / "onnx" / "classifier") == []
    monkeypatch.undo()
    results = export.export_model(models["classifier"], out)
    assert [(r.format, r.version) for r in results] == [("savedmodel", 1), ("onnx", 1)]
    assert (out / "onnx" / "classifier" / "1" / "model.onnx").is_file()
    assert (out / "onnx" / "classifier" / "1" / "model.export_report.json").is_file()
    assert results[1].path == out / "onnx" / "classifier" / "1" / "model.onnx" and results[1].report_path.is_file()
    assert _versions(out / "savedmodel" / "classifier") == _versions(out / "onnx" / "classifier") == ["1"]


def _fail_final_move(monkeypatch, error, when):
    """Make ``os.rename`` of a staged artefact onto its final name raise ``error`` when ``when(dst)``."""
    rename = staging.os.rename

    def failing(src, dst):
        if Path(src).name.startswith(".tmp-") and when(Path(dst)):
            raise error
        return rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", failing)


def test_overwrite_keeps_the_old_version_when_the_final_move_fails(models, tmp_path, monkeypatch):
    clf = models["classifier"]
    out = tmp_path / "exported"
    export.export_model(clf, out)
    old_pb = out / "savedmodel" / "classifier" / "1" / "saved_model.pb"
    old_onnx = out / "onnx" / "classifier" / "1" / "model.onnx"
    stamps = (old_pb.read_bytes(), old_pb.stat().st_mtime_ns, old_onnx.read_bytes())
    # the ONNX move fails after the SavedModel's succeeded: both old versions are put back
    _fail_final_move(monkeypatch, OSError("disk gone"), lambda dst: dst.parent.parent.name == "onnx")
    with pytest.raises(OSError, match="disk gone"):
        export.export_model(clf, out, overwrite=True)
    assert (old_pb.read_bytes(), old_pb.stat().st_mtime_ns, old_onnx.read_bytes()) == stamps
    assert _versions(out / "savedmodel" / "classifier") == _versions(out / "onnx" / "classifier") == ["1"]
    assert tf.saved_model.load(str(old_pb.parent)).signatures["serving_default"] is not None
    # an interruption during the swap of a single SavedModel: the old version is restored too
    monkeypatch.undo()
    _fail_final_move(monkeypatch, KeyboardInterrupt(), lambda dst: True)
    with pytest.raises(KeyboardInterrupt):
        export.saved_model(clf, out / "savedmodel", version=1, overwrite=True)
    assert (old_pb.read_bytes(), old_pb.stat().st_mtime_ns) == stamps[:2]
    assert _versions(out / "savedmodel" / "classifier") == ["1"]
    monkeypatch.undo()
    again = export.saved_model(clf, out / "savedmodel", version=1, overwrite=True)
    assert again.parity.passed and old_pb.stat().st_mtime_ns != stamps[1]
    assert _versions(out / "savedmodel" / "classifier") == ["1"]
