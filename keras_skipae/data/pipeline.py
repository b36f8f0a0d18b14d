"""Input pipelines that feed the three model kinds from a dataset of :func:`load`.

Each pipeline: (select what the model needs) -> cache the uint8 examples
(skipped when they are already held in memory) -> shuffle (training) ->
batch -> one vectorised map per batch (to float, channel conversion, resize,
normalisation with the model's ``arch``, augmentation, corruption) ->
prefetch. Per-example work happens only for images of differing sizes, which
must be brought to one size before they can be batched. With a ``seed`` the
order and every random draw are reproducible (stateless random ops keyed by a
seeded stream that changes every epoch).
"""

from __future__ import annotations

import os
import warnings

import tensorflow as tf

from ..arch import Arch
from ..choices import CORRUPTION_MODES
from . import transforms as T
from .info import DataError, info_of
from .packed import RECORD_SHUFFLE_BYTES, RECORD_SHUFFLE_MIN, shards_read

# The functions this module maps hold no Python control flow on tensors (their branches are on static shapes and
# settings), so AutoGraph's conversion is skipped: building the pre-training pipeline on 300,000 files took 0.15 s
# instead of 0.7 s (2 AVX-512 cores, 208 GFLOP/s; docs/benchmarks.md), and the traced graph is the same
# (tests/test_data_pipeline.py compares the batches with and without it).
_graph = tf.autograph.experimental.do_not_convert

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER_BYTES = 512 * 1024**2
#: Packed data is shuffled when packed (each shard a random subset in random order, the shards' order drawn each
#: epoch, eight read at once). Read as training runs, its records are shuffled before decoding (data.packed,
#: RECORD_SHUFFLE_BYTES); cached, its decoded images go through a buffer sized to the CPU's last-level cache, with
#: the same floor of 1,024 images as other data: with 64 MiB (2,427 images of 96x96x3) the packed pipeline ran
#: about 10-16% slower than with 1,024 (docs/benchmarks.md).
PACKED_SHUFFLE_BUFFER_BYTES = RECORD_SHUFFLE_BYTES  # one cache-sized budget, for encoded records and decoded images
SHUFFLE_MIN_ELEMENTS = RECORD_SHUFFLE_MIN
#: Decoded uint8 data up to this size is cached in memory by the pipelines (``cache=True``).
CACHE_BUDGET_BYTES = int(os.environ.get("SKIPAE_DATA_CACHE_BYTES", 8 * 1024**3))


def pretrain_pipeline(
    ds: tf.data.Dataset,
    arch: Arch,
    batch_size: int,
    *,
    training: bool = True,
    seed: int | None = None,
    augment: bool = False,
    corruption: str = "model",
    cache: bool = True,
    drop_remainder: bool = True,
    crop_size: tuple | None = None,
) -> tf.data.Dataset:
    """Batches of ``(x, x_clean)`` in the model's units, for denoising pre-training.

    ``corruption="model"`` (default) leaves ``x`` clean, for an auto-encoder
    whose corruption layer acts in training; ``"pipeline"`` corrupts ``x``
    here with ``arch.corruption``/``arch.corruption_level`` when ``training``
    (then build the model with ``corruption="none"``) and, with
    ``arch.loss_on="corrupted"``, adds per-pixel weights ``(x, x_clean, w)``
    that restrict the loss to the corrupted pixels; ``"none"`` gives clean
    pairs. Labels and
    masks are dropped, so any dataset of :func:`load` works, including the
    unlabelled pool of :func:`split`. ``crop_size`` takes random crops in
    training (centre crops otherwise) of images larger than the model's input.

    Example::

        ae = ks.build("autoencoder", "allconv-c")
        train = data.pretrain_pipeline(data.load("idx:"), ae.arch, 64, seed=0)
        ae.fit(train, epochs=1)
    """
    if corruption not in CORRUPTION_MODES:
        raise DataError(f"corruption={corruption!r}; expected one of {', '.join(CORRUPTION_MODES)}")
    _check_batch(batch_size)
    info = info_of(ds)
    ds, shuffled = _shuffled_files(ds, info, cache, training, seed)
    images = ds.map(_graph(lambda image, *rest: image), num_parallel_calls=AUTOTUNE)
    images = _cache_shuffle(images, info, cache, training and not shuffled, seed)
    size = _target_size(arch, crop_size)
    variable = _varies(ds)
    if variable:
        if size is None:
            raise _size_error(info, "pretrain_pipeline")
        images = _per_example(images, lambda x, key: _fit_size(x, size, key, training, crop_size), seed)
    batches = images.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    do_corrupt = corruption == "pipeline" and arch.corruption != "none" and training

    def per_batch(x, key):
        x = _prepare(x, arch, size if not variable else None, crop_size, training, key)
        if augment and training:
            x = T.random_crop_flip(x, T.seeds(key, 3)[1], _padding(x))
        if not do_corrupt:
            return x, x
        noisy, mask = T.corrupt_and_mask(x, arch, T.seeds(key, 3)[2])
        if arch.loss_on == "corrupted" and mask is not None:
            # per-pixel weights: the loss is the mean over the corrupted pixels only (as the model's
            # CorruptedPixelsOnly layer when the corruption is in the model)
            weights = mask[..., 0] / tf.maximum(tf.reduce_mean(mask), 1e-6)
            return noisy, x, weights
        return noisy, x

    return _finish(batches, per_batch, seed)


