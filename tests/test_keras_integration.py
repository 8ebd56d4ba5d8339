"""Keras conventions: callbacks, .keras saving, serialization, tf.distribute, light import."""

import glob
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, X, Y, clone, make_student, make_teacher
from test_distiller import hand_logs

import keras_kd as kd


def compiled(student, teacher, optimizer=None, **kwargs):
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=optimizer or keras.optimizers.Adam(0.01), metrics=["accuracy"],
                      **kwargs)
    return distiller


def test_student_keras_round_trip(tmp_path):
    teacher, student = make_teacher(), make_student()
    compiled(student, teacher).fit(X, Y, epochs=2, verbose=0)
    path = tmp_path / "student.keras"
    student.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(X, verbose=0), student.predict(X, verbose=0))


def test_distiller_keras_round_trip_keeps_compile_settings(tmp_path):
    teacher, student = make_teacher(), make_student()
    distiller = compiled(student, teacher, alpha=0.35, temperature=6.0,
                         distillation_loss_fn="soft_target_crossentropy")
    distiller.fit(X, Y, epochs=1, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    restored = keras.saving.load_model(path)  # no custom_objects: classes are registered
    assert isinstance(restored, kd.Distiller)
    assert (restored.alpha, restored.temperature) == (0.35, 6.0)
    assert isinstance(restored.distillation_loss_fn, kd.losses.SoftTargetCrossEntropy)
    a = distiller.evaluate(X, Y, verbose=0, return_dict=True)
    b = restored.evaluate(X, Y, verbose=0, return_dict=True)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)


def test_distiller_config_round_trip():
    distiller = kd.Distiller(make_student(), make_teacher(train=False), name="kd")
    config = distiller.get_config()
    restored = kd.Distiller.from_config(config)
    assert restored.name == "kd"
    assert restored.student.get_config() == distiller.student.get_config()
    assert restored.teacher.get_config() == distiller.teacher.get_config()


def test_model_checkpoint_best_only_and_weights(tmp_path):
    teacher, student = make_teacher(), make_student()
    distiller = compiled(student, teacher)
    best = tmp_path / "best.keras"
    weights = tmp_path / "w.weights.h5"
    history = distiller.fit(
        X, Y, epochs=4, validation_data=(X, Y), verbose=0,
        callbacks=[
            keras.callbacks.ModelCheckpoint(best, monitor="val_distillation_loss",
                                            mode="min", save_best_only=True),
            keras.callbacks.ModelCheckpoint(weights, save_weights_only=True),
        ],
    ).history
    restored = keras.saving.load_model(best)
    logs = restored.evaluate(X, Y, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["distillation_loss"], min(history["val_distillation_loss"]),
                               rtol=1e-5)
    fresh = compiled(make_student(), make_teacher(train=False))
    fresh.load_weights(weights)
    np.testing.assert_allclose(fresh.predict(X, verbose=0), student.predict(X, verbose=0),
                               rtol=1e-6)


def test_early_stopping_monitors_distillation_loss():
    distiller = compiled(make_student(), make_teacher())
    # The distillation loss falls every epoch, so watched with mode="max" it never improves
    # after the first epoch: training must stop after 1 + patience epochs.
    stop = keras.callbacks.EarlyStopping(monitor="distillation_loss", mode="max", patience=2)
    history = distiller.fit(X, Y, epochs=20, verbose=0, callbacks=[stop]).history
    assert np.all(np.diff(history["distillation_loss"]) < 0)
    assert len(history["loss"]) == 3


def test_tensorboard_logs_the_true_values(tmp_path):
    distiller = compiled(make_student(), make_teacher())
    history = distiller.fit(
        X, Y, epochs=2, verbose=0, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))]
    ).history
    values = {}
    for path in glob.glob(str(tmp_path / "train" / "events.*")):
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for v in event.summary.value:
                values.setdefault(v.tag, []).append(float(tf.make_ndarray(v.tensor)))
    for key in ("loss", "hard_loss", "distillation_loss", "accuracy"):
        np.testing.assert_allclose(values[f"epoch_{key}"], history[key], rtol=1e-6)


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated preemption")


def test_backup_and_restore_resumes_to_the_same_weights(tmp_path):
    teacher, student = make_teacher(), make_student()
    twin = clone(student)
    reference = compiled(twin, teacher)
    reference.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = compiled(student, teacher)
    with pytest.raises(RuntimeError, match="preemption"):
        first.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                  callbacks=[backup, Interrupt()])
    resumed_student = make_student()  # fresh weights: everything must come from the backup
    resumed = compiled(resumed_student, teacher)
    history = resumed.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                          callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    for a, b in zip(resumed_student.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


# ------------------------------------------------------------------ tf.distribute
def _run(strategy, teacher_weights, student_weights, x, y, batch_size, steps_lr=0.5):
    with strategy.scope():
        teacher = make_teacher(train=False)
        teacher.set_weights(teacher_weights)
        student = make_student()
        student.set_weights(student_weights)
        distiller = kd.Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(steps_lr), metrics=["accuracy"],
                          alpha=0.3, temperature=3.0)
    history = distiller.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False,
                            verbose=0).history
    return student.get_weights(), history


