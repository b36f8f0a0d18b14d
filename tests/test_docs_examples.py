"""Every Python block of the README and of docs/ runs, as written, on small stand-in data.

A page's blocks run in order in one namespace, in a fresh working directory
that holds small stand-ins for what the page names: the CIFAR-10 zip at
``../shared/data/cifar10/cifar10_jpg.zip``, a DRIVE tree, a CamVid pair list,
an exported LiteRT model. What a fragment takes as the reader's own (their
``images_uint8``, their ``train_ds``) is given in ``GIVEN``. A block that no
page lists here still runs: a new example cannot go untested.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


def _cifar_zip(shared: Path) -> None:
    from keras_skipae.data.testing import write_folder_tree
    target = shared / "data" / "cifar10"
    target.mkdir(parents=True)
    write_folder_tree(target / "cifar10_jpg", {"train": 400}, size=(32, 32), fmt="jpg", as_zip=True)


def _drive_and_camvid(work: Path, shared: Path) -> None:
    from keras_skipae.data.testing import write_drive, write_pair_list, write_segfolder
    write_drive(str(work / "DRIVE"))
    camvid = shared / "data" / "camvid"
    write_segfolder(str(camvid), {"val": 3}, num_classes=11, ignore_label=11)
    write_pair_list(str(camvid / "val.txt"), [(f"val/f{i:04d}.png", f"valannot/f{i:04d}.png") for i in range(3)])


def _litert_model(work: Path) -> dict:
    import keras_skipae as ks
    from keras_skipae import export
    clf = ks.build("classifier", "tiny", input_shape=(16, 16, 3), widths=(4, 8), head_width=8, num_classes=3)
    export.litert(clf, str(work / "exported" / "litert"))
    return {"images_uint8": np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype("uint8")}


def _datasets(work: Path) -> dict:
    import tensorflow as tf
    x = np.random.default_rng(0).random((64, 32, 32, 3)).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((x, x)).batch(32)
    return {"train_ds": batches, "val_ds": batches}


def _needs_fashion_mnist(work: Path) -> dict:
    if not FASHION_MNIST.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (make test installs it)")
    return {}


#: page (relative to the project) -> what its blocks take as given: files it names, the reader's own objects
GIVEN = {
    "docs/data.md": lambda work, shared: (_cifar_zip(shared), _drive_and_camvid(work, shared), {})[-1],
    "docs/export.md": lambda work, shared: _litert_model(work),
    "docs/recipes.md": lambda work, shared: {**_needs_fashion_mnist(work), **_datasets(work)},
    "docs/tuning.md": lambda work, shared: _needs_fashion_mnist(work),
}


def _pages_with_code():
    return [p for p in PAGES if python_blocks(p)]


def test_the_docs_have_python_examples():
    names = {str(p.relative_to(ROOT)) for p in _pages_with_code()}
    assert "README.md" in names and len(names) >= 5, names
    assert set(GIVEN) <= names, f"GIVEN names pages without python blocks: {set(GIVEN) - names}"


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_of_the_page_runs(page, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    work = tmp_path / "work"
    work.mkdir()
    shared.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(work)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    name = str(page.relative_to(ROOT))
    namespace = {"__name__": "docs_example"}
    namespace.update(GIVEN.get(name, lambda w, s: {})(work, shared) or {})
    for i, block in enumerate(python_blocks(page), start=1):
        try:
            exec(compile(block, f"{name} (python block {i})", "exec"), namespace)
        except Exception as exc:  # name the page and the block, then the error
            raise AssertionError(f"{name}, python block {i} failed: {type(exc).__name__}: {exc}") from exc
