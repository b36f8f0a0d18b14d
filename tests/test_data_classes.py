"""Labels and mask values that are not class ids are refused with what was found and what to pass."""

import numpy as np
import pytest

from keras_skipae import data
from keras_skipae.data import DataError
from keras_skipae.data.testing import random_images

IMAGES = random_images(4, (4, 4))


def test_float_labels_that_are_not_whole_numbers_are_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=IMAGES, y_train=np.array([0.7, 2.7, 1.0, 0.0]))
    with pytest.raises(DataError, match=r"key 'y_train'.*2 labels are not whole numbers \(e\.g\. 0\.7, 2\.7\)"):
        data.load(f"npz:{path}")
    whole = data.load((IMAGES, np.array([0.0, 2.0, 1.0, 0.0])))  # whole-number floats are class ids
    assert [int(y) for _, y in whole] == [0, 2, 1, 0]
    with pytest.raises(DataError, match="1 labels are NaN or infinite"):
        data.load((IMAGES, np.array([0.0, np.nan, 1.0, 0.0])))


def test_sparse_labels_are_refused_with_the_label_map_to_pass():
    labels = np.array([0, 1000, 2000, 1000])
    with pytest.raises(DataError, match=r"labels take 3 distinct values \(0, 1000, 2000\); read as class ids that is "
                                        r"2001 classes, 1998 of them never seen\. Number them with "
                                        r"label_map=\{0: 0, 1000: 1, 2000: 2\}, or pass num_classes=2001"):  # fmt: skip
        data.load((IMAGES, labels))
    ds = data.load((IMAGES, labels), label_map={0: 0, 1000: 1, 2000: 2})
    assert ds.info.num_classes == 3 and [int(y) for _, y in ds] == [0, 1, 2, 1]
    assert data.load((IMAGES, labels), num_classes=2001).info.num_classes == 2001
    # a slice that happens to hold few classes is judged on the whole array
    many = data.load((random_images(40, (2, 2)), np.arange(40)), "train[:2]")
    assert many.info.num_classes == 40 and many.info.num_examples == 2


def test_string_labels_say_what_was_found_and_expected(tmp_path):
    with pytest.raises(DataError, match=r"labels are strings \(e\.g\. 'cat', 'dog'\); expected integer class ids"):
        data.load((IMAGES, np.array(["cat", "dog", "cat", "dog"])))
    path = tmp_path / "d.npz"
    np.savez(path, images=IMAGES, labels=np.array(["cat", "dog", "cat", "dog"]))
    with pytest.raises(DataError, match=r"key 'labels'.*labels are strings.*class_names="):
        data.load(f"npz:{path}")
    path = tmp_path / "o.npz"
    np.savez(path, images=IMAGES, labels=np.array([[0], [1, 2], [3], []], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"key 'labels' .* is an object array.*integer class ids"):
        data.load(f"npz:{path}")


def test_one_hot_labels_get_the_argmax_hint(tmp_path):
    one_hot = np.eye(3, dtype=np.float32)[[0, 2, 1, 0]]
    path = tmp_path / "d.npz"
    np.savez(path, x_train=IMAGES, y_train=one_hot)
    with pytest.raises(DataError, match=r"key 'y_train'.*labels of shape \(4, 3\) are one-hot rows.*"
                                        r"labels\.argmax\(axis=1\)"):  # fmt: skip
        data.load(f"npz:{path}")
    with pytest.raises(DataError, match=r"labels of shape \(4, 3\); expected one integer class id per image"):
        data.load((IMAGES, np.full((4, 3), 0.5)))
    with pytest.raises(DataError, match=r"masks of shape \(4, 4, 4, 3\) have 3 channels.*masks\.argmax\(axis=-1\)"):
        data.load({"images": IMAGES, "masks": np.eye(3)[np.zeros((4, 4, 4), int)]})


def test_float_masks_must_be_whole_numbers():
    masks = np.zeros((4, 4, 4))
    masks[0, 0, 0] = 0.5
    with pytest.raises(DataError, match=r"1 mask values are not whole numbers \(e\.g\. 0\.5\)"):
        data.load({"images": IMAGES, "masks": masks})
