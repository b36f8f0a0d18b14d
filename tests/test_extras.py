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


def _says_which_extra(stderr, extra, out):
    error = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert error and f"[{extra}] extra" in error[0] and f"pip install 'keras_skipae[{extra}]'" in error[0], stderr
    assert not out.exists() or not any(out.rglob("*.onnx")) and not any(out.rglob("*.tflite"))


def test_the_export_command_says_the_litert_extra_is_missing(tmp_path, monkeypatch, capsys):
    """In this process (the other commands, in a fresh one each, below): the extra hidden as if not installed."""
    import keras_skipae as ks
    from keras_skipae.cli import main

    ks.build("classifier", "tiny").save(tmp_path / "m.keras")
    for name in [m for m in sys.modules if m == "ai_edge_litert" or m.startswith("ai_edge_litert.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "m.keras"), "--format", "litert", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 1
    _says_which_extra(capsys.readouterr().err, "litert", tmp_path / "out")


# the same one-line message through the other commands, each in a fresh process: in make test-slow (CI's budget)
@pytest.mark.slow
@pytest.mark.parametrize("hidden, args, extra", [
    ("tf2onnx", ["export", "{model}", "--format", "onnx", "--out", "{out}"], "onnx"),
    ("keras_tuner", ["tune", "tune_fashion_mnist", "--quick", "--run-dir", "{out}"], "tune"),
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
    _says_which_extra(result.stderr, extra, tmp_path / "out")


def test_an_installed_but_broken_package_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "broken_pkg_x.py").write_text("import no_such_dependency_of_broken_pkg_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_broken_pkg_x") as info:
        require("broken_pkg_x", "onnx")
    assert not isinstance(info.value, MissingExtra)
