"""Decoupled KD (Zhao et al. 2022): values and gradients against a NumPy oracle; in the Distiller."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, X, Y, log_softmax_np, make_student, make_teacher, sparse_ce_np

import keras_kd as kd
from keras_kd import losses, terms

RNG = np.random.default_rng(5)
TEACHER = (RNG.normal(size=(6, 5)) * 3).astype("float32")
STUDENT = (RNG.normal(size=(6, 5)) * 3).astype("float32")
LABELS = np.array([0, 4, 2, 2, 1, 3])


def dkd_np(teacher, student, labels, alpha, beta, t):
    """The paper's definitions, in float64: binary target-vs-rest KL, KL among non-targets."""
    p = np.exp(log_softmax_np(np.asarray(teacher, "float64") / t))
    q = np.exp(log_softmax_np(np.asarray(student, "float64") / t))
    out = []
    for pi, qi, g in zip(p, q, labels):
        b_p, b_q = np.array([pi[g], 1 - pi[g]]), np.array([qi[g], 1 - qi[g]])
        tckd = (b_p * np.log(b_p / b_q)).sum()
        rest = np.arange(len(pi)) != g
        hat_p, hat_q = pi[rest] / pi[rest].sum(), qi[rest] / qi[rest].sum()
        nckd = (hat_p * np.log(hat_p / hat_q)).sum()
        out.append(t**2 * (alpha * tckd + beta * nckd))
    return np.array(out)


def numeric_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x, dtype="float64")
    for i in np.ndindex(x.shape):
        up, down = x.astype("float64"), x.astype("float64")
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("alpha,beta,t", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.0, 0.7)])
def test_values_and_gradients_match_the_oracle(alpha, beta, t):
    loss = losses.DecoupledKD(alpha=alpha, beta=beta, temperature=t)
    expected = dkd_np(TEACHER, STUDENT, LABELS, alpha, beta, t)
    np.testing.assert_allclose(loss.call((TEACHER, LABELS), STUDENT), expected, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(float(loss((TEACHER, LABELS), STUDENT)), expected.mean(), rtol=1e-4)
    student = tf.Variable(STUDENT)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss.call((TEACHER, LABELS), student))
    grad = tape.gradient(value, student).numpy()
    oracle = numeric_gradient(lambda s: dkd_np(TEACHER, s, LABELS, alpha, beta, t).mean(), STUDENT)
    np.testing.assert_allclose(grad, oracle, rtol=1e-3, atol=1e-5)


def test_one_hot_and_mixed_labels_use_their_argmax():
    loss = losses.DecoupledKD(temperature=2.0)
    sparse = loss.call((TEACHER, LABELS), STUDENT)
    one_hot = keras.utils.to_categorical(LABELS, 5)
    np.testing.assert_allclose(loss.call((TEACHER, one_hot), STUDENT), sparse, rtol=1e-6)
    mixed = 0.7 * one_hot + 0.3 * keras.utils.to_categorical((LABELS + 1) % 5, 5)
    np.testing.assert_allclose(loss.call((TEACHER, mixed), STUDENT), sparse, rtol=1e-6)


def test_equals_the_reference_gt_mask_formula():
    """mdistiller's dkd_loss (subtract 1000 from the target logit) on ordinary logits."""
    t, alpha, beta = 4.0, 1.0, 8.0
    mask = np.eye(5)[LABELS].astype(bool)
    sm = lambda z: np.exp(log_softmax_np(z))  # noqa: E731
    ps, pt = sm(STUDENT / t), sm(TEACHER / t)
    cat = lambda p: np.stack([(p * mask).sum(1), (p * ~mask).sum(1)], 1)  # noqa: E731
    tckd = (cat(pt) * (np.log(cat(pt)) - np.log(cat(ps)))).sum() * t**2 / 6
    lt2, ls2 = log_softmax_np(TEACHER / t - 1000.0 * mask), log_softmax_np(STUDENT / t - 1000.0 * mask)
    nckd = (np.exp(lt2) * (lt2 - ls2)).sum() * t**2 / 6
    value = float(losses.DecoupledKD(alpha, beta, temperature=t)((TEACHER, LABELS), STUDENT))
    np.testing.assert_allclose(value, alpha * tckd + beta * nckd, rtol=1e-4)


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_finite_at_extreme_logits(magnitude):
    student = tf.Variable(STUDENT[::-1].copy() * magnitude)
    loss = losses.DecoupledKD(temperature=1.0)
    with tf.GradientTape() as tape:
        value = loss((TEACHER * magnitude, LABELS), student)
    assert np.isfinite(float(value)) and float(value) >= 0
    assert np.all(np.isfinite(tape.gradient(value, student).numpy()))


def test_needs_labels_and_validates():
    with pytest.raises(ValueError, match=r"y_true=\(teacher_logits, labels\)"):
        losses.DecoupledKD().call(TEACHER, STUDENT)
    with pytest.raises(ValueError, match=r"argument `beta`.*Received: beta=-1"):
        losses.DecoupledKD(beta=-1)


def test_serialization_round_trip():
    loss = losses.DecoupledKD(alpha=0.5, beta=4.0, temperature=3.0)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is losses.DecoupledKD and restored.get_config() == loss.get_config()
    assert isinstance(losses.get("dkd"), losses.DecoupledKD)


def test_distiller_logs_dkd_with_labels_and_warm_up():
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher, terms=[terms.dkd(beta=2.0, warmup_epochs=4)])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=1.0)
    t, s = teacher.predict(X, verbose=0), student.predict(X, verbose=0)
    dkd = dkd_np(t, s, Y, 1.0, 2.0, 4.0).mean()
    hard = sparse_ce_np(Y, s).mean()
    history = distiller.fit(X, Y, batch_size=len(X), epochs=5, verbose=0).history
    np.testing.assert_allclose(history["dkd_loss"], [dkd] * 5, rtol=1e-4)
    factors = np.array([0.25, 0.5, 0.75, 1.0, 1.0])  # min((epoch + 1) / 4, 1)
    np.testing.assert_allclose(history["loss"], hard + factors * dkd, rtol=1e-4)
    assert C == t.shape[-1]
