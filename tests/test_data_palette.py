"""Colour-coded masks (CamVid, Cityscapes style) read through palette=."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from keras_skipae import data
from keras_skipae.data import DataError, files
from keras_skipae.data.testing import encode, write_colour_segfolder, write_segfolder

ROAD, SKY, VOID = (128, 64, 128), (128, 128, 128), (0, 0, 0)
PALETTE = {SKY: 0, ROAD: 1, VOID: 11}


def test_colour_masks_with_a_palette_dict(tmp_path):
    path = write_colour_segfolder(tmp_path / "cam", PALETTE, {"train": 3})
    ds = data.load(f"segfolder:{path}", palette=PALETTE, ignore_label=11)
    assert ds.info.num_classes == 2 and ds.info.ignore_label == 11
    annot = np.asarray(Image.open(os.path.join(path, "trainannot", "f0000.png")))
    _, mask = next(iter(ds))
    expected = np.select([(annot == c).all(-1) for c in PALETTE], list(PALETTE.values()))
    np.testing.assert_array_equal(mask.numpy(), expected)
    text = data.describe(ds)
    assert "palette:  3 colours (dict): #808080->0, #804080->1, #000000->11" in text
    assert "classes (pixels): 0 (" in text and "11 ignore (" in text


def test_unknown_colour_is_an_error_naming_file_and_colour(tmp_path):
    path = write_colour_segfolder(tmp_path / "cam", PALETTE, {"train": 3}, unknown=(1, 2, 3))
    with pytest.raises(DataError, match=r"mask .*trainannot/f0002\.png has 1 pixel\(s\) of colour RGB \(1, 2, 3\) "
                                        r"\(#010203\), which is not in the palette \(dict: #808080->0"):  # fmt: skip
        data.load(f"segfolder:{path}", palette=PALETTE, ignore_label=11)


def test_palette_as_yaml_friendly_keys_and_as_a_list():
    from_strings = data.read_palette({"#808080": 0, "128,64,128": 1, "0 0 0": 11})
    assert from_strings.mapping() == PALETTE
    assert data.read_palette([SKY, ROAD, SKY]).mapping() == {SKY: 0, ROAD: 1}  # the first occurrence wins
    with pytest.raises(DataError, match=r"cannot read colour '#12'"):
        data.read_palette({"#12": 0})
    with pytest.raises(DataError, match="classes must be 0..255"):
        data.read_palette({SKY: 300})


def test_palette_image_strip_like_camvids(tmp_path):
    strip = np.zeros((1, 256, 4), np.uint8)  # CamVid's palette.png: 256x1 RGBA, class k at pixel k, black after
    strip[..., 3] = 255
    strip[0, 0, :3], strip[0, 1, :3] = SKY, ROAD
    Image.fromarray(strip, "RGBA").save(tmp_path / "palette.png")
    palette = data.read_palette(tmp_path / "palette.png")
    assert palette.mapping() == {SKY: 0, ROAD: 1, VOID: 2}
    path = write_colour_segfolder(tmp_path / "cam", PALETTE, {"train": 2})
    ds = data.load(f"segfolder:{path}", palette=str(tmp_path / "palette.png"), ignore_label=2)
    assert ds.info.num_classes == 2 and ds.info.palette.origin == "palette.png"


def test_palette_text_file_gives_class_names(tmp_path):
    (tmp_path / "colours.txt").write_text("# r g b name\n128 128 128 Sky\n128 64 128 Road\n0 0 0 Void\n")
    path = write_colour_segfolder(tmp_path / "cam", PALETTE, {"train": 2})
    ds = data.load(f"segfolder:{path}", palette=str(tmp_path / "colours.txt"))
    assert ds.info.num_classes == 3 and ds.info.class_names == ("Sky", "Road", "Void")


def test_palette_masks_decoded_on_the_fly_match(tmp_path, monkeypatch):
    path = write_colour_segfolder(tmp_path / "cam", PALETTE, {"train": 3})
    eager = [m.numpy() for _, m in data.load(f"segfolder:{path}", palette=PALETTE, ignore_label=11)]
    monkeypatch.setattr(files, "MEMORY_BUDGET_BYTES", 0)
    lazy = data.load(f"segfolder:{path}", palette=PALETTE, ignore_label=11)
    assert not lazy.info.in_memory
    for a, (_, b) in zip(eager, lazy):
        np.testing.assert_array_equal(a, b.numpy())


def test_palette_pair_list_and_indexed_gif_masks(tmp_path):
    """A palette also reads P-mode masks by their colours (a VOC-style PNG whose colours are known)."""
    path = write_segfolder(tmp_path / "cam", 1, size=(4, 6))
    indices = np.zeros((4, 6), np.uint8)
    indices[:, 3:] = 1
    im = Image.fromarray(indices, "P")
    im.putpalette(list(SKY) + list(ROAD) + [0] * 762)
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    (tmp_path / "cam" / "trainannot" / "f0000.png").write_bytes(buffer.getvalue())
    (tmp_path / "cam" / "train.txt").write_text("train/f0000.png trainannot/f0000.png\n")
    ds = data.load(f"seglist:{path}", palette={SKY: 0, ROAD: 1})
    np.testing.assert_array_equal(next(iter(ds))[1].numpy(), indices)


def test_colour_mask_without_a_palette_says_to_pass_one(tmp_path):
    path = write_segfolder(tmp_path / "cam", 1)
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[..., 0] = 1
    (tmp_path / "cam" / "trainannot" / "f0000.png").write_bytes(encode(colour, "png"))
    with pytest.raises(DataError, match=r"f0000\.png is a colour image.*palette PNGs.*pass palette="):
        data.load(f"segfolder:{path}")


def test_index_masks_read_with_a_palette_get_the_hint(tmp_path):
    path = write_segfolder(tmp_path / "cam", 1, num_classes=3)
    with pytest.raises(DataError, match=r"colour RGB \((\d), \1, \1\).*it is grey: if the masks hold class ids already"):
        data.load(f"segfolder:{path}", palette={VOID: 0, SKY: 1})
