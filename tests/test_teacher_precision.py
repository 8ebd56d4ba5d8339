"""Only the teacher in reduced precision: soft targets barely move, the student stays float32."""

import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd as kd
from helpers import C, X, Y, make_student, make_teacher
from keras_kd import precision

T = 4.0
CIFAR10_TEST = pathlib.Path(
    os.environ.get("KERAS_KD_CIFAR10",
                   pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10")
) / "test"


def mean_kl(p_logits, q_logits, temperature=T):
    """Mean over examples of KL(softmax(p / T) || softmax(q / T)), in float64."""
    log_p = tf.nn.log_softmax(np.asarray(p_logits, "float64") / temperature)
    log_q = tf.nn.log_softmax(np.asarray(q_logits, "float64") / temperature)
    return float(tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), -1)))


@pytest.fixture(scope="module")
def cifar10_images():
    """260 real CIFAR-10 test images (26 per class), raw pixels, decoded from the JPEGs."""
    if not CIFAR10_TEST.is_dir():
        pytest.skip(f"CIFAR-10 folder not found at {CIFAR10_TEST} (set KERAS_KD_CIFAR10)")
    files = [f for c in sorted(os.listdir(CIFAR10_TEST))
             for f in sorted((CIFAR10_TEST / c).glob("*.jpg"))[:26]]
    return np.stack([tf.io.decode_jpeg(tf.io.read_file(str(f))).numpy() for f in files]).astype(
        "float32")


@pytest.mark.parametrize("dtype, bound", [("bfloat16", 1e-3), ("float16", 1e-4)])
def test_reduced_precision_teacher_soft_targets_on_real_cifar10(cifar10_images, dtype, bound):
    """Mean KL(float32 teacher || reduced teacher) at T=4 over real CIFAR-10 images.

    The bound: bfloat16 keeps 8 significant bits (unit roundoff 2**-8), so each layer's
    outputs carry relative errors of order 4e-3 and the logits of a 20-layer ResNet errors
    of order 1e-2 of their scale; softened by T=4, such errors move the soft targets by a
    KL of order 1e-4 (measured: 5e-6 and 9e-5 for two initialisations). 1e-3 nats (T**2 * KL
    = 0.016 in distillation-loss units, a few percent of a typical distillation loss) leaves
    a 10x margin; float16 keeps 11 bits, 8x smaller errors, hence 1e-4. A different teacher
    (another initialisation) is two orders of magnitude further away, so the bound
    discriminates."""
    keras.utils.set_random_seed(0)
    teacher = kd.models.build("resnet-teacher", (32, 32, 3), 10)
    reduced = precision.teacher_in(teacher, dtype)
    reference = teacher(cifar10_images, training=False)
    outputs = reduced(cifar10_images, training=False)
    assert outputs.dtype == dtype and reference.dtype == "float32"
    kl = mean_kl(reference, outputs)
    assert 0 < kl < bound  # not the float32 teacher itself, and close to it
    agreement = np.mean(np.argmax(reference, -1) == np.argmax(outputs, -1))
    assert agreement >= 0.98
    keras.utils.set_random_seed(1)
    other = kd.models.build("resnet-teacher", (32, 32, 3), 10)
    assert mean_kl(reference, other(cifar10_images, training=False)) > 100 * bound


def test_teacher_dtype_runs_only_the_teacher_in_bfloat16():
    teacher, student = make_teacher(), make_student()
    weights = [w.copy() for w in teacher.get_weights()]
    distiller = kd.Distiller(student, teacher, teacher_dtype="bfloat16")
    distiller.compile(optimizer="adam", alpha=0.1, temperature=T)
    history = distiller.fit(X, Y, batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    # the student, its optimizer state and Keras' global policy stay float32
    assert keras.mixed_precision.global_policy().name == "float32"
    assert {v.dtype for v in student.variables} == {"float32"}
    assert {layer.compute_dtype for layer in student.layers} == {"float32"}
    assert {v.dtype for v in distiller.optimizer.variables} <= {"float32", "int64"}
    # the user's teacher is untouched; the distiller's copy computes in bfloat16
    assert {layer.compute_dtype for layer in teacher.layers} == {"float32"}
    for a, b in zip(weights, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    copy_layers = [layer for layer in distiller.teacher.layers
                   if not isinstance(layer, keras.layers.InputLayer)]
    assert {layer.compute_dtype for layer in copy_layers} == {"bfloat16"}
    assert [v.dtype for v in distiller.teacher.variables] == [v.dtype for v in teacher.variables]
    assert "float32" in {v.dtype for v in teacher.variables}  # float32 weights, cast as used
    logits = distiller.teacher_logits(X).numpy()
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits, tf.cast(distiller.teacher(X), tf.float32))
    assert not np.array_equal(logits, teacher(X).numpy())  # really another precision
    np.testing.assert_allclose(logits, teacher(X).numpy(), rtol=0.05, atol=0.05)
    # saved and restored with its option
    restored = kd.Distiller.from_config(distiller.get_config())
    assert restored.teacher_dtype == "bfloat16"
    assert restored.teacher.layers[-1].compute_dtype == "bfloat16"


def test_cached_logits_of_a_reduced_precision_teacher():
    teacher = make_teacher()
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    cached = kd.teachers.cache_logits(teacher, ds, teacher_dtype="float16")
    logits = np.concatenate([b["teacher_logits"] for b, _ in cached])
    reduced = precision.teacher_in(teacher, "float16")(X, training=False)
    # float16 outputs (representable in float16), within an ulp of the eager run's
    np.testing.assert_array_equal(logits, logits.astype("float16").astype("float32"))
    assert not np.array_equal(logits, teacher(X).numpy().astype("float16").astype("float32"))
    np.testing.assert_allclose(logits, tf.cast(reduced, tf.float32), rtol=2e-3, atol=2e-3)
    assert logits.shape == (len(X), C)
    with pytest.raises(ValueError, match="teacher_dtype"):
        kd.teachers.cache_logits(teacher, ds, teacher_dtype="int8")
