"""Consistent augmentation: the teacher sees exactly the student's augmented batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from helpers import Spy
from keras_kd.augment import Augmentation


def _images(n=16, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 3)).astype("float32")


def _model(name, num_classes=4):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name=name)


def test_same_seed_same_view_and_different_seed_other_view():
    aug = Augmentation([keras.layers.RandomTranslation(0.25, 0.25, fill_mode="reflect"),
                        keras.layers.RandomFlip("horizontal")])
    x = _images()
    a, _ = aug(x, None, seed=tf.constant([3, 7]))
    b, _ = aug(x, None, seed=tf.constant([3, 7]))
    c, _ = aug(x, None, seed=tf.constant([3, 8]))
    graph, _ = tf.function(lambda x, s: aug(x, None, seed=s))(x, tf.constant([3, 7]))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, graph)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1.0
    assert np.abs(np.asarray(a) - x).max() > 1.0  # it did augment


def test_mixup_labels_match_a_hand_computation():
    mixup = keras.layers.MixUp(alpha=0.4)
    aug = Augmentation([mixup], num_classes=5)
    x = _images(8)
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    seed = tf.constant([1, 2])
    xm, ym = aug(x, y, seed=seed)
    # The same draws, taken from the layer with the same seed, mixed by hand in NumPy.
    from keras_kd import compat
    t = mixup.get_random_transformation(
        x, training=True,
        seed=compat.TensorSeedGenerator(tf.random.experimental.stateless_fold_in(seed, 0)))
    lam = np.asarray(t["mix_weight"]).reshape(-1)
    perm = np.asarray(t["permutation_order"])
    one_hot = np.eye(5)[y]
    np.testing.assert_allclose(ym, lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[perm],
                               rtol=1e-6)
    np.testing.assert_allclose(xm, lam[:, None, None, None] * x
                               + (1 - lam[:, None, None, None]) * x[perm], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(ym).sum(axis=1), 1.0, rtol=1e-6)
    assert 0 < lam.min() and lam.max() < 1


def test_teacher_sees_exactly_the_students_augmented_batch():
    teacher = Spy(_model("teacher"))
    teacher(_images(2))
    student = Spy(_model("student"))
    student(_images(2))
    teacher.seen.clear()
    student.seen.clear()
    distiller = keras_kd.Distiller(
        student, teacher, augment_seed=5,
        augment=[keras.layers.RandomTranslation(0.25, 0.25), keras.layers.RandomFlip()])
    distiller.compile(optimizer="sgd", run_eagerly=True)
    x = _images(16)
    y = np.arange(16) % 4
    distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # the Distiller first runs both models once on the raw first batch (input checks)
    np.testing.assert_array_equal(student.seen[0], x[:8])
    teacher.seen, student.seen = teacher.seen[1:], student.seen[1:]
    assert len(teacher.seen) == len(student.seen) == 2
    for t_in, s_in, raw in zip(teacher.seen, student.seen, (x[:8], x[8:])):
        np.testing.assert_array_equal(t_in, s_in)
        assert np.abs(t_in - raw).max() > 1.0  # augmented, not the raw batch
    # Batch k is augmented with the seed (augment_seed, k): recomputable outside the Distiller.
    again, _ = distiller.augment(x[8:], None, seed=tf.constant([5, 1]))
    np.testing.assert_array_equal(again, student.seen[1])


def test_mixup_in_the_distiller_trains_on_mixed_labels():
    teacher, student = _model("teacher"), _model("student")
    distiller = keras_kd.Distiller(student, teacher, augment=keras.layers.MixUp(), augment_seed=0)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.5)
    history = distiller.fit(_images(32), np.arange(32) % 4, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["hard_loss"]))
    assert distiller.augment.num_classes == 4


def test_cached_logits_with_augment_are_refused():
    teacher, student = _model("teacher"), _model("student")
    distiller = keras_kd.Distiller(student, teacher, augment=keras.layers.RandomFlip())
    distiller.compile(optimizer="sgd")
    x = _images(8)
    batch = ({"inputs": x, "teacher_logits": np.zeros((8, 4), "float32")}, np.zeros(8))
    with pytest.raises(ValueError, match="Cached teacher logits with `augment`"):
        distiller.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)


def test_augment_rejects_layers_without_seeded_randomness():
    with pytest.raises(ValueError, match="Expected Keras image augmentation layers"):
        Augmentation([keras.layers.Dense(3)])


def test_distiller_with_augment_round_trips(tmp_path):
    teacher, student = _model("teacher"), _model("student")
    distiller = keras_kd.Distiller(student, teacher, augment=[keras.layers.RandomFlip()],
                                   augment_seed=9)
    distiller.compile(optimizer="adam")
    path = str(tmp_path / "d.keras")
    distiller.save(path)
    again = keras.saving.load_model(path)
    assert again.augment_seed == 9
    assert [type(l).__name__ for l in again.augment.layers] == ["RandomFlip"]
