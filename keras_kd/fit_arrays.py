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


def fit_arguments(args):
    """`fit`'s keyword arguments `args` (a dict of Keras' names), with arrays replaced by
    `data.array_batches` pipelines: `x` then holds the training batches and `y`,
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
        args["x"] = data.array_batches(
            args["x"], args.get("y"), args.get("sample_weight"), batch_size=args.get("batch_size"),
            shuffle=args.get("shuffle", True), class_weight=args.get("class_weight"),
            steps=args.get("steps_per_epoch"))
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
