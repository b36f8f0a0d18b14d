"""The three input pipelines: normalisation, size/channel conversion, augmentation, corruption, weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import data
from keras_skipae.arch import Arch
from keras_skipae.data import DataError
from keras_skipae.data.testing import random_images, write_segfolder


def arch(**kw):
    base = dict(input_shape=(16, 16, 3), widths=(8,), convs_per_stage=1, corruption="masking", corruption_level=0.3)
    base.update(kw)
    return Arch(**base)


def classification_ds(n=32, size=(16, 16), channels=3):
    labels = np.arange(n) % 4
    return data.load((random_images(n, size, channels, labels=labels), labels))


def test_pretrain_pairs_are_normalised_with_the_arch():
    ds = classification_ds()
    a = arch(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    x, clean = next(iter(data.pretrain_pipeline(ds, a, 8, training=False, corruption="model")))
    images, _ = data.to_numpy(ds)
    expected = (images[:8] / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.5])
    np.testing.assert_allclose(clean.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(x.numpy(), clean.numpy())  # corruption happens in the model


def test_pipeline_corruption_masks_whole_pixels_to_black():
    a = arch(corruption="masking", corruption_level=0.3)
    x, clean = next(iter(data.pretrain_pipeline(classification_ds(64), a, 64, seed=0, corruption="pipeline")))
    x, clean = x.numpy(), clean.numpy()
    changed = (x != clean).any(axis=-1)
    assert 0.25 < changed.mean() < 0.35
    assert (x[changed] == 0.0).all()  # black in normalised units (mean 0, std 1)
    g = arch(corruption="gaussian", corruption_level=0.1)
    x, clean = next(iter(data.pretrain_pipeline(classification_ds(64), g, 64, seed=0, corruption="pipeline")))
    assert abs(float(np.std(x.numpy() - clean.numpy())) - 0.1) < 0.01


def test_seeded_pipelines_repeat_and_epochs_differ():
    ds = classification_ds()
    a = arch()
    p = data.pretrain_pipeline(ds, a, 8, seed=5, corruption="pipeline", augment=True)
    q = data.pretrain_pipeline(ds, a, 8, seed=5, corruption="pipeline", augment=True)
    first = [b[0].numpy() for b in p]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate([b[0].numpy() for b in q]))
    second_epoch = [b[0].numpy() for b in p]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second_epoch))


def test_grey_images_resized_and_converted_to_the_model_input():
    ds = classification_ds(8, size=(28, 28), channels=1)
    x, y = next(iter(data.classification_pipeline(ds, arch(input_shape=(32, 32, 3)), 4, training=False)))
    assert x.shape == (4, 32, 32, 3) and y.dtype.name == "int32"
    np.testing.assert_allclose(x.numpy()[..., 0], x.numpy()[..., 2])
    x, _ = next(iter(data.classification_pipeline(classification_ds(4), arch(input_shape=(16, 16, 1)), 4, training=False)))
    assert x.shape == (4, 16, 16, 1)


def test_classification_augmentation_shifts_and_flips_the_image():
    images = random_images(16, (16, 16), 3)
    ds = data.load((images, np.zeros(16, int)))
    a = arch()
    x, _ = next(iter(data.classification_pipeline(ds, a, 16, training=True, augment=True, seed=0)))
    x = np.rint(x.numpy() * 255).astype(int)
    padded = np.pad(images.astype(int), ((0, 0), (2, 2), (2, 2), (0, 0)))
    found = []
    for out in x:  # each output is some image shifted by up to 2 pixels (zero fill), maybe mirrored
        found.append(
            next(
                ((dy - 2, dx - 2, mirrored)
                 for img in padded
                 for dy in range(5)
                 for dx in range(5)
                 for mirrored in (False, True)
                 if np.abs(out - (img[dy : dy + 16, dx : dx + 16][:, ::-1] if mirrored
                                  else img[dy : dy + 16, dx : dx + 16])).max() <= 1),
                None,
            )
        )  # fmt: skip
    assert None not in found
    # a no-op augmentation would pass the check above (the identity is a candidate): it must move things
    assert sum(f != (0, 0, False) for f in found) >= 8
    assert any(f[2] for f in found) and any(f[:2] != (0, 0) for f in found)


def test_labels_follow_their_images_through_shuffling():
    labels = np.arange(40) % 4
    images = np.repeat(labels.astype(np.uint8)[:, None, None, None] * 60, 16 * 16 * 3).reshape(40, 16, 16, 3)
    ds = data.load((images, labels))
    for x, y in data.classification_pipeline(ds, arch(), 8, training=True, seed=1):
        np.testing.assert_allclose(np.rint(x.numpy()[:, 0, 0, 0] * 255 / 60), y.numpy())


def test_segmentation_weights_zero_on_the_ignore_label(tmp_path):
    path = write_segfolder(tmp_path / "cam", 4, size=(24, 32), num_classes=4, ignore_label=11)
    ds = data.load(f"segfolder:{path}", ignore_label=11)
    a = arch(input_shape=(None, None, 3))
    x, m, w = next(iter(data.segmentation_pipeline(ds, a, 2, training=False)))
    assert x.shape == (2, 24, 32, 3) and m.shape == (2, 24, 32) and w.dtype.name == "float32"
    assert (w.numpy()[:, 0] == 0).all() and (m.numpy()[:, 0] == 0).all() and (w.numpy()[:, 1:] == 1).all()


def _source_window(source, top, left, out_h, out_w, flip, fill):
    """``source[top:top + out_h, left:left + out_w]`` (mirrored when ``flip``), ``fill`` outside the source."""
    h, w = source.shape
    padded = np.full((h + 2 * out_h, w + 2 * out_w), fill, source.dtype)
    padded[out_h:out_h + h, out_w:out_w + w] = source
    window = padded[out_h + top:out_h + top + out_h, out_w + left:out_w + left + out_w]
    return window[:, ::-1] if flip else window


def _ignore_label_batches(seeds):
    """Masks with scattered ignore pixels, images whose pixel value encodes their mask value, and the training
    batches of a random 24x24 crop (rows beyond the 20-row images, columns cut) and flip, one per seed."""
    rng = np.random.default_rng(0)
    n, h, w, ignore = 6, 20, 28, 11
    masks = rng.integers(0, 4, (n, h, w)).astype(np.uint8)
    masks[rng.random((n, h, w)) < 0.25] = ignore  # scattered single pixels, not a band a shifted crop could hide
    images = np.repeat(((masks.astype(np.int32) + 1) * 20).astype(np.uint8)[..., None], 3, axis=-1)  # 0: outside
    ds = data.load((images, masks), num_classes=4, ignore_label=ignore)
    a = arch(input_shape=(None, None, 3))
    batches = []
    for seed in seeds:
        p = data.segmentation_pipeline(ds, a, n, training=True, augment=True, crop_size=(24, 24), seed=seed,
                                       scale_range=(1.0, 1.0))
        x, m, wt = (t.numpy() for t in next(iter(p)))
        codes = np.rint(x[..., 0] * 255 / 20).astype(int) - 1  # the source mask value each image pixel shows
        batches.append((x, m, wt, codes))
    return masks, ds, a, batches


def _best_window(codes, masks):
    """(agreement, j, top, left, flip) of the source window that ``codes`` shows best."""
    return max((float(np.mean(codes == _source_window(masks[j].astype(int), top, left, *codes.shape, flip, -1))),
                j, top, left, flip)
               for j in range(len(masks)) for top in range(-4, 1) for left in range(0, 5) for flip in (False, True))


def test_segmentation_weights_are_zero_exactly_on_the_ignore_label_after_augmentation():
    """Per pixel: weight 0 where the mask holds the ignore label (or outside the image), 1 elsewhere, with the
    same random crop and flip on the image, the mask and the weights."""
    ignore = 11
    masks, ds, a, batches = _ignore_label_batches(seeds=range(3))
    # no augmentation: the weights are the source masks' own ignore pixels
    x, m, wt = (t.numpy() for t in next(iter(data.segmentation_pipeline(ds, a, len(masks), training=False))))
    assert wt.dtype == np.float32 and set(np.unique(wt)) == {0.0, 1.0}
    np.testing.assert_array_equal(wt, (masks != ignore).astype(np.float32))
    np.testing.assert_array_equal(m, np.where(masks == ignore, 0, masks))
    flips = set()
    for seed, (x, m, wt, codes) in enumerate(batches):
        assert x.shape == (len(masks), 24, 24, 3) and m.shape == wt.shape == (len(masks), 24, 24)
        assert wt.dtype == np.float32 and set(np.unique(wt)) == {0.0, 1.0}
        # the weights and the mask follow the image pixel by pixel: what the image shows decides them
        expected = ((codes != ignore) & (codes >= 0)).astype(np.float32)
        np.testing.assert_array_equal(wt, expected, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(m, np.where(expected > 0, codes, 0), err_msg=f"seed {seed}")
        assert (wt[codes == ignore] == 0).all() and (codes == ignore).any() and (codes == -1).any()
        for i in range(len(masks)):
            # and the image is a shifted (and maybe mirrored) window of one source image: the geometry is real
            agreement, j, top, left, flip = _best_window(codes[i], masks)
            window = _source_window(masks[j].astype(int), top, left, 24, 24, flip, -1)
            assert agreement >= 0.95 and ((codes[i] == window) | (codes[i] == -1)).all(), (seed, i, agreement)
            flips.add(flip)
    assert flips == {False, True}, "the flip was exercised both ways"


def test_a_scale_one_crop_beyond_the_image_is_a_plain_shifted_crop():
    masks, _, _, batches = _ignore_label_batches(seeds=range(3))
    for seed, (_, _, _, codes) in enumerate(batches):
        for i in range(len(masks)):
            agreement = _best_window(codes[i], masks)[0]
            assert agreement == 1.0, f"seed {seed}, output {i}: best source window agrees on {agreement:.1%}"


def test_segmentation_augmentation_keeps_image_and_mask_aligned():
    h, w = 24, 32
    masks = ((np.arange(w)[None, :] // 8) % 4).repeat(h, axis=0)[None].repeat(6, axis=0).astype(np.uint8)
    images = np.repeat((masks * 60)[..., None], 3, axis=-1)
    ds = data.load((images, masks))
    a = arch(input_shape=(None, None, 3))
    p = data.segmentation_pipeline(ds, a, 6, training=True, augment=True, crop_size=(16, 16), seed=0, scale_range=(1.0, 1.0))
    x, m, wt = next(iter(p))
    value = np.rint(x.numpy()[..., 0] * 255 / 60)
    assert x.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(value[wt.numpy() > 0], m.numpy()[wt.numpy() > 0])
    # with scaling, interpolation blurs only the band edges
    p = data.segmentation_pipeline(ds, a, 6, training=True, augment=True, crop_size=(16, 16), seed=0)
    x, m, wt = next(iter(p))
    value = np.rint(x.numpy()[..., 0] * 255 / 60)
    inside = wt.numpy() > 0
    assert (value[inside] == m.numpy()[inside]).mean() > 0.85


def test_pipeline_errors():
    ds = classification_ds(4)
    with pytest.raises(DataError, match="corruption='sometimes'"):
        data.pretrain_pipeline(ds, arch(), 2, corruption="sometimes")
    with pytest.raises(DataError, match="use classification_pipeline"):
        data.segmentation_pipeline(ds, arch(), 2, training=True)
    with pytest.raises(DataError, match="batch_size=0"):
        data.classification_pipeline(ds, arch(), 0, training=True)


def test_autoencoder_trains_on_the_pretrain_pipeline():
    ds = classification_ds(32)
    ae = ks.build("autoencoder", "tiny", input_shape=(16, 16, 3))
    ae.compile("adam", "mse")
    history = ae.fit(data.pretrain_pipeline(ds, ae.arch, 8, seed=0), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_images_of_differing_sizes_are_cropped_or_refused(tmp_path):
    from keras_skipae.data.testing import encode

    path = write_segfolder(tmp_path / "cam", 3, size=(24, 32), num_classes=3)
    with open(tmp_path / "cam" / "train" / "big.png", "wb") as f:
        f.write(encode(random_images(1, (40, 36), 3)[0], "png"))
    with open(tmp_path / "cam" / "trainannot" / "big.png", "wb") as f:
        f.write(encode(np.ones((40, 36), np.uint8), "png"))
    ds = data.load(f"segfolder:{path}")
    assert ds.info.image_shape is None and ds.info.num_examples == 4
    a = arch(input_shape=(None, None, 3))
    x, m, w = next(iter(data.segmentation_pipeline(ds, a, 4, training=True, crop_size=(16, 16), seed=0)))
    assert x.shape == (4, 16, 16, 3) and m.shape == (4, 16, 16)
    with pytest.raises(DataError, match="differ in size.*crop_size"):
        data.segmentation_pipeline(ds, a, 2, training=False)
    x, clean = next(iter(data.pretrain_pipeline(ds, arch(input_shape=(20, 20, 3)), 4, seed=0)))
    assert x.shape == (4, 20, 20, 3)


def test_uncached_when_decoded_data_exceed_the_memory_budget(tmp_path, monkeypatch):
    from keras_skipae.data import files, pipeline
    from keras_skipae.data.testing import write_folder_tree

    path = write_folder_tree(tmp_path / "tree", 2)
    monkeypatch.setattr(files, "MEMORY_BUDGET_BYTES", 0)  # decoded on the fly ...
    monkeypatch.setattr(pipeline, "CACHE_BUDGET_BYTES", 100)  # ... and too big to cache
    ds = data.load(f"folder:{path}")
    with pytest.warns(UserWarning, match="not caching tree"):
        p = data.classification_pipeline(ds, arch(), 3, training=True, seed=0)
    assert sum(int(x.shape[0]) for x, _ in p) == 6


def test_colour_masks_are_refused_with_the_fix(tmp_path):
    from keras_skipae.data.testing import encode

    path = write_segfolder(tmp_path / "cam", 1)
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[..., 0] = 1
    with open(tmp_path / "cam" / "trainannot" / "f0000.png", "wb") as f:
        f.write(encode(colour, "png"))
    with pytest.raises(DataError, match="f0000.png is a colour image.*palette PNGs"):
        data.load(f"segfolder:{path}")


def test_segmenter_trains_with_the_per_pixel_weights(tmp_path):
    """The pipeline's third element reaches Keras as per-pixel sample weights: ignored pixels add nothing."""
    import tensorflow as tf

    path = write_segfolder(tmp_path / "cam", 4, size=(24, 32), num_classes=3, ignore_label=11)  # row 0 ignored
    ds = data.load(f"segfolder:{path}", ignore_label=11)
    seg = ks.build("segmenter", "tiny", input_shape=(None, None, 3), num_classes=3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    seg.compile("adam", loss)
    train = data.segmentation_pipeline(ds, seg.arch, 2, training=True, augment=True, crop_size=(16, 16), seed=0)
    history = seg.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    evaluation = data.segmentation_pipeline(ds, seg.arch, 4, training=False)
    x, m, w = next(iter(evaluation))
    assert (w.numpy()[:, 0] == 0).all() and (w.numpy()[:, 1:] == 1).all()
    logits = seg(x, training=False)
    weighted, unweighted = float(loss(m, logits, sample_weight=w)), float(loss(m, logits))
    assert seg.evaluate(evaluation, verbose=0) == pytest.approx(weighted, rel=1e-5)
    assert abs(weighted - unweighted) > 1e-3 * unweighted, "the ignored row changes the unweighted loss"
    # the loss does not depend on the logits of ignored pixels at all
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(m, logits, sample_weight=w)
    grad = np.abs(tape.gradient(value, logits).numpy()).sum(axis=-1)
    assert (grad[:, 0] == 0).all() and (grad[:, 1:] > 0).all()


def test_input_pipeline_benchmark_times_the_model_without_its_masking_layer(monkeypatch):
    """The benchmark's pipelines corrupt (corruption="pipeline"): the timed model must not mask again."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "input_pipeline.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as running the script does: its folder's modules import
    spec = importlib.util.spec_from_file_location("_bench_input_pipeline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    built = []

    class Built(Exception):
        pass

    def fake_build(kind, preset, **kw):
        built.append((kind, preset, kw))
        raise Built

    monkeypatch.setattr(bench.ks, "build", fake_build)
    for overrides in ({}, {"input_shape": (None, None, 3)}):
        with pytest.raises(Built):
            bench.train_step_rate(overrides, 2, 1, (32, 32, 3))
    assert [kw.get("corruption") for _, _, kw in built] == ["none", "none"]
    assert built[1][2]["input_shape"] == (None, None, 3)


@pytest.mark.parametrize("variable, geometry", [(False, "augment"), (True, "augment"), (False, "crop")])
def test_segmentation_training_at_scale_one_sees_what_evaluation_sees(variable, geometry):
    """Images larger than the model: training geometry at scale 1 = the whole frame resized, as in evaluation."""
    import tensorflow as tf

    h, w = 24, 32  # into a 12x16 model: evaluation halves the resolution
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 4, (4, h // 2, w // 2)).repeat(2, axis=1).repeat(2, axis=2).astype(np.uint8)  # 2x2 blocks
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (3 * yy + 4 * xx + 10).astype(np.uint8)  # linear: bilinear and antialiased resizes agree inside
    images = np.repeat(ramp[None, ..., None], 4, axis=0).repeat(3, axis=-1)
    images[..., 1] = 255 - images[..., 1]
    ds = data.load((images, masks))
    if variable:  # images of differing sizes take the per-example path
        ds = tf.data.Dataset.from_generator(
            lambda: zip(images, masks),
            output_signature=(tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((None, None), tf.int32)),
        )
    a = arch(input_shape=(12, 16, 3))
    kw = dict(seed=0, cache=False, drop_remainder=False)
    x_eval, m_eval, _ = next(iter(data.segmentation_pipeline(ds, a, 4, training=False, **kw)))
    if geometry == "augment":  # scale 1; the flip is random, so both orientations are compared
        train = data.segmentation_pipeline(ds, a, 4, training=True, augment=True, scale_range=(1.0, 1.0), **kw)
    else:  # a crop of the model's size at the evaluation resolution, no flip: the whole frame
        train = data.segmentation_pipeline(ds, a, 4, training=True, crop_size=(12, 16), **kw)
    for x, m, _ in [next(iter(train))]:
        x, m, x_eval_np, m_eval_np = x.numpy(), m.numpy(), x_eval.numpy(), m_eval.numpy()
        assert x.shape == x_eval_np.shape == (4, 12, 16, 3)
        for i in range(4):
            j = next(j for j in range(4) if np.array_equal(m[i], m_eval_np[j]) or np.array_equal(m[i], m_eval_np[j][:, ::-1]))
            target = x_eval_np[j] if np.array_equal(m[i], m_eval_np[j]) else x_eval_np[j][:, ::-1]
            np.testing.assert_allclose(x[i][1:-1, 1:-1], target[1:-1, 1:-1], atol=1e-4)


def _batches(pipeline, n=2):
    return [tuple(t.numpy() for t in (b if isinstance(b, tuple) else (b,))) for b, _ in zip(pipeline, range(n))]


def _eight_pipelines(tmp_path, monkeypatch):
    """A builder of eight pipelines covering every mapped function: pre-training with corruption, crops and a
    corrupted-only loss, grey-to-RGB classification, segmentation with per-example crops (one image of another
    size), and a folder decoded as it is read (FileTable's decoder mapped)."""
    from keras_skipae.data import files
    from keras_skipae.data.testing import encode, write_folder_tree

    folder = write_segfolder(str(tmp_path / "seg"), splits={"train": 6}, size=(24, 32), num_classes=4,
                             ignore_label=255)
    with open(tmp_path / "seg" / "train" / "big.png", "wb") as f:  # one image of another size: per-example crops
        f.write(encode(random_images(1, (40, 36), 3)[0], "png"))
    with open(tmp_path / "seg" / "trainannot" / "big.png", "wb") as f:
        f.write(encode(np.ones((40, 36), np.uint8), "png"))
    tree = write_folder_tree(str(tmp_path / "tree"), 3, size=(20, 20))
    monkeypatch.setattr(files, "MEMORY_BUDGET_BYTES", 0)  # decoded as read: FileTable's decoder is mapped
    seg = data.load(f"segfolder:{folder}", "train", ignore_label=255)
    on_disk = data.load(f"folder:{tree}", "train")
    assert seg.info.image_shape is None and not on_disk.info.in_memory
    grey = classification_ds(16, size=(20, 20), channels=1)

    def build():
        cls_arch = arch(input_shape=(16, 16, 3))
        return [
            data.pretrain_pipeline(classification_ds(16), arch(), 8, seed=3, corruption="pipeline", augment=True),
            data.pretrain_pipeline(classification_ds(16), arch(corruption="block_masking", corruption_level=0.5,
                                                               loss_on="corrupted"), 8, seed=3, corruption="pipeline"),
            data.classification_pipeline(grey, cls_arch, 8, training=True, augment=True, seed=3),
            data.classification_pipeline(grey, cls_arch, 8, training=False),
            data.segmentation_pipeline(seg, arch(input_shape=(None, None, 3)), 2, training=True, augment=True,
                                       crop_size=(16, 16), seed=3, ignore_label=255),
            data.segmentation_pipeline(seg, arch(input_shape=(None, None, 3)), 1, training=False, ignore_label=255),
            data.pretrain_pipeline(seg, arch(input_shape=(20, 20, 3)), 4, seed=3),
            data.classification_pipeline(on_disk, cls_arch, 4, training=True, augment=True, seed=3, cache=False),
        ]

    return build


def test_the_pipelines_trace_the_same_without_autograph(tmp_path, monkeypatch):
    """The mapped functions skip AutoGraph (faster to build); with it switched back on, every batch is the same."""
    from keras_skipae.data import pipeline as pipeline_module
    from keras_skipae.data import tables

    build = _eight_pipelines(tmp_path, monkeypatch)
    without = [_batches(p) for p in build()]
    monkeypatch.setattr(pipeline_module, "_graph", lambda fn: fn)  # AutoGraph converts them again
    monkeypatch.setattr(tables, "_graph", lambda fn: fn)
    with_autograph = [_batches(p) for p in build()]
    for a, b in zip(without, with_autograph):
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            for u, v in zip(x, y):
                np.testing.assert_array_equal(u, v)


def test_the_conversion_to_model_units_is_compiled_and_agrees_with_the_plain_operations(tmp_path, monkeypatch):
    """Fixed-size batches go to the model's units through one XLA-compiled function; SKIPAE_DATA_XLA=0 runs the
    plain operations. Images agree to float32 rounding, labels, masks and weights exactly; same order, same draws."""
    compiled = []
    real_function = tf.function

    def spy(fn=None, **kwargs):
        if kwargs.get("jit_compile"):
            compiled.append(getattr(fn, "__name__", fn))
        return real_function(fn, **kwargs)

    build = _eight_pipelines(tmp_path, monkeypatch)
    monkeypatch.setattr(tf, "function", spy)
    fused = [_batches(p) for p in build()]
    assert "convert" in compiled  # the fixed-size pipelines took the compiled path
    monkeypatch.setenv("SKIPAE_DATA_XLA", "0")
    compiled.clear()
    plain = [_batches(p) for p in build()]
    assert compiled == []
    for a, b in zip(fused, plain):
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            for u, v in zip(x, y):
                if u.dtype.kind == "f" and u.ndim == 4 and u.shape[-1] in (1, 3):  # images in the model's units
                    np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-6)
                else:
                    np.testing.assert_array_equal(u, v)
