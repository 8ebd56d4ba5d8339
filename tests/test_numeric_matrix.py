"""Numeric safety matrix: every distillation loss gives a finite value and finite gradients
for logits up to 1e4 in magnitude, T from 0.5 to 100, under float32, mixed_float16 and
mixed_bfloat16 (logits in the policy's compute dtype, as a mixed-precision model emits them)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import X, Y, kl_np, make_student, make_teacher

import keras_kd as kd

POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]
TEMPERATURES = [0.5, 1.0, 4.0, 20.0, 100.0]
LOSSES = {
    "kl_divergence": lambda: kd.losses.KLDivergence(),
    "soft_target_crossentropy": lambda: kd.losses.SoftTargetCrossEntropy(),
    "logits_mse": lambda: kd.losses.LogitsMSE(),
    "keras_kl": lambda: kd.losses.get(keras.losses.KLDivergence()),
    "keras_cce": lambda: kd.losses.get(keras.losses.CategoricalCrossentropy()),
}


def extreme_logits(num_classes):
    """Teacher and student logits: opposite confident rows at +-1e4, mixed scales, zeros."""
    rng = np.random.default_rng(num_classes)
    rows = []
    for magnitude in (1.0, 1e2, 1e3, 1e4):
        rows.append(rng.uniform(-magnitude, magnitude, size=(2, num_classes)))
    peak = np.full((1, num_classes), -1e4)
    peak[0, 0] = 1e4
    teacher = np.concatenate(rows + [peak, np.zeros((1, num_classes))])
    student = np.concatenate([r[::-1] for r in rows] + [-peak, np.full((1, num_classes), 1e4)])
    return teacher.astype("float32"), student.astype("float32")


@pytest.fixture(params=POLICIES)
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_loss_and_gradient(policy, name):
    # One test per (policy, loss); the temperatures and class counts loop inside (each
    # pytest case costs a Keras session clear-up).
    for num_classes in (10, 1):
        if name == "keras_cce" and num_classes == 1:
            continue  # a categorical loss of one class
        for t in TEMPERATURES:
            where = f"{name}, T={t}, {num_classes} classes, {policy.name}"
            loss = LOSSES[name]()
            if isinstance(loss, kd.losses.TemperatureLoss):
                loss = loss.with_temperature(t)
            teacher, student = extreme_logits(num_classes)
            teacher = tf.constant(teacher, dtype=policy.compute_dtype)
            student = tf.Variable(tf.constant(student, dtype=policy.compute_dtype))
            with tf.GradientTape() as tape:
                values = loss.call(teacher, student)
                total = tf.reduce_sum(values)
            gradient = np.asarray(tape.gradient(total, student), dtype="float64")
            values = np.asarray(values, dtype="float64")
            assert values.shape == (len(teacher),), where
            assert np.all(np.isfinite(values)), (where, values)
            assert np.all(np.isfinite(gradient)), where
            if name == "kl_divergence" and num_classes > 1:  # and right, against float64
                expected = kl_np(np.asarray(teacher, "float64"), np.asarray(student, "float64"), t)
                np.testing.assert_allclose(values, expected, rtol=1e-3, atol=1e-3 * t**2,
                                           err_msg=where)


@pytest.mark.parametrize("t", [0.5, 100.0])
def test_distiller_step_stays_finite_with_huge_logits(policy, t):
    teacher = make_teacher(train=False)
    last = teacher.layers[-1]
    last.set_weights([last.get_weights()[0] * 1e3, last.get_weights()[1]])
    assert np.abs(np.asarray(teacher.predict(X, verbose=0), "float32")).max() > 1e3
    student = make_student()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer="sgd", temperature=t, alpha=0.5)
    history = distiller.fit(X, Y, batch_size=20, epochs=1, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["distillation_loss"]))
    assert all(np.all(np.isfinite(np.asarray(w, "float32"))) for w in student.get_weights())
