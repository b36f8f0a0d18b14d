"""Optional features: a missing extra is a one-line error naming the extra that installs it."""

import subprocess
import sys
import textwrap

import pytest

from keras_skipae.extras import EXTRAS, MissingExtra, require


def test_require_names_the_extra():
    with pytest.raises(MissingExtra, match=r"ONNX export needs the \[onnx\] extra \(missing: no_such_module_x\): "
                                           r"pip install 'keras_skipae\[onnx\]'"):
        require("no_such_module_x", "onnx", "ONNX export")
    assert require("json", "onnx").__name__ == "json"
    assert set(EXTRAS) == {"onnx", "litert", "tune", "parquet"}


@pytest.mark.parametrize("hidden, args, extra", [
    ("ai_edge_litert", ["export", "{model}", "--format", "litert", "--out", "{out}"], "litert"),
    # the same one-line message through the other commands: in make test-slow (CI's time budget)
    pytest.param("tf2onnx", ["export", "{model}", "--format", "onnx", "--out", "{out}"], "onnx", marks=pytest.mark.slow),
    pytest.param("keras_tuner", ["tune", "tune_fashion_mnist", "--quick", "--run-dir", "{out}"], "tune",
                 marks=pytest.mark.slow),
])
def test_the_command_says_which_extra_is_missing(tmp_path, hidden, args, extra):
    code = textwrap.dedent(f"""
        import sys
        sys.modules[{hidden!r}] = None          # as if the extra were not installed
        import keras_skipae as ks
        ks.build("classifier", "tiny").save({str(tmp_path / 'm.keras')!r})
        from keras_skipae.cli import main
        main({[a.format(model=tmp_path / 'm.keras', out=tmp_path / 'out') for a in args]!r})
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error and f"[{extra}] extra" in error[0] and f"pip install 'keras_skipae[{extra}]'" in error[0], result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.onnx"))


def test_an_installed_but_broken_package_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "broken_pkg_x.py").write_text("import no_such_dependency_of_broken_pkg_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_broken_pkg_x") as info:
        require("broken_pkg_x", "onnx")
    assert not isinstance(info.value, MissingExtra)
