"""Issue 9, "Found" list: one test per item, each failing on the code before its fix."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import C, D, N, X, Y, clone, kl_np, log_softmax_np, make_student, make_teacher
from test_distiller import hand_logs

import keras_kd as kd
from keras_kd import workflows


def softmax_np(z):
    return np.exp(log_softmax_np(np.asarray(z, "float64")))


def evaluate(distiller, x, y=None, **kwargs):
    return distiller.evaluate(x, y, batch_size=N, verbose=0, return_dict=True, **kwargs)


def frozen(student, teacher, **compile_kwargs):
    """A Distiller with learning rate 0: its logs are the losses of the given models."""
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), **compile_kwargs)
    return distiller


# ------------------------------------------------------------------ 1: Keras probability losses
@pytest.mark.parametrize("t", [1.0, 4.0])
def test_found01_keras_kldivergence_is_softened_at_the_temperature(t):
    teacher, student = make_teacher(), make_student()
    logs = evaluate(frozen(student, teacher, alpha=0.0, temperature=t,
                           distillation_loss_fn=keras.losses.KLDivergence()), X, Y)
    t_logits, s_logits = teacher.predict(X, verbose=0), student.predict(X, verbose=0)
    # The softened probabilities of these logits are all > 1e-7: Keras' clip does not act.
    assert softmax_np(t_logits / t).min() > 1e-7 and softmax_np(s_logits / t).min() > 1e-7
    np.testing.assert_allclose(logs["distillation_loss"], kl_np(t_logits, s_logits, t).mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], logs["distillation_loss"], rtol=1e-6)


def test_found01_keras_categorical_crossentropy_is_soft_target_crossentropy():
    teacher, student = make_teacher(), make_student()
    t_logits, s_logits = teacher.predict(X, verbose=0), student.predict(X, verbose=0)
    p = softmax_np(t_logits / 3.0)
    expected = -(9.0 * p * log_softmax_np(s_logits / 3.0)).sum(-1).mean()
    for loss in (keras.losses.CategoricalCrossentropy(), keras.losses.categorical_crossentropy,
                 keras.losses.CategoricalCrossentropy(from_logits=True)):
        logs = evaluate(frozen(student, teacher, alpha=0.0, temperature=3.0,
                               distillation_loss_fn=loss), X, Y)
        np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5, err_msg=str(loss))


def test_found01_a_temperature_the_loss_does_not_use_is_not_recorded():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    with pytest.warns(UserWarning, match=r"temperature=4.0 is not used"):
        distiller.compile(distillation_loss_fn="logits_mse", temperature=4.0)
    assert distiller.temperature is None
    assert distiller.get_compile_config()["temperature"] is None
    distiller.compile(distillation_loss_fn="logits_mse")
    assert distiller.temperature is None


# ------------------------------------------------------------------ 2: subclassed student
class SubclassedStudent(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(C)

    def call(self, x):
        return self.out(self.hidden(x))


def test_found02_unbuilt_subclassed_student_trains():
    teacher = make_teacher()
    student = SubclassedStudent()
    assert not student.built
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.3, temperature=2.0)
    history = distiller.fit(X, Y, batch_size=N, epochs=3, shuffle=False, verbose=0).history
    assert student.built and len(student.trainable_variables) == 4
    assert history["loss"][2] < history["loss"][0]
    reference = frozen(student, teacher, alpha=0.3, temperature=2.0)
    np.testing.assert_allclose(evaluate(reference, X, Y)["loss"],
                               hand_logs(teacher, student, X, Y, 0.3, 2.0)["loss"], rtol=1e-5)


# ------------------------------------------------------------------ 3: one-logit binary
def sigmoid_np(z):
    return 1 / (1 + np.exp(-np.asarray(z, "float64")))


def binary_kl_np(t_logits, s_logits, t):
    p, q = sigmoid_np(t_logits / t), sigmoid_np(s_logits / t)
    return (t**2 * (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))).reshape(-1)


def binary_models():
    inputs = keras.Input((D,))
    teacher = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(16, "relu")(inputs)))
    inputs = keras.Input((D,))
    student = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    return teacher, student


def test_found03_one_logit_binary_distillation_matches_numpy():
    teacher, student = binary_models()
    y = (Y % 2).astype("float32")
    logs = evaluate(frozen(student, teacher, alpha=0.3, temperature=2.5), X, y)
    t_logits, s_logits = teacher.predict(X, verbose=0), student.predict(X, verbose=0)
    soft = binary_kl_np(t_logits, s_logits, 2.5)
    q = sigmoid_np(s_logits).reshape(-1)
    hard = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    assert soft.mean() > 1e-3  # not the identically-zero loss of a one-class softmax
    np.testing.assert_allclose(logs["distillation_loss"], soft.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["hard_loss"], hard.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 0.3 * hard.mean() + 0.7 * soft.mean(), rtol=1e-5)
    np.testing.assert_allclose(kd.losses.KLDivergence(temperature=2.5).call(t_logits, s_logits),
                               soft, rtol=1e-4, atol=1e-6)  # float32 per example


# ------------------------------------------------------------------ 4: unlabelled transfer set
def test_found04_unlabelled_transfer_set_with_alpha_zero():
    teacher, student = make_teacher(), make_student()
    expected = kl_np(teacher.predict(X, verbose=0), student.predict(X, verbose=0), 2.0).mean()
    distiller = frozen(student, teacher, alpha=0.0, temperature=2.0, metrics=["accuracy"])
    history = distiller.fit(X, batch_size=N, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["distillation_loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(history["loss"][0], expected, rtol=1e-5)
    assert history["hard_loss"][0] == 0.0
    ds = tf.data.Dataset.from_tensor_slices(X).batch(N)
    np.testing.assert_allclose(evaluate(distiller, ds)["loss"], expected, rtol=1e-5)


def test_found04_unlabelled_transfer_set_with_alpha_above_zero_is_refused():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    distiller.compile(alpha=0.1)
    with pytest.raises(ValueError, match=r"`alpha`.*no labels.*Received: alpha=0.1"):
        distiller.fit(X, batch_size=N, epochs=1, verbose=0)


# ------------------------------------------------------------------ 5: labels of shape (N, 1)
def test_found05_accuracy_with_column_labels():
    teacher = make_teacher()
    pred = teacher.predict(X, verbose=0).argmax(-1)
    expected = np.mean(pred == Y)
    ds = tf.data.Dataset.from_tensor_slices((X, Y[:, None])).batch(16)
    splits = kd.data.DataSplits(ds, ds, C, (D,), list("abcd"), 1.0, "t", N, N)
    assert workflows.accuracy(teacher, splits) == pytest.approx(expected)


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    pytest.importorskip("ai_edge_litert")
    keras.utils.set_random_seed(5)
    inputs = keras.Input((D,))
    model = keras.Model(inputs, keras.layers.Dense(C)(keras.layers.Dense(16, "relu")(inputs)))
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.tflite")
    kd.export.to_tflite(model, path)
    return model, path


def test_found05_export_verify_with_column_labels(tiny_tflite):
    model, path = tiny_tflite
    expected = np.mean(model.predict(X, verbose=0).argmax(-1) == Y)
    report = kd.export.verify(model, path, (X, Y[:, None]), latency_repeats=2)
    assert report["keras_accuracy"] == pytest.approx(expected)
    assert report["tflite_accuracy"] == pytest.approx(expected)


# ------------------------------------------------------------------ 6: one-hot and soft labels
def test_found06_from_arrays_one_hot_and_soft_labels():
    x = np.random.default_rng(0).integers(0, 256, size=(30, 4, 4), dtype=np.uint8)
    labels = np.arange(30) % 5
    one_hot = keras.utils.to_categorical(labels, 5).astype("float32")
    splits = kd.data.from_arrays((x, one_hot), (x[:10], one_hot[:10]), batch_size=30)
    assert splits.num_classes == 5 and splits.class_names == ["0", "1", "2", "3", "4"]
    _, y = splits.test_arrays()
    np.testing.assert_array_equal(y, one_hot[:10])
    soft = np.full((30, 3), 0.1, "float32")
    soft[np.arange(30), labels % 3] = 0.8
    splits = kd.data.from_arrays((x, soft), (x[:10], soft[:10]), class_names=["a", "b", "c"])
    _, y = splits.test_arrays()
    assert y.dtype == np.float32 and splits.num_classes == 3
    np.testing.assert_array_equal(y, soft[:10])  # not truncated to integers
    column = labels[:, None]
    splits = kd.data.from_arrays((x, column), (x[:10], column[:10]))
    _, y = splits.test_arrays()
    assert splits.num_classes == 5 and y.shape == (10,)


# ------------------------------------------------------------------ 7: TFDS image key
@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
def test_found07_tfds_image_key_from_supervised_keys(name, shape):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        splits = kd.data.load(name, batch_size=8)
        x, y = next(iter(splits.test))
        raw = next(iter(tfds.load(name, split="test", as_supervised=True)))[0]
    assert splits.input_shape == shape and x.shape == (8, *shape)
    # (mock_data has no label-name files: names are "0".."9" for both)
    assert splits.scale == pytest.approx(1 / 255) and len(splits.class_names) == 10
    np.testing.assert_allclose(x[0].numpy(), raw.numpy() / 255.0, rtol=1e-6)
    assert y.dtype == tf.int64


# ------------------------------------------------------------------ 8: probability teachers
class SoftmaxInCall(keras.Model):
    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x, training=False):
        return keras.ops.softmax(self.inner(x, training=training))


def probability_teachers():
    base = make_teacher(train=False)
    inputs = keras.Input((D,))
    nested = keras.Model(
        inputs, keras.Sequential([base, keras.layers.Softmax()], name="softmax_block")(inputs),
        name="nested_teacher")
    in_call = SoftmaxInCall(base, name="softmax_in_call")
    in_call(X[:1])
    inputs = keras.Input((D,))
    sigmoid = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs),
                          name="sigmoid_teacher")
    member = keras.Model(base.inputs, keras.layers.Softmax()(base.outputs[0]), name="member_b")
    ensemble = [make_teacher(train=False), member]
    return [(nested, make_student(), "nested_teacher"),
            (in_call, make_student(), "softmax_in_call"),
            (sigmoid, binary_models()[1], "sigmoid_teacher"),
            (ensemble, make_student(), "member_b")]


@pytest.mark.parametrize("case", range(4), ids=["nested", "ops.softmax", "sigmoid", "ensemble"])
def test_found08_probability_outputs_are_detected_on_the_first_batch(case):
    teacher, student, name = probability_teachers()[case]
    distiller = kd.Distiller(student, teacher)
    distiller.compile()
    y = Y % 2 if name == "sigmoid_teacher" else Y
    with pytest.raises(ValueError, match=rf"`teacher`.*'{name}'.*probabilities"):
        distiller.fit(X, y, batch_size=8, verbose=0)


# ------------------------------------------------------------------ 9: corrupt files, TF_CONFIG
def test_found09_corrupt_tflite_names_the_file(tiny_tflite, tmp_path):
    model, path = tiny_tflite
    data = open(path, "rb").read()
    for name, content in (("truncated.tflite", data[: len(data) // 3]),
                          ("garbage.tflite", b"not a flatbuffer at all" * 10)):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=rf"`tflite_path`.*TFLite flatbuffer.*Received: .*{name}"):
            kd.export.verify(model, str(bad), (X, Y), latency_repeats=1)
    with pytest.raises(FileNotFoundError, match=r"`tflite_path`.*absent.tflite"):
        kd.export.verify(model, str(tmp_path / "absent.tflite"), (X, Y))


def test_found09_malformed_tf_config_is_named(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match=r"`TF_CONFIG`.*JSON.*Received: TF_CONFIG='\{not json'"):
        kd.distribute.get_strategy("auto")
    monkeypatch.setenv("TF_CONFIG", "[1, 2]")
    with pytest.raises(ValueError, match=r"`TF_CONFIG`.*Received: TF_CONFIG='\[1, 2\]'"):
        kd.distribute.tf_config()


# ------------------------------------------------------------------ 10: multi-output, inputs
def two_outputs(name):
    inputs = keras.Input((D,))
    return keras.Model(inputs, [keras.layers.Dense(C)(inputs), keras.layers.Dense(C)(inputs)],
                       name=name)


def test_found10_multi_output_models_are_refused():
    with pytest.raises(ValueError, match=r"`student`.*'two_heads'.*2 outputs"):
        kd.Distiller(two_outputs("two_heads"), make_teacher(train=False))
    with pytest.raises(ValueError, match=r"`teacher`.*'two_heads'.*2 outputs"):
        kd.Distiller(make_student(), two_outputs("two_heads"))
    with pytest.raises(ValueError, match=r"`model`.*'two_heads'.*2 outputs"):
        kd.export.convert(two_outputs("two_heads"))


def test_found10_export_needs_one_float32_input():
    inputs = keras.Input((D,), dtype="int32")
    ints = keras.Model(inputs, keras.layers.Dense(C)(keras.ops.cast(inputs, "float32")),
                       name="int_input")
    with pytest.raises(ValueError, match=r"`model`.*float32.*'int_input'.*int32"):
        kd.export.convert(ints)
    a, b = keras.Input((D,)), keras.Input((D,))
    two = keras.Model([a, b], keras.layers.Dense(C)(keras.layers.Add()([a, b])), name="two_in")
    with pytest.raises(ValueError, match=r"`model`.*'two_in'.*2 inputs"):
        kd.export.convert(two)


# ------------------------------------------------------------------ 11: compile config
def test_found11_compile_config_keeps_auto_steps_per_execution():
    distiller = kd.Distiller(make_student(), make_teacher(train=False))
    distiller.compile()
    assert distiller.steps_per_execution == 64
    config = distiller.get_compile_config()
    assert config["steps_per_execution"] == "auto"
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        restored = kd.Distiller(make_student(), make_teacher(train=False))
        restored.compile_from_config(config)
        assert restored.steps_per_execution == 1


# ------------------------------------------------------------------ 12: chief, tf.io.gfile
class _Extended:
    should_checkpoint = False
    should_save_summary = False


class _NotChief:
    extended = _Extended()


class _StubDistiller:
    def __init__(self, student):
        self.student = student
        self.distribute_strategy = _NotChief()


def test_found12_chief_comes_from_the_strategy(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert kd.callbacks.is_chief(_NotChief()) is False
    assert kd.callbacks.is_chief(tf.distribute.get_strategy()) is True
    checkpoint = kd.callbacks.StudentCheckpoint(tmp_path / "student.keras")
    checkpoint.set_model(_StubDistiller(make_student()))
    checkpoint.on_epoch_end(0, {})
    assert os.listdir(tmp_path) == []  # not the chief: nothing written


def test_found12_files_go_through_tf_io_gfile():
    root = "ram://keras_kd_found12"
    kd.atomic.write_json(f"{root}/sub/facts.json", {"a": 1})
    with tf.io.gfile.GFile(f"{root}/sub/facts.json") as f:
        assert json.load(f) == {"a": 1}
    student = make_student()
    checkpoint = kd.callbacks.StudentCheckpoint(f"{root}/ckpt/student.keras")
    checkpoint.set_model(kd.Distiller(student, make_teacher(train=False)))
    checkpoint.on_epoch_end(0, {})
    assert tf.io.gfile.listdir(f"{root}/ckpt") == ["student.keras"]
    restored = keras.saving.load_model(f"{root}/ckpt/student.keras")
    np.testing.assert_allclose(restored.predict(X, verbose=0), student.predict(X, verbose=0))


# ------------------------------------------------------------------ 13: probability ensembles
def test_found13_probability_ensemble_mixes_softened_distributions():
    a, b = make_teacher(), make_teacher()
    keras.utils.set_random_seed(9)
    b.set_weights([w * 1.5 for w in b.get_weights()])
    student = make_student()
    t = 4.0
    ensemble = kd.TeacherEnsemble([a, b], weights=[3, 1], mode="probabilities")
    logs = evaluate(frozen(student, ensemble, alpha=0.0, temperature=t), X, Y)
    la, lb = a.predict(X, verbose=0), b.predict(X, verbose=0)
    mix = 0.75 * softmax_np(la / t) + 0.25 * softmax_np(lb / t)
    q = log_softmax_np(student.predict(X, verbose=0).astype("float64") / t)
    expected = (t**2 * (mix * (np.log(mix) - q)).sum(-1)).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)


def test_found13_identical_members_equal_the_single_teacher():
    teacher, student = make_teacher(), make_student()
    twin = clone(teacher)
    single = evaluate(frozen(student, teacher, alpha=0.2, temperature=4.0), X, Y)
    ensemble = kd.TeacherEnsemble([teacher, twin], mode="probabilities")
    mixed = evaluate(frozen(student, ensemble, alpha=0.2, temperature=4.0), X, Y)
    for key in single:
        np.testing.assert_allclose(mixed[key], single[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_found02_unbuilt_subclassed_student_trains_on_batch():
    teacher = make_teacher()
    student = SubclassedStudent()
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.3, temperature=2.0)
    first = distiller.train_on_batch(X, Y, return_dict=True)["loss"]
    for _ in range(3):
        last = distiller.train_on_batch(X, Y, return_dict=True)["loss"]
    assert student.built and last < first


def test_first_batch_check_runs_once_per_fit_input():
    teacher, student = make_teacher(counter=True), make_student(counter=True)
    distiller = kd.Distiller(student, teacher)
    distiller.compile(optimizer="sgd")
    calls = teacher.layers[1].calls.numpy()
    # 3 epochs x 5 training steps, 3 x 1 validation steps; the first-batch check runs each
    # model once on the training data and once on the validation data, not every epoch.
    distiller.fit(X, Y, batch_size=8, epochs=3, validation_data=(X, Y), validation_batch_size=N,
                  verbose=0)
    assert teacher.layers[1].calls.numpy() - calls == 15 + 3 + 2
    assert student.layers[1].calls.numpy() == 15 + 3 + 2
