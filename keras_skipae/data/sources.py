"""``data.load(source, split)``: one entry point for every kind of dataset.

Sources: ``"tfds:NAME[/CONFIG]"``, ``"idx:[DIR]"``, ``"folder:PATH"``,
``"segfolder:PATH"``, ``"seglist:LIST"``, ``"npz:PATH"``, ``"packed:DIR"``
(made by :func:`~keras_skipae.data.pack`), an in-memory
``(images, labels)`` tuple or a dict ``{"images": ..., "labels" | "masks": ...}``.
Each scheme has one module that loads it, found through the registry in
:mod:`~keras_skipae.data.schemes` (``idx_source``, ``folder_source``,
``segmentation``, ``npz_source``, ``tfds_source``, ``packed``; in-memory
arrays: ``arrays``).
Every dataset yields ``(image uint8 [H, W, C], label int32 [])`` for
classification or ``(image uint8 [H, W, C], mask int32 [H, W])`` for
segmentation, and carries a :class:`~keras_skipae.data.SourceInfo` as ``ds.info``.
"""

from __future__ import annotations

import tensorflow as tf

from . import decode as _decode
from .arrays import from_arrays, from_dict
from .info import DataError
from .schemes import SPECIFIC_OPTIONS, SCHEMES, forms, get_scheme, takers

ON_ERROR = ("raise", "skip")


def load(
    source: str | tuple | dict,
    split: str = "train",
    *,
    data_dir: str | None = None,
    download: bool = False,
    on_error: str = "raise",
    ignore_label: int | None = None,
    label_map: dict | None = None,
    num_classes: int | None = None,
    class_names: tuple | list | None = None,
    images: str | None = None,
    masks: str | None = None,
    root: str | None = None,
    palette: dict | list | str | None = None,
    max_image_pixels: int | None = None,
    stream_above: int | None = None,
) -> tf.data.Dataset:
    """Load ``split`` of ``source`` as a dataset of uint8 images with labels or masks.

    ``split`` is a split name (``"train"``, ``"test"``, ``"unlabelled"``) with
    optional TFDS-style slicing (``"train[:90%]"``, ``"train[100:200]"``).
    ``on_error="skip"`` leaves unreadable image files out and counts them in
    ``ds.info.skipped``. ``ignore_label`` marks the mask value that scores
    nothing (CamVid: 11); ``label_map`` remaps label or mask values before
    checking (``{255: 11}``); ``num_classes`` and ``class_names`` override what
    is inferred.

    Segmentation files: ``images``/``masks`` are name patterns for
    ``segfolder:`` (``"{split}/1st_manual/{stem}_manual1.gif"``, see
    :mod:`~keras_skipae.data.pairs`); ``root`` is where a ``seglist:`` list's
    paths start (default: the list's folder); ``palette`` maps mask colours to
    classes (a dict, a list of colours or a palette file, see
    :mod:`~keras_skipae.data.palette`). Binary ``{0, 255}`` masks are read as
    classes ``{0, 1}`` with a warning (``label_map={255: 1}`` says so silently).
    ``max_image_pixels`` refuses larger image files before decoding them
    (default 64 megapixels, ``SKIPAE_MAX_IMAGE_PIXELS``). A ``folder:``
    directory with more than ``stream_above`` files (default 50,000,
    ``SKIPAE_STREAM_ABOVE``) is not decoded at load: only the files' headers
    are read (sizes, channels, unusable files by name) and the pixels are decoded
    as the dataset is read (see :mod:`~keras_skipae.data.headers`); for speed
    pack it once (:func:`~keras_skipae.data.pack`).

    Example::

        ds = load("folder:../shared/data/cifar10/cifar10_jpg.zip", "train")
        ds.info.class_names[:2]                   # ('airplane', 'automobile')
        seg = load("segfolder:../shared/data/camvid", "train", ignore_label=11)
        seg = load("seglist:../shared/data/camvid", "val", ignore_label=11)       # camvid/val.txt
        drive = load("segfolder:DRIVE", "training", images="{split}/images/{stem}_{split}.tif",
                     masks="{split}/1st_manual/{stem}_manual1.gif")              # 2 classes
    """
    if on_error not in ON_ERROR:
        raise DataError(f"on_error={on_error!r}; expected one of {', '.join(ON_ERROR)}")
    opts = dict(ignore_label=ignore_label, label_map=label_map, num_classes=num_classes, class_names=class_names)
    scheme = source.partition(":")[0] if isinstance(source, str) else "arrays"
    _check_options(scheme, source, images=images, masks=masks, root=root, palette=palette, stream_above=stream_above)
    if max_image_pixels is not None:
        try:
            _decode.max_image_pixels(max_image_pixels)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise DataError(f"an in-memory source is (images, labels) or (images, masks); got {len(source)} items")
        return from_arrays(source[0], source[1], "arrays", split, **opts)
    if isinstance(source, dict):
        return from_dict(source, split, **opts)
    if not isinstance(source, str) or ":" not in source:
        raise DataError(f"unknown data source {source!r}; expected {forms(final=', ')}, an (images, labels) tuple "
                        "or a dict of arrays")
    spec = get_scheme(scheme, source)
    given = dict(data_dir=data_dir, download=download, on_error=on_error, pixel_limit=max_image_pixels, images=images,
                 masks=masks, root=root, palette=palette, stream_above=stream_above)  # fmt: skip
    return spec.load(source.partition(":")[2], split, source, **opts, **{k: given[k] for k in spec.takes})


def _check_options(scheme: str, source, **given) -> None:
    """Refuse an option the source does not use (it would be ignored silently)."""
    assert set(given) <= set(SPECIFIC_OPTIONS), "load()'s scheme-specific options are listed in schemes.py"
    takes = SCHEMES[scheme].takes if scheme in SCHEMES else () if scheme == "arrays" else None
    for option, value in given.items():
        if value is not None and takes is not None and option not in takes:
            where = source if isinstance(source, str) else "an in-memory source"
            raise DataError(f"{where}: {option}= applies to {' and '.join(s + ':' for s in takers(option))} sources only")
