"""Test setup: quiet TensorFlow, two logical CPU devices for distribution tests."""

from keras_skipae.tf_startup import prefer_onednn, quiet_tensorflow_startup

# as the skipae command does: TensorFlow's C++ start-up lines stay out of the report (unless
# TF_CPP_MIN_LOG_LEVEL is set), and TensorFlow runs its oneDNN kernels on x86-64 (unless TF_ENABLE_ONEDNN_OPTS
# is set); both settings are inherited by the processes tests start, so they compute as this one does
prefer_onednn()
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


def pytest_configure(config):
    """Every report lists skipped tests with their reason (``make test``/CI run ``pytest -q``, which hides them).

    A skip says what is missing and how to install it; unless a reason is printed, a test skipped in CI passes
    unnoticed. ``-rN`` (no summary) is respected.
    """
    chars = config.option.reportchars or ""
    if not any(c in chars for c in "sSaAN"):
        config.option.reportchars = chars + "s"


#: test modules whose tests take tens of seconds (subprocesses, whole recipes, pages of examples): run first,
#: so that pytest-xdist spreads them over its workers instead of leaving one of them at the end
LONG_FIRST = ("test_wheel.py", "test_docs_examples.py", "test_benchmarks.py", "test_seeds.py", "test_data_packed.py",
              "test_joint.py", "test_cli.py")


def pytest_collection_modifyitems(config, items):
    order = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(LONG_FIRST)))
