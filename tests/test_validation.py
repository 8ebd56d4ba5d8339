"""Bad or unusual inputs across the public API: each error names the argument, shows the
value received and says what was expected ("Invalid value for argument `x`. Expected ...
Received: x=..."). The list is in docs/validation.md."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, D, N, X, Y, make_student, make_teacher

import keras_kd as kd
from keras_kd import data, export, losses, teachers

ARRAYS = np.random.default_rng(0).integers(0, 256, size=(20, 4, 4), dtype=np.uint8)
LABELS = np.arange(20) % 3


def distiller(teacher=None, student=None, **compile_kwargs):
    d = kd.Distiller(student or make_student(), teacher or make_teacher(train=False))
    d.compile(**compile_kwargs)
    return d


def fit(d, x=X, y=Y, **kwargs):
    return d.fit(x, y, batch_size=8, epochs=1, verbose=0, **kwargs)


def dense(units, name, inputs=D, activation=None, dtype="float32"):
    i = keras.Input((inputs,), dtype=dtype)
    h = i if dtype == "float32" else keras.ops.cast(i, "float32")
    return keras.Model(i, keras.layers.Dense(units, activation=activation)(h), name=name)


def two_heads():
    i = keras.Input((D,))
    return keras.Model(i, [keras.layers.Dense(C)(i), keras.layers.Dense(C)(i)], name="two_heads")


def probability_teacher():
    base = make_teacher(train=False)
    i = keras.Input((D,))
    return keras.Model(i, keras.Sequential([base, keras.layers.Softmax()])(i), name="prob_teacher")


def same_model():
    s = make_student()
    return kd.Distiller(s, s)


def shuffled():
    return tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(N).batch(8)


def unwritable(tmp_path):
    (tmp_path / "a_file").write_text("")
    return str(tmp_path / "a_file" / "m.tflite")


def corrupt(tmp_path):
    (tmp_path / "bad.tflite").write_bytes(b"\x00" * 64)
    return str(tmp_path / "bad.tflite")


def checkpoint_without_monitor(tmp_path):
    d = distiller()
    cb = kd.callbacks.StudentCheckpoint(tmp_path / "s.keras", monitor="val_nope",
                                        save_best_only=True)
    fit(d, callbacks=[cb])


# (id, function of tmp_path, error type, argument named, value shown)
CASES = [
    # -- Distiller(...)
    ("student not a model", lambda p: kd.Distiller("abc", make_teacher(train=False)),
     ValueError, "student", "student='abc'"),
    ("teacher not a model", lambda p: kd.Distiller(make_student(), 42),
     ValueError, "teacher", "teacher=42"),
    ("teacher not built", lambda p: kd.Distiller(make_student(), keras.Sequential(
        [keras.layers.Dense(C)], name="unbuilt")), ValueError, "teacher", "'unbuilt'"),
    ("student is the teacher", lambda p: same_model(), ValueError, "teacher", "teacher=student"),
    ("student with two outputs", lambda p: kd.Distiller(two_heads(), make_teacher(train=False)),
     ValueError, "student", "'two_heads' has 2 outputs"),
    ("teacher with two outputs", lambda p: kd.Distiller(make_student(), two_heads()),
     ValueError, "teacher", "'two_heads' has 2 outputs"),
    ("student ends with softmax", lambda p: kd.Distiller(
        dense(C, "soft_student", activation="softmax"), make_teacher(train=False)),
     ValueError, "student", "'soft_student'"),
    ("input shapes differ", lambda p: kd.Distiller(make_student(), dense(C, "wide", inputs=D + 3)),
     ValueError, "teacher", f"input shape (None, {D + 3})"),
    # -- TeacherEnsemble(...)
    ("ensemble of nothing", lambda p: kd.TeacherEnsemble([]), ValueError, "teachers", "teachers=[]"),
    ("ensemble weights miscounted", lambda p: kd.TeacherEnsemble(
        [make_teacher(train=False)], weights=[1, 2]), ValueError, "weights", "weights=[1.0, 2.0]"),
    ("ensemble negative weight", lambda p: kd.TeacherEnsemble(
        [make_teacher(train=False)] * 2, weights=[1, -1]), ValueError, "weights", "-1.0"),
    ("ensemble unknown mode", lambda p: kd.TeacherEnsemble([make_teacher(train=False)],
                                                           mode="median"),
     ValueError, "mode", "mode='median'"),
    ("ensemble temperature 0", lambda p: kd.TeacherEnsemble(
        [make_teacher(train=False)], mode="probabilities", temperature=0),
     ValueError, "temperature", "temperature=0"),
    # -- Distiller.compile(...)
    ("alpha above 1", lambda p: distiller(alpha=1.5), ValueError, "alpha", "alpha=1.5"),
    ("alpha below 0", lambda p: distiller(alpha=-0.1), ValueError, "alpha", "alpha=-0.1"),
    ("alpha a string", lambda p: distiller(alpha="0.5"), ValueError, "alpha", "alpha='0.5'"),
    ("temperature negative", lambda p: distiller(temperature=-1), ValueError, "temperature",
     "temperature=-1"),
    ("temperature zero", lambda p: distiller(temperature=0), ValueError, "temperature",
     "temperature=0"),
    ("temperature NaN", lambda p: distiller(temperature=float("nan")), ValueError, "temperature",
     "temperature=nan"),
    ("temperature inf", lambda p: distiller(temperature=float("inf")), ValueError, "temperature",
     "temperature=inf"),
    ("temperature a string", lambda p: distiller(temperature="4"), ValueError, "temperature",
     "temperature='4'"),
    ("conflicting temperatures", lambda p: distiller(
        distillation_loss_fn=losses.KLDivergence(temperature=2.0), temperature=3.0),
     ValueError, "temperature", "temperature=3.0"),
    ("ensemble temperature conflicts", lambda p: distiller(
        teacher=kd.TeacherEnsemble([make_teacher(train=False)], mode="probabilities",
                                   temperature=2.0), temperature=3.0),
     ValueError, "temperature", "temperature=3.0"),
    ("steps_per_execution 0", lambda p: distiller(steps_per_execution=0), ValueError,
     "steps_per_execution", "steps_per_execution=0"),
    ("loss instead of student_loss_fn", lambda p: distiller(loss="mse"), ValueError, "loss",
     "loss='mse'"),
    ("unknown compile argument", lambda p: distiller(learning_rate=0.1), ValueError,
     "Distiller.compile", "learning_rate=0.1"),
    ("unknown student loss name", lambda p: distiller(student_loss_fn="mse"), ValueError,
     "student_loss_fn", "student_loss_fn='mse'"),
    ("unknown distillation loss name", lambda p: distiller(distillation_loss_fn="kl"),
     ValueError, "distillation_loss_fn", "distillation_loss_fn='kl'"),
    ("distillation loss not callable", lambda p: distiller(distillation_loss_fn=42), ValueError,
     "distillation_loss_fn", "distillation_loss_fn=42"),
    ("label loss as distillation loss", lambda p: distiller(
        distillation_loss_fn=keras.losses.SparseCategoricalCrossentropy()), ValueError,
     "distillation_loss_fn", "SparseCategoricalCrossentropy"),
    # -- Distiller.fit(...): checked on the first batch
    # shuffle=False: the first batch of 8 is the first 8 examples
    ("labels out of range", lambda p: fit(distiller(), y=Y + 10, shuffle=False), ValueError, "y",
     f"labels from {Y[:8].min() + 10} to {Y[:8].max() + 10}"),
    ("negative labels", lambda p: fit(distiller(), y=Y - 5, shuffle=False), ValueError, "y",
     f"labels from {Y[:8].min() - 5}"),
    ("one-hot labels of another width", lambda p: fit(distiller(), y=np.eye(C + 3)[Y % 7]),
     ValueError, "y", f"y of shape (8, {C + 3})"),
    ("class counts differ", lambda p: fit(distiller(teacher=dense(C + 1, "five"))), ValueError,
     "teacher", f"(8, {C + 1})"),
    ("ensemble member with other classes", lambda p: fit(distiller(teacher=[
        make_teacher(train=False), dense(C + 2, "six")])), ValueError, "teacher", "'six' outputs 6"),
    ("teacher outputs probabilities", lambda p: fit(distiller(teacher=probability_teacher())),
     ValueError, "teacher", "'prob_teacher'"),
    ("no labels with alpha > 0", lambda p: fit(distiller(alpha=0.3), y=None), ValueError, "alpha",
     "alpha=0.3"),
    ("empty dataset", lambda p: distiller().fit(tf.data.Dataset.from_tensor_slices(
        (X, Y)).take(0).batch(8), verbose=0), ValueError, "x", "empty"),
    # -- losses
    ("loss temperature negative", lambda p: losses.KLDivergence(temperature=-2), ValueError,
     "temperature", "temperature=-2"),
    ("unknown loss name", lambda p: losses.get("nope"), ValueError, "distillation_loss_fn",
     "distillation_loss_fn='nope'"),
    # -- teachers.cache_logits
    ("cache_logits of an array", lambda p: teachers.cache_logits(make_teacher(train=False), X),
     ValueError, "dataset", "dataset=ndarray"),
    ("cache_logits of a shuffled dataset", lambda p: teachers.cache_logits(
        make_teacher(train=False), shuffled()), ValueError, "dataset", "Shuffle"),
    ("cache_logits of an ensemble without T", lambda p: teachers.cache_logits(
        kd.TeacherEnsemble([make_teacher(train=False)], mode="probabilities"),
        tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)), ValueError, "teacher",
     "temperature=None"),
    # -- data
    ("source of the wrong type", lambda p: data.load(42), ValueError, "source", "source=42"),
    ("missing .npz", lambda p: data.load(str(p / "absent.npz")), FileNotFoundError, "source",
     "absent.npz"),
    ("batch_size 0", lambda p: data.load(((ARRAYS, LABELS), (ARRAYS, LABELS)), batch_size=0),
     ValueError, "batch_size", "batch_size=0"),
    ("x and y lengths differ", lambda p: data.from_arrays((ARRAYS, LABELS[:5]), (ARRAYS, LABELS)),
     ValueError, "y_train", "y_train=5"),
    ("negative class labels", lambda p: data.from_arrays((ARRAYS, LABELS - 1), (ARRAYS, LABELS)),
     ValueError, "y_train", "y_train of shape (20,)"),
    ("soft labels not summing to 1", lambda p: data.from_arrays(
        (ARRAYS, np.eye(3)[LABELS]), (ARRAYS, np.eye(3)[LABELS] * 2)), ValueError, "y_test",
     "row sums from 2"),
    ("prefetched of a list", lambda p: data.prefetched([1, 2]), TypeError, "ds", "ds=list"),
    ("array_batches shuffle='batch'", lambda p: data.array_batches(X, Y, shuffle="batch"),
     ValueError, "shuffle", "shuffle='batch'"),
    # -- export
    ("export: not a model", lambda p: export.to_tflite("model", str(p / "m.tflite")), ValueError,
     "model", "model='model'"),
    ("export: unknown quantization", lambda p: export.to_tflite(
        make_student(), str(p / "m.tflite"), quantization="int4"), ValueError, "quantization",
     "quantization='int4'"),
    ("export: int8 without data", lambda p: export.to_tflite(
        make_student(), str(p / "m.tflite"), quantization="int8"), ValueError,
     "representative_data", "representative_data=None"),
    ("export: calibration samples 0", lambda p: export.to_tflite(
        make_student(), str(p / "m.tflite"), quantization="int8", representative_data=X,
        max_calibration_samples=0), ValueError, "max_calibration_samples",
     "max_calibration_samples=0"),
    ("export: unwritable path", lambda p: export.to_tflite(make_student(), unwritable(p)),
     ValueError, "path", "a_file/m.tflite"),
    ("export: two outputs", lambda p: export.convert(two_heads()), ValueError, "model",
     "'two_heads' has 2 outputs"),
    ("export: int32 input", lambda p: export.convert(dense(C, "ints", dtype="int32")),
     ValueError, "model", "dtype int32"),
    ("verify: corrupt file", lambda p: export.verify(make_student(), corrupt(p), (X, Y)),
     ValueError, "tflite_path", "bad.tflite"),
    ("verify: missing file", lambda p: export.verify(make_student(), str(p / "none.tflite"),
                                                     (X, Y)),
     FileNotFoundError, "tflite_path", "none.tflite"),
    # -- callbacks, distribute, precision
    ("checkpoint mode", lambda p: kd.callbacks.StudentCheckpoint(p / "s.keras", mode="up"),
     ValueError, "mode", "mode='up'"),
    ("checkpoint monitor not logged", checkpoint_without_monitor, ValueError, "monitor",
     "monitor='val_nope'"),
    ("unknown strategy", lambda p: kd.distribute.get_strategy("gpu"), ValueError, "strategy",
     "strategy='gpu'"),
    ("unknown precision policy", lambda p: kd.precision.enable("fp8"), ValueError, "policy",
     "policy='fp8'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_names_argument_and_value(case, tmp_path):
    _, call, error, argument, received = case
    with pytest.raises(error) as info:
        call(tmp_path)
    message = str(info.value)
    assert f"`{argument}`" in message, message
    assert received in message, message
    assert "Expected" in message or "Conflicting" in message, message


def test_malformed_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    with pytest.raises(ValueError) as info:
        kd.distribute.get_strategy("auto")
    message = str(info.value)
    assert "`TF_CONFIG`" in message and """TF_CONFIG='{"cluster": '""" in message
    assert "Expected a JSON object" in message


def test_case_count():
    assert len(CASES) + 1 >= 30
