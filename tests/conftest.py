"""Test set-up: two logical CPU devices (for tf.distribute tests), shared fixtures.

The logical devices must be configured before TensorFlow initialises its runtime, so this
runs at collection time, before any test module creates a tensor.
"""

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST = pathlib.Path(
    os.environ.get("KERAS_KD_MNIST", REPO.parent / "shared" / "data" / "mnist.npz")
)



def run_example(*args, script="mnist_hinton.py"):
    """An example script in a subprocess, importing this checkout's keras_kd."""
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / script), *args],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

@pytest.fixture(scope="session")
def mnist_path():
    if not MNIST.exists():
        pytest.skip(f"real MNIST not found at {MNIST} (set KERAS_KD_MNIST)")
    return str(MNIST)


@pytest.fixture(scope="session")
def mnist(mnist_path):
    """Real MNIST as float32 (N, 28, 28, 1) in [0, 1] and int64 labels."""
    from keras_kd.data import load_npz_arrays

    return load_npz_arrays(mnist_path)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()
