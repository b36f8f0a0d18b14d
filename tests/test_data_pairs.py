"""Masks that live elsewhere: name patterns (segfolder:) and pair lists (seglist:), DRIVE as distributed."""

import os
import warnings

import keras
import numpy as np
import pytest

import keras_skipae as ks
from keras_skipae import data
from keras_skipae.data import DataError
from keras_skipae.data.testing import encode, random_images, write_drive, write_pair_list, write_segfolder

DRIVE = dict(images="{split}/images/{stem}_{split}.tif", masks="{split}/1st_manual/{stem}_manual1.gif")


def elements(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


# ------------------------------------------------------------------------------------- DRIVE
def test_drive_as_distributed_is_a_two_class_problem(tmp_path):
    root = write_drive(tmp_path / "DRIVE", {"training": 4, "test": 2})
    assert os.path.isfile(os.path.join(root, "training", "images", "21_training.tif"))
    assert os.path.isfile(os.path.join(root, "training", "1st_manual", "21_manual1.gif"))
    ds = data.load(f"segfolder:{root}", "training", label_map={255: 1}, **DRIVE)  # explicit: no warning
    info = ds.info
    assert info.task == "segmentation" and info.num_classes == 2 and info.num_examples == 4
    assert info.image_shape == (24, 28, 3) and info.label_map == {255: 1}
    assert [v for v, _ in info.mask_values] == [0, 255] and [c for c, _ in info.class_pixels] == [0, 1]
    x, m = elements(ds)[0]
    assert x.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    # the vessels are the dark pixels the writer made
    assert x[m == 1].mean() < x[m == 0].mean() - 60
    test = data.load(f"segfolder:{root}", "test", label_map={255: 1}, **DRIVE)  # 01_test.tif ...
    assert test.info.num_examples == 2 and test.info.num_classes == 2


def test_drive_binary_masks_default_to_classes_0_1_with_a_warning(tmp_path):
    root = write_drive(tmp_path / "DRIVE", {"training": 2})
    with pytest.warns(UserWarning, match=r"values \{0, 255\} are read as classes \{0, 1\}; pass label_map=\{255: 1\}"):
        ds = data.load(f"segfolder:{root}", "training", **DRIVE)
    assert ds.info.num_classes == 2 and ds.info.notes
    text = data.describe(ds)
    assert "mask values (pixels): 0 (" in text and "255 (" in text and "label_map: 255 -> 1" in text
    assert "binary masks" in text


def test_tiny_segmenter_trains_one_epoch_on_drive(tmp_path):
    root = write_drive(tmp_path / "DRIVE", {"training": 4})
    ds = data.load(f"segfolder:{root}", "training", label_map={255: 1}, **DRIVE)
    seg = ks.build("segmenter", "tiny", input_shape=(None, None, 3), num_classes=ds.info.num_classes)
    seg.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = data.segmentation_pipeline(ds, seg.arch, 2, training=True, augment=True, crop_size=(16, 16), seed=0)
    history = seg.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ------------------------------------------------------------------------------ name patterns
def test_unmatched_images_and_masks_are_listed_with_counts(tmp_path):
    root = write_drive(tmp_path / "DRIVE", {"training": 8})
    for k in (21, 22, 23, 24, 25, 26):
        os.remove(os.path.join(root, "training", "1st_manual", f"{k}_manual1.gif"))
    (tmp_path / "DRIVE" / "training" / "1st_manual" / "99_manual1.gif").write_bytes(
        encode(np.zeros((24, 28), np.uint8), "gif")
    )
    with pytest.raises(DataError) as err:
        data.load(f"segfolder:{root}", "training", **DRIVE)
    text = str(err.value)
    assert "6 image(s) without a mask: 21_training.tif (no training/1st_manual/21_manual1.gif)" in text
    assert "... (6 in all)" in text and "1 mask(s) without an image: 99_manual1.gif" in text


def test_images_not_matching_the_pattern_are_an_error(tmp_path):
    root = write_drive(tmp_path / "DRIVE", {"training": 2})
    (tmp_path / "DRIVE" / "training" / "images" / "21_extra.tif").write_bytes(
        encode(random_images(1, (24, 28))[0], "tif")
    )
    with pytest.raises(DataError, match=r"1 image\(s\) in .*images that do not match images='training/images/"
                                        r"\{stem\}_training\.tif': 21_extra\.tif"):  # fmt: skip
        data.load(f"segfolder:{root}", "training", label_map={255: 1}, **DRIVE)


def test_masks_beside_their_images(tmp_path):
    folder = tmp_path / "flat" / "train"
    os.makedirs(folder)
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(encode(random_images(1, (8, 8), seed=i)[0], "png"))
        (folder / f"img{i}_mask.png").write_bytes(encode(np.full((8, 8), i % 2, np.uint8), "png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left over, nothing to warn about
        ds = data.load(f"segfolder:{tmp_path / 'flat'}", images="{split}/{stem}.png", masks="{split}/{stem}_mask.png")
    assert ds.info.num_examples == 3 and [int(m[0, 0]) for _, m in elements(ds)] == [0, 1, 0]


def test_pattern_errors_say_what_is_wrong(tmp_path):
    root = write_drive(tmp_path / "DRIVE", {"training": 1})
    with pytest.raises(DataError, match=r"needs one \{stem\}"):
        data.load(f"segfolder:{root}", "training", images="{split}/images/x.tif", masks=DRIVE["masks"])
    with pytest.raises(DataError, match="folders are literal"):
        data.load(f"segfolder:{root}", "training", images="*/{stem}.tif", masks=DRIVE["masks"])
    with pytest.raises(DataError, match=r"no folder .*test/images for images='test/images/\{stem\}_test\.tif'"):
        data.load(f"segfolder:{root}", "test", **DRIVE)
    with pytest.raises(DataError, match="needs masks= too"):
        data.load(f"segfolder:{root}", "training", images=DRIVE["images"])
    with pytest.raises(DataError, match="masks= applies to segfolder: sources only"):
        data.load(f"folder:{root}", masks="x/{stem}.png")


# --------------------------------------------------------------------------------- pair lists
def _segnet_lists(tmp_path):
    """CamVid as the SegNet tutorial ships it: train.txt names /SegNet/CamVid/train/x.png pairs."""
    root = write_segfolder(tmp_path / "camvid", {"train": 3, "val": 2}, size=(8, 12), ignore_label=11)
    for split in ("train", "val"):
        names = sorted(os.listdir(os.path.join(root, split)))
        write_pair_list(os.path.join(root, f"{split}.txt"),
                        [(f"/SegNet/CamVid/{split}/{n}", f"/SegNet/CamVid/{split}annot/{n}") for n in names])  # fmt: skip
    return root


def test_pair_list_with_foreign_absolute_paths_reads_like_the_folder(tmp_path):
    root = _segnet_lists(tmp_path)
    by_list = data.load(f"seglist:{root}", "val", ignore_label=11)  # camvid/val.txt
    by_folder = data.load(f"segfolder:{root}", "val", ignore_label=11)
    assert by_list.info.num_examples == 2 and by_list.info.num_classes == by_folder.info.num_classes
    for (x1, m1), (x2, m2) in zip(elements(by_list), elements(by_folder)):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)
    assert data.load(f"seglist:{root}/{{split}}.txt", "train[:2]", ignore_label=11).info.num_examples == 2


def test_pair_list_with_a_missing_file_lists_it(tmp_path):
    root = _segnet_lists(tmp_path)
    os.remove(os.path.join(root, "train", "f0001.png"))
    os.remove(os.path.join(root, "trainannot", "f0002.png"))
    with pytest.raises(DataError, match=r"2 of 3 pair\(s\) in .*train\.txt name a file that does not exist under "
                                        r".*line 2: image /SegNet/CamVid/train/f0001\.png, line 3: mask "
                                        r"/SegNet/CamVid/trainannot/f0002\.png"):  # fmt: skip
        data.load(f"seglist:{root}", "train", ignore_label=11)


def test_csv_pair_list_relative_to_a_root(tmp_path):
    root = write_segfolder(tmp_path / "data", {"train": 3}, size=(8, 12))
    lists = tmp_path / "lists"
    write_pair_list(lists / "all.csv", [(f"train/f{i:04d}.png", f"trainannot/f{i:04d}.png") for i in (2, 0)])
    ds = data.load(f"seglist:{lists / 'all.csv'}", root=str(root))
    assert ds.info.num_examples == 2 and ds.info.name == "lists"
    with pytest.raises(DataError, match=r"all\.csv is one list, read for split 'train'.*\{split\}"):
        data.load(f"seglist:{lists / 'all.csv'}", "val", root=str(root))
    with pytest.raises(DataError, match="no pair list val.txt"):
        data.load(f"seglist:{lists}", "val", root=str(root))


def test_pair_list_line_with_three_fields_is_named(tmp_path):
    root = write_segfolder(tmp_path / "data", {"train": 1}, size=(8, 12))
    (tmp_path / "data" / "train.txt").write_text("train/f0000.png trainannot/f0000.png extra\n")
    with pytest.raises(DataError, match=r"line 1 of .*train\.txt has 3 field\(s\)"):
        data.load(f"seglist:{root}")


def test_options_for_other_sources_are_refused():
    with pytest.raises(DataError, match="root= applies to seglist: sources only"):
        data.load((np.zeros((1, 2, 2), np.uint8), [0]), root="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="palette= applies to segfolder: and seglist: sources only"):
            data.load("npz:nothing.npz", palette={(0, 0, 0): 0})
