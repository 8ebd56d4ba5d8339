"""Arrays given to `Distiller.fit`, read through `keras_kd.data.array_batches`.

Keras 3.15's `fit(x, y, ...)` on arrays (its `ArrayDataAdapter`) has two faults that
keras_kd's own pipelines do not (docs/guide.md, "Data"): under `keras.utils.set_random_seed`
`shuffle=True` repeats one batch order in every epoch, and tf.data's autotuner can hold up an
epoch for seconds when the previous epoch's iterator is dropped. `Distiller.fit` therefore
hands arrays (numpy arrays or dense tensors, nested as Keras allows) to `array_batches`,
after splitting off `validation_split` exactly as Keras does. Validation arrays, and arrays
given to `Distiller.evaluate` and `predict`, go the same way, unshuffled: 8 `evaluate` calls
on 20,000 MNIST images (MLP pair, batch 256) took 0.88-1.06 s so, and 0.91-1.57 s through
Keras' adapter, 5 of them 1.33-1.57 s, past the autotuner's 1.28 s wake-up
(session 16, docs/guide.md). Everything else (datasets, generators, `PyDataset`,
pandas, sparse or ragged tensors, `shuffle="batch"`) goes to Keras unchanged.

With several steps per execution (the default) and no `steps_per_epoch`, the training
arrays skip the per-step `tf.data` element: `ExecutionBlocks` gathers the same batches, in
the same order, inside the compiled execution (session 17).
"""

import numpy as np
import tensorflow as tf

from keras_kd import compat
from keras_kd import data


def are_arrays(*structures):
    """True when every leaf of `structures` (None aside) is a numpy array or a dense
    `tf.Tensor`, and there is at least one."""
    leaves = [leaf for s in structures for leaf in tf.nest.flatten(s) if leaf is not None]
    return bool(leaves) and all(isinstance(leaf, (np.ndarray, tf.Tensor)) for leaf in leaves)


def unshuffled(x, y=None, sample_weight=None, batch_size=None, steps=None):
    """`(x, y, sample_weight, batch_size)` for `evaluate`, `predict` and validation data:
    arrays become an unshuffled `data.array_batches` pipeline (Keras' own batches, in its
    order; `y`, `sample_weight` and `batch_size` are then None); anything else comes back
    as given."""
    if not are_arrays(x, y, sample_weight):
        return x, y, sample_weight, batch_size
    ds = data.array_batches(x, y, sample_weight, batch_size=batch_size, shuffle=False, steps=steps)
    return ds, None, None, None


def _validation_as_dataset(validation_data, batch_size, steps):
    if not isinstance(validation_data, (tuple, list)) or not 2 <= len(validation_data) <= 3:
        return validation_data  # a dataset, a generator, ...: Keras reads it
    x, y, sample_weight = (*validation_data, None)[:3]
    ds, *_ = unshuffled(x, y, sample_weight, batch_size, steps)
    return validation_data if ds is x else ds


