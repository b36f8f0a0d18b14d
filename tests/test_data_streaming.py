"""Large folders: above stream_above files, folder: reads headers only and decodes as the dataset is read."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_skipae import data
from keras_skipae.data import DataError
from keras_skipae.data.headers import _from_bytes, stream_above
from keras_skipae.data.testing import write_folder_tree


@pytest.mark.parametrize("fmt,channels", [("jpg", 3), ("jpg", 1), ("png", 1), ("png", 3), ("bmp", 3), ("tiff", 3)])
def test_a_streamed_folder_reads_the_same_examples_and_facts_as_a_decoded_one(tmp_path, fmt, channels):
    path = write_folder_tree(str(tmp_path / "t"), {"train": 5}, size=(20, 24), channels=channels, fmt=fmt)
    decoded = data.load(f"folder:{path}", "train")
    streamed = data.load(f"folder:{path}", "train", stream_above=0)
    assert decoded.info.in_memory and not streamed.info.in_memory
    for key in ("image_shape", "channels", "num_examples", "class_names", "num_classes"):
        assert getattr(streamed.info, key) == getattr(decoded.info, key), key
    for (x, y), (sx, sy) in zip(decoded.as_numpy_iterator(), streamed.as_numpy_iterator(), strict=True):
        np.testing.assert_array_equal(x, sx)
        assert y == sy
    s = data.split(streamed, labels_per_class=2, val_fraction=0.2, seed=0)
    assert s.labelled.info.num_examples == 6 and len(list(s.labelled)) == 6


@pytest.mark.parametrize("fmt", ["gif", "png"])
@pytest.mark.parametrize("palette", ["grey", "colour"])
def test_palette_images_count_the_channels_they_decode_to(tmp_path, fmt, palette):
    """Pillow decodes a GIF with a palette of greys to 1 channel, any other palette to 3; TensorFlow decodes every
    palette PNG to 3: the header-only listing counts the channels the decoder gives."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "t" / "train" / "a"
    folder.mkdir(parents=True)
    for i in range(3):
        image = Image.fromarray(rng.integers(0, 16, (12, 10), dtype=np.uint8), "L").convert("P")
        colours = [(v * 16, v * 16, v * 16) if palette == "grey" else (v * 16, 255 - v * 16, v * 3) for v in range(16)]
        image.putpalette([c for rgb in colours for c in rgb] + [0] * (3 * 240))
        image.save(folder / f"{i}.{fmt}")
    decoded = data.load(f"folder:{tmp_path / 't'}", "train")
    from keras_skipae.data.headers import header_shape
    loads = []
    original = Image.Image.load
    try:  # the listing reads headers and palettes only: no pixel is decoded
        Image.Image.load = lambda self, *a, **k: (loads.append(self), original(self, *a, **k))[1]
        shape, problem = header_shape(str(folder / f"0.{fmt}"))
    finally:
        Image.Image.load = original
    assert problem is None and shape == decoded.info.image_shape and not loads
    streamed = data.load(f"folder:{tmp_path / 't'}", "train", stream_above=0)
    assert decoded.info.channels == (1 if palette == "grey" and fmt == "gif" else 3)
    assert streamed.info.channels == decoded.info.channels and streamed.info.image_shape == decoded.info.image_shape
    for (x, _), (sx, _) in zip(decoded.as_numpy_iterator(), streamed.as_numpy_iterator(), strict=True):
        np.testing.assert_array_equal(x, sx)


def test_headers_give_sizes_and_channels_without_decoding():
    def encoded(mode, size, fmt, **kw):
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, fmt, **kw)
        return buf.getvalue()

    assert _from_bytes(encoded("RGB", (31, 17), "PNG")) == (17, 31, 3)
    assert _from_bytes(encoded("LA", (5, 7), "PNG")) == (7, 5, 2)
    assert _from_bytes(encoded("RGBA", (5, 7), "PNG")) == (7, 5, 4)
    assert _from_bytes(encoded("L", (40, 30), "JPEG")) == (30, 40, 1)
    assert _from_bytes(encoded("RGB", (40, 30), "JPEG", progressive=True)) == (30, 40, 3)
    assert _from_bytes(encoded("RGB", (40, 30), "JPEG", exif=b"Exif\x00\x00" + b"\x00" * 2000)) == (30, 40, 3)
    assert _from_bytes(b"GIF89a...") is None


def test_unusable_files_are_named_or_skipped_and_counted(tmp_path):
    path = write_folder_tree(str(tmp_path / "t"), {"train": 4}, size=(16, 16), fmt="png")
    (tmp_path / "t" / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (300, 300)).save(tmp_path / "t" / "train" / "dog" / "huge.png")
    with pytest.raises(DataError, match=r"cannot read .*broken.png: not an image.*on_error='skip'"):
        data.load(f"folder:{path}", "train", stream_above=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.load(f"folder:{path}", "train", stream_above=0, on_error="skip", max_image_pixels=10_000)
    assert ds.info.skipped == 2 and ds.info.num_examples == 12
    assert sorted(name.rsplit("/", 1)[1] for name in ds.info.skipped_files) == ["broken.png", "huge.png"]
    assert any("skipped 2 unusable file(s)" in str(w.message) for w in caught)


def test_the_threshold_is_the_users_to_set(tmp_path, monkeypatch):
    path = write_folder_tree(str(tmp_path / "t"), {"train": 2}, size=(8, 8))
    monkeypatch.setenv("SKIPAE_STREAM_ABOVE", "3")
    assert stream_above() == 3
    assert not data.load(f"folder:{path}", "train").info.in_memory      # 6 files > 3
    assert data.load(f"folder:{path}", "train", stream_above=100).info.in_memory
    monkeypatch.setenv("SKIPAE_STREAM_ABOVE", "many")
    with pytest.raises(ValueError, match="SKIPAE_STREAM_ABOVE='many'"):
        stream_above()
    with pytest.raises(DataError, match="stream_above= applies to folder: sources only"):
        data.load("idx:", "train", stream_above=10)
