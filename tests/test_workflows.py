"""keras_kd.workflows and the validation split it trains with: honest evaluation."""

import keras
import numpy as np
import pytest

from helpers import INFERENCE_IDS, InferenceRecorder
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

    dataset, _ = workflows.epoch_seeded_train(splits, 0)
    assert dataset.options().autotune.enabled is False  # data.prefetched: no epoch-end wait
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


def _recorded(name, classes=3):
    """A small logits model that records the ids of what it predicts (`helpers.INFERENCE_IDS`)."""
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Flatten()(InferenceRecorder(name=name)(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes)(h), name=name)


def test_predict_labelled_is_the_models_output_and_the_class_indices():
    (x, y), (xt, yt) = _arrays()
    model = models.build("mlp-tiny", (4, 4, 1), 3)
    splits = data.from_arrays((x, y), (xt, yt), batch_size=8)
    splits.test = splits.test.map(lambda a, b: (a, keras.ops.one_hot(b, 3)))  # one-hot labels
    predictions = workflows.predict_labelled(model, splits.test)
    # the same model on other batch sizes (8 here, 32 in predict): float32 rounding only (an
    # AMD EPYC without AVX-512 differs by 4e-6 on logits of about 20)
    np.testing.assert_allclose(predictions.logits, model.predict(xt, verbose=0), rtol=1e-6,
                               atol=1e-5)
    np.testing.assert_array_equal(predictions.labels, yt)
    expected = np.mean(np.argmax(predictions.logits, -1) == yt)
    assert workflows.accuracy_of(predictions) == pytest.approx(expected)
    assert workflows.accuracy(model, splits) == workflows.accuracy_of(predictions)
    with pytest.raises(ValueError, match="at least one labelled example"):
        workflows.predict_labelled(model, splits.test.take(0))


def test_workflows_predict_the_test_set_once_and_return_those_predictions():
    INFERENCE_IDS.clear()
    splits = data.from_arrays(*_arrays(), batch_size=8, validation_split=0.2)
    teacher = _recorded("teacher_ids")
    facts, predictions = workflows.train_supervised(teacher, splits, epochs=1, verbose=0,
                                                    return_test_predictions=True)
    test_ids = list(range(50, 70))
    assert sorted(i for i in INFERENCE_IDS["teacher_ids"] if i >= 50) == test_ids
    assert facts["test_accuracy"] == workflows.accuracy_of(predictions)
    np.testing.assert_allclose(predictions.logits, teacher.predict(splits.test, verbose=0),
                               atol=1e-6)

    INFERENCE_IDS.clear()
    student = _recorded("student_ids")
    results, distiller, predictions = workflows.distill(
        student, teacher, splits, epochs=1, verbose=0, return_test_predictions=True)
    assert sorted(i for i in INFERENCE_IDS["student_ids"] if i >= 50) == test_ids
    assert [i for i in INFERENCE_IDS["teacher_ids"] if i >= 50] == []  # training data only
    assert results["test_accuracy"] == workflows.accuracy_of(predictions)
    assert predictions.logits.shape == (20, 3) and distiller.student is student
    facts_only = workflows.train_supervised(_recorded("other"), splits, epochs=1, verbose=0)
    assert isinstance(facts_only, dict) and "test_accuracy" in facts_only
