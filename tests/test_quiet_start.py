"""A quiet, fast start: `import keras_skipae` is light and `skipae` shows no TensorFlow start-up lines.

TensorFlow's C++ start-up lines ("failed call to cuInit", absl's "All log
messages before absl::InitializeLog()", oneDNN and CUDA notes) are silenced
unless ``--debug`` is given or the user set ``TF_CPP_MIN_LOG_LEVEL``.
"""

import importlib
import os
import subprocess
import sys
import textwrap
import types

import pytest

import keras_skipae as ks
from keras_skipae.data.testing import write_folder_tree
from keras_skipae.tf_startup import is_tensorflow_log_line


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **extra}


def _skipae(*args, env=None, timeout=300):
    """``skipae ARGS`` in a fresh process (as the console script runs it); stdout and stderr in order."""
    return subprocess.run([sys.executable, "-m", "keras_skipae.cli", *args], env=env or _env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def _tensorflow_lines(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if is_tensorflow_log_line(line) or "cuInit" in line or "absl::" in line]


def test_import_loads_neither_tensorflow_nor_the_heavy_optional_libraries():
    code = ("import sys, keras_skipae; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'keras_tuner', 'matplotlib', 'sklearn', "
            "'tensorflow_datasets', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and out.stderr == ""


def test_public_names_resolve_on_first_use():
    import keras_skipae.embed  # noqa: F401  submodules named like public functions do not shadow them
    import keras_skipae.presets  # noqa: F401
    import keras_skipae.transfer  # noqa: F401
    from keras_skipae import TransferReport, build, embed, load, transfer

    assert isinstance(ks.transfer, types.FunctionType) and ks.transfer is transfer
    assert isinstance(ks.embed, types.FunctionType) and ks.embed is embed
    assert isinstance(ks.presets, types.FunctionType) and "tiny" in ks.presets()
    assert build is ks.build and load is ks.load and TransferReport is ks.TransferReport
    assert set(ks.__all__) <= set(dir(ks))
    assert all(getattr(ks, name) is not None for name in ks.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        ks.nothing_here  # noqa: B018


def test_listing_the_recipes_starts_no_tensorflow():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom keras_skipae.cli import main\n"
            "result = CliRunner().invoke(main, ['recipes'])\nassert result.exit_code == 0, result.output\n"
            "print(result.output.splitlines()[-1], [m for m in ('tensorflow', 'keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr
    assert " recipes in " in out.stdout


@pytest.mark.parametrize("args", [["presets"], ["quickstart", "--help"]])
def test_commands_that_need_no_tensorflow_print_only_ours(args):
    result = _skipae(*args, timeout=60)
    assert result.returncode == 0, result.stdout
    assert not _tensorflow_lines(result.stdout), result.stdout
    assert result.stdout.splitlines()[0].startswith(("allconv-c", "Usage: "))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_folder_tree(tmp_path_factory.mktemp("quiet") / "tree", {"train": 2}, as_zip=True)


def test_skipae_starts_without_tensorflow_lines(tree):
    """TensorFlow is imported and runs ops (statistics); nothing of its start-up reaches the user."""
    result = _skipae("data", f"folder:{tree}", "--split", "train", "--stats")
    assert result.returncode == 0, result.stdout
    assert not _tensorflow_lines(result.stdout), result.stdout
    assert result.stdout.splitlines()[0].startswith("source:")


@pytest.mark.slow  # a third TensorFlow start-up in a subprocess; CI keeps the two quiet ones
def test_debug_lets_tensorflow_log(tree):
    result = _skipae("--debug", "data", f"folder:{tree}", "--split", "train")
    assert result.returncode == 0, result.stdout
    if not _tensorflow_lines(result.stdout):
        pytest.skip("this TensorFlow build logs nothing at start-up on this machine")
    assert "source:" in result.stdout


def test_a_level_the_user_set_is_kept():
    code = textwrap.dedent("""
        import os, sys
        from keras_skipae import tf_startup
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        print(tf_startup.quiet_tensorflow_startup(), os.environ["TF_CPP_MIN_LOG_LEVEL"],
              tf_startup._finder in sys.meta_path)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
        print(tf_startup.quiet_tensorflow_startup(), os.environ["TF_CPP_MIN_LOG_LEVEL"],
              tf_startup._finder in sys.meta_path, tf_startup._finder.level)
        del os.environ["TF_CPP_MIN_LOG_LEVEL"]
        print(tf_startup.quiet_tensorflow_startup(), os.environ["TF_CPP_MIN_LOG_LEVEL"],
              tf_startup._finder in sys.meta_path, tf_startup._finder.level)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["False 0 False", "True 1 True 1", "True 3 True 3"]


def test_the_quietest_level_is_never_louder_than_none(tree):
    """TF_CPP_MIN_LOG_LEVEL=3 asks for silence: absl's start-up line must not get through."""
    result = _skipae("data", f"folder:{tree}", "--split", "train", "--stats", env=_env(TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stdout
    assert not _tensorflow_lines(result.stdout), result.stdout


def test_a_filtered_level_keeps_the_lines_it_asks_for():
    from keras_skipae.tf_startup import _hidden
    info = "I0000 00:00:1796076382.027337   18116 port.cc:153] oneDNN custom operations are on."
    error = "E0000 00:00:1796076397.404778   18374 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
    absl = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    assert _hidden(info, 1) and not _hidden(error, 1) and not _hidden(absl, 1)
    assert _hidden(info, 3) and _hidden(error, 3) and _hidden(absl, 3)
    assert not _hidden("a warning of Python's own", 3)


def test_only_tensorflow_log_lines_are_filtered():
    assert is_tensorflow_log_line(
        "I0000 00:00:1796076382.027337   18116 port.cc:153] oneDNN custom operations are on.")
    assert is_tensorflow_log_line(
        "E0000 00:00:1796076397.404778   18374 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error")
    assert is_tensorflow_log_line("W1122 12:34:56.789012 4242 cuda_dnn.cc:9342] Unable to register cuDNN factory\n")
    assert is_tensorflow_log_line(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not is_tensorflow_log_line("/x/numpy/__init__.py:12: UserWarning: something worth reading")
    assert not is_tensorflow_log_line("error: no such file or directory")


def test_the_command_asks_for_tensorflows_onednn_kernels_unless_told_otherwise(monkeypatch):
    """On x86-64 `skipae` sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow starts; a value the user set wins."""
    from keras_skipae import tf_startup

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert tf_startup.prefer_onednn() is False, "TensorFlow is imported here: too late, nothing set"
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    monkeypatch.delitem(sys.modules, "tensorflow")  # as in a fresh `skipae` process
    monkeypatch.setattr(tf_startup.platform, "machine", lambda: "aarch64")
    assert tf_startup.prefer_onednn() is False and "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    monkeypatch.setattr(tf_startup.platform, "machine", lambda: "x86_64")
    assert tf_startup.prefer_onednn() is True and os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert tf_startup.prefer_onednn() is False and os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_a_mistyped_recipe_key_is_reported_without_starting_tensorflow():
    """Validation (schema, kinds, presets, data locations) needs no TensorFlow, so a typo is answered at once."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom keras_skipae.cli import main\n"
            "result = CliRunner().invoke(main, ['run', 'quickstart', '--set', 'pretrain.epoch=2'])\n"
            "print(result.exit_code, [m for m in ('tensorflow', 'keras') if m in sys.modules])\n"
            "print(result.output)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    first, _, rest = out.stdout.partition("\n")
    assert first == "1 []", out.stdout + out.stderr  # our error, exit status 1
    assert "stages.pretrain.epoch: unknown key (did you mean 'epochs'?)" in rest


def test_the_data_and_recipes_packages_resolve_their_public_names_on_first_use():
    code = ("import sys\nfrom keras_skipae import data, recipes\n"
            "r = recipes.load_recipe('quickstart', ['pretrain.epochs=1'])\n"
            "assert r.stages['pretrain'].epochs == 1 and isinstance(data.DataError('x'), Exception)\n"
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])\n"
            "assert set(data.__all__) <= set(dir(data)) and set(recipes.__all__) <= set(dir(recipes))\n"
            "from keras_skipae.data import load, pack, split\n"
            "assert callable(load) and callable(pack) and data.split is split and recipes.run.__module__ "
            "== 'keras_skipae.recipes.runner'\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["[]", "['keras', 'tensorflow']"], out.stdout
    from keras_skipae import data

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        data.nothing_here  # noqa: B018


def test_the_kind_registry_resolves_its_classes_metrics_and_losses():
    from keras_skipae.kinds import KINDS, kind_spec
    from keras_skipae.models import SkipAutoEncoder, SkipClassifier, SkipSegmenter
    from keras_skipae.train import metrics

    assert [spec.model_class for spec in KINDS.values()] == [SkipAutoEncoder, SkipClassifier, SkipSegmenter]
    for spec in KINDS.values():  # every name in the table resolves (a typo there would surface only in use)
        assert callable(spec.make_metrics) and callable(spec.make_loss)
        assert callable(getattr(importlib.import_module("keras_skipae.data.pipeline"), spec.pipeline_name))
    spec = kind_spec("classifier")
    assert spec.make_metrics is metrics.classification_metrics and spec.make_loss is metrics.probabilities_loss
    assert kind_spec("segmenter").make_loss is metrics.logits_loss
