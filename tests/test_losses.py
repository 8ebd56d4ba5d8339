"""Every distillation loss against a NumPy oracle, including weighted and extreme cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import kl_np, log_softmax_np

from keras_kd import losses

RNG = np.random.default_rng(0)
TEACHER = RNG.normal(size=(6, 10)).astype("float32") * 3
STUDENT = RNG.normal(size=(6, 10)).astype("float32") * 3
WEIGHTS = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 1.0], "float32")


def soft_ce_np(teacher, student, t):
    teacher, student = np.asarray(teacher, "float64"), np.asarray(student, "float64")
    return -(t**2) * (np.exp(log_softmax_np(teacher / t)) * log_softmax_np(student / t)).sum(-1)


def mse_np(teacher, student, t=None):
    return ((student - teacher) ** 2).mean(-1)


CASES = [
    (losses.KLDivergence, kl_np),
    (losses.SoftTargetCrossEntropy, soft_ce_np),
]


@pytest.mark.parametrize("cls,oracle", CASES)
@pytest.mark.parametrize("t", [0.5, 1.0, 4.0, 20.0])
def test_temperature_losses_match_oracle(cls, oracle, t):
    loss = cls(temperature=t)
    expected = oracle(TEACHER, STUDENT, t)
    np.testing.assert_allclose(loss.call(TEACHER, STUDENT), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(loss(TEACHER, STUDENT)), expected.mean(), rtol=1e-4)
    weighted = float(loss(TEACHER, STUDENT, sample_weight=WEIGHTS))
    np.testing.assert_allclose(weighted, (WEIGHTS * expected).sum() / len(WEIGHTS), rtol=1e-4)
    assert float(loss(TEACHER, STUDENT, sample_weight=np.zeros(6, "float32"))) == 0.0


def test_logits_mse_matches_oracle():
    loss = losses.LogitsMSE()
    np.testing.assert_allclose(loss.call(TEACHER, STUDENT), mse_np(TEACHER, STUDENT), rtol=1e-5)
    np.testing.assert_allclose(
        float(loss(TEACHER, STUDENT, sample_weight=WEIGHTS)),
        (WEIGHTS * mse_np(TEACHER, STUDENT)).sum() / 6,
        rtol=1e-5,
    )


def test_t_squared_scaling_is_switchable():
    t = 5.0
    scaled = losses.KLDivergence(temperature=t).call(TEACHER, STUDENT)
    plain = losses.KLDivergence(temperature=t, scale_by_temperature_squared=False).call(
        TEACHER, STUDENT
    )
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(plain) * t**2, rtol=1e-5)


def test_kl_is_zero_on_identical_logits_and_ce_differs_by_teacher_entropy():
    t = 3.0
    np.testing.assert_allclose(losses.KLDivergence(temperature=t).call(TEACHER, TEACHER), 0, atol=1e-5)
    p = np.exp(log_softmax_np(TEACHER / t))
    entropy = -(p * np.log(p)).sum(-1) * t**2
    diff = losses.SoftTargetCrossEntropy(temperature=t).call(TEACHER, STUDENT) - losses.KLDivergence(
        temperature=t
    ).call(TEACHER, STUDENT)
    np.testing.assert_allclose(diff, entropy, rtol=1e-4)


def test_standalone_default_temperature_is_one():
    np.testing.assert_allclose(
        losses.KLDivergence().call(TEACHER, STUDENT), kl_np(TEACHER, STUDENT, 1.0), rtol=1e-5
    )


@pytest.mark.parametrize("cls", [losses.KLDivergence, losses.SoftTargetCrossEntropy])
@pytest.mark.parametrize("t", [0.5, 100.0])
@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_finite_value_and_gradient_at_extremes(cls, t, magnitude):
    teacher = tf.constant(TEACHER * magnitude / 3)
    student = tf.Variable(STUDENT[::-1].copy() * magnitude / 3)
    loss = cls(temperature=t)
    with tf.GradientTape() as tape:
        value = loss(teacher, student)
    grad = tape.gradient(value, student)
    assert np.isfinite(float(value)) and float(value) >= 0
    assert np.all(np.isfinite(grad.numpy()))
    # At T=100 the logits/T are at most ~1e2: the oracle in float64 is exact enough.
    expected = kl_np(teacher.numpy().astype("float64"), student.numpy().astype("float64"), t)
    if cls is losses.KLDivergence:
        np.testing.assert_allclose(float(value), expected.mean(), rtol=1e-3)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "4", True])
def test_invalid_temperature_is_named(bad):
    with pytest.raises(ValueError, match=r"argument `temperature`.*Received: temperature="):
        losses.KLDivergence(temperature=bad)


@pytest.mark.parametrize(
    "loss",
    [
        losses.KLDivergence(temperature=3.0, scale_by_temperature_squared=False),
        losses.SoftTargetCrossEntropy(temperature=7.0),
        losses.LogitsMSE(),
    ],
)
def test_serialization_round_trip(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(restored.call(TEACHER, STUDENT), loss.call(TEACHER, STUDENT))


def test_get_by_name_lists_available_names():
    assert isinstance(losses.get("kl_divergence"), losses.KLDivergence)
    with pytest.raises(ValueError, match="kl_divergence.*Received: distillation_loss_fn='nope'"):
        losses.get("nope")


def test_softened_keras_kl_equals_keras_kd_kl_until_keras_clips():
    wrapped = losses.get(keras.losses.KLDivergence()).with_temperature(2.0)
    assert isinstance(wrapped, losses.SoftenedKerasLoss)
    np.testing.assert_allclose(wrapped.call(TEACHER, STUDENT), kl_np(TEACHER, STUDENT, 2.0),
                               rtol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(wrapped))
    np.testing.assert_allclose(restored.call(TEACHER, STUDENT), wrapped.call(TEACHER, STUDENT))
    # Confident logits at T = 1: softmax probabilities below 1e-7 are clipped by Keras.
    confident = TEACHER * 10
    p = np.exp(log_softmax_np(confident.astype("float64")))
    q = np.exp(log_softmax_np(STUDENT.astype("float64")))
    assert p.min() < 1e-7
    clipped = (np.clip(p, 1e-7, 1) * np.log(np.clip(p, 1e-7, 1) / np.clip(q, 1e-7, 1))).sum(-1)
    value = wrapped.with_temperature(1.0).call(confident, STUDENT)
    np.testing.assert_allclose(value, clipped, rtol=1e-4)
    assert np.abs(np.asarray(value) - kl_np(confident, STUDENT, 1.0)).max() > 1e-6


@pytest.mark.parametrize("loss", [keras.losses.SparseCategoricalCrossentropy(),
                                  keras.losses.BinaryCrossentropy(), keras.losses.binary_crossentropy])
def test_label_losses_are_refused_as_distillation_losses(loss):
    with pytest.raises(ValueError, match=r"`distillation_loss_fn`.*labels.*KLDivergence"):
        losses.get(loss)


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0, 20.0])
def test_t_squared_gradient_claim(t):
    """d/dz_s of T^2 KL(softmax(z_t/T) || softmax(z_s/T)) = T (softmax(z_s/T) - softmax(z_t/T))."""
    student = tf.Variable(STUDENT)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.KLDivergence(temperature=t).call(TEACHER, student))
    gradient = tape.gradient(total, student).numpy()
    p = np.exp(log_softmax_np(TEACHER.astype("float64") / t))
    q = np.exp(log_softmax_np(STUDENT.astype("float64") / t))
    np.testing.assert_allclose(gradient, t * (q - p), rtol=1e-4, atol=1e-6)
    # T**2 keeps it from vanishing as T grows: it tends to (z_s - z_t, centred) / C
    assert np.abs(gradient).max() > 0.05
