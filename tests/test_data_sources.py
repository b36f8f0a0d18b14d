"""data.load: every source kind, its SourceInfo, and the errors for bad input."""

import dataclasses
import importlib
import os

import numpy as np
import pytest

from keras_skipae import data
from keras_skipae.data import DataError, files
from keras_skipae.data.testing import encode, random_images, write_folder_tree, write_idx, write_segfolder


def elements(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


# ---------------------------------------------------------------------------------- in memory
def test_numpy_tuple_gives_uint8_images_and_int32_labels():
    images = random_images(12, (8, 8), 1)[..., 0]  # (N, H, W): a channel axis is added
    labels = np.arange(12) % 3
    ds = data.load((images, labels))
    assert ds.info.task == "classification"
    assert ds.info.num_classes == 3 and ds.info.image_shape == (8, 8, 1) and ds.info.num_examples == 12
    got = elements(ds)
    assert got[5][0].dtype == np.uint8 and got[5][0].shape == (8, 8, 1)
    np.testing.assert_array_equal(got[5][0][..., 0], images[5])
    assert got[5][1].dtype == np.int32 and got[5][1] == 2


def test_float_images_in_unit_range_become_pixels():
    images = np.full((2, 4, 4, 3), 0.5, np.float32)
    x, _ = data.to_numpy(data.load((images, [0, 1])))
    assert x.dtype == np.uint8 and (x == 128).all()


def test_in_memory_errors_say_what_is_wrong():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        data.load((np.zeros((3, 4, 4), np.uint8), [0, 1]))
    with pytest.raises(DataError, match=r"label 7 of example 1 is outside \[0, 3\)"):
        data.load((np.zeros((2, 4, 4), np.uint8), [0, 7]), num_classes=3)
    with pytest.raises(DataError, match=r"float images range over \[-1, 1\]"):
        data.load((np.linspace(-1, 1, 32).reshape(2, 4, 4).astype("float32"), [0, 1]))


def test_dict_source_with_masks_is_segmentation():
    images = random_images(3, (6, 5))
    masks = np.zeros((3, 6, 5), np.uint8)
    masks[:, 0] = 9
    ds = data.load({"images": images, "masks": masks}, ignore_label=9, num_classes=2)
    assert ds.info.task == "segmentation" and ds.info.ignore_label == 9
    x, m = next(iter(ds))
    assert m.dtype.name == "int32" and m.shape == (6, 5) and int(m[0, 0]) == 9


def test_split_slicing_like_tfds():
    ds = data.load((random_images(10, (4, 4)), np.arange(10)), "train[:30%]")
    assert [int(y) for _, y in ds] == [0, 1, 2]
    ds = data.load((random_images(10, (4, 4)), np.arange(10)), "train[-2:]")
    assert [int(y) for _, y in ds] == [8, 9]
    with pytest.raises(DataError, match="expected an int or a percentage"):
        data.load((random_images(10, (4, 4)), np.arange(10)), "train[:half]")


def test_npz_keras_style_keys(tmp_path):
    images = random_images(6, (5, 5), 3)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=images, y_train=np.arange(6) % 2, x_test=images[:2], y_test=[1, 0])
    ds = data.load(f"npz:{path}", "test")
    assert ds.info.num_examples == 2 and ds.info.name == "d"
    np.testing.assert_array_equal(data.to_numpy(ds)[0], images[:2])
    with pytest.raises(DataError, match="no arrays for split 'val'"):
        data.load(f"npz:{path}", "val")


# ------------------------------------------------------------------------------------- folder
@pytest.mark.parametrize("as_zip", [False, True], ids=["dir", "zip"])
def test_folder_tree_classes_sorted_and_images_exact(tmp_path, as_zip):
    path = write_folder_tree(tmp_path / "tree", {"train": 3, "test": 2}, classes=("zebra", "ant"), as_zip=as_zip)
    ds = data.load(f"folder:{path}", "train")
    info = ds.info
    assert info.class_names == ("ant", "zebra") and info.num_classes == 2
    assert info.num_examples == 6 and info.image_shape == (16, 16, 3) and info.in_memory
    got = elements(ds)
    assert [y for _, y in got] == [0, 0, 0, 1, 1, 1]
    # PNG is lossless: the first "zebra" image is what the writer made for class index 0 ("zebra")
    np.testing.assert_array_equal(got[3][0], random_images(3, (16, 16), 3, labels=[0] * 3, seed=0)[0])
    assert data.load(f"folder:{path}", "test").info.num_examples == 4