def classification_pipeline(
    ds: tf.data.Dataset,
    arch: Arch,
    batch_size: int,
    *,
    training: bool,
    seed: int | None = None,
    augment: bool = False,
    cache: bool = True,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """Batches of ``(x, label)`` with ``x`` in the model's units.

    ``augment=True`` (training only) adds a random crop from a copy padded by
    an eighth of the image size (4 pixels at 32x32) and a random horizontal
    flip. ``drop_remainder`` defaults to ``training``.

    Example::

        clf = ks.build("classifier", "allconv-c", num_classes=10)
        s = data.split(data.load("folder:cifar10_jpg.zip"), num_labels=4000)
        train = data.classification_pipeline(s.labelled, clf.arch, 64, training=True, augment=True, seed=0)
    """
    _check_batch(batch_size)
    info = info_of(ds)
    _check_task(ds, "classification", "classification_pipeline")
    ds, shuffled = _shuffled_files(ds, info, cache, training, seed)
    ds = _cache_shuffle(ds, info, cache, training and not shuffled, seed)
    size = _target_size(arch, None)
    variable = _varies(ds)
    if variable:
        if size is None:
            raise _size_error(info, "classification_pipeline")
        ds = _per_example(ds, lambda x, y, key: (_fit_size(x, size, key, False, None), y), seed)
    drop = training if drop_remainder is None else drop_remainder
    batches = ds.batch(batch_size, drop_remainder=drop, num_parallel_calls=AUTOTUNE)

    def per_batch(batch, key):
        x, y = batch
        x = _prepare(x, arch, size if not variable else None, None, training, key)
        if augment and training:
            x = T.random_crop_flip(x, T.seeds(key, 3)[1], _padding(x))
        return x, y

    return _finish(batches, per_batch, seed)


def segmentation_pipeline(
    ds: tf.data.Dataset,
    arch: Arch,
    batch_size: int,
    *,
    training: bool,
    seed: int | None = None,
    augment: bool = False,
    crop_size: tuple | None = None,
    cache: bool = True,
    drop_remainder: bool | None = None,
    scale_range: tuple = (0.75, 1.25),
    ignore_label: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(x, mask, sample_weight)`` for a segmenter.

    ``sample_weight`` is 1 where the mask holds a class and 0 on the dataset's
    ``ignore_label`` (from ``ds.info``, or given) and outside the image after
    augmentation; the mask is 0 there. ``augment=True`` (training) applies one
    random scale (``scale_range``), crop and horizontal flip to image and mask
    together (bilinear for images, nearest neighbour for masks). ``crop_size``
    (training) crops to that size; otherwise outputs have the model's input
    size, or the images' own size when the model takes any size.

    Training sees the scene at the scale evaluation sees it: scales and
    ``crop_size`` are relative to the evaluation resolution, i.e. the images
    resized to the model's input size (a model of fixed size), or the images'
    own size (a model that takes any size; ``crop_size`` is then in source
    pixels). For a fixed-size model, scale 1 gives the whole image resized to
    the model's input, as in evaluation, and scale ``s`` a random ``1/s`` part
    of it, zoomed in by ``s`` (360x480 CamVid into a 180x240 model: scale 1 is
    the whole frame at half resolution, not a 2x-zoomed 180x240 crop).

    Example::

        seg = ks.build("segmenter", "allconv-c", input_shape=(None, None, 3), num_classes=11)
        cam = data.load("segfolder:../shared/data/camvid", "train", ignore_label=11)
        train = data.segmentation_pipeline(cam, seg.arch, 8, training=True, augment=True, crop_size=(224, 224))
    """
    _check_batch(batch_size)
    info = info_of(ds)
    _check_task(ds, "segmentation", "segmentation_pipeline")
    ignore = ignore_label if ignore_label is not None else (info.ignore_label if info is not None else None)
    arch_size = _target_size(arch, None)
    if crop_size is not None and arch_size is not None and tuple(crop_size) != tuple(arch_size):
        raise DataError(
            f"crop_size={tuple(crop_size)} but the model takes {arch_size[0]}x{arch_size[1]} inputs; "
            "drop crop_size or build the model with input_shape=(None, None, C)"
        )
    size = tuple(crop_size) if (crop_size is not None and training) else arch_size
    random_geometry = training and (augment or crop_size is not None)
    ds, shuffled = _shuffled_files(ds, info, cache, training, seed)
    ds = _cache_shuffle(ds, info, cache, training and not shuffled, seed)
    variable = _varies(ds)
    if variable:
        if size is None:
            if batch_size != 1:
                raise _size_error(info, "segmentation_pipeline")
        else:
            def per_example(x, m, key):
                xb, mb = x[None], m[None]
                if random_geometry:
                    xb, mb = _seg_geometry(xb, mb, key, size, augment, scale_range, arch_size)
                else:
                    xb, mb = T.resize(xb, size), T.resize_masks(mb, size)
                return xb[0], mb[0]

            ds = _per_example(ds, per_example, seed)
    drop = training if drop_remainder is None else drop_remainder
    batches = ds.batch(batch_size, drop_remainder=drop, num_parallel_calls=AUTOTUNE)

    def per_batch(batch, key):
        x, m = batch
        if not variable and size is not None:  # geometry on the uint8 data, before the float cast
            if random_geometry:
                x, m = _seg_geometry(x, m, T.seeds(key, 3)[1], size, augment, scale_range, arch_size)
            else:
                x, m = T.resize(x, size), T.resize_masks(m, size)
        x = _to_units(x, arch)
        m, w = T.sample_weights(m, ignore)
        return x, m, w

    return _finish(batches, per_batch, seed)


# ------------------------------------------------------------------------------------ helpers
def _seg_geometry(x, m, key, size, augment, scale_range, eval_size):
    """Random geometry at the evaluation resolution (images resized to ``eval_size``, or their own size)."""
    if augment:
        return T.augment_segmentation(x, m, key, size, scale_range, flip=True, eval_size=eval_size)
    return T.augment_segmentation(x, m, key, size, (1.0, 1.0), flip=False, eval_size=eval_size)


def _check_batch(batch_size) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r}; expected a positive int")


def _check_task(ds, task: str, where: str) -> None:
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{where} needs (image, label/mask) pairs from data.load; got elements {spec}")
    rank = spec[1].shape.rank
    found = "classification" if rank == 0 else "segmentation" if rank == 2 else f"rank-{rank} targets"
    if found != task:
        raise DataError(
            f"{where} got a {found} dataset (targets of shape {spec[1].shape}); "
            f"use {'segmentation_pipeline' if found == 'segmentation' else 'classification_pipeline'} for it"
        )


def _varies(ds) -> bool:
    shape = ds.element_spec[0].shape if isinstance(ds.element_spec, tuple) else ds.element_spec.shape
    return shape[0] is None or shape[1] is None


def _target_size(arch: Arch, crop_size) -> tuple | None:
    h, w = arch.input_shape[:2]
    if h is not None and w is not None:
        return (int(h), int(w))
    return tuple(int(v) for v in crop_size) if crop_size is not None else None


def _size_error(info, where: str) -> DataError:
    name = info.name if info is not None else "the dataset"
    return DataError(
        f"{where}: images of {name} differ in size and the model takes any size, so they cannot be batched; "
        "give crop_size=(H, W), use batch_size=1, or build the model with a fixed input_shape"
    )


def _padding(x) -> int:
    h = x.shape[1] or 32
    return max(1, int(round(h / 8)))


def _caches(info, cache: bool) -> bool:
    """Whether the pipeline keeps the decoded examples (asked, not held in memory already, within the budget)."""
    if not cache or (info is not None and info.in_memory):
        return False
    size = _estimated_bytes(info)
    return size is None or size <= CACHE_BUDGET_BYTES


def _shuffled_files(ds, info, cache: bool, training: bool, seed):
    """``(ds, True)`` re-read from its files in a fresh random order each epoch, when training on files that are
    decoded as they are read (not cached): the order is drawn before decoding, over the file names, all of them
    (files), or through a 16 MiB buffer of encoded records (packed data), so no shuffle buffer of decoded images
    follows. Else ``(ds, False)``, unchanged."""
    table = info.table if info is not None else None
    if not training or _caches(info, cache) or not getattr(table, "shuffles_files", False):
        return ds, False
    return table.dataset(shuffle_seed=seed), True


def _cache_shuffle(ds, info, cache: bool, training: bool, seed):
    if _caches(info, cache):
        ds = ds.cache()
    elif cache and not info.in_memory:  # asked for, but over the budget (_caches decided it from the size)
        size = _estimated_bytes(info)
        warnings.warn(
            f"not caching {info.name} [{info.split}]: its decoded images take about {size / 1024**3:.1f} GiB, "
            f"over the {CACHE_BUDGET_BYTES / 1024**3:.1f} GiB budget (SKIPAE_DATA_CACHE_BYTES); "
            "they are decoded again every epoch",
            stacklevel=3,
        )
    if training:
        ds = ds.shuffle(_buffer(ds, info), seed=seed, reshuffle_each_iteration=True)
    return ds


def _estimated_bytes(info) -> int | None:
    if info is None or not info.num_examples or not info.image_shape:
        return None
    h, w, c = info.image_shape
    return int(info.num_examples) * int(h) * int(w) * (int(c) + (4 if info.task == "segmentation" else 0))


def _buffer(ds, info) -> int:
    n = info.num_examples if info is not None and info.num_examples else None
    shape = info.image_shape if info is not None else None
    per = int(shape[0] * shape[1] * shape[2]) if shape else 256 * 256 * 3
    # packed data is shuffled when packed: a smaller buffer mixes it, and memory does not grow with the set
    packed = info is not None and shards_read(info) is not None
    cap = max(SHUFFLE_MIN_ELEMENTS, (PACKED_SHUFFLE_BUFFER_BYTES if packed else SHUFFLE_BUFFER_BYTES) // max(per, 1))
    return min(n, cap) if n else cap


def _per_example(ds, fn, seed):
    """Map ``fn(*element, key)`` per example with a seeded stateless key."""
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    zipped = tf.data.Dataset.zip((ds, keys))

    def call(element, r):
        key = tf.stack([r, tf.constant(1, tf.int64)])
        if isinstance(element, tuple):
            return fn(*element, key)
        return fn(element, key)

    return zipped.map(_graph(call), num_parallel_calls=AUTOTUNE, deterministic=True)


def _fit_size(x, size, key, training, crop_size):
    """One image -> float32 of ``size``: random/centre crop when ``crop_size`` is set, else resize."""
    xb = x[None]
    if crop_size is not None:
        xb = T.random_crop(xb, key, size) if training else T.center_crop(xb, size)
    else:
        xb = T.resize(xb, size)
    return tf.cast(xb[0], tf.float32)


def _prepare(x, arch: Arch, size, crop_size, training, key):
    """uint8/float batch -> float32 in the model's units with the model's channels and size."""
    if size is not None and tuple(x.shape[1:3]) != tuple(size):  # crop/resize the uint8 data first
        if crop_size is not None:
            x = T.random_crop(x, T.seeds(key, 3)[0], size) if training else T.center_crop(x, size)
        else:
            x = T.resize(x, size)
    return _to_units(x, arch)


def _fuses() -> bool:
    return os.environ.get("SKIPAE_DATA_XLA", "1").strip().lower() not in ("0", "false", "no", "off")


def _to_units(x, arch: Arch):
    """A batch of pixel values (uint8 or float) -> float32 in the model's units (cast, channels, normalisation).

    When the batch's image shape is static (every fixed-size pipeline), the conversion runs as one XLA-compiled
    function: one pass over the batch instead of one per operation, 1.57x and 2.02x faster on a 64x96x96x3 batch (1.42-2.52
    per repeat; benchmarks/input_scale.py, docs/benchmarks.md). It is compiled once per pipeline built and batch
    shape (the last, partial batch of an evaluation pipeline is a second shape). The values agree with the plain
    operations to float32 rounding (XLA may contract a multiply and an add), not bit for bit. ``SKIPAE_DATA_XLA=0``
    runs the plain operations (also the way out where a TensorFlow build's XLA compiler fails); images of varying
    sizes always do (one compilation per shape).
    """

    def convert(x):
        x = tf.cast(x, tf.float32)
        return T.normalise(T.match_channels(x, arch.channels), arch)

    if not _fuses() or not x.shape[1:].is_fully_defined():
        return convert(x)
    return tf.function(convert, jit_compile=True, autograph=False)(x)


def _finish(batches, per_batch, seed):
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    zipped = tf.data.Dataset.zip((batches, keys))

    def call(batch, r):
        return per_batch(batch, tf.stack([r, tf.constant(0, tf.int64)]))

    out = zipped.map(_graph(call), num_parallel_calls=AUTOTUNE, deterministic=True)
    if seed is not None:
        options = tf.data.Options()
        options.deterministic = True
        out = out.with_options(options)
    return out.prefetch(AUTOTUNE)
