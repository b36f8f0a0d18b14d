"""Image files in every format Pillow reads, 16-bit scaling, multi-frame files and the pixel limit."""

import io
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_skipae import data
from keras_skipae.data import DataError, decode, files
from keras_skipae.data.testing import blank_png, encode, random_images, write_folder_tree, write_segfolder


def elements(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def pillow_bytes(image, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("fmt", ["tif", "webp", "bmp"])
@pytest.mark.parametrize("as_zip", [False, True], ids=["dir", "zip"])
def test_lossless_formats_read_exactly_in_folders_and_zips(tmp_path, fmt, as_zip):
    path = write_folder_tree(tmp_path / "tree", 2, classes=("a", "b"), fmt=fmt, as_zip=as_zip)
    ds = data.load(f"folder:{path}")
    assert ds.info.num_examples == 4 and ds.info.image_shape == (16, 16, 3)
    got = elements(ds)
    np.testing.assert_array_equal(got[0][0], random_images(2, (16, 16), 3, labels=[0, 0], seed=0)[0])
    assert [y for _, y in got] == [0, 0, 1, 1]


def test_grey_tiff_and_gif_images(tmp_path):
    path = write_folder_tree(tmp_path / "t", 2, classes=("a",), channels=1, fmt="gif")
    x, _ = data.to_numpy(data.load(f"folder:{path}"))
    np.testing.assert_array_equal(x, random_images(2, (16, 16), 1, labels=[0, 0], seed=0))
    path = write_folder_tree(tmp_path / "u", 2, classes=("a",), channels=1, fmt="tif")
    assert data.load(f"folder:{path}").info.image_shape == (16, 16, 1)


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_16_bit_images_keep_their_high_byte(tmp_path, fmt):
    """value >> 8: TensorFlow's PNG decoder and Pillow agree, and v * 257 comes back as v."""
    pixels = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257
    pixels[0, 0], pixels[0, 1] = 65535, 511  # 511 >> 8 == 1 (rounding 511 / 257 would give 2)
    os.makedirs(tmp_path / "t" / "train" / "a")
    raw = pixels[..., None] if fmt == "png" else pixels
    (tmp_path / "t" / "train" / "a" / f"deep.{fmt}").write_bytes(encode(raw, fmt))
    x, _ = data.to_numpy(data.load(f"folder:{tmp_path / 't'}"))
    assert x.dtype == np.uint8 and x.shape == (1, 16, 16, 1)
    np.testing.assert_array_equal(x[0, ..., 0], (pixels >> 8).astype(np.uint8))
    assert x[0, 0, 0, 0] == 255 and x[0, 0, 1, 0] == 1 and x[0, 1, 0, 0] == 16


def test_palette_png_image_reads_as_its_colours(tmp_path):
    rgb = random_images(1, (8, 8), 3)[0] // 64 * 64  # few colours
    im = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    os.makedirs(tmp_path / "t" / "train" / "a")
    (tmp_path / "t" / "train" / "a" / "p.png").write_bytes(pillow_bytes(im, "PNG"))
    x, _ = data.to_numpy(data.load(f"folder:{tmp_path / 't'}"))
    np.testing.assert_array_equal(x[0], np.asarray(im.convert("RGB")))


def test_segmentation_from_tiff_images_and_webp_masks_in_a_zip(tmp_path):
    files_ = {}
    for i in range(3):
        mask = np.zeros((10, 12), np.uint8)
        mask[:, i:] = 2
        files_[f"train/x{i}.tif"] = encode(random_images(1, (10, 12), 3, seed=i)[0], "tif")
        files_[f"trainannot/x{i}.webp"] = encode(mask, "webp")
    with zipfile.ZipFile(tmp_path / "seg.zip", "w") as zf:
        for name, content in files_.items():
            zf.writestr(name, content)
    ds = data.load(f"segfolder:{tmp_path / 'seg.zip'}", num_classes=3)
    assert ds.info.num_examples == 3 and ds.info.image_shape == (10, 12, 3)
    x, m = elements(ds)[1]
    np.testing.assert_array_equal(x, random_images(1, (10, 12), 3, seed=1)[0])
    assert (m[:, :1] == 0).all() and (m[:, 1:] == 2).all()


def test_palette_and_16_bit_masks_keep_their_values(tmp_path):
    path = write_segfolder(tmp_path / "cam", 2, size=(6, 8), num_classes=3)
    indices = np.zeros((6, 8), np.uint8)
    indices[:, 4:] = 2
    voc = Image.fromarray(indices, "P")
    voc.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)  # Pascal VOC colours: the index is the class
    (tmp_path / "cam" / "trainannot" / "f0000.png").write_bytes(pillow_bytes(voc, "PNG"))
    (tmp_path / "cam" / "trainannot" / "f0001.png").write_bytes(encode(indices.astype(np.uint16)[..., None], "png"))
    ds = data.load(f"segfolder:{path}")
    assert ds.info.num_classes == 3
    for _, m in elements(ds):
        np.testing.assert_array_equal(m, indices)


# --------------------------------------------------------------------------------- multi-frame
@pytest.mark.parametrize("fmt", ["TIFF", "GIF"])
def test_multi_frame_file_is_an_error_naming_it(tmp_path, fmt):
    path = write_folder_tree(tmp_path / "t", 2, classes=("a",))
    frames = [Image.fromarray(random_images(1, (16, 16), 3, seed=k)[0]) for k in range(3)]
    name = f"pages.{fmt.lower()}"
    (tmp_path / "t" / "train" / "a" / name).write_bytes(
        pillow_bytes(frames[0], fmt, save_all=True, append_images=frames[1:])
    )
    with pytest.raises(DataError, match=rf"cannot decode .*{name}: the {fmt} file holds 3 frames"):
        data.load(f"folder:{path}")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert data.load(f"folder:{path}", on_error="skip").info.num_examples == 2


def test_animated_png_is_not_read_as_its_first_frame(tmp_path):
    path = write_folder_tree(tmp_path / "t", 1, classes=("a",))
    frames = [Image.fromarray(np.full((16, 16), 40 * k, np.uint8)) for k in range(2)]
    (tmp_path / "t" / "train" / "a" / "anim.png").write_bytes(
        pillow_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])
    )
    with pytest.raises(DataError, match=r"anim\.png: the PNG file holds 2 frames"):
        data.load(f"folder:{path}")


