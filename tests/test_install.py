"""`make test` / `make quickstart` install anywhere: which Python they choose (tools/python-env.sh).

The rule (README "Install"): PYTHON, else the active venv/conda environment's
Python, else python3 (or python3.13/3.12/3.11); used as it is when pip may
install into it, otherwise through a project environment .venv/ made from it.
Fake interpreters stand in for the machines we cannot be on (Debian's
externally-managed python3, Python 3.14, no Python at all).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHOOSE = ROOT / "tools" / "python-env.sh"


def _fake_python(bin_dir: Path, name: str, version: str, why: str, real_for_venv: bool = False) -> Path:
    """An interpreter that answers the probe like a Python ``version`` whose installability is ``why``."""
    fit = "OK" if version in ("3.11", "3.12", "3.13") else ("OLD" if version < "3.11" else "NEW")
    path = bin_dir / name
    real = f'if [ "$1" = -m ]; then exec "{sys.executable}" "$@"; fi\n' if real_for_venv else ""
    path.write_text(f'#!/bin/sh\n{real}cat >/dev/null\necho "{version} {fit} {why} /fake/{name}"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path):
    """A PATH with only the fake interpreters and the few tools make needs, no active environment."""
    bin_dir, tools = tmp_path / "bin", tmp_path / "tools"
    bin_dir.mkdir()
    tools.mkdir()
    for tool in ("sh", "cat", "rm", "make"):
        if shutil.which(tool):
            (tools / tool).symlink_to(shutil.which(tool))
    env = {"PATH": f"{bin_dir}:{tools}", "HOME": str(tmp_path)}
    return bin_dir, env


def _choose(env, cwd, **extra):
    result = subprocess.run(["sh", str(CHOOSE)], env={**env, **extra}, cwd=cwd, capture_output=True, text=True)
    return result.returncode, result.stdout.split(), result.stderr


def test_an_installable_python3_is_used_as_it_is(machine, tmp_path):
    bin_dir, env = machine
    _fake_python(bin_dir, "python3", "3.11", "INSTALLABLE")
    code, choice, said = _choose(env, tmp_path)
    assert code == 0 and choice == ["python3", "-"] and "using /fake/python3 (Python 3.11)" in said


def test_an_externally_managed_python3_gets_a_project_environment(machine, tmp_path):
    bin_dir, env = machine
    _fake_python(bin_dir, "python3", "3.11", "externally-managed(PEP-668)")
    code, choice, said = _choose(env, tmp_path)
    assert code == 0 and choice == [".venv/bin/python", "python3"]
    assert "creating the project environment .venv" in said and "externally-managed" in said
    # once it exists it is reused, not made again
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    _fake_python(venv_bin, "python", "3.11", "INSTALLABLE")
    code, choice, said = _choose(env, tmp_path)
    assert code == 0 and choice == [".venv/bin/python", "-"] and "using the project environment .venv" in said


def test_a_python3_of_another_version_gives_way_to_a_supported_one(machine, tmp_path):
    bin_dir, env = machine
    _fake_python(bin_dir, "python3", "3.14", "externally-managed(PEP-668)")
    _fake_python(bin_dir, "python3.12", "3.12", "site-packages-not-writable")
    code, choice, _ = _choose(env, tmp_path)
    assert code == 0 and choice == [".venv/bin/python", "python3.12"]


def test_no_supported_python_says_which_versions_work_and_how_to_point_at_one(machine, tmp_path):
    bin_dir, env = machine
    _fake_python(bin_dir, "python3", "3.14", "INSTALLABLE")
    code, choice, said = _choose(env, tmp_path)
    assert code == 1 and choice == []
    assert "python3 (Python 3.14)" in said and "3.11, 3.12 or 3.13" in said and "PYTHON=/path/to/python3.12" in said
    _fake_python(bin_dir, "python3.10", "3.10", "INSTALLABLE")
    code, _, said = _choose(env, tmp_path, PYTHON="python3.10")
    assert code == 1 and "PYTHON=python3.10 is python3.10 (Python 3.10)" in said


def test_an_active_environment_wins(machine, tmp_path):
    bin_dir, env = machine
    _fake_python(bin_dir, "python3", "3.11", "externally-managed(PEP-668)")
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        prefix = tmp_path / variable.lower()
        (prefix / "bin").mkdir(parents=True)
        _fake_python(prefix / "bin", "python", "3.12", "INSTALLABLE")
        code, choice, said = _choose(env, tmp_path, **{variable: str(prefix)})
        assert code == 0 and choice == [f"{prefix}/bin/python", "-"] and "the active" in said


def test_the_probe_reads_this_interpreter_right(tmp_path):
    """The real probe on the Python running the tests: a supported version that can take installs or not."""
    code, choice, said = _choose({"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, tmp_path,
                                 PYTHON=sys.executable)
    version = "%d.%d" % sys.version_info[:2]
    assert code == 0, said
    assert f"(Python {version})" in said
    in_venv = sys.prefix != sys.base_prefix
    assert choice == [sys.executable, "-"] if in_venv else choice[0] in (sys.executable, ".venv/bin/python")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_creates_the_project_environment_once_then_installs_into_it(machine, tmp_path):
    bin_dir, env = machine
    base = _fake_python(bin_dir, "python3", "3.11", "externally-managed(PEP-668)", real_for_venv=True)
    venv = tmp_path / "env"
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}"]
    made = subprocess.run([*make, "env"], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"created {venv} from python3" in made.stdout and (venv / "bin" / "python").exists()
    again = subprocess.run([*make, "-n", "install"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"using the project environment {venv}" in again.stderr
    assert 'if [ "-" != - ]' in again.stdout  # nothing to create this time
    assert f'"{venv}/bin/python" -m pip install -q -e ".[test]"' in again.stdout
    assert base.exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_stops_before_installing_when_no_python_fits(machine, tmp_path):
    bin_dir, env = machine
    _fake_python(bin_dir, "python3", "3.9", "INSTALLABLE")
    result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "install"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "pip install" not in result.stdout
    assert "3.11, 3.12 or 3.13" in result.stderr


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    opening = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert re.search(r"^make test\b", opening, re.M) and re.search(r"^make quickstart\b", opening, re.M)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"
