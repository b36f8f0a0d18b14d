"""tfds: sources, tested on TFDS mock data (nothing downloads).

tensorflow-datasets is a hard dependency (install_requires): a plain import, so
that an environment without it fails here instead of skipping every test.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_skipae import data
from keras_skipae.arch import Arch
from keras_skipae.data import DataError


def test_cifar10_with_split_slicing_and_a_stratified_split():
    with tfds.testing.mock_data(num_examples=24):
        ds = data.load("tfds:cifar10", "train[:50%]")
        assert ds.info.task == "classification" and ds.info.num_classes == 10
        assert ds.info.image_shape == (32, 32, 3)
        assert ds.element_spec[0].dtype.name == "uint8" and ds.element_spec[1].dtype.name == "int32"
        s = data.split(ds, num_labels=6, val_fraction=0.25, seed=0)
        assert len(list(s.labelled)) == 6 and len(s.labelled_indices) == 6
        x, y = next(iter(data.classification_pipeline(s.labelled, Arch(), 3, training=True, seed=0)))
        assert x.shape == (3, 32, 32, 3) and x.dtype.name == "float32"


@pytest.mark.parametrize("name, classes, shape", [("cifar100", 100, (32, 32, 3)), ("svhn_cropped", 10, (32, 32, 3))])
def test_other_classification_builders_of_the_paper(name, classes, shape):
    with tfds.testing.mock_data(num_examples=4):
        ds = data.load(f"tfds:{name}", "test")
        assert ds.info.num_classes == classes and ds.info.image_shape == shape
        assert all(0 <= int(y) < classes for _, y in ds)


def test_idx_falls_back_to_the_tfds_cache(tmp_path, monkeypatch):
    from keras_skipae.data import schemes

    not_installed = str(tmp_path / "not_installed")
    monkeypatch.setitem(schemes.SCHEMES, "idx", dataclasses.replace(schemes.SCHEMES["idx"], default_path=not_installed))
    prepared = tmp_path / "tfds" / "fashion_mnist" / "3.0.1"
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text("{}")  # what a finished download_and_prepare leaves
    with tfds.testing.mock_data(num_examples=5):
        ds = data.load("idx:", "train", data_dir=str(tmp_path / "tfds"))
        assert ds.info.name == "fashion_mnist" and ds.info.image_shape == (28, 28, 1)
        assert len(list(ds)) == 5


def test_stl10_unlabelled_split_feeds_pretraining():
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load("tfds:stl10", "unlabelled")
        assert ds.info.image_shape == (96, 96, 3)
        x, clean = next(iter(data.pretrain_pipeline(ds, Arch(input_shape=(32, 32, 3)), 3, seed=0)))
        assert x.shape == clean.shape == (3, 32, 32, 3)


def test_oxford_pet_masks_are_remapped_to_classes_from_zero():
    with tfds.testing.mock_data(num_examples=4, max_value=4):
        ds = data.load("tfds:oxford_iiit_pet", "train")
        assert ds.info.task == "segmentation" and ds.info.class_names == ("pet", "background", "outline")
        assert ds.info.image_shape is None
        for _, mask in ds:
            assert set(np.unique(mask.numpy())) <= {0, 1, 2}
        seg = data.segmentation_pipeline(ds, Arch(input_shape=(32, 32, 3), num_classes=3), 2, training=True, seed=0)
        x, m, w = next(iter(seg))
        assert x.shape == (2, 32, 32, 3) and m.shape == w.shape == (2, 32, 32)


def test_out_of_range_mask_values_stop_with_the_value():
    import tensorflow as tf

    with tfds.testing.mock_data(num_examples=2, max_value=250):
        ds = data.load("tfds:oxford_iiit_pet", "train")
        with pytest.raises(tf.errors.InvalidArgumentError, match="a mask holds label value"):
            list(ds)


def test_missing_dataset_and_unprepared_data_dir(tmp_path):
    with pytest.raises(DataError, match="no TFDS dataset 'no_such_dataset'"):
        data.load("tfds:no_such_dataset")
    with pytest.raises(DataError, match="not prepared in .*download=True"):
        data.load("tfds:cifar10", data_dir=str(tmp_path))


@pytest.mark.parametrize("key", [-1, 256])
def test_oxford_pet_label_map_keys_outside_the_mask_values_are_refused(key):
    with tfds.testing.mock_data(num_examples=2, max_value=4):
        with pytest.raises(DataError, match=rf"tfds:oxford_iiit_pet: label_map key {key}: mask files hold values 0\.\.255"):
            data.load("tfds:oxford_iiit_pet", "train", label_map={key: 0, 1: 0, 2: 1, 3: 2})


def test_subsets_of_a_streamed_source_keep_their_length_through_pipelines_and_training(tmp_path):
    import keras_skipae as ks
    from keras_skipae.train import Trainer

    with tfds.testing.mock_data(num_examples=24):
        ds = data.load("tfds:cifar10", "train")
        s = data.split(ds, num_labels=10, val_fraction=0.25, seed=0)
        assert int(s.labelled.cardinality()) == 10 == len(list(s.labelled))
        assert int(s.val.cardinality()) == len(list(s.val)) == len(s.val_indices)
        trainer = Trainer(strategy="one_device")
        with trainer.scope():
            clf = ks.build("classifier", "tiny", input_shape=(32, 32, 3), num_classes=10)
        train = data.classification_pipeline(s.labelled, clf.arch, 4, training=True, augment=True, seed=0)
        assert int(train.cardinality()) == 2  # 10 // 4 with drop_remainder
        val = data.classification_pipeline(s.val, clf.arch, 4, training=False)
        assert int(val.cardinality()) == -(-len(s.val_indices) // 4)
        history = trainer.fit(clf, train, epochs=1, run_dir=tmp_path / "run", verbose=0)
        assert np.isfinite(history.history["loss"][0])
