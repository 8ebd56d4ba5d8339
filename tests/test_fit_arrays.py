"""Arrays given to `Distiller.fit` (`keras_kd.fit_arrays`, `data.array_batches`): Keras' own
batches, bit for bit, without Keras 3.15's repeated shuffle order under a global seed and
without tf.data's autotuner; arrays and in-memory cached teacher outputs read one execution
at a time (`fit_arrays.ExecutionBlocks`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, D, make_student, make_teacher

import keras_kd as kd
from keras_kd import data, fit_arrays

RNG = np.random.default_rng(3)
X64 = RNG.normal(size=(103, D))  # float64, which Keras casts to float32; 103: a partial batch
Y = RNG.integers(0, C, size=103)
WEIGHTS = RNG.uniform(0.5, 2.0, size=103)


@pytest.fixture(scope="module")
def teacher():
    return make_teacher()


def distiller(teacher, **compile_kwargs):
    keras.utils.set_random_seed(11)
    d = kd.Distiller(make_student(), teacher)
    d.compile(optimizer="adam", alpha=0.3, temperature=2.0, metrics=["accuracy"],
              jit_compile=False, **compile_kwargs)
    return d


FIT_CASES = {
    "sample_weight, validation_split": dict(
        sample_weight=WEIGHTS, batch_size=10, epochs=2, validation_split=0.2),
    "class_weight, validation_data": dict(
        class_weight={0: 1.0, 1: 2.0, 2: 0.5, 3: 1.5}, batch_size=16, epochs=2,
        validation_data=(X64[:20], Y[:20]), validation_batch_size=7),
    "default batch size": dict(epochs=2),
    "steps_per_epoch": dict(batch_size=10, epochs=2, steps_per_epoch=4),
}


@pytest.mark.parametrize("kwargs", FIT_CASES.values(), ids=FIT_CASES.keys())
def test_unshuffled_arrays_train_as_keras_own_adapter_bit_for_bit(teacher, kwargs):
    """`shuffle=False`: the same batches as Keras' array adapter (`keras.Model.fit` called on
    the Distiller), so the same weights and logs, exactly: sample and class weights,
    `validation_split` (Keras' split: the last examples), validation arrays with their own
    batch size, the default batch size (32, with a partial last batch), `steps_per_epoch`
    running on across epochs, float64 arrays cast to float32."""
    # one step per execution in both: `keras.Model.fit` does not adapt it to
    # `steps_per_epoch` as `Distiller.fit` does (keras_kd.execution.for_epoch)
    ours, keras_own = (distiller(teacher, steps_per_execution=1) for _ in range(2))
    history = ours.fit(X64, Y, shuffle=False, verbose=0, **kwargs).history
    expected = keras.Model.fit(keras_own, X64, Y, shuffle=False, verbose=0, **kwargs).history
    assert history == expected
    assert "val_loss" in history or "validation_data" not in kwargs
    for got, want in zip(ours.student.get_weights(), keras_own.student.get_weights()):
        np.testing.assert_array_equal(got, want)


BLOCK_CASES = {k: v for k, v in FIT_CASES.items() if "steps_per_epoch" not in v}


class Steps(keras.callbacks.Callback):
    """The step numbers and logs `fit` hands its batch callbacks."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.append(("begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(("end", batch, {k: float(v) for k, v in logs.items()}))


@pytest.mark.parametrize("kwargs", BLOCK_CASES.values(), ids=BLOCK_CASES.keys())
def test_execution_blocks_train_as_keras_own_multi_step_loop_bit_for_bit(teacher, kwargs):
    """Several steps per execution: `Distiller.fit` gathers each execution's batches from
    the arrays inside the compiled execution, one `tf.data` element per execution
    (`fit_arrays.ExecutionBlocks`). Against Keras' own multi-step loop reading Keras' own
    adapter: the same weights, history, and batch callbacks with the same step numbers and
    logs, exactly; the train function Keras used is given back after `fit`."""
    ours, keras_own = (distiller(teacher, steps_per_execution=4) for _ in range(2))
    executions = []
    make = ours._executions.train_function

    def counting(model, blocks):
        function = make(model, blocks)

        def counted(iterator):
            executions.append(1)
            return function(iterator)

        return counted

    ours._executions.train_function = counting
    got, want = Steps(), Steps()
    history = ours.fit(X64, Y, shuffle=False, verbose=0, callbacks=[got], **kwargs).history
    expected = keras.Model.fit(keras_own, X64, Y, shuffle=False, verbose=0, callbacks=[want],
                               **kwargs).history
    assert history == expected
    assert got.seen == want.seen
    for a, b in zip(ours.student.get_weights(), keras_own.student.get_weights()):
        np.testing.assert_array_equal(a, b)
    examples = 103 - int(103 * kwargs.get("validation_split", 0))
    steps = -(-examples // kwargs.get("batch_size", 32))
    assert len(executions) == kwargs["epochs"] * -(-steps // 4) > 0
    assert ours.train_function is None  # Keras' own, not yet made: untouched by the blocks


def test_execution_blocks_hold_the_arrays_outside_the_graph(teacher):
    """The arrays reach the compiled execution as arguments: no graph constant is larger
    than 1 MB (TensorFlow's graphs are limited to 2 GB) when fitting on 2.4 MB of arrays;
    shuffled, the result equals one step per execution, bit for bit, under the same seed."""
    x = np.random.default_rng(0).normal(size=(50_000, D)).astype("float32")
    y = np.arange(50_000) % C
    models, histories = [], []
    for steps_per_execution in (64, 1):
        models.append(distiller(teacher, steps_per_execution=steps_per_execution))
        keras.utils.set_random_seed(2)
        histories.append(models[-1].fit(x, y, batch_size=5_000, epochs=2, verbose=0).history)
    assert histories[0] == histories[1]
    for a, b in zip(models[0].student.get_weights(), models[1].student.get_weights()):
        np.testing.assert_array_equal(a, b)
    (execution,) = models[0]._executions._compiled.values()
    graphs = [f.graph for f in execution._list_all_concrete_functions_for_serialization()]
    constants = [op.get_attr("value").ByteSize() for g in graphs for op in g.get_operations()
                 if op.type == "Const"]
    assert constants and max(constants) < 2**20


def test_cached_teacher_outputs_read_one_execution_at_a_time(teacher):
    """An in-memory `cache_logits` dataset is read one execution at a time too (its rows in
    its own shuffled order, `shuffle_buffer` and `seed`): the same history and weights as
    Keras' own loop reading it step by step, over 2 epochs with a partial last batch."""
    ds = tf.data.Dataset.from_tensor_slices((X64.astype("float32"), Y)).batch(10)
    runs = []
    for steps_per_execution in (4, 1):
        keras.utils.set_random_seed(0)  # the shuffle's seed pairs with the global seed
        cached = kd.teachers.cache_logits(teacher, ds, shuffle_buffer=50, seed=3)
        d = distiller(teacher, steps_per_execution=steps_per_execution)
        runs.append((d.fit(cached, epochs=2, verbose=0).history, d))
    (blocked, ours), (stepped, keras_loop) = runs
    assert blocked == stepped
    for a, b in zip(ours.student.get_weights(), keras_loop.student.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(ours._executions._compiled) == 1 and not keras_loop._executions._compiled
    # a dataset derived from the cache is Keras' to read, step by step
    d = distiller(teacher, steps_per_execution=4)
    d.fit(cached.take(5), verbose=0)
    assert not d._executions._compiled and d.train_function is not None


def _epoch_orders(d, x, y, epochs, **kwargs):
    """The first feature of every example `d.fit(x, y)` trains on, epoch by epoch."""
    seen = []
    train_step = d.train_step

    def recording_step(batch):
        tf.py_function(lambda v: seen.extend(v.numpy().round().astype(int).tolist()),
                       [batch[0][:, 0]], [])
        return train_step(batch)

    d.train_step = recording_step
    d.fit(x, y, epochs=epochs, verbose=0, **kwargs)
    per_epoch = len(seen) // epochs
    return [seen[e * per_epoch:(e + 1) * per_epoch] for e in range(epochs)]


def test_shuffled_arrays_draw_a_new_order_every_epoch_under_a_global_seed(teacher):
    """Keras 3.15's adapter repeats one order in every epoch under `set_random_seed`
    (docs/guide.md, "Data"); through `Distiller.fit` each epoch is a new permutation of the
    examples, and a rerun with the same seed repeats the same orders."""
    x = np.repeat(np.arange(30, dtype="float32")[:, None], D, axis=1)
    y = np.arange(30) % C
    runs = []
    for _ in range(2):
        d = distiller(teacher)
        keras.utils.set_random_seed(0)
        runs.append(_epoch_orders(d, x, y, 3, batch_size=8))
    first = runs[0]
    assert all(sorted(order) == list(range(30)) for order in first)  # every example, once
    assert len({tuple(order) for order in first}) == 3  # a new order each epoch
    assert runs[0] == runs[1]  # the same orders for the same seed


def test_array_batches_is_what_fit_reads_and_runs_without_the_autotuner(teacher):
    """`Distiller.fit(x, y)` trains on `data.array_batches(x, y)`: the same weights from the
    same global seed; the pipeline has tf.data's autotuner off (`data.prefetched`)."""
    x, y = X64[:64].astype("float32"), Y[:64]
    a = distiller(teacher)
    keras.utils.set_random_seed(5)
    a.fit(x, y, batch_size=16, epochs=2, verbose=0)
    b = distiller(teacher)
    keras.utils.set_random_seed(5)
    ds = data.array_batches(x, y, batch_size=16)
    assert ds.options().autotune.enabled is False
    b.fit(ds, epochs=2, verbose=0)
    for got, want in zip(a.student.get_weights(), b.student.get_weights()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("num_samples, batch_size", [(10, 4), (12, 4), (3, 8)])
def test_row_batches_cover_every_row_once_per_epoch(num_samples, batch_size):
    """`data.row_batches`: batches of `batch_size` rows, the last one partial; in order
    unshuffled; shuffled, a permutation of all rows each epoch, new each epoch, the same
    for the same global seed; the number of batches as the dataset's cardinality."""
    sizes = [batch_size] * (num_samples // batch_size) + [num_samples % batch_size] * bool(
        num_samples % batch_size)
    in_order = [b.tolist() for b in data.row_batches(num_samples, batch_size, False)
                .as_numpy_iterator()]
    assert in_order == [list(range(i, i + n)) for i, n in zip(range(0, num_samples, batch_size),
                                                               sizes)]
    orders = []
    for _ in range(2):
        keras.utils.set_random_seed(4)
        rows = data.row_batches(num_samples, batch_size, True)
        assert int(rows.cardinality()) == len(sizes)
        epochs = [[b.tolist() for b in rows.as_numpy_iterator()] for _ in range(3)]
        assert all([len(b) for b in e] == sizes for e in epochs)
        assert all(sorted(sum(e, [])) == list(range(num_samples)) for e in epochs)
        orders.append(epochs)
    assert orders[0] == orders[1]
    assert num_samples < 4 or len({tuple(sum(e, [])) for e in orders[0]}) == 3


def test_what_is_not_arrays_goes_to_keras_unchanged():
    """Datasets, generators and `shuffle="batch"` are Keras' to read; Keras' own errors for
    arrays still come from Keras (here: class and sample weights together)."""
    ds = tf.data.Dataset.from_tensor_slices((X64, Y)).batch(8)
    args = dict(x=ds, y=None, shuffle=True, validation_data=ds)
    assert fit_arrays.fit_arguments(args) == args
    args = dict(x=X64, y=Y, shuffle="batch", batch_size=8)
    assert fit_arrays.fit_arguments(args) == args
    assert not fit_arrays.are_arrays(None, None) and fit_arrays.are_arrays({"a": X64}, Y, None)
    with pytest.raises(ValueError, match="class_weight` and `sample_weight"):
        fit_arrays.fit_arguments(dict(x=X64, y=Y, sample_weight=WEIGHTS, class_weight={0: 2.0}))


def test_evaluate_and_predict_on_arrays_match_keras_own_adapter(teacher, monkeypatch):
    """`Distiller.evaluate` and `predict` read arrays through `array_batches`, unshuffled:
    Keras' own batches, so the same figures exactly, with sample weights and a partial last
    batch; and no shuffle even though `fit`'s default is to shuffle."""
    d = distiller(teacher)
    d.fit(X64, Y, batch_size=16, epochs=1, verbose=0)
    calls = []
    original = data.array_batches
    monkeypatch.setattr(data, "array_batches",
                        lambda *a, **k: calls.append(k["shuffle"]) or original(*a, **k))
    ours = d.evaluate(X64, Y, sample_weight=WEIGHTS, batch_size=10, verbose=0, return_dict=True)
    expected = keras.Model.evaluate(d, X64, Y, sample_weight=WEIGHTS, batch_size=10, verbose=0,
                                    return_dict=True)
    assert ours == expected
    np.testing.assert_array_equal(d.predict(X64, batch_size=10, verbose=0),
                                  keras.Model.predict(d, X64, batch_size=10, verbose=0))
    np.testing.assert_array_equal(d.predict(X64, verbose=0),
                                  d.student.predict(X64.astype("float32"), verbose=0))
    assert calls == [False, False, False]  # evaluate, predict twice: all through array_batches
