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
batches of `array_batches`, as of any `data.held_batches` dataset (an in-memory
`cache_logits`), skip the per-step `tf.data` element: `ExecutionBlocks` gathers the same
batches, in the same order, inside the compiled execution (session 17).
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
    """Training data held in memory, read one execution at a time: what `Distiller.fit`
    trains on when given arrays, or an in-memory `keras_kd.teachers.cache_logits` dataset,
    with several steps per execution (and no `steps_per_epoch`).

    Keras' loop takes one `tf.data` element per step, and an element that gathers a batch
    costs more than the gather: on a 784-16-10 pair, `benchmarks/step_overhead.py` measured
    `fit` adding 128 µs per step to the compiled loop's step through `array_batches`, 92 µs
    so; 153 and 76 µs for an in-memory cache (session 17, docs/guide.md "Performance").
    So here the data stay in host tensors (or the cache's variables), passed to the
    compiled execution as arguments (never graph constants), and `dataset` yields the row
    indices of one execution at a time; `train_function` gathers each step's batch from
    them (while the step before runs) and runs the Distiller's `train_step`. The rows, in
    their order, are those the per-step pipeline reads, so the weights are the same bit for
    bit, whatever the steps per execution (tests/test_fit_arrays.py).

    `dataset` states the number of steps as its cardinality, which is what Keras counts
    (callbacks, progress bar, the new iterator each epoch), though it holds
    `ceil(steps / steps_per_execution)` elements: Keras takes exactly one per execution.

    Args:
        arrays: a nested structure of host tensors or variables, examples along axis 0.
        rows: a dataset of int64 row-index vectors, `batch_size * steps_per_execution` rows
            each (the last may have fewer).
        steps: batches per epoch.
        batch_size: rows per step (the last step of an epoch may have fewer).
        pack: a function from the rows gathered from `arrays` to the batch `train_step`
            takes; None: as gathered.
    """

    def __init__(self, arrays, rows, steps, batch_size, pack=None):
        self.arrays, self.batch_size, self.pack = arrays, batch_size, pack
        self.dataset = data.prefetched(rows).apply(tf.data.experimental.assert_cardinality(steps))
        # its elements are row indices: `fit`'s first-batch check reads a batch through this
        setattr(self.dataset, compat.FIRST_BATCH_ATTRIBUTE, self.first_batch)

    def gather(self, rows, arrays=None):
        """The batch of `rows` from `arrays` (default: the held ones; the compiled execution
        passes them as its argument)."""
        return data.gathered(self.arrays if arrays is None else arrays, rows, self.pack)

    def first_batch(self):
        """The first batch of one pass over `dataset`, for `fit`'s first-batch check. Read
        as Keras reads a dataset's (`compat.peek_first_batch`: an iteration of its own), so
        that the epochs then train on the same shuffled orders as the per-step pipeline."""
        for rows in self.dataset.take(1):
            return self.gather(rows[:self.batch_size])


class Executions:
    """A model's compiled executions over `ExecutionBlocks`, one per batch size and packing,
    kept across `fit` calls as Keras keeps its train function (`Distiller.compile` starts
    afresh)."""

    def __init__(self):
        self._compiled = {}

    def train_function(self, model, blocks):
        """Keras' `train_function(iterator)` for `blocks`: reads one element of row indices
        from `iterator` (Keras' iterator over `blocks.dataset`) and runs their steps."""
        key = (blocks.batch_size, blocks.pack, model.jit_compile)
        if key not in self._compiled:
            self._compiled[key] = _execution(model, blocks)
        execution = self._compiled[key]

        def function(iterator):
            return execution(next(iterator), blocks.arrays)

        return function


