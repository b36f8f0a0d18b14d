"""A quiet TensorFlow start for the ``skipae`` command, on its faster CPU kernels.

When TensorFlow loads it writes C++ log lines to stderr: absl's "All log
messages before absl::InitializeLog() is called are written to STDERR",
oneDNN and CUDA notes ("Could not find cuda drivers on your machine"), and at
the first operation on a machine without a GPU "failed call to cuInit:
INTERNAL: CUDA error". None of them is a failure, but they come before
anything of ours and a newcomer reads them as one.

Two things quiet them, both before TensorFlow is imported:

- ``TF_CPP_MIN_LOG_LEVEL=3`` silences TensorFlow's own C++ logging, the
  cuInit error included (only FATAL remains; real failures still reach the
  user as Python exceptions);
- the lines absl writes before its initialisation ignore every setting, so
  while ``tensorflow`` is being imported, file descriptor 2 is captured and
  everything that is not such a log line (Python warnings, say) is written back.
  If the import fails, everything captured is written back unfiltered.

The command does this unless ``--debug`` is given. A ``TF_CPP_MIN_LOG_LEVEL``
the user set is kept, and the start-up lines below that level are filtered
all the same (absl's pre-initialisation line counts as a warning): a quieter
setting is never louder than none. ``TF_CPP_MIN_LOG_LEVEL=0`` (everything)
leaves TensorFlow's output untouched. Importing ``keras_skipae`` from Python
changes nothing.

The command also turns on TensorFlow's oneDNN kernels on x86-64 CPUs
(:func:`prefer_onednn`): TensorFlow enables them by default only on CPUs with
AVX-512 VNNI, bfloat16 or AMX instructions, and on an AVX2-only CPU its default
kernels trained the ``allconv-c`` auto-encoder 1.15-1.25x slower
(``docs/benchmarks.md``; serving batches of 64 gained less, and oneDNN doubled
batch-1 latency there). A ``TF_ENABLE_ONEDNN_OPTS`` the user set wins; from
Python, set it before importing TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import platform
import re
import sys
import tempfile

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
QUIET_LEVEL = "3"

# a glog/absl line: severity + MMDD, time (before absl is initialised: 00:00:<epoch seconds>), thread, file:line]
_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+\S+:\d+\]")
_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),  # cpu_feature_guard's 2nd line
)


_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def is_tensorflow_log_line(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's (absl's) C++ log lines."""
    return log_severity(line) is not None


def log_severity(line: str) -> int | None:
    """A TensorFlow log line's severity as ``TF_CPP_MIN_LOG_LEVEL`` counts it (0 info .. 3 fatal); None for other lines."""
    line = line.rstrip("\r\n")
    if _LOG_LINE.match(line):
        return _SEVERITY[line[0]]
    if _NOISE[0].match(line):
        return _SEVERITY["W"]
    if _NOISE[1].match(line):
        return _SEVERITY["I"]
    return None


def _hidden(line: str, level: int) -> bool:
    severity = log_severity(line)
    return severity is not None and severity < level


@contextlib.contextmanager
def _stderr_without_tensorflow_logs(level: int = 3):
    """Capture file descriptor 2; on exit write back what is not a TensorFlow log line below ``level``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to quiet
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = text if failed else "".join(
                line for line in text.splitlines(keepends=True) if not _hidden(line, level))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once and runs its import inside :func:`_stderr_without_tensorflow_logs`."""

    level = 3

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        uninstall_finder()
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def quiet_exec_module(module):
            with _stderr_without_tensorflow_logs(self.level):
                exec_module(module)

        loader.exec_module = quiet_exec_module
        return spec


_finder = _QuietTensorFlowImport()


def uninstall_finder() -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_finder)


def quiet_tensorflow_startup() -> bool:
    """Quiet TensorFlow's start-up lines for this process (see the module doc); True if it did.

    A ``TF_CPP_MIN_LOG_LEVEL`` the user set is kept and the start-up lines
    below it are filtered; at ``0`` (show everything) or once TensorFlow is
    imported (too late) it does nothing. Call it before anything imports
    TensorFlow.
    """
    if "tensorflow" in sys.modules:
        return False
    if LEVEL_VARIABLE in os.environ:
        try:
            level = int(os.environ[LEVEL_VARIABLE])
        except ValueError:
            level = 0  # TensorFlow reads an unparsable level as 0 too
        if level <= 0:
            return False
    else:
        os.environ[LEVEL_VARIABLE] = QUIET_LEVEL
        level = int(QUIET_LEVEL)
    _finder.level = level
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return True


def prefer_onednn() -> bool:
    """Ask TensorFlow for its oneDNN kernels on x86-64 CPUs (see the module doc); True if this call set it.

    Sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the user set the variable, the CPU
    is not x86-64, or TensorFlow is already imported (it reads the variable
    once, at start-up). Processes started from this one inherit the setting.
    """
    if "tensorflow" in sys.modules or ONEDNN_VARIABLE in os.environ:
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return True
