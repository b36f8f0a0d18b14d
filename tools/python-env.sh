#!/bin/sh
# Which Python `make` installs into and runs with (see the Makefile and README "Install").
#
# Prints one line: the interpreter to use, then the interpreter to create VENV from,
# or "-" when VENV need not be created. Explains its choice on stderr; on failure
# says what to do and exits 1.
#
# The rule:
#   1. The interpreter: PYTHON if set; else the active environment's (VIRTUAL_ENV,
#      CONDA_PREFIX); else the first of python3, python3.13, python3.12, python3.11
#      on PATH that is a supported version. It must be Python 3.11-3.13, the
#      versions with TensorFlow 2.21 and onnxruntime 1.31 wheels.
#   2. If pip can install into it (it has pip, it is not marked externally managed
#      (PEP 668), its site-packages is writable): use it as it is. That is a venv or
#      conda environment, pyenv, a Docker image's Python, CI.
#   3. Otherwise (Debian's or Ubuntu's system Python, a read-only install): use the
#      project environment VENV (.venv), created from it on the first run and reused.
set -u

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-}
SUPPORTED="3.11, 3.12 or 3.13"

say() { echo "python-env: $*" >&2; }

# "VERSION OK|OLD|NEW INSTALLABLE|reason" for interpreter $1, nothing if it does not run
probe() {
    "$1" - <<'EOF' 2>/dev/null
import os, sys, sysconfig
version = "%d.%d" % sys.version_info[:2]
fit = "OK" if (3, 11) <= sys.version_info[:2] <= (3, 13) else ("OLD" if sys.version_info < (3, 11) else "NEW")
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
try:
    import pip  # noqa: F401
    has_pip = True
except ImportError:
    has_pip = False
site = sysconfig.get_path("purelib")
while not os.path.isdir(site) and os.path.dirname(site) != site:
    site = os.path.dirname(site)
if not in_venv and os.path.exists(marker):
    why = "externally-managed(PEP-668)"
elif not has_pip:
    why = "has-no-pip"
elif not os.access(site, os.W_OK):
    why = "site-packages-not-writable"
else:
    why = "INSTALLABLE"
print(version, fit, why, sys.executable)
EOF
}

explicit=""
if [ -n "$PYTHON" ]; then
    candidates=$PYTHON; explicit="PYTHON=$PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    candidates=$VIRTUAL_ENV/bin/python; explicit="the active virtual environment ($VIRTUAL_ENV)"
elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
    candidates=$CONDA_PREFIX/bin/python; explicit="the active conda environment ($CONDA_PREFIX)"
else
    candidates="python3 python3.13 python3.12 python3.11"
fi

base="" found=""
for candidate in $candidates; do
    info=$(probe "$candidate") || continue
    [ -n "$info" ] || continue
    set -- $info
    found="$found $candidate (Python $1)"
    if [ "$2" = OK ]; then
        base=$candidate version=$1 why=$3 executable=$4
        break
    fi
done

if [ -z "$base" ]; then
    if [ -n "$explicit" ]; then
        say "$explicit is${found:- not a working Python}; keras_skipae needs Python $SUPPORTED (TensorFlow 2.21 wheels)."
    else
        say "no Python $SUPPORTED found (tried python3, python3.13, python3.12, python3.11; found:${found:- none})."
    fi
    say "keras_skipae needs Python $SUPPORTED. Point make at one: make test PYTHON=/path/to/python3.12"
    say "(or activate a venv/conda environment of that version). Without root, e.g.: uv python install 3.12,"
    say "pyenv install 3.12, or conda create -n skipae python=3.12."
    exit 1
fi

if [ "$why" = INSTALLABLE ]; then
    say "using $executable (Python $version)${explicit:+, $explicit}"
    echo "$base -"
    exit 0
fi

venv_python=$VENV/bin/python
if [ -x "$venv_python" ]; then
    if ! venv_info=$(probe "$venv_python") || [ -z "$venv_info" ]; then
        say "$VENV exists but its Python does not run (was $base upgraded?): remove it (rm -rf $VENV) and run make again"
        exit 1
    fi
    set -- $venv_info
    if [ "$2" != OK ]; then
        say "$VENV has Python $1; keras_skipae needs Python $SUPPORTED: remove it (rm -rf $VENV) and run make again"
        exit 1
    fi
    say "using the project environment $VENV (Python $1): $base cannot take installs ($why)"
    echo "$venv_python -"
else
    say "$base (Python $version) cannot take installs ($why): creating the project environment $VENV"
    echo "$venv_python $base"
fi
