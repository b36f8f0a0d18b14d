"""What a run records about where it ran: library versions, git revision, seed, command line."""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
import sys
import time

from ..data.locate import PROJECT_ROOT

_DISTRIBUTIONS = ("keras_skipae", "tensorflow", "keras", "numpy", "tensorflow-datasets", "pydantic")


def _git_state() -> dict | None:
    try:
        rev = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int, extra: dict | None = None) -> dict:
    """Versions of Python and the libraries, the git revision when there is one, and the seed."""
    versions = {}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git": _git_state(),
        "seed": seed,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    env.update(extra or {})
    return env
