"""An installable package: the wheel carries the recipes, and a recipe runs by name from an installed wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (path,) = out.glob("keras_skipae-*.whl")
    return path


def test_python_m_build_makes_an_sdist_and_a_wheel_that_carry_the_recipes(tmp_path):
    """What a release runs. The checkout is copied first: setuptools writes build/ and *.egg-info into the tree."""
    import shutil
    import tarfile

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "site", "runs", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))  # fmt: skip
    out = tmp_path / "dist"
    made = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    (sdist,) = out.glob("keras_skipae-*.tar.gz")
    (wheel,) = out.glob("keras_skipae-*.whl")
    shipped = sorted(p.name for p in (ROOT / "keras_skipae" / "recipes" / "library").glob("*.yaml"))
    in_sdist = sorted(Path(n).name for n in tarfile.open(sdist).getnames() if "/keras_skipae/recipes/library/" in n
                      and n.endswith(".yaml"))  # fmt: skip
    in_wheel = sorted(Path(n).name for n in zipfile.ZipFile(wheel).namelist()
                      if n.startswith("keras_skipae/recipes/library/") and n.endswith(".yaml"))  # fmt: skip
    assert in_sdist == shipped and in_wheel == shipped


def test_the_wheel_carries_every_shipped_recipe(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "keras_skipae" / "recipes" / "library").glob("*.yaml"))
    packed = sorted(Path(n).name for n in names if n.startswith("keras_skipae/recipes/library/") and n.endswith(".yaml"))
    assert packed == shipped and "quickstart.yaml" in packed


def test_an_installed_wheel_lists_and_runs_a_recipe_by_name(wheel, tmp_path):
    """In a fresh environment outside the checkout (its dependencies from the system's site-packages)."""
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    skipae = venv / "bin" / "skipae"
    # the installed wheel is what runs, `skipae recipes` lists the shipped ones, and every one is found by name
    # inside the wheel, not in the checkout (one interpreter for all three: each start imports TensorFlow)
    # where the package and its recipes come from, without starting TensorFlow (the run below starts it once)
    checked = subprocess.run([str(python), "-c",
                              "import keras_skipae\n"
                              "from keras_skipae.recipe_library import RECIPES_DIR, shipped_recipes\n"
                              "assert keras_skipae.__file__.startswith(" + repr(str(venv)) + "), keras_skipae.__file__\n"
                              "assert str(RECIPES_DIR).startswith(" + repr(str(venv)) + "), RECIPES_DIR\n"
                              "assert all((RECIPES_DIR / f'{name}.yaml').is_file() for name in shipped_recipes())\n"
                              "print('ok')"], cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert checked.returncode == 0 and "ok" in checked.stdout, checked.stderr[-2000:]
    listed = subprocess.run([str(skipae), "recipes"], cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0 and "quickstart" in listed.stdout, listed.stdout + listed.stderr[-2000:]
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("running the quickstart by name needs Debian's dataset-fashion-mnist (make test installs it)")
    # the console script runs the shipped recipe by name: its first stage, cut to seconds (the recipe's other
    # stages and its seeds are what the in-checkout tests run)
    run = subprocess.run([str(skipae), "run", "quickstart", "--stage", "pretrain", "--set", "seeds=null",
                          "--run-dir", str(work / "runs"), "--set", "pretrain.limit=256", "--set", "pretrain.epochs=1",
                          "--set", "data.labels_per_class=10"],
                         cwd=work, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "runs" / "pretrain" / "model.keras").is_file()
