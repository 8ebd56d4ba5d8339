"""Distillation terms: FitNets hints with adapters, attention transfer, composed objectives.

Every value and gradient against NumPy; each model runs once per step; adapters are trained
and never part of the student; identical teachers in an ensemble equal one teacher.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, CallCounter, clone, kl_np, sparse_ce_np

import keras_kd as kd
from keras_kd import features, objective, terms

RNG = np.random.default_rng(11)
N = 16
XI = RNG.uniform(0, 1, size=(N, 8, 8, 3)).astype("float32")
YI = RNG.integers(0, C, size=N).astype("int64")


def conv_teacher(counter=False):
    inputs = keras.Input((8, 8, 3))
    h = CallCounter(name="counter")(inputs) if counter else inputs
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="t1")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="t2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="t_pool")(h)
    return keras.Model(inputs, keras.layers.Dense(C, name="t_logits")(h), name="teacher")


def conv_student(counter=False):
    inputs = keras.Input((8, 8, 3))
    h = CallCounter(name="counter")(inputs) if counter else inputs
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="s1")(h)
    h = keras.layers.MaxPooling2D(name="s_max")(h)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="s_pool")(h)
    return keras.Model(inputs, keras.layers.Dense(C, name="s_logits")(h), name="student")


def feature(model, name, x=XI):
    return keras.Model(model.inputs[0], model.get_layer(name).output)(x).numpy().astype("float64")


def pool_np(f, k):
    n, h, w, c = f.shape
    return f.reshape(n, h // k, k, w // k, k, c).mean((2, 4))


def attention_np(f, p=2.0):
    q = (np.abs(f) ** p).mean(-1).reshape(len(f), -1)
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)


def at_np(fs, ft, p=2.0):
    if fs.shape[1] > ft.shape[1]:
        fs = pool_np(fs, fs.shape[1] // ft.shape[1])
    elif ft.shape[1] > fs.shape[1]:
        ft = pool_np(ft, ft.shape[1] // fs.shape[1])
    return ((attention_np(fs, p) - attention_np(ft, p)) ** 2).mean(-1)


def adapter_np(adapter, f):
    kernel = adapter.projection.kernel.numpy().astype("float64")
    out = f @ kernel.reshape(kernel.shape[-2], kernel.shape[-1])
    return out + adapter.projection.bias.numpy()


def hint_np(adapter, fs, ft):
    a = adapter_np(adapter, fs) if adapter is not None else fs
    return ((a - ft) ** 2).reshape(len(fs), -1).mean(-1)


# --------------------------------------------------------------------------- values
def test_every_logged_term_equals_a_hand_computation():
    teacher, student = conv_teacher(), conv_student()
    term_list = [
        terms.Logits(),
        terms.Hint("t2", "s2", weight=0.5),
        terms.Hint("t_pool", "s_pool", weight=0.1, name="hint_vector"),
        terms.AttentionTransfer([("t1", "s1"), ("t1", "s2")], weight=100.0),
    ]
    distiller = kd.Distiller(student, teacher, terms=term_list)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.3, temperature=2.0)
    logs = distiller.evaluate(XI, YI, verbose=0, return_dict=True)
    t_logits, s_logits = teacher(XI).numpy(), student(XI).numpy()
    hard = sparse_ce_np(YI, s_logits).mean()
    expected = {
        "hard_loss": hard,
        "kd_loss": kl_np(t_logits, s_logits, 2.0).mean(),
        "hint_loss": hint_np(term_list[1].adapter, feature(student, "s2"), feature(teacher, "t2")).mean(),
        "hint_vector": hint_np(term_list[2].adapter, feature(student, "s_pool"),
                               feature(teacher, "t_pool")).mean(),
        "at_loss": (at_np(feature(student, "s1"), feature(teacher, "t1"))
                    + at_np(feature(student, "s2"), feature(teacher, "t1"))).mean(),
    }
    expected["loss"] = (0.3 * hard + 0.7 * expected["kd_loss"] + 0.5 * expected["hint_loss"]
                        + 0.1 * expected["hint_vector"] + 100.0 * expected["at_loss"])
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=1e-4, err_msg=key)
    assert "distillation_loss" not in logs


def test_adapter_shapes():
    teacher, student = conv_teacher(), conv_student()
    conv, dense, resized = (terms.Hint("t2", "s2"), terms.Hint("t_pool", "s_pool", name="h2"),
                            terms.Hint("t1", "s2", name="h3"))
    same = terms.Hint("t2", "t2", name="h4")
    kd.Distiller(student, teacher, terms=[conv, dense, resized])
    assert isinstance(conv.adapter.projection, keras.layers.Conv2D)
    assert tuple(conv.adapter.projection.kernel.shape) == (1, 1, 4, 8)
    assert tuple(dense.adapter.projection.kernel.shape) == (4, 8)
    fs = keras.Model(student.inputs[0], student.get_layer("s2").output)(XI)
    assert tuple(resized.adapter(fs).shape) == (N, 8, 8, 6)  # 4x4 resized to 8x8, 4 -> 6 channels
    kd.Distiller(clone(teacher), teacher, terms=[same])
    assert same.adapter is None  # equal shapes: no adapter
    with pytest.raises(ValueError, match=r"outputs \(4, 4, 8\).*outputs \(4, 4, 4\).*adapter"):
        kd.Distiller(conv_student(), teacher, terms=[terms.Hint("t2", "s2", adapter=False)])


def test_attention_value_and_gradient_match_numpy():
    ft = RNG.normal(size=(3, 8, 8, 5)).astype("float32")
    fs = RNG.normal(size=(3, 4, 4, 2)).astype("float32")
    term = terms.AttentionTransfer(("t", "s"))
    var = tf.Variable(fs)
    with tf.GradientTape() as tape:
        values = term.per_example({"t": tf.constant(ft)}, {"s": var}, None)
        total = tf.reduce_sum(values)
    np.testing.assert_allclose(values, at_np(fs.astype("float64"), ft.astype("float64")), rtol=1e-5)
    grad = tape.gradient(total, var).numpy()
    numeric = np.zeros(fs.shape)
    for i in np.ndindex(fs.shape):
        up, down = fs.astype("float64"), fs.astype("float64")
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric[i] = (at_np(up, ft.astype("float64")).sum() - at_np(down, ft.astype("float64")).sum()) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-6)


def test_hint_step_trains_adapter_and_student_with_the_hand_gradient():
    teacher, student = conv_teacher(), conv_student()
    hint = terms.Hint("t2", "s2", weight=2.0)
    distiller = kd.Distiller(student, teacher, terms=[hint])
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.0)
    kernel = hint.adapter.projection.kernel.numpy().reshape(4, 8).astype("float64")
    bias = hint.adapter.projection.bias.numpy().astype("float64")
    fs, ft = feature(student, "s2"), feature(teacher, "t2")
    residual = fs @ kernel + bias - ft  # (N, 4, 4, 8)
    scale = 2.0 * 2.0 / (N * residual[0].size)  # weight * d(mean of squares) / N examples
    grad_kernel = scale * np.einsum("nhwi,nhwo->io", fs, residual)
    grad_bias = scale * residual.sum((0, 1, 2))
    distiller.fit(XI, YI, batch_size=N, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(hint.adapter.projection.kernel.numpy().reshape(4, 8),
                               kernel - 0.1 * grad_kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(hint.adapter.projection.bias.numpy(), bias - 0.1 * grad_bias,
                               rtol=1e-4, atol=1e-6)
    ids = {id(v) for v in distiller.trained_variables}
    assert all(id(v) in ids for v in hint.adapter.trainable_variables)


def test_each_model_runs_once_per_step_with_hints_and_attention():
    teacher, student = conv_teacher(counter=True), conv_student(counter=True)
    distiller = kd.Distiller(student, teacher, terms=[
        terms.Logits(), terms.Hint("t2", "s2"), terms.AttentionTransfer(("t1", "s1"))])
    distiller.compile(optimizer="adam")
    distiller.fit(XI, YI, batch_size=8, epochs=3, verbose=0)  # 2 steps per epoch
    # 6 steps, plus the one eager pass of the first batch that checks the inputs
    assert teacher.get_layer("counter").calls.numpy() == 6 + 1
    assert student.get_layer("counter").calls.numpy() == 6 + 1


def test_adapters_absent_from_saved_and_exported_student(tmp_path):
    teacher, student = conv_teacher(), conv_student()
    reference_params = conv_student().count_params()
    distiller = kd.Distiller(student, teacher, terms=[terms.Logits(), terms.Hint("t2", "s2")])
    distiller.compile(optimizer="adam")
    distiller.fit(XI, YI, epochs=1, verbose=0)
    assert distiller.objective.terms[1].adapter.count_params() == 4 * 8 + 8
    student.save(tmp_path / "student.keras")
    restored = keras.saving.load_model(tmp_path / "student.keras")
    assert restored.count_params() == reference_params == distiller.student.count_params()
    assert not any("adapter" in layer.name for layer in restored.layers)
    assert len(restored.outputs) == 1
    np.testing.assert_allclose(restored(XI), student(XI), rtol=1e-6)
    flatbuffer = kd.export.convert(student)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    assert len(interpreter.get_output_details()) == 1
    assert tuple(interpreter.get_output_details()[0]["shape"][1:]) == (C,)
    weights = sum(int(np.prod(d["shape"])) for d in interpreter.get_tensor_details()
                  if d["shape"].size and d["name"].lower().count("adapter"))
    assert weights == 0


# ----------------------------------------------------------------- composition
def test_logits_term_is_exactly_the_classic_objective():
    teacher, student = conv_teacher(), conv_student()
    twin = clone(student)
    histories = []
    for s, term_list in ((student, None), (twin, [terms.Logits()])):
        distiller = kd.Distiller(s, teacher, terms=term_list)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.4, temperature=3.0)
        histories.append(distiller.fit(XI, YI, batch_size=8, epochs=2, shuffle=False,
                                       verbose=0).history)
    np.testing.assert_allclose(histories[0]["distillation_loss"], histories[1]["kd_loss"], rtol=1e-6)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-6)
    for a, b in zip(student.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("mode", ["logits", "probabilities"])
def test_identical_teachers_in_an_ensemble_equal_one_teacher(mode):
    teacher, student = conv_teacher(), conv_student()
    twin = clone(student)
    histories = []
    for s, t in ((student, teacher), (twin, kd.TeacherEnsemble([teacher, clone(teacher)],
                                                               weights=[2, 1], mode=mode))):
        distiller = kd.Distiller(s, t)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.2, temperature=2.0)
        histories.append(distiller.fit(XI, YI, batch_size=8, epochs=2, shuffle=False,
                                       verbose=0).history)
    for key in histories[0]:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5, err_msg=key)
    for a, b in zip(student.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_teacher_preprocessing_runs_before_the_teacher_only():
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="big")(inputs)
    big_teacher = keras.Model(
        inputs, keras.layers.Dense(C)(keras.layers.GlobalAveragePooling2D()(h)))
    student = conv_student()
    resize = keras.layers.Resizing(16, 16)
    distiller = kd.Distiller(student, big_teacher, teacher_preprocessing=resize)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.5, temperature=2.0)
    logs = distiller.evaluate(XI, YI, verbose=0, return_dict=True)
    t_logits = big_teacher(tf.image.resize(XI, (16, 16))).numpy()
    expected = kl_np(t_logits, student(XI).numpy(), 2.0).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)
    distiller.fit(XI, YI, epochs=1, verbose=0)  # and in train_step


# ------------------------------------------------------------------- errors
def test_subclassed_and_unknown_layers_are_explained():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(C)

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    sub = Sub()
    sub(XI)
    with pytest.raises(ValueError, match=r"`student`.*subclassed.*Functional API"):
        kd.Distiller(sub, conv_teacher(), terms=[terms.Hint("t2", "anything")])
    with pytest.raises(ValueError, match=r"no layer named 'nope'. Available layers: .*'s1'"):
        kd.Distiller(conv_student(), conv_teacher(), terms=[terms.Hint("t2", "nope")])
    with pytest.raises(ValueError, match=r"must be unique"):
        kd.Distiller(conv_student(), conv_teacher(), terms=[terms.Logits(), terms.Logits()])
    with pytest.raises(ValueError, match=r"pass the logits loss as a term"):
        kd.Distiller(conv_student(), conv_teacher(), terms=[terms.Logits()]).compile(
            distillation_loss_fn="kl_divergence")
    sub_distiller = kd.Distiller(sub, conv_teacher())  # logits only: subclassed is fine
    sub_distiller.compile(optimizer="sgd")
    sub_distiller.evaluate(XI, YI, verbose=0)


def test_sequential_models_give_features():
    student = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, strides=2, padding="same", name="seq_feat"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(C),
    ])
    teacher = conv_teacher()
    distiller = kd.Distiller(student, teacher, terms=[terms.Hint("t2", "seq_feat")])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.0)
    logs = distiller.evaluate(XI, YI, verbose=0, return_dict=True)
    expected = hint_np(None, feature(student, "seq_feat"), feature(teacher, "t2")).mean()
    np.testing.assert_allclose(logs["hint_loss"], expected, rtol=1e-5)


# ------------------------------------------------------------- serialization
@pytest.mark.parametrize("obj", [
    terms.Logits(kd.losses.SoftTargetCrossEntropy(), weight=0.5, temperature=3.0, name="soft"),
    terms.dkd(),
    terms.Hint("a", "b", weight=3.0, adapter=True, warmup_epochs=2),
    terms.AttentionTransfer([("a", "b"), ("c", "d")], p=4.0, weight=10.0),
    features.Adapter((4, 4, 8), use_bias=False),
])
def test_serialization_round_trip(obj):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()


def test_distiller_with_terms_saves_and_loads(tmp_path):
    teacher, student = conv_teacher(), conv_student()
    distiller = kd.Distiller(student, teacher, terms=[
        terms.Logits(), terms.Hint("t2", "s2", weight=0.5), terms.AttentionTransfer(("t1", "s1"))],
        teacher_preprocessing=keras.layers.Rescaling(1.0))
    distiller.compile(optimizer="adam", alpha=0.2, temperature=3.0)
    distiller.fit(XI, YI, epochs=1, verbose=0)
    distiller.save(tmp_path / "d.keras")
    restored = keras.saving.load_model(tmp_path / "d.keras")
    assert [t.name for t in restored.objective.terms] == ["kd_loss", "hint_loss", "at_loss"]
    a = distiller.evaluate(XI, YI, verbose=0, return_dict=True)
    b = restored.evaluate(XI, YI, verbose=0, return_dict=True)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)


def test_objective_round_trip_keeps_terms_and_alpha():
    obj = objective.Objective([terms.Logits(), terms.Hint("a", "b", weight=2.0)], alpha=0.25)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert restored.names == ["kd_loss", "hint_loss"] and float(restored.alpha.numpy()) == 0.25
    assert restored.terms[1].get_config() == obj.terms[1].get_config()


def test_terms_under_mirrored_strategy_equal_one_device():
    teacher, student = conv_teacher(), conv_student()
    results = []
    # ReductionToOneDevice: no collective ops, whose instance keys TensorFlow caches per
    # process (another test's MirroredStrategy with other shapes would collide with them).
    mirrored = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"), mirrored):
        with strategy.scope():
            t, s = conv_teacher(), conv_student()
            t.set_weights(teacher.get_weights())
            s.set_weights(student.get_weights())
            hint = terms.Hint("t2", "s2", weight=0.5)
            distiller = kd.Distiller(s, t, terms=[
                terms.Logits(), hint, terms.AttentionTransfer(("t1", "s1"), weight=10.0)])
            if results:  # same adapter initial weights as the one-device run
                hint.adapter.set_weights(results[0][2])
            hint_init = hint.adapter.get_weights()
            distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.3, temperature=2.0)
        history = distiller.fit(XI, YI, batch_size=8, epochs=2, shuffle=False, verbose=0).history
        results.append((history, s.get_weights() + hint.adapter.get_weights(), hint_init))
    (single, single_w, _), (multi, multi_w, _) = results
    for key in ("loss", "hard_loss", "kd_loss", "hint_loss", "at_loss"):
        np.testing.assert_allclose(multi[key], single[key], rtol=1e-5, err_msg=key)
    for a, b in zip(single_w, multi_w):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_per_member_temperature_divides_that_members_logits():
    a, b = conv_teacher(), conv_teacher()
    za, zb = a(XI).numpy(), b(XI).numpy()
    ensemble = kd.TeacherEnsemble([kd.ensemble.with_temperature(a, 2.0), b], weights=[3, 1])
    np.testing.assert_allclose(ensemble(XI), 0.75 * za / 2.0 + 0.25 * zb, rtol=1e-5, atol=1e-6)
    assert kd.ensemble.with_temperature(a, 1.0) is a
    assert ensemble.teachers[0].count_params() == a.count_params()  # no new weights
    distiller = kd.Distiller(conv_student(), ensemble)
    distiller.compile(optimizer="sgd")
    distiller.fit(XI, YI, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"argument `temperature`"):
        kd.ensemble.with_temperature(a, 0.0)
