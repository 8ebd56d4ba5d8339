"""Test helpers importable anywhere (worker processes too): no device set-up here."""

import keras
import numpy as np

N, D, C = 40, 12, 4
RNG = np.random.default_rng(7)
X = RNG.normal(size=(N, D)).astype("float32")
Y = RNG.integers(0, C, size=N).astype("int64")


class CallCounter(keras.layers.Layer):
    """Identity layer counting how many times it runs (in compiled steps too)."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x):
        self.calls.assign_add(1.0)
        return x


INFERENCE_IDS = {}


@keras.saving.register_keras_serializable(package="keras_kd_tests")
class InferenceRecorder(keras.layers.Layer):
    """Identity layer appending, each time its model runs in inference mode (eagerly, in a
    compiled step or in `predict`), the ids its inputs carry in their first feature to
    `INFERENCE_IDS[layer name]`."""

    def call(self, x, training=False):
        if not training:
            import tensorflow as tf

            ids = keras.ops.reshape(x, (keras.ops.shape(x)[0], -1))[:, 0]
            tf.py_function(self._record, [ids], Tout=[])
        return x

    def _record(self, ids):
        INFERENCE_IDS.setdefault(self.name, []).extend(int(round(v)) for v in ids.numpy())
        return []


def make_teacher(counter=False, train=True):
    inputs = keras.Input((D,))
    h = CallCounter()(inputs) if counter else inputs
    h = keras.layers.Dense(16, activation="relu")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    teacher = keras.Model(inputs, keras.layers.Dense(C)(h), name="teacher")
    if train:  # moves the BatchNorm statistics away from their initial values
        teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teacher.fit(X, Y, epochs=2, verbose=0)
    return teacher


def make_student(counter=False):
    inputs = keras.Input((D,))
    h = CallCounter()(inputs) if counter else inputs
    h = keras.layers.Dense(8, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(C)(h), name="student")


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def log_softmax_np(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def kl_np(teacher, student, t):
    """Hand formula: T^2 * KL(softmax(teacher/T) || softmax(student/T)), per example."""
    teacher, student = np.asarray(teacher, "float64"), np.asarray(student, "float64")
    lp_t, lp_s = log_softmax_np(teacher / t), log_softmax_np(student / t)
    return t**2 * (np.exp(lp_t) * (lp_t - lp_s)).sum(-1)


def sparse_ce_np(labels, logits):
    logits = np.asarray(logits, "float64")
    return -log_softmax_np(logits)[np.arange(len(labels)), labels]


class Spy(keras.Model):
    """Wraps a model and records every batch it is called on (eager runs only)."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.seen = []

    def call(self, x, training=False):
        self.seen.append(np.array(x))
        return self.model(x, training=training)


def run_without_tensorflow(tmp_path, argv, timeout=120):
    """Runs `python argv...` in a process where importing tensorflow or keras fails.

    Asserts first that the block works, then returns the `subprocess.CompletedProcess`.
    """
    import os
    import subprocess
    import sys

    blocker = tmp_path / "blocker"
    for package in ("tensorflow", "keras"):
        (blocker / package).mkdir(parents=True, exist_ok=True)
        (blocker / package / "__init__.py").write_text(
            f"raise ImportError('{package} is blocked in this process')\n"
        )
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    check = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                           capture_output=True, text=True)
    assert "blocked" in check.stderr  # the process really cannot load TensorFlow
    return subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True,
                          timeout=timeout)
