"""keras_kd.workflows and the validation split it trains with: honest evaluation."""

import keras
import numpy as np
import pytest

from keras_kd import data
from keras_kd import models
from keras_kd import workflows


def _arrays(n_train=50, n_test=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_train + n_test, 4, 4, 1)).astype("float32")
    x[:, 0, 0, 0] = np.arange(len(x))  # each example carries its index
    y = rng.integers(0, 3, size=len(x))
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def _ids(dataset):
    return sorted(int(v) for x, _ in data.numpy_batches(dataset) for v in x[:, 0, 0, 0])


def test_validation_split_is_carved_from_training_data_and_seeded():
    train, test = _arrays()
    splits = data.from_arrays(train, test, batch_size=8, seed=1, validation_split=0.2)
    train_ids, val_ids, test_ids = _ids(splits.train), _ids(splits.validation), _ids(splits.test)
    assert (splits.train_size, splits.validation_size) == (40, 10) and len(val_ids) == 10
    assert sorted(train_ids + val_ids) == list(range(50)) and test_ids == list(range(50, 70))
    again = data.from_arrays(train, test, batch_size=8, seed=1, validation_split=0.2)
    other = data.from_arrays(train, test, batch_size=8, seed=2, validation_split=0.2)
    assert _ids(again.validation) == val_ids and _ids(other.validation) != val_ids
    assert data.from_arrays(train, test).validation is None


def test_validation_split_out_of_range_is_named():
    with pytest.raises(ValueError, match="validation_split=1.0"):
        data.from_arrays(*_arrays(), validation_split=1.0)


def test_epoch_order_depends_on_seed_and_epoch_only():
    splits = data.from_arrays(*_arrays(), batch_size=8)

    def order(seed, epoch):
        dataset, callback = workflows.epoch_seeded_train(splits, seed)
        callback.on_epoch_begin(epoch)
        return [int(v) for x, _ in data.numpy_batches(dataset) for v in x[:, 0, 0, 0]]

    assert sorted(order(0, 0)) == list(range(50))
    assert order(0, 3) == order(0, 3)  # a fresh pipeline (a resumed run) repeats epoch 3
    assert order(0, 3) != order(0, 2) and order(1, 3) != order(0, 3)


def test_training_never_validates_on_the_test_set():
    splits = data.from_arrays(*_arrays(), batch_size=8, validation_split=0.2)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_test_batch_begin(self, batch, logs=None):
            seen.append(batch)

    model = models.build("mlp-tiny", (4, 4, 1), 3)
    facts = workflows.train_supervised(model, splits, epochs=2, verbose=0, callbacks=[Spy()])
    assert len(seen) == 2 * 2  # two validation batches (10 examples) per epoch, not 3 (test)
    assert facts["epochs_run"] == 2 and facts["initial_epoch"] == 0


@pytest.mark.parametrize("shape", [(-1,), (-1, 1)])
def test_accuracy_with_flat_or_column_labels(shape):
    (x, y), (xt, yt) = _arrays()
    model = models.build("mlp-tiny", (4, 4, 1), 3)
    expected = np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt)
    splits = data.from_arrays((x, y), (xt, yt))
    splits.test = splits.test.map(lambda a, b: (a, keras.ops.reshape(b, shape)))
    assert workflows.accuracy(model, splits) == pytest.approx(expected)
