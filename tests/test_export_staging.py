"""Export safety: versions, overwrite, atomic writes, parity failures that write nothing, all formats or none,
and commits killed half-way (SIGKILL at named points) finished by the next export or ``recover``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
from test_export import models  # noqa: F401 - fixture

import keras_skipae as ks
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
    with pytest.raises(export.ParityError,
                       match=r"probabilities \[tf.saved_model.load\] on random uint8 4x32x32x3: max_abs_diff 0\.001") as info:
        export.saved_model(models["classifier"], tmp_path, name="clf")
    assert not info.value.report.passed
    assert not (tmp_path / "clf").exists()  # not even an empty <name>/ folder
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


# --------------------------------------------------------------------------- crashes: a kill during the commit
CRASHING_EXPORT = """
import sys
import keras
import keras_skipae as ks
from keras_skipae import export

keras.utils.set_random_seed(2)
model = ks.build("classifier", "tiny", mean=(0.9,))                      # the new version: mean 0.9
export.export_model(model, sys.argv[1], ["savedmodel", "onnx"], version=1, overwrite=True)
"""


def _served_means(out: Path) -> dict:
    """Per format, the ``arch.mean`` recorded in the report inside version 1 (which export it came from)."""
    reports = {
        "savedmodel": out / "savedmodel" / "classifier" / "1" / "assets.extra" / "export_report.json",
        "onnx": out / "onnx" / "classifier" / "1" / "model.export_report.json",
    }
    return {fmt: json.loads(path.read_text())["arch"]["mean"][0] if path.exists() else None for fmt, path in reports.items()}


def _leftovers(out: Path) -> list:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


@pytest.fixture(scope="module")
def old_export(tmp_path_factory):
    """An export tree whose version 1 (both formats) comes from a model with mean 0.1."""
    out = tmp_path_factory.mktemp("old") / "exported"
    keras.utils.set_random_seed(1)
    export.export_model(ks.build("classifier", "tiny", mean=(0.1,)), out, ["savedmodel", "onnx"])
    assert _served_means(out) == {"savedmodel": 0.1, "onnx": 0.1}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("point, visible, finished", [
    ("staged", {"savedmodel": 0.1, "onnx": 0.1}, 0.1),          # killed before the journal: the old version stays
    ("journaled", {"savedmodel": 0.1, "onnx": 0.1}, 0.9),       # journal written, nothing moved: finished forward
    ("moved:1", {"savedmodel": 0.9, "onnx": 0.1}, 0.9),         # the issue: savedmodel new, onnx old
    ("swapped-out:2", {"savedmodel": 0.9, "onnx": None}, 0.9),  # onnx/1 renamed away, the new one not yet in
    ("committed", {"savedmodel": 0.9, "onnx": 0.9}, 0.9),       # all moved, the old versions not yet deleted
])
def test_a_kill_during_the_commit_is_finished_by_recover(point, visible, finished, old_export, tmp_path, capsys):
    out = tmp_path / "exported"
    shutil.copytree(old_export, out)
    env = {**os.environ, staging.CRASH_ENV: point}
    done = subprocess.run([sys.executable, "-c", CRASHING_EXPORT, str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert _served_means(out) == visible  # what a reader sees right after the kill
    journals = [p for p in _leftovers(out) if ".commit-" in p]
    assert len(journals) == (0 if point == "staged" else 2)  # one per model folder the commit touches
    assert _leftovers(out)  # staging folders, backups, journals

    actions = export.recover(out)
    printed = capsys.readouterr().err
    assert actions and all(action in printed for action in actions)
    assert _served_means(out) == {"savedmodel": finished, "onnx": finished}  # every format the same version
    assert _leftovers(out) == []
    assert export.recover(out) == []
    assert onnxruntime.InferenceSession(str(out / "onnx" / "classifier" / "1" / "model.onnx")).get_outputs()
    assert tf.saved_model.load(str(out / "savedmodel" / "classifier" / "1")).signatures["serving_default"] is not None


@pytest.mark.slow
def test_the_next_export_finishes_a_killed_commit_first(old_export, tmp_path, capsys):
    out = tmp_path / "exported"
    shutil.copytree(old_export, out)
    env = {**os.environ, staging.CRASH_ENV: "moved:1"}
    done = subprocess.run([sys.executable, "-c", CRASHING_EXPORT, str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    keras.utils.set_random_seed(3)
    results = export.export_model(ks.build("classifier", "tiny", mean=(0.5,)), out, ["savedmodel", "onnx"])
    assert "finished an export commit interrupted by a crash" in capsys.readouterr().err
    assert [(r.format, r.version) for r in results] == [("savedmodel", 2), ("onnx", 2)]  # after the finished 1
    assert _served_means(out) == {"savedmodel": 0.9, "onnx": 0.9}
    assert _versions(out / "savedmodel" / "classifier") == _versions(out / "onnx" / "classifier") == ["1", "2"]


def test_recover_cleans_what_killed_exports_left(tmp_path, capsys):
    models_dir = tmp_path / "models" / "clf"
    (models_dir / "2").mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        (models_dir / f".tmp-3-{dead_pid}-0123abcd").mkdir()             # staging of a killed export
        (models_dir / f".tmp-4-{sleeper.pid}-0123abcd").mkdir()          # staging of a running export
        (models_dir / f".old-1-{dead_pid}-0123abcd").mkdir()             # killed between "1 -> backup" and "new -> 1"
        (models_dir / f".old-2-{dead_pid}-0123abcd").mkdir()             # killed before deleting the backup of 2
        (models_dir / ".tmp-5-89abcdef").mkdir()                        # staging named before pids were in names
        (models_dir / f".tmp-6-0123abcd.p{dead_pid}").mkdir()           # today's names: pid last
        (models_dir / f".tmp-7-0123abcd.p{sleeper.pid}").mkdir()
        (models_dir / f".old-8-0123abcd.p{dead_pid}").mkdir()
        actions = export.recover(tmp_path / "models")
        assert len(actions) == 6 and sum("restored" in a for a in actions) == 2
        assert _versions(models_dir) == sorted(["1", "2", "8", f".tmp-4-{sleeper.pid}-0123abcd",
                                                f".tmp-7-0123abcd.p{sleeper.pid}"])
        assert "the staging folder of an export that was killed" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_backup_named_before_pids_whose_name_ends_in_digits_is_not_read_as_a_pid(tmp_path):
    """``.old-resnet-<N>-1a2b3c4d`` from the format without pids is resnet-<N>'s backup; read as resnet's of process
    N (dead), it was deleted because resnet exists: resnet-<N> was lost."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    root = tmp_path / "models"
    (root / "resnet").mkdir(parents=True)
    backup = root / f".old-resnet-{dead_pid}-0123abcd"
    (backup / "1").mkdir(parents=True)
    export.recover(root)
    assert (root / f"resnet-{dead_pid}" / "1").is_dir() and (root / "resnet").is_dir() and not backup.exists()


def test_a_failed_export_leaves_no_empty_name_folder(models, tmp_path, monkeypatch):
    def full_disk(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(export.ServingModule, "write", full_disk)
    with pytest.raises(OSError, match="disk full"):
        export.saved_model(models["classifier"], tmp_path / "models")
    with pytest.raises(OSError, match="disk full"):
        export.export_model(models["classifier"], tmp_path / "exported", ["savedmodel", "onnx"])
    assert list(tmp_path.iterdir()) == []


def test_recover_keeps_the_old_version_when_the_new_one_is_gone(tmp_path):
    """A journal whose new artefact vanished (an undo that failed half-way): the old version goes back, not away."""
    model_dir = tmp_path / "clf"
    backup = model_dir / f".old-1-{os.getpid()}-0123abcd"
    (backup / "variables").mkdir(parents=True)
    staging._write_journals([(model_dir / f".tmp-1-{os.getpid()}-4567cdef", model_dir / "1", backup)])
    export.recover(tmp_path)
    assert _versions(model_dir) == ["1"] and (model_dir / "1" / "variables").is_dir()
