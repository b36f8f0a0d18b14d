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
    # a subset of the streamed files (gathered from the table's paths) holds the same examples as the decoded one's
    d = data.split(decoded, labels_per_class=2, val_fraction=0.2, seed=0)
    for part in ("labelled", "unlabelled", "val"):
        got, want = list(getattr(s, part).as_numpy_iterator()), list(getattr(d, part).as_numpy_iterator())
        assert len(got) == len(want), part
        for (x, y), (dx, dy) in zip(got, want):
            np.testing.assert_array_equal(x, dx)
            assert y == dy


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


@pytest.mark.parametrize("storage", ["fast", "slow", "busy"])
def test_headers_read_alike_in_one_thread_and_in_many(tmp_path, monkeypatch, storage):
    """Where the first chunk reads slowly because its reads blocked (cold or network storage) the rest is read by
    threads; where it was slow only because other work held the cores (no blocking reads), it stays in one thread.
    The same results, in the same order, unusable files included."""
    from keras_skipae.data import headers

    write_folder_tree(str(tmp_path / "t"), {"train": 7}, size=(9, 13), fmt="png")
    (tmp_path / "t" / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    files = sorted(str(p) for p in (tmp_path / "t" / "train").rglob("*.png"))
    monkeypatch.setattr(headers, "CHUNK", 4)
    monkeypatch.setattr(headers, "SLOW_STORAGE_S", 1e9 if storage == "fast" else 0.0)
    if storage != "fast":  # as if the reading thread had spent its time off the CPU, not computing ...
        blocked = iter(range(0, 10**6, 4)) if storage == "slow" else iter(lambda: 0, None)
        # ... blocked on its reads (slow: every file's read waited) or pre-empted (busy: no read blocked)
        monkeypatch.setattr(headers, "_thread_clock", lambda: (0.0, next(blocked)))
    threads = []
    original = headers.ThreadPoolExecutor
    monkeypatch.setattr(headers, "ThreadPoolExecutor", lambda **kw: threads.append(kw) or original(**kw))
    shapes, problems = headers.read_headers(files, limit=1000)
    assert bool(threads) == (storage == "slow")
    # where the OS does not count blocking, the times alone decide
    assert headers._storage_bound(1.0, 0.1, None, 100) == (storage != "fast")
    broken = files.index(str(tmp_path / "t" / "train" / "cat" / "broken.png"))
    assert [p is None for p in problems] == [i != broken for i in range(len(files))]
    assert "not an image" in problems[broken] and shapes[broken].tolist() == [0, 0, 0]
    assert all(shapes[i].tolist() == [9, 13, 3] for i in range(len(files)) if i != broken)
    _, over = headers.read_headers(files[:1], limit=100)
    assert "over the limit of 100" in over[0]


def test_training_on_streamed_files_shuffles_the_names_before_decoding(tmp_path, monkeypatch):
    """Files decoded as read (not cached): each epoch is a fresh permutation of every example, the same for the
    same seed, and the first batch waits for no buffer of decoded images (only what prefetching asks for)."""
    import tensorflow as tf

    from keras_skipae.data import files
    from keras_skipae.models import resolve_arch

    decoded = []
    lazy_decoder = files.lazy_decoder

    def counting_decoder(*args, **kwargs):  # the table's decode, counting the images it decodes
        plain = lazy_decoder(*args, **kwargs)

        def decode(ref, target):
            with tf.control_dependencies([tf.py_function(lambda: decoded.append(1) or 0, [], tf.int64)]):
                return plain(ref, target)

        return decode

    monkeypatch.setattr(files, "lazy_decoder", counting_decoder)
    path = write_folder_tree(str(tmp_path / "t"), {"train": 200}, size=(8, 8), fmt="png")  # 200 per class
    ds = data.load(f"folder:{path}", "train", stream_above=0)
    arch = resolve_arch("tiny", input_shape=(8, 8, 3))
    train = data.classification_pipeline(ds, arch, 8, training=True, seed=3, cache=False)
    next(iter(train))
    assert 8 <= len(decoded) < 200, f"{len(decoded)} of {ds.info.num_examples} images decoded for the first batch of 8"

    def epoch_labels(pipeline):
        return np.concatenate([y for _, y in pipeline.as_numpy_iterator()])

    train = data.classification_pipeline(ds, arch, 8, training=True, seed=3, cache=False, drop_remainder=False)
    # the same labels as the file order, in another order each epoch, and the same order again for the same seed
    one, two = epoch_labels(train), epoch_labels(train)
    labels = ds.info.table.labels()
    assert sorted(one) == sorted(two) == sorted(labels) and not np.array_equal(one, two)
    again = data.classification_pipeline(ds, arch, 8, training=True, seed=3, cache=False, drop_remainder=False)
    np.testing.assert_array_equal(epoch_labels(again), one)
    assert not np.array_equal(one, labels)
    # a subset (data.split) is shuffled over its own files only
    part = data.split(ds, labels_per_class=20, val_fraction=0.0, seed=0).labelled
    sub = epoch_labels(data.classification_pipeline(part, arch, 8, training=True, seed=3, cache=False,
                                                    drop_remainder=False))
    assert sorted(sub) == sorted(part.info.table.labels()) and len(sub) == part.info.num_examples == 20 * 3
