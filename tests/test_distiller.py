"""Distiller: logged values and gradients against hand computations; teacher frozen; errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, D, N, X, Y, clone, kl_np, make_student, make_teacher, sparse_ce_np

import keras_kd as kd

def hand_logs(teacher, student, x, y, alpha, t, w=None):
    """What every logged value must be, from NumPy formulas."""
    t_logits = teacher(x, training=False).numpy()
    s_logits = student(x, training=False).numpy()
    w = np.ones(len(x)) if w is None else w
    hard = (w * sparse_ce_np(y, s_logits)).sum() / len(x)
    soft = (w * kl_np(t_logits, s_logits, t)).sum() / len(x)
    return {
        "loss": alpha * hard + (1 - alpha) * soft,
        "hard_loss": hard,
        "distillation_loss": soft,
        "accuracy": np.mean(np.argmax(s_logits, -1) == y),
    }


def tf_reference_gradient(teacher, student, x, y, alpha, t):
    """Gradient of the same objective written independently with tf.nn ops."""
    t_logits = teacher(x, training=False)
    with tf.GradientTape() as tape:
        s_logits = student(x, training=True)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(y, s_logits)
        p = tf.nn.softmax(t_logits / t)
        soft = t**2 * tf.reduce_sum(p * (tf.math.log(p) - tf.nn.log_softmax(s_logits / t)), -1)
        loss = tf.reduce_mean(alpha * hard + (1 - alpha) * soft)
    return tape.gradient(loss, student.trainable_variables)


def assert_logs(history, expected, rtol=1e-5):
    for key, value in expected.items():
        np.testing.assert_allclose(history[key][-1], value, rtol=rtol, err_msg=key)


def test_one_step_logs_and_weights_equal_hand_computation():
    teacher, student = make_teacher(), make_student()
    reference = clone(student)
    alpha, t, lr = 0.3, 2.5, 0.1
    distiller = kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(lr), metrics=["accuracy"], alpha=alpha,
                      temperature=t)
    history = distiller.fit(X, Y, batch_size=N, epochs=1, shuffle=False, verbose=0).history
    assert_logs(history, hand_logs(teacher, reference, X, Y, alpha, t))
    grads = tf_reference_gradient(teacher, reference, X, Y, alpha, t)
    for var, ref, g in zip(student.trainable_variables, reference.trainable_variables, grads):
        np.testing.assert_allclose(var.numpy(), ref.numpy() - lr * g.numpy(), atol=1e-6)


def test_epoch_logs_average_uneven_batches_by_example():
    # lr = 0 keeps the student fixed, so the epoch value is the mean over all 40 examples
    # even though the batches are 32 + 8.
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], alpha=0.6,
                      temperature=3.0)
    history = distiller.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    assert_logs(history, hand_logs(teacher, student, X, Y, 0.6, 3.0))
    evaluated = distiller.evaluate(X, Y, batch_size=7, verbose=0, return_dict=True)
    assert_logs({k: [v] for k, v in evaluated.items()}, hand_logs(teacher, student, X, Y, 0.6, 3.0))


def test_sample_weight_is_honoured():
    teacher, student = make_teacher(), make_student()
    w = np.random.default_rng(3).uniform(0, 2, size=N).astype("float32")
    w[:5] = 0.0
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.25, temperature=4.0)
    history = distiller.fit(X, Y, sample_weight=w, batch_size=N, epochs=1, verbose=0).history
    expected = hand_logs(teacher, student, X, Y, 0.25, 4.0, w)
    del expected["accuracy"]
    assert_logs(history, expected)


def test_one_hot_labels_give_the_same_losses_as_sparse():
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["categorical_accuracy"])
    one_hot = keras.utils.to_categorical(Y, C)
    logs = distiller.evaluate(X, one_hot, verbose=0, return_dict=True)
    expected = hand_logs(teacher, student, X, Y, 0.1, 4.0)
    np.testing.assert_allclose(logs["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(logs["categorical_accuracy"], expected["accuracy"], rtol=1e-6)


def test_labels_of_the_wrong_shape_fail_clearly():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    distiller.compile()
    with pytest.raises(ValueError, match=r"`y`.*match neither"):
        distiller.fit(X, np.zeros((N, C + 3), "float32"), verbose=0)


def test_teacher_frozen_and_each_model_runs_once_per_step():
    teacher, student = make_teacher(counter=True), make_student(counter=True)
    before = [w.copy() for w in teacher.get_weights()]  # includes BN moving mean/variance
    teacher_calls = teacher.layers[1].calls.numpy()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(X, Y, batch_size=8, epochs=3, verbose=0)  # 5 steps per epoch
    assert not teacher.trainable
    for w_before, w_after in zip(before, teacher.get_weights()):
        if w_before.shape:  # every teacher weight except the call counter
            np.testing.assert_array_equal(w_before, w_after)
    # 15 steps, plus the one eager call of each model that checks the first batch
    assert teacher.layers[1].calls.numpy() - teacher_calls == 15 + 1
    assert student.layers[1].calls.numpy() == 15 + 1
    assert len(distiller.trainable_variables) == len(student.trainable_variables)


def test_tf_data_input_equals_numpy_input():
    teacher, student = make_teacher(), make_student()
    twin = clone(student)
    results = []
    for s in (student, twin):
        keras.utils.set_random_seed(0)
        distiller = kd.Distiller(s, teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(0.05), metrics=["accuracy"])
        if s is student:
            h = distiller.fit(X, Y, batch_size=10, epochs=2, shuffle=False, verbose=0)
        else:
            ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(10)
            h = distiller.fit(ds, epochs=2, verbose=0)
        results.append(h.history)
    for key in results[0]:
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-5)
    for a, b in zip(student.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_huge_teacher_logits_keep_training_finite():
    teacher = make_teacher(train=False)
    last = teacher.layers[-1]
    last.set_weights([last.get_weights()[0] * 1e5, last.get_weights()[1]])
    assert np.abs(teacher.predict(X, verbose=0)).max() > 1e4
    student = make_student()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer="sgd", temperature=0.5)
    history = distiller.fit(X, Y, batch_size=N, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in student.get_weights())


def test_call_predict_use_the_student():
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher)
    np.testing.assert_allclose(distiller.predict(X, verbose=0), student.predict(X, verbose=0))
    np.testing.assert_allclose(distiller(X), student(X))


def test_teacher_ensemble_averages_logits_or_probabilities():
    a, b = make_teacher(), make_teacher()
    la, lb = a.predict(X, verbose=0), b.predict(X, verbose=0)
    ens = kd.TeacherEnsemble([a, b], weights=[3, 1])
    np.testing.assert_allclose(ens(X), 0.75 * la + 0.25 * lb, rtol=1e-5, atol=1e-6)
    probs = kd.TeacherEnsemble([a, b], mode="probabilities")
    sm = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(np.exp(probs(X)), (sm(la) + sm(lb)) / 2, rtol=1e-5, atol=1e-7)
    distiller = kd.Distiller(make_student(), [a, b])
    assert isinstance(distiller.teacher, kd.TeacherEnsemble)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ens))
    assert restored.ensemble_weights == [0.75, 0.25] and restored.mode == "logits"
    restored.set_weights(ens.get_weights())  # a config holds no weights, as in Keras
    np.testing.assert_allclose(restored(X), ens(X), rtol=1e-6)


# ------------------------------------------------------------------ argument errors
def test_softmax_outputs_are_refused():
    inputs = keras.Input((D,))
    soft = keras.Model(inputs, keras.layers.Dense(C, activation="softmax")(inputs))
    with pytest.raises(ValueError, match=r"`student`.*applies a softmax"):
        kd.Distiller(soft, make_teacher(train=False))


def test_unbuilt_teacher_is_refused():
    with pytest.raises(ValueError, match=r"`teacher`.*not built"):
        kd.Distiller(make_student(), keras.Sequential([keras.layers.Dense(C)]))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"alpha": 1.5}, r"argument `alpha`.*\[0, 1\].*Received: alpha=1.5"),
        ({"temperature": -1}, r"argument `temperature`.*Received: temperature=-1"),
        ({"loss": "mse"}, r"`loss`.*student_loss_fn"),
        ({"student_loss_fn": "mse"}, r"`student_loss_fn`.*sparse_categorical_crossentropy"),
        ({"distillation_loss_fn": "kl"}, r"`distillation_loss_fn`.*kl_divergence"),
        (
            {"distillation_loss_fn": kd.losses.KLDivergence(temperature=2.0), "temperature": 3.0},
            r"`temperature`.*has temperature=2.0.*Received: temperature=3.0",
        ),
    ],
)
def test_invalid_compile_arguments_are_named(kwargs, pattern):
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    with pytest.raises(ValueError, match=pattern):
        distiller.compile(**kwargs)


def test_temperature_resolution():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    distiller.compile()
    assert distiller.distillation_loss_fn.temperature == 4.0
    distiller.compile(distillation_loss_fn=kd.losses.KLDivergence(temperature=9.0))
    assert distiller.temperature == 9.0
    distiller.compile(distillation_loss_fn="soft_target_crossentropy", temperature=2.0)
    assert distiller.distillation_loss_fn.temperature == 2.0


@pytest.mark.parametrize(
    "loss_fn,oracle",
    [
        ("soft_target_crossentropy", None),
        (kd.losses.LogitsMSE(), lambda t, s: ((s - t) ** 2).mean(-1)),
        (lambda t, s: tf.reduce_sum(tf.abs(t - s), -1), lambda t, s: np.abs(t - s).sum(-1)),
    ],
)
def test_other_distillation_losses_are_logged_exactly(loss_fn, oracle):
    teacher, student = make_teacher(), make_student()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), distillation_loss_fn=loss_fn, alpha=0.5,
                      temperature=2.0)
    logs = distiller.evaluate(X, Y, verbose=0, return_dict=True)
    t, s = teacher.predict(X, verbose=0), student.predict(X, verbose=0)
    if oracle is None:
        lp = lambda z: z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))  # noqa: E731
        expected = -(4.0 * np.exp(lp(t / 2)) * lp(s / 2)).sum(-1).mean()
    else:
        expected = oracle(t, s).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 0.5 * expected + 0.5 * logs["hard_loss"], rtol=1e-5)


def test_scalar_distillation_loss_is_refused():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    distiller.compile(distillation_loss_fn=lambda t, s: tf.reduce_mean(t - s))
    with pytest.raises(ValueError, match="one loss value per example"):
        distiller.evaluate(X, Y, verbose=0)


def test_student_regularization_losses_are_included():
    teacher = make_teacher()
    inputs = keras.Input((D,))
    student = keras.Model(
        inputs, keras.layers.Dense(C, kernel_regularizer=keras.regularizers.L2(0.5))(inputs)
    )
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.2, temperature=2.0)
    logs = distiller.evaluate(X, Y, verbose=0, return_dict=True)
    penalty = 0.5 * np.sum(student.layers[-1].kernel.numpy() ** 2)
    expected = hand_logs(teacher, student, X, Y, 0.2, 2.0)["loss"] + penalty
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


@pytest.mark.parametrize("on_disk", [False, True])
def test_cached_teacher_logits_train_exactly_like_the_live_teacher(tmp_path, on_disk):
    teacher, student = make_teacher(counter=True), make_student()
    twin = clone(student)
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    histories = []
    for s, data in ((student, ds), (twin, None)):
        distiller = kd.Distiller(s, teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"], alpha=0.3,
                          temperature=2.0)
        if data is None:
            calls = teacher.layers[1].calls.numpy()
            data = kd.teachers.cache_logits(teacher, ds, path=tmp_path / "c" if on_disk else None)
            after_cache = teacher.layers[1].calls.numpy()
            assert after_cache > calls  # the teacher ran once, for the cache...
        histories.append(distiller.fit(data, epochs=3, verbose=0).history)
    assert teacher.layers[1].calls.numpy() == after_cache  # ...and never while training on it
    for key in histories[0]:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5, err_msg=key)
    for a, b in zip(student.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert distiller.predict(data, verbose=0).shape == (N, C)


def test_caching_a_random_pipeline_is_refused():
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(N).batch(8)
    with pytest.raises(ValueError, match="different data on each pass"):
        kd.teachers.cache_logits(make_teacher(train=False), ds)
    noisy = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8).map(
        lambda x, y: (x + tf.random.normal(tf.shape(x)), y)
    )
    with pytest.raises(ValueError, match="different data on each pass"):
        kd.teachers.cache_logits(make_teacher(train=False), noisy)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_losses_stay_float32_and_exact(policy):
    teacher = make_teacher()
    try:
        assert kd.precision.enable(policy) == policy
        student = make_student()
        assert student.layers[-1].compute_dtype != "float32"
        distiller = kd.Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], alpha=0.4,
                          temperature=3.0)
        if policy == "mixed_float16":  # Keras wraps the optimizer; the Distiller's step uses it
            assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
        history = distiller.fit(X, Y, batch_size=N, epochs=1, verbose=0).history
        expected = hand_logs(teacher, student, X, Y, 0.4, 3.0)  # from the same low-precision logits
        assert_logs(history, expected, rtol=1e-4)
        distiller.compile(optimizer="adam")
        losses = distiller.fit(X, Y, batch_size=8, epochs=4, verbose=0).history["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_recommended_policy_follows_the_hardware(tmp_path, monkeypatch):
    from keras_kd import precision

    flags = tmp_path / "cpuinfo"
    flags.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert precision._cpu_has_bf16(str(flags)) is False
    flags.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert precision._cpu_has_bf16(str(flags)) is True
    flags.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert precision._cpu_has_bf16(str(flags)) is True
    assert precision._cpu_has_bf16(str(tmp_path / "absent")) is False
    # This machine: no GPU, and bf16 exactly when /proc/cpuinfo lists it.
    cpuinfo = open("/proc/cpuinfo").read()
    has_bf16 = "avx512_bf16" in cpuinfo or "amx_bf16" in cpuinfo
    assert precision.recommended_policy() == ("mixed_bfloat16" if has_bf16 else "float32")
    for bf16, gpus, expected in ((False, [], "float32"), (True, [], "mixed_bfloat16"),
                                 (True, ["GPU:0"], "mixed_float16")):
        monkeypatch.setattr(precision, "_cpu_has_bf16", lambda bf16=bf16: bf16)
        monkeypatch.setattr(tf.config, "list_physical_devices",
                            lambda kind=None, gpus=gpus: gpus if kind == "GPU" else [])
        assert precision.recommended_policy() == expected


def test_precision_policy_names():
    with pytest.raises(ValueError, match=r"argument `policy`.*Received: policy='fp8'"):
        kd.precision.enable("fp8")


def test_steps_per_execution_auto_and_validation():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    distiller.compile()
    assert distiller.steps_per_execution == 64
    distiller.compile(run_eagerly=True)
    assert distiller.steps_per_execution == 1
    with pytest.raises(ValueError, match=r"`steps_per_execution`.*Received: steps_per_execution=0"):
        distiller.compile(steps_per_execution=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        distributed = kd.Distiller(make_student(), make_teacher(train=False))
        distributed.compile()
        assert distributed.steps_per_execution == 1
        with pytest.warns(UserWarning, match="multi-step loop fails under MirroredStrategy"):
            distributed.compile(steps_per_execution=8)
