"""`skipae data SOURCE`: describe a dataset from the command line."""

from click.testing import CliRunner

from keras_skipae import data
from keras_skipae.cli import main
from keras_skipae.data.testing import write_folder_tree, write_segfolder


def test_skipae_data_describes_a_folder_tree(tmp_path):
    path = write_folder_tree(tmp_path / "tree", {"train": 3, "test": 1}, as_zip=True)
    result = CliRunner().invoke(main, ["data", f"folder:{path}", "--split", "train", "--stats"])
    assert result.exit_code == 0, result.output
    assert "classification, 3 classes" in result.output
    assert "cat (3), dog (3), frog (3)" in result.output and "16x16x3" in result.output
    assert "mean:" in result.output


def test_skipae_data_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["data", f"folder:{tmp_path / 'missing'}"])
    assert result.exit_code == 1
    assert "error:" in result.output and "no such file or directory" in result.output


def test_describe_segmentation_with_ignore_label(tmp_path):
    path = write_segfolder(tmp_path / "cam", 2, ignore_label=11)
    text = data.describe(data.load(f"segfolder:{path}", ignore_label=11))
    assert "segmentation, 4 classes, ignore label 11" in text and "24x32x3" in text


def test_skipae_data_shows_drive_masks_and_their_mapping(tmp_path):
    from keras_skipae.data.testing import write_drive

    root = write_drive(tmp_path / "DRIVE", {"training": 2})
    args = ["data", f"segfolder:{root}", "--split", "training", "--images", "{split}/images/{stem}_{split}.tif",
            "--masks", "{split}/1st_manual/{stem}_manual1.gif", "--label-map", "255:1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "segmentation, 2 classes" in result.output and "24x28x3" in result.output
    assert "mask values (pixels): 0 (" in result.output and "label_map: 255 -> 1" in result.output
    assert "classes (pixels): 0 (" in result.output


def test_skipae_data_with_a_palette_file(tmp_path):
    from keras_skipae.data.testing import write_colour_segfolder

    path = write_colour_segfolder(tmp_path / "cam", {(128, 64, 128): 0, (0, 0, 0): 1}, 2)
    (tmp_path / "colours.txt").write_text("128 64 128 road\n0 0 0 void\n")
    result = CliRunner().invoke(main, ["data", f"segfolder:{path}", "--palette", str(tmp_path / "colours.txt")])
    assert result.exit_code == 0, result.output
    assert "palette:  2 colours (colours.txt): #804080->0 road, #000000->1 void" in result.output
    result = CliRunner().invoke(main, ["data", f"segfolder:{path}", "--label-map", "x"])
    assert result.exit_code != 0 and "expected OLD:NEW pairs" in result.output
