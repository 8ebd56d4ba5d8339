"""Teachers made of several models, and teacher outputs computed once (cached)."""

import functools
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd import checks
from keras_kd import compat
from keras_kd import data as data_lib
from keras_kd.losses.logits import check_temperature
from keras_kd.losses.logits import softened_log_probs
from keras_kd import fingerprint
from keras_kd import logits_file
from keras_kd import precision


@keras.saving.register_keras_serializable(package="keras_kd")
class TeacherEnsemble(keras.Model):
    """Several teachers seen as one: their combined logits.

    `mode="logits"` returns the weighted mean of the members' logits `sum_i w_i z_i`.

    `mode="probabilities"` distils the weighted mean of the members' *softened*
    distributions (Hinton et al., 2015, distil an ensemble's averaged predictions): at
    temperature `T` the soft target is

        m = sum_i w_i softmax(z_i / T)

    and the ensemble returns the logits `T * log(m)` (computed as `T * logsumexp_i(log w_i +
    log_softmax(z_i / T))`, stable for any logits), so that the Distiller's
    `softmax(logits / T)` is exactly `m`. The `Distiller` passes its own temperature; used on
    its own the ensemble takes `temperature` (default 1: the mean prediction). With identical
    members this is single-teacher distillation: `T * log_softmax(z / T)` differs from `z`
    by a constant per example. One-logit binary members mix `sigmoid(z_i / T)` the same way
    and return one logit `T * (log m_1 - log m_0)`.

    Args:
        teachers: list of built `keras.Model`s with the same input and number of classes.
        weights: optional list of non-negative weights, one per teacher (normalised to sum 1).
        mode: `"logits"` (default) or `"probabilities"`.
        temperature: with `"probabilities"`, the temperature used when the ensemble is called
            on its own (e.g. by `keras_kd.teachers.cache_logits`), `None` for 1; a `Distiller`
            whose temperature differs refuses it.
    """

    def __init__(self, teachers, weights=None, mode="logits", temperature=None, **kwargs):
        super().__init__(**kwargs)
        teachers = list(teachers)
        if not teachers or not all(isinstance(t, keras.Model) for t in teachers):
            raise ValueError(
                "Invalid value for argument `teachers`. Expected a non-empty list of "
                f"keras.Model. Received: teachers={teachers!r}"
            )
        if weights is None:
            weights = [1.0] * len(teachers)
        weights = [float(w) for w in weights]
        if len(weights) != len(teachers) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                "Invalid value for argument `weights`. Expected one non-negative weight per "
                f"teacher ({len(teachers)}) with a positive sum. Received: weights={weights!r}"
            )
        checks.one_of("mode", mode, ("logits", "probabilities"))
        self.teachers = teachers
        self.ensemble_weights = [w / sum(weights) for w in weights]
        self.mode = mode
        self.temperature = check_temperature(temperature)
        self.built = all(t.built for t in teachers)

    def call(self, inputs, training=False, temperature=None):
        outputs = [ops.cast(t(inputs, training=training), "float32") for t in self.teachers]
        if self.mode == "logits":
            return sum(w * o for w, o in zip(self.ensemble_weights, outputs))
        t = temperature or self.temperature or 1.0
        log_mix = ops.logsumexp(
            ops.stack([np.log(w) + softened_log_probs(o, t)
                       for w, o in zip(self.ensemble_weights, outputs) if w > 0]),
            axis=0,
        )
        if outputs[0].shape[-1] == 1:
            return t * (log_mix[:, 1:] - log_mix[:, :1])
        return t * log_mix

    def get_config(self):
        config = super().get_config()
        config.update(
            teachers=[keras.saving.serialize_keras_object(t) for t in self.teachers],
            weights=self.ensemble_weights,
            mode=self.mode,
            temperature=self.temperature,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teachers"] = [keras.saving.deserialize_keras_object(t) for t in config["teachers"]]
        return cls(**config)


_DIGEST_BATCHES = 2  # batches of a dataset digested into a cache's fingerprint
TEACHER_LOGITS = "teacher_logits"
INPUTS = "inputs"
VIEW_SEED = "view_seed"


def split_cached(x):
    """`(inputs, teacher_logits or None)` from a batch that may carry cached teacher logits."""
    inputs, logits, _ = split_batch(x)
    return inputs, logits


def split_batch(x):
    """`(inputs, teacher_logits or None, view_seed or None)` of a batch: cached teacher
    logits, and the seed of the augmented view they were computed on (replayed views)."""
    if isinstance(x, dict) and INPUTS in x and (TEACHER_LOGITS in x or VIEW_SEED in x):
        return x[INPUTS], x.get(TEACHER_LOGITS), x.get(VIEW_SEED)
    return x, None, None


def _first_batch(dataset):
    return tf.nest.map_structure(lambda t: t.numpy(), next(iter(dataset)))


def dataset_graphs(dataset):
    """`(dataset, GraphDefs of its functions)` for `dataset` and every dataset it reads from.

    Walks the dataset DAG rather than `dataset._as_serialized_graph()`, which writes the
    values of captured variables into the graph (slow, and blind to what is a constant)."""
    found, stack = [], [dataset]
    while stack:
        ds = stack.pop()
        functions, inputs = compat.dataset_functions_and_inputs(ds)
        found.append((ds, [f.function.graph.as_graph_def() for f in functions]))
        stack += inputs
    return found


def graph_nodes(graph_def):
    """The nodes of a GraphDef, its function library included."""
    return list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]


def _random_ops(dataset):
    """Shuffling datasets and random ops in a dataset's graph (its map functions included)."""
    walked = dataset_graphs(dataset)
    names = [type(ds).__name__.lstrip("_") for ds, _ in walked]
    names += [n.op for _, graphs in walked for g in graphs for n in graph_nodes(g)]
    return sorted({name for name in names if "Shuffle" in name or "Random" in name})


def is_deterministic(dataset):
    """False when the dataset shuffles or draws random numbers, or two passes differ."""
    if _random_ops(dataset):
        return False
    first, again = _first_batch(dataset), _first_batch(dataset)
    same = tf.nest.map_structure(lambda a, b: bool(np.array_equal(a, b)), first, again)
    return all(tf.nest.flatten(same))


class _Float32Teacher(keras.Model):
    """The teacher's logits in float32 with `training=False`: what `predict` runs."""

    def __init__(self, teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def call(self, x):
        return tf.cast(self.teacher(x, training=False), tf.float32)


def _predict_logits(teacher, inputs, verbose):
    """Float32 numpy logits of `teacher` over a dataset of input batches, with `predict`: on
    the devices of the teacher's (or the current) tf.distribute strategy, batched."""
    return _Float32Teacher(teacher, name="cached_teacher").predict(inputs, verbose=verbose)


def _first_batches(dataset, count=_DIGEST_BATCHES):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(count)]


def _data_fingerprint(dataset, first):
    """What identifies the data: its element spec and the digest of its first batches (the
    number of examples is added by the writer and checked while reading)."""
    leaves = [leaf for batch in first for leaf in tf.nest.flatten(batch)]
    return {"data": fingerprint.digest(*leaves), "element_spec": str(dataset.element_spec)}