def test_zip_wrapped_in_a_top_folder_and_jpeg(tmp_path):
    import zipfile

    tree = write_folder_tree(tmp_path / "inner", 2, fmt="jpg")
    with zipfile.ZipFile(tmp_path / "wrapped.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for root, _, names in os.walk(tree):
            for name in names:
                full = os.path.join(root, name)
                zf.write(full, "cifar/" + os.path.relpath(full, tree))
    ds = data.load(f"folder:{tmp_path / 'wrapped.zip'}", "train")
    assert ds.info.num_examples == 6 and ds.info.class_names == ("cat", "dog", "frog")


def test_lazy_decoding_when_over_the_memory_budget(tmp_path, monkeypatch):
    path = write_folder_tree(tmp_path / "tree", 2)
    eager = elements(data.load(f"folder:{path}"))
    monkeypatch.setattr(files, "MEMORY_BUDGET_BYTES", 0)
    lazy = data.load(f"folder:{path}")
    assert not lazy.info.in_memory and lazy.element_spec[0].shape == (16, 16, 3)
    for (x1, y1), (x2, y2) in zip(eager, elements(lazy)):
        np.testing.assert_array_equal(x1, x2)
        assert y1 == y2


def test_mixed_grey_and_colour_images_become_rgb(tmp_path):
    path = write_folder_tree(tmp_path / "t", 1, classes=("a",), channels=1)
    with open(os.path.join(path, "train", "a", "colour.png"), "wb") as f:
        f.write(encode(random_images(1, (16, 16), 3)[0], "png"))
    ds = data.load(f"folder:{path}")
    assert ds.info.channels == 3
    assert all(x.shape == (16, 16, 3) for x, _ in elements(ds))


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        data.load(f"folder:{tmp_path / 'missing'}")
    path = write_folder_tree(tmp_path / "t", {"train": 1})
    with pytest.raises(DataError, match="no split folder 'test'.*available splits: train"):
        data.load(f"folder:{path}", "test")
    os.makedirs(os.path.join(path, "train", "empty"))
    with pytest.raises(DataError, match="class folder .*empty holds no images"):
        data.load(f"folder:{path}")
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(DataError, match="is not a zip file"):
        data.load(f"folder:{fake}")
    with pytest.raises(DataError, match="unknown data source scheme 'fold'"):
        data.load(f"fold:{path}")


def test_corrupt_image_raises_naming_it_or_is_skipped_and_counted(tmp_path):
    path = write_folder_tree(tmp_path / "t", 3)
    bad = os.path.join(path, "train", "dog", "0001.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot decode .*dog/0001\.png.*on_error='skip'"):
        data.load(f"folder:{path}")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = data.load(f"folder:{path}", on_error="skip")
    assert ds.info.skipped == 1 and ds.info.skipped_files[0].endswith("dog/0001.png")
    assert ds.info.num_examples == 8 and len(elements(ds)) == 8


def test_non_image_files_are_listed_not_read(tmp_path):
    path = write_folder_tree(tmp_path / "t", 1)
    with open(os.path.join(path, "train", "cat", "notes.txt"), "w") as f:
        f.write("hello")
    with pytest.warns(UserWarning, match="1 non-image file"):
        ds = data.load(f"folder:{path}")
    assert ds.info.ignored[0].endswith("notes.txt") and ds.info.num_examples == 3


# ---------------------------------------------------------------------------------- segfolder
def test_segfolder_pairs_images_and_masks_camvid_layout(tmp_path):
    path = write_segfolder(tmp_path / "cam", {"train": 3, "val": 2}, num_classes=4, ignore_label=11)
    ds = data.load(f"segfolder:{path}", "train", ignore_label=11)
    info = ds.info
    assert info.task == "segmentation" and info.num_classes == 4 and info.ignore_label == 11
    assert info.image_shape == (24, 32, 3) and info.num_examples == 3
    x, m = next(iter(ds))
    assert x.dtype.name == "uint8" and m.dtype.name == "int32" and m.shape == (24, 32)
    assert set(np.unique(m.numpy())) <= {0, 1, 2, 3, 11} and (m.numpy()[0] == 11).all()
    # the writer makes brightness follow the mask: class k adds 40 * k
    assert data.load(f"segfolder:{path}", "val", ignore_label=11).info.num_examples == 2


def test_segfolder_label_map_and_out_of_range_values(tmp_path):
    path = write_segfolder(tmp_path / "cam", 2, num_classes=4, ignore_label=11)
    ds = data.load(f"segfolder:{path}", label_map={11: 255}, ignore_label=255)
    assert ds.info.num_classes == 4 and int(next(iter(ds))[1][0, 0]) == 255
    with pytest.raises(DataError, match=r"f0000\.png: label value 3 is outside \[0, 3\)"):
        data.load(f"segfolder:{path}", num_classes=3, ignore_label=255)


def test_segfolder_mask_size_mismatch_names_both_files(tmp_path):
    path = write_segfolder(tmp_path / "cam", 2)
    with open(os.path.join(path, "trainannot", "f0001.png"), "wb") as f:
        f.write(encode(np.zeros((10, 10), np.uint8), "png"))
    with pytest.raises(DataError, match=r"mask .*trainannot/f0001\.png is 10x10 but its image .*train/f0001\.png is 24x32"):
        data.load(f"segfolder:{path}")


def test_segfolder_unmatched_and_corrupt_masks(tmp_path):
    path = write_segfolder(tmp_path / "cam", 3)
    os.remove(os.path.join(path, "trainannot", "f0002.png"))
    with pytest.raises(DataError, match="1 image.* without a mask.*f0002"):
        data.load(f"segfolder:{path}")
    with open(os.path.join(path, "trainannot", "f0002.png"), "wb") as f:
        f.write(b"broken")
    with pytest.raises(DataError, match=r"cannot decode .*trainannot/f0002\.png"):
        data.load(f"segfolder:{path}")
    with pytest.warns(UserWarning):
        assert data.load(f"segfolder:{path}", on_error="skip").info.skipped == 1
    with pytest.raises(DataError, match="no masks for it"):
        os.rename(os.path.join(path, "trainannot"), os.path.join(path, "elsewhere"))
        data.load(f"segfolder:{path}")


# ---------------------------------------------------------------------------------------- idx
def test_idx_files_written_here(tmp_path):
    images = random_images(7, (5, 6), 1)[..., 0]
    write_idx(tmp_path / "mnist", images, np.arange(7) % 10, "t10k")
    ds = data.load(f"idx:{tmp_path / 'mnist'}", "test")
    assert ds.info.image_shape == (5, 6, 1) and ds.info.class_names[3] == "3"
    np.testing.assert_array_equal(data.to_numpy(ds)[0][..., 0], images)
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte"):
        data.load(f"idx:{tmp_path / 'mnist'}", "train")


def test_idx_without_data_says_what_to_install(tmp_path, monkeypatch):
    from keras_skipae.data import schemes

    nothing = str(tmp_path / "nothing")
    monkeypatch.setitem(schemes.SCHEMES, "idx", dataclasses.replace(schemes.SCHEMES["idx"], default_path=nothing))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load("idx:", data_dir=str(tmp_path / "tfds"))


def test_real_fashion_mnist_through_idx():
    from keras_skipae.data.schemes import FASHION_MNIST_DIR

    # the folder `idx:` itself reads (not a copy of its name): where it exists the test runs, in CI too;
    # a folder that is there but incomplete fails below with the loader's error instead of skipping
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"Fashion-MNIST not installed: {FASHION_MNIST_DIR} does not exist; install it with "
                    "`sudo apt-get install dataset-fashion-mnist` (make test does so where apt-get needs no password)")
    train, test = data.load("idx:", "train"), data.load("idx:", "test")
    assert train.info.num_examples == 60000 and test.info.num_examples == 10000
    assert train.info.image_shape == (28, 28, 1) and train.info.class_names[-1] == "Ankle boot"
    assert np.bincount(train.info.table.labels()).tolist() == [6000] * 10
    assert np.bincount(test.info.table.labels()).tolist() == [1000] * 10
    x, y = next(iter(test))
    assert x.shape == (28, 28, 1) and x.dtype.name == "uint8" and int(y) == 9  # the first test image is an ankle boot
    s = data.split(train, labels_per_class=100, val_fraction=0.1, seed=0)  # the paper's setting
    labels = train.info.table.labels()
    assert np.bincount(labels[s.labelled_indices]).tolist() == [100] * 10
    assert len(s.val_indices) == 6000 and len(s.unlabelled_indices) == 60000 - 6000 - 1000