# --------------------------------------------------------------------------------- pixel limit
def test_huge_png_is_refused_from_its_header(tmp_path):
    """20000x20000 single-colour PNG: 0.4 MB on disk, 400 MB decoded."""
    path = write_folder_tree(tmp_path / "t", 1, classes=("a",))
    (tmp_path / "t" / "train" / "a" / "bomb.png").write_bytes(blank_png(20000, 20000))
    with pytest.raises(DataError, match=r"bomb\.png: the image is 20000x20000 \(400\.0 megapixels\), over the "
                                        r"pixel limit of 64 megapixels.*SKIPAE_MAX_IMAGE_PIXELS"):  # fmt: skip
        data.load(f"folder:{path}")


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif"])
def test_pixel_limit_is_overridable(tmp_path, monkeypatch, fmt):
    path = write_folder_tree(tmp_path / "t", 1, classes=("a",), size=(30, 40), fmt=fmt)
    with pytest.raises(DataError, match=r"40x30 .*over the pixel limit of 0\.001 megapixels"):
        data.load(f"folder:{path}", max_image_pixels=1000)
    monkeypatch.setenv("SKIPAE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match="over the pixel limit"):
        data.load(f"folder:{path}")
    assert data.load(f"folder:{path}", max_image_pixels=1200).info.num_examples == 1


def test_pixel_limit_applies_to_masks_and_on_the_fly_decoding(tmp_path, monkeypatch):
    path = write_segfolder(tmp_path / "cam", 2, size=(24, 32))
    with pytest.raises(DataError, match=r"f0000\.png: the image is 32x24"):
        data.load(f"segfolder:{path}", max_image_pixels=700)
    monkeypatch.setattr(files, "MEMORY_BUDGET_BYTES", 0)
    ds = data.load(f"segfolder:{path}", max_image_pixels=768)
    assert not ds.info.in_memory and len(elements(ds)) == 2


def test_bad_limit_setting_says_what_is_expected(monkeypatch):
    monkeypatch.setenv("SKIPAE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="SKIPAE_MAX_IMAGE_PIXELS='lots'"):
        decode.max_image_pixels()
    with pytest.raises(DataError, match="max_image_pixels=0"):
        data.load((np.zeros((1, 2, 2), np.uint8), [0]), max_image_pixels=0)


def test_non_image_content_with_an_image_name_is_named(tmp_path):
    path = write_folder_tree(tmp_path / "t", 1, classes=("a",))
    (tmp_path / "t" / "train" / "a" / "text.tif").write_text("not a tiff")
    with pytest.raises(DataError, match=r"cannot decode .*text\.tif: not an image file TensorFlow or Pillow can read"):
        data.load(f"folder:{path}")


def test_extensions_cover_pillow_formats():
    from keras_skipae.data.tree import is_image

    for name in ("a.tif", "a.TIFF", "a.webp", "a.gif", "a.bmp", "a.png", "a.jpeg"):
        assert is_image(name)
    assert not is_image("notes.txt") and not is_image("list.csv")


def test_decoding_reports_progress(tmp_path, monkeypatch):
    """Long decodes show a progress line (here: no delay, into a log-like stream)."""
    import functools

    from keras_skipae.progress import Progress

    log = io.StringIO()
    monkeypatch.setattr(files, "Progress", functools.partial(Progress, delay=0.0, stream=log))
    path = write_folder_tree(tmp_path / "t", 2)
    data.load(f"folder:{path}")
    assert log.getvalue().startswith("decoding 6 images: 6 files in ")


@pytest.mark.parametrize("have", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_one_channel_rule_for_arrays_and_tensors(have, channels):
    """The decode pass's in-memory images and the on-the-fly decoder convert channels by the same function."""
    to_channels = decode.to_channels
    image = np.random.default_rng(have).integers(0, 256, (5, 6, have), dtype=np.uint8)
    from_array, from_tensor = to_channels(image, channels), to_channels(tf.constant(image), channels).numpy()
    assert from_array.shape == (5, 6, channels) and np.array_equal(from_array, from_tensor)
    assert np.array_equal(from_array[..., 0], image[..., 0])  # grey stays grey, RGB keeps its red, alpha goes
    assert [a.shape for a in to_channels([image, image[:2]], channels)] == [(5, 6, channels), (2, 6, channels)]
