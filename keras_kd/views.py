"""Replayed augmentation views: the teacher's cost paid once for many students.

Fast Knowledge Distillation (Shen & Xing, ECCV 2022) stores the teacher's outputs for each
random view of each training example together with what is needed to recompute the view, so
that training a student never runs the teacher. Here a view is a pure function of the data
and three integers:

- the order of epoch `e` is `stateless_shuffle(range(n), seed=(seed, e))`;
- batch `b` of epoch `e` holds the examples at positions `[b * batch_size, (b + 1) * batch_size)`
  of that order, and is augmented by `keras_kd.augment.Augmentation` with the seed
  `(seed, e * steps_per_epoch + b)` (MixUp/CutMix partners and coefficients included).

`cache_views` runs the teacher once over `epochs` epochs of such views (with `predict`, on the
strategy's devices, augmentation included) and keeps its logits (`float32` or `float16`), in
memory or in an `.npz` file that later runs reuse after checking that it was made from the
same data, teacher, augmentation and seeds. `ReplayedViews.dataset()` then yields batches of
raw examples with their view seed and stored logits; the `Distiller` (built with the same
`augment`) recomputes each view on the device and trains without the teacher. A student run
longer than `epochs` reuses the stored epochs cyclically (epoch `k` replays epoch `k % epochs`)
and `ReplayedViews.callback()` says so in the logs.

The training examples are held in memory (as `tf.Variable`s, never graph constants), since
batches are gathered by index.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_kd import atomic
from keras_kd import augment as augment_lib
from keras_kd import checks
from keras_kd import data as data_lib
from keras_kd import fingerprint as fingerprint_lib
from keras_kd import precision
from keras_kd.teachers import INPUTS, TEACHER_LOGITS, VIEW_SEED

_DTYPES = ("float32", "float16")


def _examples_to_arrays(examples):
    """`(x, y)` numpy arrays from an unbatched `tf.data.Dataset` of `(x, y)` or from arrays."""
    if isinstance(examples, tf.data.Dataset):
        xs, ys = [], []
        for x, y in examples.batch(4096).as_numpy_iterator():
            xs.append(x)
            ys.append(y)
        if not xs:
            raise ValueError("Invalid value for argument `examples`: the dataset is empty.")
        return np.concatenate(xs), np.concatenate(ys)
    if isinstance(examples, (tuple, list)) and len(examples) == 2:
        return np.asarray(examples[0]), np.asarray(examples[1])
    raise ValueError(
        "Invalid value for argument `examples`. Expected an unbatched tf.data.Dataset of "
        f"(x, y) examples or a tuple (x, y) of arrays. Received: examples={examples!r}"
    )


class _ViewTeacher(keras.Model):
    """Augments a batch from its view seed, then runs the teacher (for `predict`)."""

    def __init__(self, teacher, augment, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher
        self.augment = augment

    def call(self, batch):
        x, _ = self.augment(batch[INPUTS], None, seed=batch[VIEW_SEED])
        return tf.cast(self.teacher(x, training=False), tf.float32)


class ReplayedViews:
    """Stored teacher logits of `epochs` epochs of augmented views (see the module docstring).

    Build with `cache_views`. Attributes: `epochs`, `batch_size`, `seed`, `steps_per_epoch`,
    `num_examples`, `logits` (numpy, `(epochs, num_examples, classes)` in view order).
    """

    def __init__(self, x, y, augment, logits, *, batch_size, seed):
        self.augment = augment
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_examples = len(x)
        self.steps_per_epoch = -(-self.num_examples // self.batch_size)
        self.logits = logits
        self.epochs = len(logits)
        with tf.device("CPU:0"):
            self._x = tf.Variable(x, trainable=False, name="replay_examples")
            self._y = tf.Variable(y, trainable=False, name="replay_labels")
            self._logits = tf.Variable(logits, trainable=False, name="replay_logits")

    def _batches(self, first_epoch, epochs):
        n, size, steps, seed = self.num_examples, self.batch_size, self.steps_per_epoch, self.seed

        def epoch_batches(e):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]))
            return tf.data.Dataset.from_tensor_slices(order).batch(size).enumerate().map(
                lambda b, index: (e, b, index))

        return tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(epoch_batches)

    def _view_seed(self, e, b):
        return tf.cast(tf.stack([tf.constant(self.seed, tf.int64),
                                 e * self.steps_per_epoch + b]), tf.int32)

    def dataset(self, teacher_logits=True, augmented=False, epochs=None):
        """Batches of the stored views, epoch after epoch, repeated cyclically: epoch `k` is
        stored epoch `k % epochs`, in every mode.

        Args:
            teacher_logits: attach the stored logits (`{"inputs", "view_seed",
                "teacher_logits"}`); False gives `{"inputs", "view_seed"}` (a live teacher then
                sees the same views).
            augmented: apply the augmentation here (in `tf.data`) and yield plain
                `(view, labels)` batches: the same views, for a model trained without the
                Distiller (a scratch twin, another library's distiller).
            epochs: number of epochs to yield; None repeats forever (use `fit(...,
                steps_per_epoch=views.steps_per_epoch)`).
        """
        stored = self.epochs

        def element(e, b, index):
            x = tf.cast(tf.gather(self._x, index), tf.float32)
            y = tf.gather(self._y, index)
            view_seed = self._view_seed(e, b)
            if augmented:
                return self.augment(x, y, seed=view_seed)
            features = {INPUTS: x, VIEW_SEED: view_seed}
            if teacher_logits:
                start = b * self.batch_size
                features[TEACHER_LOGITS] = tf.cast(
                    self._logits[e % stored, start:start + tf.shape(index, tf.int64)[0]],
                    tf.float32)
            return features, y

        # every mode replays the same stored epochs cyclically, so a model trained on
        # `augmented=True` batches sees exactly the views the distilled student sees
        ds = self._batches(0, stored).repeat(None if epochs is None else -(-epochs // stored))
        if epochs is not None:
            ds = ds.take(epochs * self.steps_per_epoch)
        return data_lib.prefetched(ds.map(element, num_parallel_calls=tf.data.AUTOTUNE))

    def callback(self):
        """A Keras callback that logs which stored epoch each training epoch replays."""
        views = self

        class ReplayLog(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    logs["replayed_epoch"] = epoch % views.epochs
                if epoch == views.epochs:
                    print(f"keras_kd: epoch {epoch + 1} and later reuse the {views.epochs} stored "
                          f"epochs of teacher views cyclically (epoch k replays k % {views.epochs})")

        return ReplayLog()


def _fingerprint(teacher, x, y, augment, epochs, batch_size, seed, dtype, teacher_dtype=None):
    fingerprint = {
        "data": fingerprint_lib.digest(x, y),
        "teacher": fingerprint_lib.weights_digest(teacher),
        "augment": fingerprint_lib.config_digest(augment),
        "epochs": int(epochs), "batch_size": int(batch_size), "seed": int(seed), "dtype": dtype,
    }
    if teacher_dtype not in (None, "float32"):  # files made before the option stay valid
        fingerprint["teacher_dtype"] = teacher_dtype
    return fingerprint


def cache_views(teacher, examples, augment, *, epochs, batch_size=128, seed=0, dtype="float32",
                path=None, num_classes=None, verbose=0, teacher_dtype=None):
    """Runs `teacher` once over `epochs` epochs of augmented views; returns `ReplayedViews`.

    Args:
        teacher: the trained teacher (outputs logits).
        examples: the training examples, unbatched and in a fixed order: a `tf.data.Dataset`
            of `(x, y)` (e.g. `DataSplits.train_examples`) or a tuple of arrays.
        augment: Keras augmentation layers or a `keras_kd.augment.Augmentation`; give the
            Distiller the same one.
        epochs: number of epochs of views to store.
        batch_size: batch size of the student runs (views are per batch).
        seed: seed of the epoch orders and of the augmentation.
        dtype: `"float32"` or `"float16"` storage of the logits.
        path: optional `.npz` file: reused when it matches the data, teacher, augmentation,
            epochs, batch size, seed and dtype; written (atomically) when absent.
        num_classes: for MixUp/CutMix on integer labels (default: the teacher's outputs).
        verbose: `predict` verbosity.
        teacher_dtype: `"bfloat16"` or `"float16"` runs the teacher in reduced precision
            (`keras_kd.precision.teacher_in`); None/`"float32"` as it is.

    Raises:
        ValueError: for invalid arguments, or a file at `path` made from other data, another
            teacher or other settings.
    """
    epochs = checks.positive_int("epochs", epochs)
    batch_size = checks.positive_int("batch_size", batch_size)
    seed = checks.non_negative_int("seed", seed)
    checks.one_of("dtype", dtype, _DTYPES)
    augment = augment_lib.get(augment)
    if augment is None:
        raise ValueError("Invalid value for argument `augment`. Expected augmentation layers: "
                         "without augmentation use `keras_kd.teachers.cache_logits`. "
                         "Received: augment=None")
    if augment.num_classes is None:
        augment.num_classes = num_classes or int(teacher.outputs[0].shape[-1])
    x, y = _examples_to_arrays(examples)
    fingerprint = _fingerprint(teacher, x, y, augment, epochs, batch_size, seed, dtype,
                               teacher_dtype)
    teacher = precision.teacher_in(teacher, teacher_dtype)
    if path is not None and os.path.exists(path):
        with np.load(path) as stored:
            fingerprint_lib.check(path, json.loads(str(stored["fingerprint"])), fingerprint,
                                  what="teacher views")
            return ReplayedViews(x, y, augment, stored["logits"], batch_size=batch_size,
                                 seed=seed)
    views = ReplayedViews(x, y, augment, np.zeros((epochs, 0, 0), dtype), batch_size=batch_size,
                          seed=seed)
    view_teacher = _ViewTeacher(teacher, augment, name="view_teacher")
    logits = []
    for e in range(epochs):
        batches = views._batches(e, 1).map(
            lambda e_, b, index: {INPUTS: tf.cast(tf.gather(views._x, index), tf.float32),
                                  VIEW_SEED: views._view_seed(e_, b)})
        logits.append(view_teacher.predict(batches, verbose=verbose).astype(dtype))
    logits = np.stack(logits)
    if path is not None:
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, logits=logits, fingerprint=json.dumps(fingerprint))
    return ReplayedViews(x, y, augment, logits, batch_size=batch_size, seed=seed)
