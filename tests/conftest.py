"""Test set-up: two logical CPU devices (for tf.distribute tests), shared fixtures.

The logical devices must be configured before TensorFlow initialises its runtime, so this
runs at collection time, before any test module creates a tensor.
"""

import contextlib
import gc
import importlib.util
import io
import os
import pathlib
import subprocess
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
# With several test processes (pytest-xdist), each process's TensorFlow would start one
# intra-op thread per core: on 2 cores, 2 processes x 2 busy (spinning) threads. One thread
# per process when there are as many processes as cores; the inter-op pool keeps its default
# (the collectives of the two logical devices run on it at the same time).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = max(1, len(os.sched_getaffinity(0)) // _workers)
    tf.config.threading.set_intra_op_parallelism_threads(_threads)

# TensorFlow's and Keras' module-level objects (hundreds of thousands) moved out of the
# collector's reach: every full collection during the tests would walk them again.
gc.freeze()

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST = pathlib.Path(
    os.environ.get("KERAS_KD_MNIST", REPO.parent / "shared" / "data" / "mnist.npz")
)



def run_example(*args, script="mnist_hinton.py"):
    """An example script run as `python examples/SCRIPT ARGS` would run it, but in this process
    (TensorFlow is imported once per test process, not once per run: about 8 s of CPU each on
    the CI machines): its `main()` with `sys.argv` set, stdout and stderr captured, its exit
    status as a `subprocess.CompletedProcess` (2 for argparse errors, 1 for an exception or a
    `SystemExit` message, whose text goes to stderr as Python prints it)."""
    path = REPO / "examples" / script
    argv, out, err = [str(path), *map(str, args)], io.StringIO(), io.StringIO()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = argv, [str(path.parent)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                module.main()
                code = 0
            except SystemExit as stop:
                code = stop.code or 0
                if not isinstance(code, int):  # SystemExit("message"): printed, status 1
                    print(code, file=sys.stderr)
                    code = 1
            except Exception:  # noqa: BLE001 - reported as a failed run, as Python would
                traceback.print_exc()
                code = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

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
    # free_memory=False: no full `gc.collect()` after every test. With TensorFlow loaded one
    # costs about 1 s here, 480 s of the suite's 1,880 s of test time (session 10's
    # --durations=0); Python's own generational collection still runs.
    keras.backend.clear_session(free_memory=False)


# The files that train on real data, longest first: with `--no-loadscope-reorder` (Makefile)
# pytest-xdist hands out files in collection order, so putting these first keeps one process
# from starting the longest file last while the other sits idle (durations in docs/guide.md).
LONGEST_FIRST = ("test_real_data.py", "test_export.py", "test_examples_cifar10.py",
                 "test_cli.py", "test_multi_worker.py", "test_edge.py", "test_examples.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept
