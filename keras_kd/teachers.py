"""Teachers made of several models, and teacher outputs computed once (cached)."""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd import checks
from keras_kd import compat


@keras.saving.register_keras_serializable(package="keras_kd")
class TeacherEnsemble(keras.Model):
    """Several teachers seen as one: their combined logits.

    `mode="logits"` returns the weighted mean of the members' logits. `mode="probabilities"`
    returns `log(sum_i w_i * softmax(logits_i))`, logits whose softmax is the ensemble's mean
    prediction (Hinton et al., 2015, distil an ensemble's averaged predictions).

    Args:
        teachers: list of built `keras.Model`s with the same input and number of classes.
        weights: optional list of non-negative weights, one per teacher (normalised to sum 1).
        mode: `"logits"` (default) or `"probabilities"`.
    """

    def __init__(self, teachers, weights=None, mode="logits", **kwargs):
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
        self.built = all(t.built for t in teachers)

    def call(self, inputs, training=False):
        outputs = [ops.cast(t(inputs, training=training), "float32") for t in self.teachers]
        if self.mode == "logits":
            return sum(w * o for w, o in zip(self.ensemble_weights, outputs))
        probs = sum(w * ops.softmax(o, axis=-1) for w, o in zip(self.ensemble_weights, outputs))
        return ops.log(ops.maximum(probs, 1e-30))

    def get_config(self):
        config = super().get_config()
        config.update(
            teachers=[keras.saving.serialize_keras_object(t) for t in self.teachers],
            weights=self.ensemble_weights,
            mode=self.mode,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teachers"] = [keras.saving.deserialize_keras_object(t) for t in config["teachers"]]
        return cls(**config)


TEACHER_LOGITS = "teacher_logits"
INPUTS = "inputs"


def split_cached(x):
    """`(inputs, teacher_logits or None)` from a batch that may carry cached teacher logits."""
    if isinstance(x, dict) and TEACHER_LOGITS in x:
        return x[INPUTS], x[TEACHER_LOGITS]
    return x, None


def _first_batch(dataset):
    return tf.nest.map_structure(lambda t: t.numpy(), next(iter(dataset)))


def _random_ops(dataset):
    """Shuffle and random ops in a dataset's graph (its map functions included)."""
    graph = compat.dataset_graph_def(dataset)
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return sorted({n.op for n in nodes if "Shuffle" in n.op or "Random" in n.op})


def is_deterministic(dataset):
    """False when the dataset shuffles or draws random numbers, or two passes differ."""
    if _random_ops(dataset):
        return False
    first, again = _first_batch(dataset), _first_batch(dataset)
    same = tf.nest.map_structure(lambda a, b: bool(np.array_equal(a, b)), first, again)
    return all(tf.nest.flatten(same))


def cache_logits(teacher, dataset, *, path=None, shuffle_buffer=None, seed=None):
    """Runs `teacher` once over `dataset` and returns batches that carry its logits.

    The `Distiller` then trains without running the teacher: each element becomes
    `({"inputs": x, "teacher_logits": t}, y[, sample_weight])`, with the same batch size.
    Use it when the inputs the student sees are the inputs the teacher saw, i.e. no random
    augmentation after this point.

    Args:
        teacher: the trained teacher (a `keras.Model` outputting logits).
        dataset: a *deterministic* `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
            batches: not yet shuffled, no random augmentation.
        path: `None` keeps the result in memory; a directory saves it with
            `tf.data.Dataset.save` (for data that does not fit in memory) and reads it back
            from disk each epoch.
        shuffle_buffer: if set, examples are shuffled (each epoch anew) with this buffer
            before re-batching.
        seed: shuffling seed.

    Returns:
        A `tf.data.Dataset` for `Distiller.fit`.

    Raises:
        ValueError: if `dataset` yields different data on two passes (shuffling or random
            augmentation): cached logits would then belong to other inputs. Cache before
            shuffling, or use the live teacher.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "Invalid value for argument `dataset`. Expected a tf.data.Dataset of (x, y) "
            f"batches. Received: dataset={type(dataset).__name__}"
        )
    if not is_deterministic(dataset):
        raise ValueError(
            "Invalid value for argument `dataset`: it yields different data on each pass "
            f"(shuffled or randomly augmented: {_random_ops(dataset) or 'passes differ'}), so "
            "teacher outputs cannot be cached. Cache before `shuffle`/augmentation (and pass "
            "`shuffle_buffer`), or train with the live teacher."
        )
    batch_size = int(tf.nest.flatten(_first_batch(dataset))[0].shape[0])

    @tf.function
    def logits(x):
        return tf.cast(teacher(x, training=False), tf.float32)

    def attach(x, *rest):
        return ({INPUTS: x, TEACHER_LOGITS: logits(x)}, *rest)

    cached = dataset.map(attach)
    if path is None:
        arrays = [tf.nest.map_structure(lambda t: t.numpy(), b) for b in cached]
        cached = tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda *parts: np.concatenate(parts), *arrays)
        )
    else:
        cached.unbatch().save(os.fspath(path))
        cached = tf.data.Dataset.load(os.fspath(path))
    if shuffle_buffer:
        cached = cached.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return cached.batch(batch_size).prefetch(tf.data.AUTOTUNE)