def test_segfolder_decoded_on_the_fly_matches_in_memory(tmp_path, monkeypatch):
    path = write_segfolder(tmp_path / "cam", 3, ignore_label=11)
    eager = elements(data.load(f"segfolder:{path}", label_map={11: 255}, ignore_label=255))
    monkeypatch.setattr(files, "MEMORY_BUDGET_BYTES", 0)
    lazy = data.load(f"segfolder:{path}", label_map={11: 255}, ignore_label=255)
    assert not lazy.info.in_memory and lazy.element_spec[1].shape == (24, 32)
    for (x1, m1), (x2, m2) in zip(eager, elements(lazy)):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)
    assert 255 in np.unique(m2)


# ------------------------------------------------------------------------------ binary masks
def test_binary_0_255_masks_never_become_256_classes(tmp_path):
    path = write_segfolder(tmp_path / "cam", 2, num_classes=2)
    for name in ("f0000.png", "f0001.png"):
        mask_file = os.path.join(path, "trainannot", name)
        mask = np.zeros((24, 32), np.uint8)
        mask[:, 10:] = 255
        with open(mask_file, "wb") as f:
            f.write(encode(mask, "png"))
    with pytest.warns(UserWarning, match=r"read as classes \{0, 1\}"):
        ds = data.load(f"segfolder:{path}")
    assert ds.info.num_classes == 2 and set(np.unique(next(iter(ds))[1].numpy())) == {0, 1}
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, :, 2:] = 255
    with pytest.warns(UserWarning, match=r"label_map=\{255: 1\}"):
        arrays = data.load({"images": random_images(2, (4, 4)), "masks": masks})
    assert arrays.info.num_classes == 2 and int(data.to_numpy(arrays)[1].max()) == 1
    # 255 as the ignore label is not a class: no mapping
    assert data.load(f"segfolder:{path}", ignore_label=255).info.num_classes == 1