def _execution(model, blocks):
    """A compiled loop over the steps of one block of row indices: each step's batch is
    gathered (on the host, as a `tf.data` map would) and `model.train_step` runs, compiled as
    Keras compiles it (its own `tf.function`, XLA with `jit_compile`); returns the last
    step's logs, as Keras' multi-step function does. Only `blocks`' batch size and packing
    are traced in: its data come as the argument `arrays`."""
    batch_size = blocks.batch_size

    def one_step(batch):
        return model.distribute_strategy.run(model.train_step, args=(batch,))

    one_step = tf.function(one_step, reduce_retracing=True, jit_compile=model.jit_compile)

    @tf.function(reduce_retracing=True)
    def execution(rows, arrays):
        count = tf.shape(rows, out_type=tf.int64)[0]
        steps = (count + batch_size - 1) // batch_size

        def batch(step):  # past the last step: the last step's rows again (never trained on)
            step = tf.minimum(tf.cast(step, tf.int64), steps - 1)
            return blocks.gather(
                rows[step * batch_size:tf.minimum((step + 1) * batch_size, count)], arrays)

        # each step's batch is gathered while the step before runs (it does not depend on
        # it), as a prefetching tf.data map would: 1.035x the limit against 1.087x gathered
        # in turn, on the MLP pair (session 17, 7 rounds, paired)
        current, following = batch(0), batch(1)
        any_rows = tf.nest.map_structure(lambda t: tf.TensorShape([None, *t.shape[1:]]), current)
        logs = one_step(current)
        current = following
        for step in tf.range(tf.constant(1, tf.int64), steps):
            tf.autograph.experimental.set_loop_options(shape_invariants=[(current, any_rows)])
            following = batch(step + 1)
            logs = one_step(current)
            current = following
        return logs

    return execution


def _held_blocks(dataset, steps_per_execution):
    """`ExecutionBlocks` over a dataset made by `data.held_batches`, or None."""
    held = getattr(dataset, data.HELD_ATTRIBUTE, None)
    if held is None:
        return None
    rows = held["rows"](held["batch_size"] * steps_per_execution)
    return ExecutionBlocks(held["arrays"], rows, held["steps"], held["batch_size"], held["pack"])


def fit_arguments(args, steps_per_execution=1):
    """`fit`'s keyword arguments `args` (a dict of Keras' names), with arrays replaced by
    `data.array_batches` pipelines: `x` then holds the training batches and `y`,
    `sample_weight`, `class_weight`, `batch_size`, `validation_split` and
    `validation_batch_size` are cleared and `shuffle` is False, as Keras wants for a
    dataset. With `steps_per_execution > 1`, no `steps_per_epoch` and no `class_weight`
    (which Keras maps over a dataset's batches), a `data.held_batches` dataset (arrays
    included) becomes `ExecutionBlocks`."""
    args = dict(args)
    blocks = steps_per_execution > 1 and not args.get("steps_per_epoch")
    validation_batch_size = args.get("validation_batch_size") or args.get("batch_size")
    validation_data = args.get("validation_data")
    if are_arrays(args.get("x"), args.get("y"), args.get("sample_weight")) and args.get(
            "shuffle", True) in (True, False):
        if args.get("validation_split") and validation_data is None:  # Keras' own split
            (args["x"], args["y"], args["sample_weight"]), validation_data = (
                compat.train_validation_split(
                    (args.get("x"), args.get("y"), args.get("sample_weight")),
                    args["validation_split"]))
        args["x"] = data.array_batches(
            args["x"], args.get("y"), args.get("sample_weight"),
            batch_size=args.get("batch_size"), shuffle=args.get("shuffle", True),
            class_weight=args.get("class_weight"), steps=args.get("steps_per_epoch"))
        # shuffled in the pipeline: Keras would warn that it ignores `shuffle` for a dataset
        args.update(y=None, sample_weight=None, class_weight=None, batch_size=None,
                    validation_split=0.0, shuffle=False)
    if blocks and not args.get("class_weight"):  # arrays, or a dataset of held data
        args["x"] = _held_blocks(args.get("x"), steps_per_execution) or args.get("x")
    if validation_data is not None:
        converted = _validation_as_dataset(validation_data, validation_batch_size,
                                           args.get("validation_steps"))
        if converted is not validation_data:
            args["validation_batch_size"] = None
        args["validation_data"] = converted
    return args