def _in_memory(teacher, dataset, batch_size, shuffle_buffer, seed, verbose):
    """Inputs and logits in `tf.Variable`s on the host, batches gathered by index: no
    dataset-sized graph constant (TensorFlow's 2 GB GraphDef limit), one gather per batch.
    The user's pipeline runs once; `predict` reads the inputs back from the variables."""
    structure = dataset.element_spec
    arrays = [np.concatenate(parts) for parts in zip(
        *(tf.nest.flatten(b) for b in dataset.as_numpy_iterator()))]
    with tf.device("CPU:0"):
        leaves = [tf.Variable(a, trainable=False, name="cached_inputs") for a in arrays]

    def element_at(index):
        return tf.nest.pack_sequence_as(structure, [tf.gather(v, index) for v in leaves])

    in_order = tf.data.Dataset.range(len(arrays[0])).batch(batch_size)
    logits = _predict_logits(teacher, in_order.map(lambda i: _inputs_of(element_at(i))), verbose)
    with tf.device("CPU:0"):
        teacher_logits = tf.Variable(logits, trainable=False, name="cached_teacher_logits")

    indices = tf.data.Dataset.range(len(logits))
    if shuffle_buffer:
        indices = indices.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # batches gathered by index; `Distiller.fit` reads them one execution at a time
    return data_lib.held_batches(
        (leaves, teacher_logits), indices.batch, steps=-(-len(logits) // batch_size),
        batch_size=batch_size, pack=functools.partial(_packed, structure))


def _packed(structure, gathered):
    """The cached batch of `gathered` (`(input leaves, teacher logits)` of some rows)."""
    leaves, logits = gathered
    return _attach(tf.nest.pack_sequence_as(structure, leaves), logits)


def _inputs_of(element):
    """The model inputs `x` of an `(x, y[, sample_weight])` (or `x`) element."""
    return element[0] if isinstance(element, tuple) else element


def _attach(element, logits):
    rest = element[1:] if isinstance(element, tuple) else ()
    return ({INPUTS: _inputs_of(element), TEACHER_LOGITS: logits}, *rest)


def cache_logits(teacher, dataset, *, path=None, shuffle_buffer=None, seed=None,
                 teacher_dtype=None, verbose=0):
    """Runs `teacher` once over `dataset` and returns batches that carry its logits.

    The `Distiller` then trains without running the teacher: each element becomes
    `({"inputs": x, "teacher_logits": t}, y[, sample_weight])`, with the same batch size.
    Use it when the inputs the student sees are the inputs the teacher saw, i.e. no random
    augmentation after this point (for augmented views, `keras_kd.views.cache_views`).

    The teacher runs with `predict` (batched, on the devices of the tf.distribute strategy
    in scope, not on the host inside `tf.data`). No dataset-sized tensor becomes a graph
    constant (TensorFlow's 2 GB limit): in memory, inputs and logits are held in
    `tf.Variable`s on the host and batches are gathered by index (`Distiller.fit` gathers
    them inside its compiled executions, `keras_kd.fit_arrays.ExecutionBlocks`; a dataset
    derived from the returned one is read batch by batch); on disk, only the logits are
    stored and read back as a stream beside the original dataset.

    Args:
        teacher: the trained teacher (a `keras.Model` outputting logits).
        dataset: a *deterministic* `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
            batches: not yet shuffled, no random augmentation.
        path: `None` holds inputs and logits in memory. A file path stores the logits there
            (written atomically, with a fingerprint of the teacher's weights, `teacher_dtype`,
            the dataset's element spec, its first batches and its number of examples) and
            re-reads `dataset` each epoch, so inputs larger than memory work (the logits,
            examples x outputs floats, are held in memory while computed). An existing file
            is reused if its fingerprint matches, else refused (ValueError naming what
            differs); the number and sizes of batches are checked as the data streams.
        shuffle_buffer: if set, examples are shuffled (each epoch anew) with this buffer
            before re-batching.
        seed: shuffling seed.
        teacher_dtype: `"bfloat16"` or `"float16"` runs the teacher in reduced precision
            (`keras_kd.precision.teacher_in`); None/`"float32"` as it is.
        verbose: `predict` verbosity.

    Returns:
        A `tf.data.Dataset` for `Distiller.fit`.

    Raises:
        ValueError: if `dataset` yields different data on two passes (shuffling or random
            augmentation): cached logits would then belong to other inputs. Cache before
            shuffling, or use the live teacher. Also for a file at `path` made from another
            teacher or other data.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "Invalid value for argument `dataset`. Expected a tf.data.Dataset of (x, y) "
            f"batches. Received: dataset={type(dataset).__name__}"
        )
    if not is_deterministic(dataset):
        raise ValueError(
            "Invalid value for argument `dataset`: it yields different data on each pass, so "
            "teacher outputs cannot be cached. Expected a deterministic dataset: cache before "
            "`shuffle`/augmentation (and pass `shuffle_buffer`), or train with the live "
            "teacher. Received: a dataset that is shuffled or randomly augmented "
            f"({_random_ops(dataset) or 'two passes differ'})"
        )
    if isinstance(teacher, TeacherEnsemble) and teacher.mode == "probabilities" and (
        teacher.temperature is None
    ):
        raise ValueError(
            "Invalid value for argument `teacher`: a TeacherEnsemble(mode='probabilities') "
            "mixes its members' distributions at a temperature, which cached logits must "
            "share with the Distiller. Expected TeacherEnsemble(..., temperature=T) with the "
            "Distiller's T. Received: temperature=None"
        )
    first = _first_batches(dataset)
    batch_size = int(tf.nest.flatten(first[0])[0].shape[0])
    teacher = precision.teacher_in(teacher, teacher_dtype)
    if path is None:
        return _in_memory(teacher, dataset, batch_size, shuffle_buffer, seed, verbose)

    requested = {"teacher": fingerprint.weights_digest(teacher),
                 "teacher_dtype": str(teacher_dtype or "float32"),
                 **_data_fingerprint(dataset, first)}
    if os.path.exists(path):
        stored, logits_shape, header_bytes = logits_file.read_header(path)
        fingerprint.check(path, {k: v for k, v in stored.items() if k != "examples"},
                          requested)
        examples = stored["examples"]
    else:
        logits = _predict_logits(teacher, dataset.map(lambda *element: _inputs_of(element)),
                                 verbose)
        examples, logits_shape = len(logits), logits.shape[1:]
        logits_file.write(path, logits, {**requested, "examples": examples})
        header_bytes = logits_file.read_header(path)[2]
    known = int(dataset.cardinality())
    if known >= 0 and known != -(-examples // batch_size):
        raise ValueError(
            f"Invalid value for argument `path`: {str(path)!r} holds teacher outputs of "
            f"{examples} examples, but `dataset` has {known} batches of {batch_size}. Delete it "
            "or choose another path."
        )
    # Batch by batch beside the original dataset; batch sizes and counts are checked as the
    # data streams (an error, not a silent misalignment or truncation).
    batches = -(-examples // batch_size)
    rows = logits_file.dataset(path, logits_shape, header_bytes).batch(batch_size)
    counted = dataset.apply(tf.data.experimental.assert_cardinality(batches))

    def attach(element, logits):
        size = tf.shape(tf.nest.flatten(element)[0])[0]
        with tf.control_dependencies([tf.debugging.assert_equal(
                size, tf.shape(logits)[0], message="cache_logits: a batch of `dataset` is not "
                "the size of the batch the stored teacher outputs were made from")]):
            return _attach(element, tf.identity(logits))

    cached = tf.data.Dataset.zip(counted, rows).map(attach, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle_buffer:
        cached = cached.unbatch().shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    # a known length for Keras (progress bar, no "ran out of data" after the first epoch)
    return data_lib.prefetched(cached.apply(tf.data.experimental.assert_cardinality(batches)))