def test_masks_with_sparse_values_are_refused_with_the_fix(tmp_path):
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, 0] = 1
    masks[:, 1] = 255
    with pytest.raises(DataError, match=r"mask values take 3 distinct values \(0, 1, 255\); read as class ids that "
                                        r"is 256 classes.*label_map=\{0: 0, 1: 1, 255: 2\}.*ignore_label=255"):  # fmt: skip
        data.load({"images": random_images(2, (4, 4)), "masks": masks})
    assert data.load({"images": random_images(2, (4, 4)), "masks": masks}, ignore_label=255).info.num_classes == 2
    assert data.load({"images": random_images(2, (4, 4)), "masks": masks}, num_classes=256).info.num_classes == 256


def test_non_finite_pixels_are_refused_naming_file_key_and_count(tmp_path):
    """One NaN would pass the range check and pick the wrong scale for every image."""
    images = np.full((3, 4, 4, 1), 100.0, np.float32)
    images[1, 2, 2, 0] = np.nan
    images[2, 0, 0, 0] = np.inf
    path = tmp_path / "d.npz"
    np.savez(path, x_train=images, y_train=[0, 1, 0])
    with pytest.raises(DataError, match=r"npz:.*d\.npz key 'x_train': 2 pixel value\(s\) are NaN or infinite "
                                        r"\(the first in image 1\)"):  # fmt: skip
        data.load(f"npz:{path}")


def test_an_interrupted_tfds_download_is_not_taken_for_fashion_mnist(tmp_path):
    from keras_skipae.data import idx_source

    (tmp_path / "fashion_mnist" / "3.0.1").mkdir(parents=True)  # what a killed download leaves
    assert idx_source._tfds_fashion_mnist(str(tmp_path)) is None
    (tmp_path / "fashion_mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    assert idx_source._tfds_fashion_mnist(str(tmp_path)) == str(tmp_path)


def test_load_and_resolve_source_read_one_scheme_registry(tmp_path, monkeypatch):
    """A scheme added to the registry alone is loaded by data.load, resolved as a path by resolve_source, named in
    the errors, and its own option is refused elsewhere: no second list of schemes to forget."""
    from keras_skipae.data import npz_source, schemes

    for scheme in schemes.SCHEMES.values():  # every entry's loader exists
        module, function = scheme.loader.split(":")
        assert callable(getattr(importlib.import_module(f"keras_skipae.data.{module}"), function)), scheme.name
    calls, load_npz = [], npz_source.load_npz

    def load_mine(rest, split, source, **options):
        calls.append((rest, split, source, options))
        return load_npz(rest, split, source, **{k: v for k, v in options.items() if k != "stream_above"})

    mine = schemes.Scheme("mine", "mine:PATH", "npz_source:load_npz", takes=("stream_above",))
    monkeypatch.setitem(schemes.SCHEMES, "mine", mine)
    monkeypatch.setattr(npz_source, "load_npz", load_mine)
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=np.zeros((3, 4, 4), np.uint8), y_train=np.array([0, 1, 0]))
    assert data.resolve_source(f"mine:{path}") == f"mine:{path}"
    with pytest.raises(DataError, match="'mine:/nowhere': path '/nowhere' does not exist"):
        data.resolve_source("mine:/nowhere")
    ds = data.load(f"mine:{path}", "train", stream_above=5)
    assert ds.info.num_examples == 3 and calls[0][3]["stream_above"] == 5
    with pytest.raises(DataError, match="stream_above= applies to folder: and mine: sources only"):
        data.load(f"npz:{path}", stream_above=5)
    with pytest.raises(DataError, match="'npz:PATH', 'packed:DIR' or 'mine:PATH'"):
        data.load("nope:x")