@pytest.mark.parametrize("n,batch_size", [(32, 32), (41, 32)])  # 41: last batch splits 5 + 4
def test_mirrored_two_replicas_equal_single_device(n, batch_size):
    assert len(tf.config.list_logical_devices("CPU")) == 2
    teacher, student = make_teacher(), make_student()
    x, y = np.concatenate([X, X])[:n], np.concatenate([Y, Y])[:n]
    args = (teacher.get_weights(), student.get_weights(), x, y, batch_size)
    single_w, single_h = _run(tf.distribute.OneDeviceStrategy("/cpu:0"), *args)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    multi_w, multi_h = _run(mirrored, *args)
    for a, b in zip(single_w, multi_w):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for key in ("loss", "hard_loss", "distillation_loss", "accuracy"):
        np.testing.assert_allclose(multi_h[key], single_h[key], rtol=1e-5, err_msg=key)
    if n == batch_size:  # one step: the logged values are the hand computation
        expected = hand_logs(teacher, student, x, y, 0.3, 3.0)
        for key, value in expected.items():
            np.testing.assert_allclose(multi_h[key][0], value, rtol=1e-5, err_msg=key)


def test_import_is_light():
    # TensorFlow itself imports some of these when installed: count only what keras_kd adds.
    code = (
        "import os, sys, tensorflow, keras; before = set(sys.modules);"
        "import keras_kd, keras_kd.data, keras_kd.models, keras_kd.losses;"
        "heavy = [m for m in ('tensorflow_model_optimization', 'tf_keras', 'ai_edge_litert',"
        " 'sklearn', 'matplotlib', 'tensorflow_datasets') if m in set(sys.modules) - before];"
        "print(heavy, os.environ.get('TF_USE_LEGACY_KERAS'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.strip().splitlines()[-1] == "[] None"


def test_num_classes_mismatch_in_teacher_is_caught():
    inputs = keras.Input((X.shape[1],))
    other = keras.Model(inputs, keras.layers.Dense(C + 1)(inputs))
    distiller = kd.Distiller(make_student(), other)
    distiller.compile()
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        distiller.fit(X, Y, verbose=0)


@pytest.mark.parametrize("callback", [keras.callbacks.BackupAndRestore, kd.callbacks.BackupAndRestore])
def test_resume_under_mirrored_strategy(tmp_path, callback):
    teacher, student = make_teacher(), make_student()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def build(weights):
        with strategy.scope():
            t = make_teacher(train=False)
            t.set_weights(teacher.get_weights())
            s = make_student()
            s.set_weights(weights)
            return s, compiled(s, t)

    reference_student, reference = build(student.get_weights())
    reference.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    _, first = build(student.get_weights())
    with pytest.raises(RuntimeError, match="preemption"):
        first.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                  callbacks=[callback(str(tmp_path / "b")), Interrupt()])
    resumed_student, resumed = build(make_student().get_weights())
    history = resumed.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                          callbacks=[callback(str(tmp_path / "b"))])
    assert len(history.history["loss"]) == 2
    for a, b in zip(resumed_student.get_weights(), reference_student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not (tmp_path / "b").exists()  # removed after the run completed


def test_student_checkpoint_saves_the_best_student(tmp_path):
    distiller = compiled(make_student(), make_teacher())
    path = tmp_path / "best_student.keras"
    history = distiller.fit(X, Y, epochs=4, validation_data=(X, Y), verbose=0, callbacks=[
        kd.callbacks.StudentCheckpoint(path, monitor="val_hard_loss", save_best_only=True)
    ]).history
    restored = keras.saving.load_model(path)
    hard = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(Y, restored.predict(X, verbose=0))
    np.testing.assert_allclose(float(hard), min(history["val_hard_loss"]), rtol=1e-5)
    assert os.listdir(tmp_path) == ["best_student.keras"]
    with pytest.raises(ValueError, match=r"`monitor`.*Received: monitor='nope'"):
        distiller.fit(X, Y, epochs=1, verbose=0, callbacks=[
            kd.callbacks.StudentCheckpoint(path, monitor="nope", save_best_only=True)])


def test_strategy_names_and_batch_sizes(monkeypatch):
    with pytest.raises(ValueError, match=r"argument `strategy`.*'mirrored'.*Received: strategy='gpu'"):
        kd.distribute.get_strategy("gpu")
    assert kd.distribute.get_strategy("default") is tf.distribute.get_strategy()
    mirrored = kd.distribute.get_strategy("mirrored")  # the 2 logical CPUs of conftest
    assert mirrored.num_replicas_in_sync == 2
    assert kd.distribute.batch_sizes(mirrored, global_batch_size=64) == (64, 32)
    assert kd.distribute.batch_sizes(mirrored, per_replica_batch_size=16) == (32, 16)
    with pytest.raises(ValueError, match=r"multiple of the 2 replicas.*Received: global_batch_size=33"):
        kd.distribute.batch_sizes(mirrored, global_batch_size=33)
    with pytest.raises(ValueError, match="exactly one"):
        kd.distribute.batch_sizes(mirrored)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="environment variable `TF_CONFIG`"):
        kd.distribute.get_strategy("auto")
