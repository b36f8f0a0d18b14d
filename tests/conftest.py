"""Test setup: quiet TensorFlow, two logical CPU devices for distribution tests."""

from keras_skipae.tf_startup import quiet_tensorflow_startup

# as the skipae command does: TensorFlow's C++ start-up lines stay out of the report (unless
# TF_CPP_MIN_LOG_LEVEL is set); the level is inherited by the processes tests start
quiet_tensorflow_startup()

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by an earlier import
    pass


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
