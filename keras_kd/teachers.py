"""Teachers made of several models, and teacher outputs computed once (cached)."""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd import checks
from keras_kd import compat
from keras_kd.losses.logits import check_temperature
from keras_kd.losses.logits import softened_log_probs


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
