"""Every use of Keras' (and TensorFlow's) private API in keras_kd, in one place.

Each function here reads or calls something private, and carries the version range it was
written and checked for (`written_for`). Outside that range the function raises a
`RuntimeError` naming itself, the range and the installed version, *before* touching the
private API: a new Keras fails loudly at the first call instead of training silently wrong.
Set `KERAS_KD_UNTESTED_VERSIONS=warn` to turn the error into a warning (at your own risk).

When Keras moves, a maintainer changes this file only: check the private name still means
the same in the new Keras' source, widen the range, run the tests.

Checked for Keras 3.12-3.15 (the names below are unchanged between 3.12.0 and 3.15.1 in
keras-team/keras; the tests run on 3.15) and TensorFlow 2.16-2.21.

One private call stays outside: `keras_kd.litert_runner.operators` reads LiteRT's
`Interpreter._get_ops_details()`, because that module must import nothing but NumPy
(the edge runner loads it on devices without TensorFlow or Keras).
"""

import functools
import os
import warnings

import keras
import tensorflow as tf

KERAS_RANGE = ((3, 12), (3, 15))
TENSORFLOW_RANGE = ((2, 16), (2, 21))
_ENV = "KERAS_KD_UNTESTED_VERSIONS"


def _major_minor(version):
    major, minor = version.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def installed_versions():
    """`{"keras": "3.15.1", "tensorflow": "2.21.0"}` as installed (tests patch `__version__`)."""
    return {"keras": keras.__version__, "tensorflow": tf.__version__}


def _fmt(bounds):
    (lo, hi) = bounds
    return f"{lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}"


def written_for(keras_range=KERAS_RANGE, tensorflow_range=None):
    """Guards a function that uses private API of Keras (and TensorFlow, if a range is given)."""

    def decorator(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            installed = installed_versions()
            for lib, bounds in (("keras", keras_range), ("tensorflow", tensorflow_range)):
                if bounds and not bounds[0] <= _major_minor(installed[lib]) <= bounds[1]:
                    name = "Keras" if lib == "keras" else "TensorFlow"
                    message = (
                        f"keras_kd.compat.{fn.__name__} was written for {name} {_fmt(bounds)}; "
                        f"{name} {installed[lib]} is installed. It uses {name}'s private API, "
                        f"which may have changed: see keras_kd/compat.py. Install a {name} in "
                        f"the tested range (pip install 'keras-kd'), or set {_ENV}=warn to try."
                    )
                    if os.environ.get(_ENV) != "warn":
                        raise RuntimeError(message)
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
            return fn(*args, **kwargs)

        return guarded

    return decorator


@written_for()
def distribute_strategy(model):
    """The strategy Keras recorded when `model` was created (None outside any strategy scope).

    Public `model.distribute_strategy` returns the default strategy instead of None.
    """
    return model._distribute_strategy


@written_for()
def loss_tracker(model):
    """The `Mean` metric behind the `loss` entry of `fit` logs (`Trainer._loss_tracker`)."""
    return model._loss_tracker


@written_for()
def maybe_symbolic_build(parent, iterator=None, data_batch=None):
    """Calls Keras' `TensorFlowTrainer._maybe_symbolic_build` through `parent` (`super()` of a
    subclass overriding that hook, as `Distiller` does for multi-worker training)."""
    return parent._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


@written_for()
def symbolic_build(model, data_batch):
    """Builds `model`'s metrics and optimizer from one batch (`Trainer._symbolic_build`)."""
    return model._symbolic_build(data_batch=data_batch)


@written_for()
def backup_paths(callback):
    """`(weights_path, training_metadata_path)` of a `keras.callbacks.BackupAndRestore`."""
    return callback._weights_path, callback._training_metadata_path


@written_for()
def backup_position(callback):
    """`{"epoch": ..., "batch": ...}` a `BackupAndRestore` records, as Keras writes it."""
    return {"epoch": callback._current_epoch, "batch": callback._last_batch_seen}


@written_for(keras_range=None, tensorflow_range=TENSORFLOW_RANGE)
def in_multi_worker_mode(strategy):
    """True when a MultiWorkerMirroredStrategy spans several workers."""
    return strategy.extended._in_multi_worker_mode()


@written_for(keras_range=None, tensorflow_range=TENSORFLOW_RANGE)
def dataset_graph_def(dataset):
    """The `tf.compat.v1.GraphDef` of a `tf.data.Dataset` (`_as_serialized_graph`)."""
    return tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())


