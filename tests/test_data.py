"""keras_kd.data: real MNIST from .npz, scikit-learn digits, TFDS offline via mock_data."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_kd import data


def test_npz_real_mnist(mnist_path):
    splits = data.load(mnist_path, batch_size=100)
    assert (splits.train_size, splits.test_size, splits.num_classes) == (60000, 10000, 10)
    assert splits.input_shape == (28, 28, 1) and splits.scale == pytest.approx(1 / 255)
    x, y = splits.test_arrays()
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # First test labels of the original MNIST ordering (shared/data/README.md).
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    assert abs(float(x.mean()) - 0.124) < 0.01  # mean intensity documented for this file
    xb, yb = next(iter(splits.train))
    assert xb.shape == (100, 28, 28, 1) and yb.dtype == tf.int64


def test_train_pipeline_shuffles_reproducibly(mnist_path):
    a = next(iter(data.load(mnist_path, batch_size=64, seed=3).train))[1].numpy()
    b = next(iter(data.load(mnist_path, batch_size=64, seed=3).train))[1].numpy()
    c = next(iter(data.load(mnist_path, batch_size=64, seed=4).train))[1].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pipeline_keeps_the_order_of_the_chain_it_replaced_and_casts_per_batch():
    """`data.pipeline` replaced the hand-written chain of examples/methods_cifar10.py (and of
    the folder loader): the same seed must give the same batches, epoch after epoch, or the
    published runs would not replay."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 4, 4, 3), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(50)))
    new = data.pipeline(ds, 8, training=True, seed=5, size=50, cast=tf.float32)
    old = (ds.cache().shuffle(50, seed=5, reshuffle_each_iteration=True).batch(8)
           .map(lambda a, b: (tf.cast(a, tf.float32), b)).prefetch(tf.data.AUTOTUNE))
    for _ in range(2):  # reshuffled each epoch, identically
        pairs = list(zip(new, old))
        assert len(pairs) == 7
        for (xn, yn), (xo, yo) in pairs:
            assert xn.dtype == tf.float32
            np.testing.assert_array_equal(xn, xo)
            np.testing.assert_array_equal(yn, yo)
    ordered = np.concatenate([y for _, y in data.pipeline(ds, 8, training=False)])
    np.testing.assert_array_equal(ordered, np.arange(50))
    with pytest.raises(ValueError, match=r"`size`: None.*length is unknown"):
        data.pipeline(ds.filter(lambda a, b: True), 8, training=True)


def _epoch_orders(ds, epochs):
    """The labels `fit` trains on, batch by batch, for `epochs` epochs of `ds`."""
    seen = []

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def train_step(self, batch):
            tf.py_function(lambda y: seen.append(y.numpy().tolist()), [batch[1]], [])
            return {"loss": tf.constant(0.0)}

    model = Recorder()
    model.compile("sgd")
    model.fit(ds, epochs=epochs, verbose=0)
    per_epoch = len(seen) // epochs
    return [sum(seen[e * per_epoch:(e + 1) * per_epoch], []) for e in range(epochs)]


def test_pipeline_reshuffles_every_fit_epoch_under_a_global_seed():
    """With `keras.utils.set_random_seed`, Keras 3.15's own `fit(x, y, shuffle=True)` on arrays
    repeats one batch order in every epoch (docs/guide.md, "Data"); `data.pipeline`, which
    the loaders and the docs recommend instead, must draw a new order each epoch, the same
    one for the same seed."""
    x = np.arange(20, dtype="float32")[:, None]
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(20)))
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        runs.append(_epoch_orders(data.pipeline(ds, 5, training=True, seed=1), 3))
    first = runs[0]
    assert all(sorted(order) == list(range(20)) for order in first)  # each epoch: every example
    assert len({tuple(order) for order in first}) == 3  # a new order each epoch
    assert runs[0] == runs[1]  # and the same orders for the same seeds


def test_every_split_runs_without_the_autotuning_thread(mnist_path):
    """`data.prefetched` ends every pipeline keras_kd builds: tf.data's autotuner is off, so
    dropping an epoch's iterator never waits for its next wake-up (benchmarks/epoch_boundary.py),
    while the pipeline still shards as it should under multi-worker training."""
    splits = data.load(mnist_path, batch_size=100, validation_split=0.1)
    for ds in (splits.train, splits.validation, splits.test):
        assert ds.options().autotune.enabled is False
    arrays = data.from_arrays(splits.train_arrays(limit=500), splits.test_arrays(limit=100),
                              batch_size=32)
    assert arrays.train.options().autotune.enabled is False
    assert (arrays.train.options().experimental_distribute.auto_shard_policy
            == data.DATA_SHARDING)
    ds = tf.data.Dataset.range(5)
    assert list(data.prefetched(ds).as_numpy_iterator()) == list(range(5))


def test_digits_needs_no_download():
    splits = data.load("digits", batch_size=32)
    assert splits.train_size + splits.test_size == 1797
    assert splits.input_shape == (8, 8, 1) and splits.scale == pytest.approx(1 / 16)
    x, _ = splits.train_arrays()
    assert x.max() == pytest.approx(1.0)


def test_arrays_source_and_errors():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 6, 6), dtype=np.uint8)
    y = np.arange(50) % 3
    splits = data.load(((x, y), (x[:10], y[:10])), batch_size=8)
    assert splits.num_classes == 3 and splits.input_shape == (6, 6, 1)
    with pytest.raises(ValueError, match=r"`y_train`.*differ in length"):
        data.load(((x, y[:5]), (x, y)))
    with pytest.raises(ValueError, match=r"argument `batch_size`.*Received: batch_size=0"):
        data.load(((x, y), (x, y)), batch_size=0)
    with pytest.raises(ValueError, match=r"argument `source`"):
        data.load(42)


def test_missing_npz_and_bad_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        data.load(str(tmp_path / "absent.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros(3))
    with pytest.raises(ValueError, match=r"missing keys \['x_test', 'x_train'"):
        data.load(str(bad))


def test_tfds_path_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        splits = data.load("mnist", batch_size=8)
        x, y = next(iter(splits.train))
    assert splits.name == "tfds:mnist" and splits.num_classes == 10
    assert splits.input_shape == (28, 28, 1) and splits.scale == pytest.approx(1 / 255)
    assert x.shape == (8, 28, 28, 1) and x.dtype == tf.float32 and float(tf.reduce_max(x)) <= 1.0
    assert splits.class_names[:3] == ["0", "1", "2"]


def test_tfds_offline_error_names_the_local_alternative(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match=r"'mnist'.*\.npz.*digits"):
        data.load("mnist", data_dir=str(tmp_path), download=False)


def test_tfds_network_failure_names_the_local_alternative(tmp_path, monkeypatch):
    import requests
    import tensorflow_datasets as tfds

    def no_network(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "load", no_network)
    with pytest.raises(data.DatasetUnavailableError, match=r"download failed.*ConnectionError.*\.npz"):
        data.load("mnist", data_dir=str(tmp_path))


def test_unknown_tfds_name():
    with pytest.raises(ValueError, match=r"neither a file nor a TFDS dataset name"):
        data.load("no_such_dataset_xyz")
