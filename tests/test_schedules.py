"""Schedules of alpha, temperature and term weights: values, logs, exact losses, resume."""

import keras
import numpy as np
import pytest
from helpers import X, Y, kl_np, make_student, make_teacher, sparse_ce_np

import keras_kd as kd
from keras_kd import schedules, terms


@pytest.mark.parametrize("schedule,expected", [
    (schedules.Constant(3.0), [3.0, 3.0, 3.0, 3.0, 3.0]),
    (schedules.Linear(8.0, 2.0, 3), [8.0, 6.0, 4.0, 2.0, 2.0]),
    (schedules.Cosine(1.0, 0.0, 4), [1.0, 0.5 + 0.5 * np.cos(np.pi / 4), 0.5,
                                     0.5 + 0.5 * np.cos(3 * np.pi / 4), 0.0]),
    (schedules.Step([4.0, 2.0, 1.0], [2, 4]), [4.0, 4.0, 2.0, 2.0, 1.0]),
])
def test_schedule_values_and_round_trip(schedule, expected):
    np.testing.assert_allclose([schedule(e) for e in range(5)], expected, atol=1e-12)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()


def test_scheduled_values_are_logged_and_used_exactly():
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.5, temperature=4.0)
    callbacks = [schedules.ScheduleCallback("temperature", schedules.Linear(4.0, 1.0, 3)),
                 schedules.ScheduleCallback("alpha", schedules.Step([0.5, 0.2], [2]))]
    history = distiller.fit(X, Y, batch_size=len(X), epochs=4, verbose=0,
                            callbacks=callbacks).history
    assert history["temperature"] == [4.0, 3.0, 2.0, 1.0]
    assert history["alpha"] == [0.5, 0.5, 0.2, 0.2]
    t, s = teacher.predict(X, verbose=0), student.predict(X, verbose=0)
    hard = sparse_ce_np(Y, s).mean()
    for epoch, (temp, alpha) in enumerate(zip(history["temperature"], history["alpha"])):
        soft = kl_np(t, s, temp).mean()
        np.testing.assert_allclose(history["distillation_loss"][epoch], soft, rtol=1e-5)
        np.testing.assert_allclose(history["loss"][epoch], alpha * hard + (1 - alpha) * soft,
                                   rtol=1e-5)


def test_term_weight_schedule_and_target_errors():
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher, terms=[
        terms.Logits(), terms.Logits("logits_mse", weight=1.0, name="mse")])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.0)
    history = distiller.fit(X, Y, batch_size=len(X), epochs=2, verbose=0, callbacks=[
        schedules.ScheduleCallback("mse", schedules.Step([1.0, 0.0], [1]))]).history
    assert history["mse_weight"] == [1.0, 0.0]
    np.testing.assert_allclose(history["mse"][0], _mse(teacher, student), rtol=1e-5)
    np.testing.assert_allclose(history["loss"][0], history["kd_loss"][0] + history["mse"][0],
                               rtol=1e-5)
    np.testing.assert_allclose(history["loss"][1], history["kd_loss"][1], rtol=1e-6)
    with pytest.raises(ValueError, match=r"Expected one of \['alpha', 'temperature', "
                                         r"'kd_loss.weight', 'mse.weight', 'kd_loss.temperature'\]"):
        distiller.fit(X, Y, epochs=1, verbose=0,
                      callbacks=[schedules.ScheduleCallback("nope", 1.0)])
    with pytest.raises(ValueError, match=r"weighs 1 - alpha"):
        distiller.fit(X, Y, epochs=1, verbose=0,
                      callbacks=[schedules.ScheduleCallback("kd_loss", 1.0)])


def _mse(teacher, student):
    return ((student.predict(X, verbose=0) - teacher.predict(X, verbose=0)) ** 2).mean()


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_with_the_same_values(tmp_path):
    teacher, student = make_teacher(), make_student()

    def run(s, callbacks):
        distiller = kd.Distiller(s, teacher, augment_seed=1)
        distiller.compile(optimizer=keras.optimizers.SGD(0.05), alpha=0.5)
        return distiller, distiller.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                                        callbacks=callbacks)

    def schedule():
        return schedules.ScheduleCallback("temperature", schedules.Cosine(6.0, 1.0, 3))

    twin = keras.models.clone_model(student)
    twin.set_weights(student.get_weights())
    _, full = run(student, [schedule()])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    resumed_student = keras.models.clone_model(twin)
    resumed_student.set_weights(twin.get_weights())
    with pytest.raises(RuntimeError, match="interrupted"):
        run(resumed_student, [schedule(), backup, Interrupt()])
    distiller, resumed = run(resumed_student, [schedule(), backup])
    assert resumed.history["temperature"] == full.history["temperature"][2:]
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"][2:], rtol=1e-5)
    assert float(distiller.objective.terms[0].temperature_variable.numpy()) == 1.0