@written_for()
def compile_metrics(model):
    """The container of the compiled metrics (`Trainer._compile_metrics`), or None."""
    return model._compile_metrics


# keras_kd's own: a dataset whose elements are not batches (the row indices of
# `keras_kd.fit_arrays.ExecutionBlocks`) carries, under this attribute, a callable that gives
# its first batch; `peek_first_batch` calls it
FIRST_BATCH_ATTRIBUTE = "_keras_kd_first_batch"


@written_for()
def peek_first_batch(iterator):
    """The first batch `fit`/`evaluate` will see, read without advancing `iterator`
    (`EpochIterator.data_adapter` and the array adapter's `_batch_size` / `_inputs`).

    Reads arrays and `tf.data` datasets only (a dataset carrying `FIRST_BATCH_ATTRIBUTE`
    through that callable); `None` for inputs that cannot be read twice (Python generators)
    or are already distributed.
    """
    adapter = getattr(iterator, "data_adapter", None)
    kind = type(adapter).__name__
    if kind == "ArrayDataAdapter":
        size = adapter._batch_size
        return tf.nest.map_structure(lambda a: a if a is None else a[:size], adapter._inputs)
    if kind == "TFDatasetAdapter":
        dataset = adapter.get_tf_dataset()
        first_batch = getattr(dataset, FIRST_BATCH_ATTRIBUTE, None)
        if first_batch is not None:
            return first_batch()
        if isinstance(dataset, tf.data.Dataset):
            for batch in dataset.take(1):
                return batch
            raise ValueError(
                "Invalid value for argument `x`. Expected a dataset with at least one batch. "
                "Received: an empty tf.data.Dataset"
            )
    return None


class TensorSeedGenerator(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` that derives each draw from a given seed tensor.

    Keras' random ops take `seed=SeedGenerator` and call its `next()` once per draw (the
    `keras.src.random.seed_generator.draw_seed` contract, Keras 3.x). This one holds no
    state variable: draw `i` uses `stateless_fold_in(seed, i)`, so the same seed tensor gives
    the same draws, in a `tf.function` or eagerly (tests/test_augment.py checks it).
    Construction is guarded by the Keras range the contract was checked for.
    """

    def __init__(self, seed):  # no super().__init__: no state variable to create or track
        _check_seed_contract()
        self._seed_tensor = tf.cast(seed, tf.int32)
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._seed_tensor, self._draws)


@written_for()
def _check_seed_contract():
    """Keras' random ops draw seeds through `SeedGenerator.next()` (checked for 3.12-3.15)."""


@written_for(keras_range=None, tensorflow_range=TENSORFLOW_RANGE)
def dataset_functions_and_inputs(dataset):
    """`(traced functions, input datasets)` of one `tf.data.Dataset` node
    (`DatasetV2._functions()` and `_inputs()`)."""
    return dataset._functions(), dataset._inputs()


@written_for()
def keras_array_inputs(x, y, sample_weight, batch_size, steps, class_weight):
    """What Keras' `fit` makes of arrays before batching them (`ArrayDataAdapter`): its checks
    and errors, `class_weight` turned into sample weights, one `sample_weight` array repeated
    for each output, floats cast to `keras.config.floatx()`, and the default batch size (32,
    or `ceil(n / steps)` with `steps`). Returns `(inputs, num_samples, batch_size)`: `inputs`
    is the `(x,)`, `(x, y)` or `(x, y, sample_weight)` tuple of tensors or arrays tf.data
    takes (`convert_to_sliceable(..., target_backend="tensorflow")`, `lists_to_tuples`)."""
    from keras.src import tree
    from keras.src.trainers.data_adapters import array_slicing
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    adapter = ArrayDataAdapter(x, y, sample_weight, batch_size=batch_size, steps=steps,
                               class_weight=class_weight)
    inputs = array_slicing.convert_to_sliceable(adapter._inputs, target_backend="tensorflow")
    return tree.lists_to_tuples(inputs), adapter._num_samples, adapter._batch_size


@written_for()
def train_validation_split(arrays, validation_split):
    """Keras' `fit(validation_split=...)` on arrays: the last `validation_split` of the
    examples, unshuffled, becomes the validation data (`array_slicing.train_validation_split`)."""
    from keras.src.trainers.data_adapters import array_slicing

    return array_slicing.train_validation_split(arrays, validation_split)
