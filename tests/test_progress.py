"""Long work shows progress: a live line on a terminal, one summary line in logs, nothing when quick.

Covers :mod:`keras_skipae.progress`, the statistics pass (``data.compute_stats``)
and the trainer's in-epoch progress bar on a terminal.
"""

import functools
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_skipae import data, progress
from keras_skipae.data import stats
from keras_skipae.progress import Progress, track


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_live_line_on_a_terminal_redrawn_in_place(monkeypatch):
    monkeypatch.delenv("SKIPAE_PROGRESS", raising=False)
    out = _Terminal()
    assert list(track(range(3), "decoding", unit="files", delay=0, stream=out)) == [0, 1, 2]
    text = out.getvalue()
    assert text.startswith("\rdecoding [") and text.endswith("\n")
    assert "3/3 files (100%)" in text and text.count("\n") == 1


def test_one_summary_line_in_logs_and_nothing_for_quick_work(monkeypatch):
    monkeypatch.delenv("SKIPAE_PROGRESS", raising=False)
    log = io.StringIO()
    with Progress("probing", total=2, unit="checkpoints", delay=0, stream=log) as bar:
        bar.update(2)
    assert log.getvalue().startswith("probing: 2 checkpoints in ") and "\r" not in log.getvalue()
    quick = io.StringIO()
    with Progress("probing", total=2, stream=quick) as bar:  # well under the 2 s delay
        bar.update(2)
    assert quick.getvalue() == ""
    monkeypatch.setenv("SKIPAE_PROGRESS", "0")
    off = _Terminal()
    with Progress("probing", total=2, delay=0, stream=off) as bar:
        bar.update(2)
    assert off.getvalue() == ""


@pytest.fixture
def stats_output(monkeypatch):
    """What compute_stats's progress line writes, with no delay."""
    out = _Terminal()
    monkeypatch.setattr(stats, "Progress", functools.partial(progress.Progress, delay=0, stream=out))
    return out


def test_compute_stats_shows_its_progress_on_a_terminal(stats_output, monkeypatch):
    monkeypatch.delenv("SKIPAE_PROGRESS", raising=False)
    images = np.random.default_rng(0).integers(0, 256, (1500, 4, 4, 3), dtype=np.uint8)
    mean, std = data.compute_stats(data.load((images, np.zeros(1500, np.int32))))
    np.testing.assert_allclose(mean, (images / 255.0).mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(std, (images / 255.0).std(axis=(0, 1, 2)), rtol=1e-6)
    text = stats_output.getvalue()
    assert "computing statistics [" in text and "512/1500 images" in text  # drawn while the pass runs
    assert "1500/1500 images (100%)" in text and text.endswith("\n")


def test_compute_stats_counts_images_of_differing_sizes(stats_output, monkeypatch):
    monkeypatch.setenv("SKIPAE_PROGRESS", "1")
    ragged = tf.data.Dataset.from_generator(
        lambda: ((np.full((h, 4, 1), 51, np.uint8), 0) for h in [2, 6] * 40),
        output_signature=(tf.TensorSpec((None, 4, 1), tf.uint8), tf.TensorSpec((), tf.int32)),
    )
    mean, _ = data.compute_stats(ragged)
    assert mean[0] == pytest.approx(0.2)
    assert "computing statistics: 64 images" in stats_output.getvalue()
    assert "computing statistics: 80 images" in stats_output.getvalue()


_FIT = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    import keras_skipae as ks
    from keras_skipae.train import Trainer
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    trainer = Trainer(steps_per_execution=1)
    with trainer.scope():
        model = ks.build("autoencoder", "tiny", input_shape=(8, 8, 1), widths=[4], convs_per_stage=1)
    trainer.fit(model, tf.data.Dataset.from_tensor_slices((x, x)).batch(16), epochs=2)
    print("done")
""")


def _run_in_a_terminal(code: str) -> str:
    """Run ``python -c code`` with stdin, stdout and stderr on a pseudo-terminal; all it wrote."""
    controller, terminal = os.openpty()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-c", code], stdin=terminal, stdout=terminal, stderr=terminal,
                             env=env, close_fds=True)
    os.close(terminal)
    out = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child has exited and closed the terminal
            break
        if not chunk:
            break
        out.extend(chunk)
    os.close(controller)
    text = out.decode("utf-8", "replace")
    assert child.wait(timeout=300) == 0, text
    return text


@pytest.mark.slow  # a TensorFlow subprocess on a pseudo-terminal; CI keeps the log-file case below
def test_fit_shows_a_progress_bar_within_epochs_on_a_terminal():
    text = _run_in_a_terminal(_FIT)
    assert "done" in text
    # Keras's bar redrawn in place at each step: 1/4 ... 4/4, with carriage returns or backspaces
    assert "1/4" in text and "4/4" in text and ("\r" in text.split("1/4", 1)[1] or "\b" in text)


def test_fit_writes_one_line_per_epoch_when_not_on_a_terminal(capsys):
    """The same script in this process, whose stdout (pytest's capture) is not a terminal, as in a log file."""
    assert not sys.stdout.isatty()
    exec(compile(_FIT, "<fit>", "exec"), {})
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("4/4 - ")]
    assert "done" in out and len(epoch_lines) == 2 and "1/4" not in out and "\b" not in out, out