class ExecutionBlocks:
    """Training arrays read one execution at a time: what `Distiller.fit` trains on when
    given arrays with several steps per execution (and no `steps_per_epoch`).

    Keras' loop takes one `tf.data` element per step, and that element costs about as much
    as a whole pipeline of cheap maps: on the MLP pair (a 3.4-3.9 ms step) the compiled
    loop reading `array_batches` was 1.03x (paired) the same loop over batches already in
    memory, the loop reading one element of row indices per 64 steps 0.99x (session 17,
    docs/guide.md "Performance"). So here the arrays are held as host tensors, passed to the
    compiled execution as arguments (never graph constants), and `dataset` yields the row
    indices of one execution at a time (`data.row_batches`: the same rows, in the same order,
    as `array_batches`); `train_function` gathers each step's batch from them and runs the
    Distiller's `train_step`, so the batches, and so the weights, are those of
    `array_batches` bit for bit (tests/test_fit_arrays.py).

    `dataset` states the number of steps as its cardinality, which is what Keras counts
    (callbacks, progress bar, the new iterator each epoch), though it holds
    `ceil(steps / steps_per_execution)` elements: Keras takes exactly one per execution.
    """

    def __init__(self, inputs, num_samples, batch_size, shuffle, steps_per_execution):
        with tf.device("CPU:0"):
            self.arrays = tf.nest.map_structure(tf.convert_to_tensor, inputs)
        self.batch_size = batch_size
        steps = -(-num_samples // batch_size)
        rows = data.row_batches(num_samples, batch_size * steps_per_execution, shuffle)
        self.dataset = data.prefetched(rows).apply(tf.data.experimental.assert_cardinality(steps))

    def read_by(self, iterator):
        """True when `iterator` (Keras' epoch iterator) reads `dataset`."""
        adapter = getattr(iterator, "data_adapter", None)
        return adapter is not None and adapter.get_tf_dataset() is self.dataset

    def first_batch(self):
        """The first batch of one pass over `dataset`, for `fit`'s first-batch check. Read
        as Keras reads a dataset's (`compat.peek_first_batch`: an iteration of its own), so
        that the epochs then train on the same shuffled orders as `array_batches`: the same
        weights, whatever the steps per execution."""
        for rows in self.dataset.take(1):
            return tf.nest.map_structure(lambda a: tf.gather(a, rows[:self.batch_size]),
                                         self.arrays)


class Executions:
    """A model's compiled executions over `ExecutionBlocks`, one per batch size, kept across
    `fit` calls as Keras keeps its train function (`Distiller.compile` starts afresh)."""

    def __init__(self):
        self._compiled = {}

    def train_function(self, model, blocks):
        """Keras' `train_function(iterator)` for `blocks`: reads one element of row indices
        from `iterator` (Keras' iterator over `blocks.dataset`) and runs their steps."""
        key = (blocks.batch_size, model.jit_compile)
        if key not in self._compiled:
            self._compiled[key] = _execution(model, blocks.batch_size)
        execution = self._compiled[key]

        def function(iterator):
            return execution(next(iterator), blocks.arrays)

        return function


def _execution(model, batch_size):
    """A compiled loop over the steps of one block of row indices: each step gathers its
    batch (on the host, as a `tf.data` map would) and runs `model.train_step`, compiled as
    Keras compiles it (its own `tf.function`, XLA with `jit_compile`); returns the last
    step's logs, as Keras' multi-step function does."""

    def one_step(batch):
        return model.distribute_strategy.run(model.train_step, args=(batch,))

    one_step = tf.function(one_step, reduce_retracing=True, jit_compile=model.jit_compile)

    @tf.function(reduce_retracing=True)
    def execution(rows, arrays):
        count = tf.shape(rows, out_type=tf.int64)[0]

        def batch(step):
            with tf.device("CPU:0"):
                these = rows[step * batch_size:tf.minimum((step + 1) * batch_size, count)]
                return tf.nest.map_structure(lambda a: tf.gather(a, these), arrays)

        logs = one_step(batch(tf.constant(0, tf.int64)))
        for step in tf.range(tf.constant(1, tf.int64), (count + batch_size - 1) // batch_size):
            logs = one_step(batch(step))
        return logs

    return execution


def fit_arguments(args, steps_per_execution=1):
    """`fit`'s keyword arguments `args` (a dict of Keras' names), with arrays replaced by
    `data.array_batches` pipelines, or by `ExecutionBlocks` with `steps_per_execution > 1`
    and no `steps_per_epoch`: `x` then holds the training batches (blocks) and `y`,
    `sample_weight`, `class_weight`, `batch_size`, `validation_split` and
    `validation_batch_size` are cleared and `shuffle` is False, as Keras wants for a
    dataset."""
    args = dict(args)
    validation_batch_size = args.get("validation_batch_size") or args.get("batch_size")
    validation_data = args.get("validation_data")
    if are_arrays(args.get("x"), args.get("y"), args.get("sample_weight")) and args.get(
            "shuffle", True) in (True, False):
        if args.get("validation_split") and validation_data is None:  # Keras' own split
            (args["x"], args["y"], args["sample_weight"]), validation_data = (
                compat.train_validation_split(
                    (args.get("x"), args.get("y"), args.get("sample_weight")),
                    args["validation_split"]))
        if steps_per_execution > 1 and not args.get("steps_per_epoch"):
            args["x"] = ExecutionBlocks(
                *compat.keras_array_inputs(args["x"], args.get("y"), args.get("sample_weight"),
                                           args.get("batch_size"), None, args.get("class_weight")),
                shuffle=args.get("shuffle", True), steps_per_execution=steps_per_execution)
        else:
            args["x"] = data.array_batches(
                args["x"], args.get("y"), args.get("sample_weight"),
                batch_size=args.get("batch_size"), shuffle=args.get("shuffle", True),
                class_weight=args.get("class_weight"), steps=args.get("steps_per_epoch"))
        # shuffled in the pipeline: Keras would warn that it ignores `shuffle` for a dataset
        args.update(y=None, sample_weight=None, class_weight=None, batch_size=None,
                    validation_split=0.0, shuffle=False)
    if validation_data is not None:
        converted = _validation_as_dataset(validation_data, validation_batch_size,
                                           args.get("validation_steps"))
        if converted is not validation_data:
            args["validation_batch_size"] = None
        args["validation_data"] = converted
    return args
