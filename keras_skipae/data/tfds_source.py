"""``tfds:NAME[/CONFIG]``: any TensorFlow Datasets builder, as (image, label) or (image, mask).

Classification uses the builder's ``image`` and ``label`` features (``-1``
labels, as in STL-10's ``unlabelled`` split, mean "no label"); a builder with a
``segmentation_mask`` feature (``oxford_iiit_pet``) gives (image, mask)
pairs, remapped to classes from 0 for the datasets listed in
:data:`SEGMENTATION_DEFAULTS`. Splits take TFDS slicing (``train[:90%]``).
Label values are checked as examples stream by: a value outside the classes
stops iteration with a message naming the value.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .classes import mask_lut
from .info import DataError, SourceInfo, attach_info
from .tables import StreamTable

AUTOTUNE = tf.data.AUTOTUNE

#: Mask conventions of TFDS segmentation datasets: value remap and class names.
SEGMENTATION_DEFAULTS = {
    # Oxford-IIIT Pet trimaps: 1 pet, 2 background, 3 outline (border)
    "oxford_iiit_pet": {"label_map": {1: 0, 2: 1, 3: 2}, "class_names": ("pet", "background", "outline")},
}


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DataError("tfds: sources need tensorflow-datasets (pip install tensorflow-datasets)") from exc
    return tfds


def load_tfds(name, split, source, *, data_dir=None, download=False, ignore_label=None, label_map=None,
              num_classes=None, class_names=None) -> tf.data.Dataset:  # fmt: skip
    """Load ``split`` of the TFDS builder ``name`` (``"cifar10"``, ``"stl10"``, ``"oxford_iiit_pet"``)."""
    tfds = _tfds()
    if not name:
        raise DataError(f"{source}: give a dataset name, e.g. tfds:cifar10 or tfds:svhn_cropped")
    try:
        ds, info = tfds.load(name, split=split, data_dir=data_dir, download=download, with_info=True)
    except tfds.core.registered.DatasetNotFoundError as exc:
        raise DataError(f"{source}: no TFDS dataset {name!r} ({str(exc).splitlines()[0]})") from None
    except (AssertionError, FileNotFoundError) as exc:
        raise DataError(
            f"{source}: {name} is not prepared in {data_dir or 'the TFDS data dir (~/tensorflow_datasets)'} "
            f"({str(exc).splitlines()[0][:200]}); load with download=True, or pass data_dir= where it is prepared"
        ) from None
    except ValueError as exc:
        raise DataError(f"{source}: cannot load split {split!r}: {str(exc).splitlines()[0]}") from None
    features = info.features
    if "image" not in features:
        raise DataError(f"{source}: builder {name} has no 'image' feature (features: {sorted(features.keys())})")
    image_shape = tuple(features["image"].shape)
    channels = int(image_shape[-1] or 3)
    try:
        num_examples = int(info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - unknown split sizes (mocked or custom builders)
        num_examples = None
    base_name = name.split("/")[0].split(":")[0]
    if "segmentation_mask" in features:
        defaults = SEGMENTATION_DEFAULTS.get(base_name, {})
        label_map = label_map if label_map is not None else defaults.get("label_map")
        class_names = class_names if class_names is not None else defaults.get("class_names")
        if num_classes is None:
            if class_names is not None:
                num_classes = len(class_names)
            else:
                raise DataError(f"{source}: give num_classes= for the segmentation masks of {name}")
        try:
            lut = mask_lut(label_map)
        except DataError as exc:
            raise DataError(f"{source}: {exc}") from None
        lut_t = tf.constant(lut if lut is not None else np.arange(256), tf.int32)
        n, ignore = int(num_classes), ignore_label

        def to_pair(ex):
            mask = tf.gather(lut_t, tf.cast(ex["segmentation_mask"][..., 0], tf.int32))
            bad = tf.logical_and(tf.logical_or(mask < 0, mask >= n), tf.not_equal(mask, -2 if ignore is None else ignore))
            first = tf.reduce_max(tf.where(bad, mask, tf.fill(tf.shape(mask), -1)))
            check = tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(bad)),
                [f"{source}: a mask holds label value", first, f"outside [0, {n}) that is not the ignore label {ignore}"],
            )
            with tf.control_dependencies([check]):
                mask = tf.identity(mask)
            return ex["image"], mask

        out = ds.map(to_pair, num_parallel_calls=AUTOTUNE)
        info_out = SourceInfo(
            name=base_name, task="segmentation", num_classes=n,
            class_names=tuple(class_names) if class_names else tuple(str(i) for i in range(n)),
            channels=channels, image_shape=image_shape if None not in image_shape else None,
            num_examples=num_examples, ignore_label=ignore_label, source=source, split=split,
        )  # fmt: skip
        table = StreamTable(out, num_examples or 0, "segmentation", None)
        return attach_info(out, info_out.replace(table=table if num_examples else None))
    if "label" not in features:
        raise DataError(f"{source}: builder {name} has no 'label' or 'segmentation_mask' feature")
    names = tuple(features["label"].names) if hasattr(features["label"], "names") else None
    names = tuple(class_names) if class_names is not None else names
    n = int(num_classes or (len(names) if names else features["label"].num_classes))
    mapping = label_map or {}
    keys = tf.constant([int(k) for k in mapping] or [0], tf.int64)
    vals = tf.constant([int(v) for v in mapping.values()] or [0], tf.int64)
    table_map = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, vals), -(2**40)) if mapping else None

    def label_of(ex):
        label = tf.cast(ex["label"], tf.int64)
        if table_map is not None:
            mapped = table_map.lookup(label)
            label = tf.where(mapped == -(2**40), label, mapped)
        check = tf.debugging.Assert(
            tf.logical_and(label >= -1, label < n),
            [f"{source}: label", label, f"is outside [0, {n}); pass num_classes= or remap with label_map="],
        )
        with tf.control_dependencies([check]):
            return tf.cast(label, tf.int32)

    out = ds.map(lambda ex: (ex["image"], label_of(ex)), num_parallel_calls=AUTOTUNE)

    def label_scan() -> np.ndarray:
        raw = tfds.load(name, split=split, data_dir=data_dir, download=False,
                        decoders={"image": tfds.decode.SkipDecoding()})  # fmt: skip
        labels = raw.map(label_of, num_parallel_calls=AUTOTUNE).batch(8192)
        parts = [b.numpy() for b in labels]
        return np.concatenate(parts) if parts else np.zeros((0,), np.int32)

    info_out = SourceInfo(
        name=base_name, task="classification", num_classes=n,
        class_names=names or tuple(str(i) for i in range(n)), channels=channels,
        image_shape=image_shape if None not in image_shape else None, num_examples=num_examples,
        source=source, split=split,
    )  # fmt: skip
    table = StreamTable(out, num_examples or 0, "classification", label_scan)
    return attach_info(out, info_out.replace(table=table if num_examples else None))
