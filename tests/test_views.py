"""Replayed augmentation views: stored teacher outputs, views recomputed bit for bit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from helpers import Spy
from keras_kd import views as views_lib


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 3)).astype("uint8"), rng.integers(0, 4, n)


def _model(name, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x), name=name)


def _augment():
    return [keras.layers.RandomTranslation(0.25, 0.25, fill_mode="reflect"),
            keras.layers.RandomFlip("horizontal"), keras.layers.MixUp(alpha=0.4)]


def test_stored_logits_are_the_teachers_outputs_on_the_replayed_views():
    x, y = _data()
    teacher = _model("teacher", 1)
    views = views_lib.cache_views(teacher, (x, y), _augment(), epochs=2, batch_size=16, seed=3)
    assert views.logits.shape == (2, 40, 4) and views.steps_per_epoch == 3
    batches = list(views.dataset(epochs=2))
    assert len(batches) == 6
    plain = list(views.dataset(teacher_logits=False, augmented=True, epochs=2))
    for (features, labels), (view, mixed) in zip(batches, plain):
        # recompute the view from its seed, as the Distiller does, and run the teacher on it
        again, again_labels = views.augment(features["inputs"], labels, seed=features["view_seed"])
        np.testing.assert_array_equal(again, view)          # bit-identical views
        np.testing.assert_array_equal(again_labels, mixed)  # MixUp partners and weights too
        np.testing.assert_allclose(features["teacher_logits"], teacher(view), rtol=1e-5,
                                   atol=1e-5)
    # every example appears once per epoch, in another order each epoch
    firsts = [b[0]["inputs"].numpy() for b in batches]
    assert not np.array_equal(firsts[0], firsts[3])


def test_distiller_on_replayed_views_sees_the_views_the_teacher_saw():
    x, y = _data()
    teacher = _model("teacher", 1)
    augment = _augment()
    views = views_lib.cache_views(teacher, (x, y), augment, epochs=1, batch_size=16, seed=3)
    student = Spy(_model("student", 2))
    student(np.zeros((1, 8, 8, 3), "float32"))
    student.seen.clear()
    distiller = keras_kd.Distiller(student, teacher, augment=views.augment)
    distiller.compile(optimizer="sgd", run_eagerly=True, alpha=0.0)
    distiller.fit(views.dataset(), steps_per_epoch=views.steps_per_epoch, epochs=1, verbose=0)
    plain = [v.numpy() for v, _ in views.dataset(teacher_logits=False, augmented=True, epochs=1)]
    assert len(student.seen) == 4  # the first-batch input check, then three steps
    for seen, view in zip(student.seen[1:], plain):
        np.testing.assert_array_equal(seen, view)


def test_replayed_training_equals_live_consistent_training():
    """Same views, same initial weights: stored and live teacher give the same student."""
    x, y = _data()
    teacher = _model("teacher", 1)
    views = views_lib.cache_views(teacher, (x, y), _augment()[:2], epochs=2, batch_size=16, seed=3)
    weights = []
    for logits in (True, False):
        student = _model("student", 2)
        distiller = keras_kd.Distiller(student, teacher, augment=views.augment)
        distiller.compile(optimizer="sgd", alpha=0.3)
        distiller.fit(views.dataset(teacher_logits=logits), epochs=2,
                      steps_per_epoch=views.steps_per_epoch, verbose=0)
        weights.append(student.get_weights())
        assert int(distiller.optimizer.iterations) == 2 * views.steps_per_epoch
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_disk_cache_reused_and_stale_cache_refused(tmp_path):
    x, y = _data()
    teacher = _model("teacher", 1)
    path = str(tmp_path / "views.npz")
    first = views_lib.cache_views(teacher, (x, y), _augment(), epochs=1, batch_size=16,
                                  dtype="float16", path=path)
    again = views_lib.cache_views(teacher, (x, y), _augment(), epochs=1, batch_size=16,
                                  dtype="float16", path=path)
    np.testing.assert_array_equal(first.logits, again.logits)
    assert first.logits.dtype == np.float16
    other_teacher = _model("teacher", 5)
    with pytest.raises(ValueError, match="other teacher"):
        views_lib.cache_views(other_teacher, (x, y), _augment(), epochs=1, batch_size=16,
                              dtype="float16", path=path)
    with pytest.raises(ValueError, match="other data"):
        views_lib.cache_views(teacher, (x[::-1], y[::-1]), _augment(), epochs=1, batch_size=16,
                              dtype="float16", path=path)


def test_epochs_past_the_stored_ones_replay_them_cyclically_in_every_mode():
    x, y = _data()
    views = views_lib.cache_views(_model("teacher", 1), (x, y), _augment(), epochs=2,
                                  batch_size=16, seed=3)
    for kwargs in ({}, {"teacher_logits": False}, {"augmented": True}):
        ds = views.dataset(epochs=5, **kwargs)
        assert ds.options().autotune.enabled is False  # data.prefetched: no epoch-end wait
        batches = list(ds)
        assert len(batches) == 5 * views.steps_per_epoch
        flat = [np.concatenate([np.ravel(t) for t in tf.nest.flatten(b)]) for b in batches]
        for k in range(2, 5):
            stored = k % 2
            for b in range(views.steps_per_epoch):
                np.testing.assert_array_equal(flat[k * 3 + b], flat[stored * 3 + b])
