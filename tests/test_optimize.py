"""keras_kd.optimize: the TFMOT bridge, quantization-aware and pruning-aware distillation.

The tf_keras / TFMOT tests skip cleanly when `keras-kd[optimize]` is not installed.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.optimize import bridge

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR10_TEST = pathlib.Path(os.environ.get(
    "KERAS_KD_CIFAR10", REPO.parent / "shared" / "data" / "cifar10")) / "test"


def _needs_tfmot():
    # find_spec, not importorskip: importing TFMOT directly would switch this process's
    # tf.keras to tf_keras, which is what keras_kd.optimize.legacy exists to prevent.
    for name in ("tf_keras", "tensorflow_model_optimization"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install keras-kd[optimize])")


@pytest.fixture(scope="module")
def cifar_batch():
    """64 real CIFAR-10 test images (raw pixels, float32) and their labels."""
    if not CIFAR10_TEST.is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR10_TEST} (set KERAS_KD_CIFAR10)")
    ds = keras.utils.image_dataset_from_directory(
        CIFAR10_TEST, image_size=(32, 32), batch_size=64, shuffle=True, seed=0, verbose=False)
    x, y = next(iter(ds))
    return x.numpy().astype("float32"), y.numpy()


def _perturbed(model, seed=0):
    """Moves every weight (BatchNorm statistics included) away from its initial value, so
    that equal outputs mean the weights were really copied."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = np.asarray(w)
        if "variance" in w.name:
            w.assign(rng.uniform(0.5, 2.0, value.shape).astype(value.dtype))
        else:
            w.assign(value + rng.normal(0, 0.1, value.shape).astype(value.dtype))
    return model


def _tiny(name="tiny", seed=0):
    """Raw pixels -> normalisation -> conv/BN/ReLU -> depthwise-separable block -> logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), name="input")
    x = keras_kd.models.pixel_normalization()(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="dw_relu")(x)
    x = keras.layers.Conv2D(16, 1, name="pw")(x)
    x = keras.layers.ReLU(name="pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=name)


def _dataset(batch, batch_size=16):
    x, y = batch
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


# ------------------------------------------------------------------------------ bridge
@pytest.mark.parametrize("name", ["cnn-small", "mobile-small"])
def test_bridge_outputs_equal_keras3_on_cifar10(name, cifar_batch):
    _needs_tfmot()
    student = _perturbed(keras_kd.models.build(name, (32, 32, 3), 10))
    copy = bridge.to_tf_keras(student)
    x = cifar_batch[0]
    expected = np.asarray(student(x, training=False))
    got = copy(x, training=False).numpy()
    assert np.abs(expected).max() > 0.1  # a real signal, not all-zero logits
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert [w.shape for w in copy.weights] == [tuple(w.shape) for w in student.weights]
    assert type(copy).__module__.startswith("tf_keras")


def test_bridge_to_keras3_copies_weights_back(cifar_batch):
    _needs_tfmot()
    student = _tiny()
    copy = bridge.to_tf_keras(student)
    _perturbed(copy, seed=3)
    bridge.to_keras3(copy, student)
    x = cifar_batch[0][:8]
    np.testing.assert_allclose(np.asarray(student(x)), copy(x).numpy(), atol=1e-5)


def test_bridge_unsupported_layer_names_layer_and_way_out():
    _needs_tfmot()
    inputs = keras.Input((8,))
    x = keras.layers.LayerNormalization(name="ln")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match=r"Layer 'ln' \(.*LayerNormalization\).*Way out"):
        bridge.to_tf_keras(model)


def test_bridge_rejects_subclassed_models():
    _needs_tfmot()

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="Functional or Sequential"):
        bridge.to_tf_keras(model)


# ----------------------------------------------------------------------- loss maths
def test_legacy_distiller_losses_match_numpy_oracle():
    from keras_kd.optimize import legacy_distiller

    rng = np.random.default_rng(1)
    t, s = rng.normal(0, 3, (6, 5)), rng.normal(0, 3, (6, 5))
    y, w = rng.integers(0, 5, 6), rng.uniform(0, 2, 6)
    w[2] = 0.0
    alpha, temp = 0.3, 4.0

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    hard = -log_softmax(s)[np.arange(6), y]
    lp, lq = log_softmax(t / temp), log_softmax(s / temp)
    soft = temp**2 * (np.exp(lp) * (lp - lq)).sum(-1)
    kl = keras_kd.losses.KLDivergence(temperature=temp)
    loss, h, d = legacy_distiller.batch_losses(
        tf.constant(y), tf.constant(t, tf.float32), tf.constant(s, tf.float32), alpha, kl,
        tf.constant(w, tf.float32))
    np.testing.assert_allclose(float(h), (w * hard).sum() / 6, rtol=1e-5)
    np.testing.assert_allclose(float(d), (w * soft).sum() / 6, rtol=1e-5)
    np.testing.assert_allclose(float(loss), alpha * float(h) + (1 - alpha) * float(d), rtol=1e-5)
    no_teacher = legacy_distiller.batch_losses(
        tf.constant(y), None, tf.constant(s, tf.float32), alpha, kl)
    np.testing.assert_allclose(float(no_teacher[0]), hard.mean(), rtol=1e-5)


# ------------------------------------------------------------------------------- QAT
def _op_dtypes(path):
    from keras_kd.export import _interpreter

    interpreter = _interpreter(model_path=str(path))
    tensors = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return [(op["op_name"], [tensors[i] for i in op["inputs"] if i >= 0],
             [tensors[i] for i in op["outputs"]]) for op in interpreter._get_ops_details()]


def test_quantize_distill_exports_int8_builtin_ops_only(cifar_batch, tmp_path):
    _needs_tfmot()
    teacher = _perturbed(_tiny("teacher", seed=1))
    data = _dataset(cifar_batch)
    result = keras_kd.optimize.quantize_distill(
        _tiny(), teacher, data, epochs=1, path=tmp_path / "qat.tflite", verify_data=data,
        verbose=0)
    assert set(result.history) >= {"loss", "hard_loss", "distillation_loss", "accuracy"}
    assert result.history["distillation_loss"][0] > 0
    ops = _op_dtypes(tmp_path / "qat.tflite")
    names = {name for name, _, _ in ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= names
    for name, inputs, outputs in ops:
        if name == "QUANTIZE":  # float32 input boundary
            assert outputs == ["int8"], (name, inputs, outputs)
        elif name == "DEQUANTIZE":  # float32 output boundary
            assert inputs == ["int8"], (name, inputs, outputs)
        elif name != "DELEGATE":
            assert set(inputs + outputs) <= {"int8", "int32"}, (name, inputs, outputs)
    assert not any(name.startswith("Flex") for name in names)
    metadata = json.loads((tmp_path / "qat.metadata.json").read_text())  # TFMOT wrappers seen
    assert metadata["quantization"] == "int8" and metadata["quantization_aware_training"] is True
    report = result.report
    assert report["flex_ops"] == []
    # the file computes what the quantization-aware model simulates
    assert report["top1_agreement"] >= 0.9
    # this Keras 3 process keeps its tf.keras and environment
    assert tf.keras.Model is keras.Model and "TF_USE_LEGACY_KERAS" not in os.environ


_SESSION_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np, tensorflow as tf, keras
    import keras_kd, keras_kd.optimize
    out = {"version_before": keras.__version__,
           "legacy_imported_at_import": "tf_keras" in sys.modules
                                        or "tensorflow_model_optimization" in sys.modules}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32"); y = rng.integers(0, 10, 32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    student = keras_kd.models.build("cnn-small", (32, 32, 3), 10)
    teacher = keras_kd.models.build("cnn-small", (32, 32, 3), 10)
    keras_kd.optimize.quantize_distill(student, teacher, data, epochs=1, verbose=0)
    out["legacy_imported_after"] = "tf_keras" in sys.modules
    out["version_after"] = keras.__version__
    out["tf_keras_is_keras3"] = tf.keras.Model is keras.Model
    out["env"] = os.environ.get("TF_USE_LEGACY_KERAS")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs = rng.normal(size=(64, 4)).astype("float32"); ys = (xs[:, 0] > 0).astype("int64")
    out["fit_loss"] = model.fit(xs, ys, epochs=30, verbose=0).history["loss"]
    path = sys.argv[1]
    model.save(path)
    loaded = keras.saving.load_model(path)
    out["reload_diff"] = float(np.abs(np.asarray(loaded(xs)) - np.asarray(model(xs))).max())
    out["loaded_class"] = type(loaded).__module__
    distiller = keras_kd.Distiller(student=keras_kd.models.build("cnn-small", (32, 32, 3), 10),
                                   teacher=teacher)
    distiller.compile(optimizer="adam")
    out["distiller_loss"] = distiller.fit(data, epochs=1, verbose=0).history["loss"][0]
    print("RESULT " + json.dumps(out))
""")


def test_keras3_session_unaffected_after_qat(tmp_path):
    """A fresh process: import keras_kd (no tf_keras yet), run QAT, then use Keras 3."""
    _needs_tfmot()
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    script = tmp_path / "session.py"
    script.write_text(_SESSION_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "after.keras")],
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["legacy_imported_at_import"] is False
    assert out["legacy_imported_after"] is True  # QAT really ran on the tf_keras side
    assert out["version_after"] == out["version_before"] == keras.__version__
    assert out["tf_keras_is_keras3"] is True
    assert out["env"] is None
    assert out["fit_loss"][-1] < 0.8 * out["fit_loss"][0]
    assert out["reload_diff"] == 0.0
    assert out["loaded_class"].startswith("keras")
    assert np.isfinite(out["distiller_loss"])


def test_quantize_distill_validates_arguments():
    with pytest.raises(ValueError, match="alpha"):
        keras_kd.optimize.quantize_distill(_tiny(), _tiny("t"), None, alpha=2.0)
    with pytest.raises(ValueError, match="epochs"):
        keras_kd.optimize.quantize_distill(_tiny(), _tiny("t"), None, epochs=0)


# --------------------------------------------------------------------------- pruning
def test_prune_distill_reaches_target_sparsity(cifar_batch, tmp_path):
    _needs_tfmot()
    teacher = _perturbed(_tiny("teacher", seed=1))
    student = _tiny()
    dense_before = [np.asarray(w).copy() for w in student.weights]
    result = keras_kd.optimize.prune_distill(
        student, teacher, _dataset(cifar_batch), target_sparsity=0.75, epochs=2,
        path=tmp_path / "pruned.tflite", verbose=0)
    report = result.report
    assert abs(report["kernel_sparsity"] - 0.75) < 0.01
    assert report["pruned_weights"] == 216 + 128 + 160  # conv, pw, logits (not depthwise)
    # the file holds those zeros (its other weights, the depthwise kernel, are dense)
    zeros_in_file = report["file_weight_sparsity"] * report["file_weights"]
    assert abs(zeros_in_file - report["kernel_sparsity"] * report["pruned_weights"]) <= 5
    assert report["gzip_bytes"] < report["dense_gzip_bytes"]
    assert isinstance(result.student, keras.Model)
    # the Keras 3 student computes what the stripped tf_keras model computes
    x = cifar_batch[0][:16]
    np.testing.assert_allclose(np.asarray(result.student(x, training=False)),
                               result.model(x, training=False).numpy(), atol=1e-4)
    # the user's student is left as it was
    for before, w in zip(dense_before, student.weights):
        np.testing.assert_array_equal(before, np.asarray(w))


def test_prune_distill_validates_target_sparsity():
    with pytest.raises(ValueError, match="target_sparsity"):
        keras_kd.optimize.prune_distill(_tiny(), _tiny("t"), None, target_sparsity=1.0)
    with pytest.raises(ValueError, match=r"pruning_end.*Received: pruning_end=0"):
        keras_kd.optimize.prune_distill(_tiny(), _tiny("t"), None, pruning_end=0)
    with pytest.raises(ValueError, match=r"learning_rate_decay.*'linear'"):
        keras_kd.optimize.prune_distill(_tiny(), _tiny("t"), None, learning_rate_decay="linear")


@pytest.mark.parametrize("total,end", [(90, 2 / 3), (90, 1.0), (1760, 2 / 3), (1760, 1.0), (7, 0.5)])
def test_default_pruning_schedule_reaches_target_at_pruning_end_then_holds(total, end):
    _needs_tfmot()
    from keras_kd.optimize import compress, legacy

    _, tfmot = legacy.modules()
    schedule = compress._schedule(tfmot, 0.8, total, end)
    steps = [(step, *schedule(tf.constant(step, tf.int64))) for step in range(total)]
    updates = [(step, float(s)) for step, prune, s in steps if bool(prune)]
    last_step, last_sparsity = updates[-1]
    assert last_sparsity == pytest.approx(0.8)
    assert last_step <= round(end * total) - 1  # the target is reached by the end fraction
    assert last_step >= round(end * total) - 1 - max(1, total // 50)
    # about 50 pruning updates (every step only in runs of fewer than ~100 pruning steps)
    assert len(updates) <= max(51, round(end * total))
    sparsities = [s for _, s in updates]
    assert sparsities == sorted(sparsities)  # rising to the target, never down


# ------------------------------------------------------------------ Keras 3 native QAT
def test_native_quantize_distill_exports_int8_builtin_ops_only(cifar_batch, tmp_path):
    from keras_kd.optimize import native

    teacher = _perturbed(_tiny("teacher", seed=1))
    data = _dataset(cifar_batch)
    result = native.quantize_distill(_perturbed(_tiny()), teacher, data, epochs=1,
                                     path=tmp_path / "native.tflite", verify_data=data,
                                     verbose=0)
    assert "tf_keras" not in type(result.model).__module__
    assert result.history["distillation_loss"][0] > 0
    report = native.ops_report(tmp_path / "native.tflite")
    names = [row[0] for row in report["ops"]]
    assert report["int8_only"], report["float_ops"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(names)
    # the normalisation is a 1x1 depthwise convolution (int8 SUB/MUL would round differently)
    assert names[:2] == ["QUANTIZE", "DEPTHWISE_CONV_2D"] and not {"SUB", "MUL"} & set(names)
    assert result.report["top1_agreement"] >= 0.9
    # batch norm folded: one CONV_2D per convolution, no separate multiply-add per block
    assert names.count("CONV_2D") == 2 and names.count("ADD") == 0


def test_native_export_keeps_trained_ranges_and_shows_what_stays_float(cifar_batch, tmp_path):
    from keras_kd.optimize import native

    qat = native.quantize_model(_perturbed(_tiny()))
    qat(cifar_batch[0], training=True)  # one range update
    quant = qat.get_layer("relu_quant")
    quant.max.assign(float(quant.max) * 0.5)  # calibration would not give this range
    data = _dataset(cifar_batch)
    native.to_tflite(qat, tmp_path / "calibrated.tflite", representative_data=data)
    from keras_kd.export import _interpreter

    interpreter = _interpreter(model_path=str(tmp_path / "calibrated.tflite"))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    conv = next(o for o in interpreter._get_ops_details() if o["op_name"] == "CONV_2D")
    scale = tensors[conv["outputs"][0]]["quantization"][0]
    np.testing.assert_allclose(scale, (float(quant.max) - float(quant.min)) / 255, rtol=1e-5)
    calibrated = json.loads((tmp_path / "calibrated.metadata.json").read_text())
    assert calibrated["quantization"] == "int8"  # the file is int8 ...
    assert calibrated["quantization_aware_training"] is True  # ... with QAT's ranges
    # without calibration data too: every range, the normalisation's included, is trained
    uncalibrated = native.to_tflite(qat, tmp_path / "uncalibrated.tflite")
    report = native.ops_report(tmp_path / "uncalibrated.tflite")
    assert report["int8_only"], report["float_ops"]
    assert uncalibrated["quantization"] == "qat"
    assert uncalibrated["quantization_aware_training"] is True
    # integer-only accelerators: int8 input and output tensors
    metadata = native.to_tflite(qat, tmp_path / "int8_io.tflite", representative_data=data,
                                int8_io=True)
    assert metadata["input"]["dtype"] == metadata["output"]["dtype"] == "int8"
    assert native.ops_report(tmp_path / "int8_io.tflite")["int8_only"]


def test_native_int8_file_computes_what_the_qat_model_computes(cifar_batch, tmp_path):
    """On real images, the file's first int8 tensor (raw pixels normalised) equals the QAT
    model's value for value, and its logits equal the QAT model's to the last int8 step.

    The normalisation is a 1x1 depthwise convolution whose weights per-channel int8 holds
    exactly, and every folded layer's bias is on the file's int32 grid. Before: with the
    layer's own SUB/MUL 41 % of the normalised values were off by up to two steps; with float
    biases, 4 of these 640 logits were one step off (0 now)."""
    from keras_kd.export import _interpreter_class
    from keras_kd.optimize import native

    x, y = cifar_batch
    qat = native.quantize_model(_perturbed(_tiny()))
    for _ in range(3):
        qat(x, training=True)  # ranges tracked
    normalise = qat.get_layer("pixel_normalization_quant")
    # it reads the quantized model input and that input's step (for its int32 bias)
    assert [t._keras_history.operation.name for t in normalise._inbound_nodes[0].input_tensors
            ] == ["input_quant", "input_quant"]
    native.to_tflite(qat, tmp_path / "qat.tflite", representative_data=_dataset((x, y)))
    interpreter = _interpreter_class()(model_path=str(tmp_path / "qat.tflite"),
                                       experimental_preserve_all_tensors=True)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    ops = interpreter._get_ops_details()
    assert [op["op_name"] for op in ops[:2]] == ["QUANTIZE", "DEPTHWISE_CONV_2D"]
    index = ops[1]["outputs"][0]
    details = next(t for t in interpreter.get_tensor_details() if t["index"] == index)
    step, zero_point = details["quantization"]
    in_file = (interpreter.get_tensor(index).astype("float32") - zero_point) * step
    in_keras = np.asarray(keras.Model(
        qat.inputs, qat.get_layer("pixel_normalization_act_quant").output[0])(x))
    assert np.abs(in_file - in_keras).max() < 1e-3 * step
    # the whole file against the QAT model: the predictions, and the logits to one step
    out_file = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    out_keras = np.asarray(qat(x))
    output_step = (float(qat.get_layer("logits_act_quant").max)
                   - float(qat.get_layer("logits_act_quant").min)) / 255
    off = np.abs(out_file - out_keras)
    assert off.max() <= 1.01 * output_step and (off > 0.5 * output_step).sum() <= 1
    np.testing.assert_array_equal(out_file.argmax(-1), out_keras.argmax(-1))


def test_native_qat_folds_rescaling_and_leaves_flat_normalisation_alone(cifar_batch, tmp_path):
    from keras_kd import litert_runner
    from keras_kd.export import _interpreter
    from keras_kd.optimize import native

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="input")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    qat = native.quantize_model(keras.Model(inputs, keras.layers.Dense(10, name="logits")(x)))
    x, y = cifar_batch
    qat(x, training=True)
    assert len(qat.get_layer("rescale_quant")._inbound_nodes[0].input_tensors) == 2  # x, step
    native.to_tflite(qat, tmp_path / "r.tflite", representative_data=_dataset((x, y)))
    assert [op[0] for op in native.ops_report(tmp_path / "r.tflite")["ops"]][:2] == [
        "QUANTIZE", "DEPTHWISE_CONV_2D"]
    out_file = litert_runner.Runner(_interpreter(model_path=str(tmp_path / "r.tflite")))(x)
    np.testing.assert_array_equal(out_file.argmax(-1), np.asarray(qat(x)).argmax(-1))
    # a Normalization of flat vectors is not an image affine map: it stays a layer
    flat_in = keras.Input((6,))
    flat = keras.layers.Normalization(mean=[0.5] * 6, variance=[4.0] * 6, name="norm")(flat_in)
    flat_qat = native.quantize_model(keras.Model(flat_in, keras.layers.Dense(3)(flat)))
    kinds = {layer.name: type(layer).__name__ for layer in flat_qat.layers}
    assert kinds["norm"] == "Normalization" and kinds["norm_quant"] == "ActivationFakeQuant"


def test_native_qat_rounds_an_add_once_when_the_file_fuses_its_relu(cifar_batch, tmp_path):
    """The converter fuses Add + ReLU into one int8 ADD with the ReLU's range: the QAT model
    must not round the sum to a range of its own first (measured on the ResNet-20 teacher:
    file/QAT agreement 98.8 % with that extra rounding, 99.4 % without)."""
    from keras_kd.optimize import native

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="input")
    x = keras_kd.models.pixel_normalization()(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.ReLU(name="out")(keras.layers.Add(name="add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    qat = native.quantize_model(keras.Model(inputs, keras.layers.Dense(10, name="logits")(x)))
    names = [layer.name for layer in qat.layers]
    assert "add" in names and "add_quant" not in names and "out_quant" in names
    qat(cifar_batch[0], training=True)
    native.to_tflite(qat, tmp_path / "res.tflite", representative_data=_dataset(cifar_batch))
    ops = [op[0] for op in native.ops_report(tmp_path / "res.tflite")["ops"]]
    assert "ADD" in ops and "RELU" not in ops  # fused
    # a leaky ReLU is not fused: the Add keeps its own rounding
    leaky_in = keras.Input((4, 4, 2))
    leaky = keras.layers.ReLU(negative_slope=0.1, name="leaky")(
        keras.layers.Add(name="add")([leaky_in, leaky_in]))
    leaky_names = [layer.name for layer in native.quantize_model(
        keras.Model(leaky_in, keras.layers.Dense(2)(leaky))).layers]
    assert "add_quant" in leaky_names


def test_quantization_aware_finds_fake_quant_layers_in_nested_models():
    from keras_kd.export import quantization_aware
    from keras_kd.optimize import native

    student = _tiny()
    qat = native.quantize_model(student)
    inputs = keras.Input(student.inputs[0].shape[1:])
    wrapper = keras.Model(inputs, qat(inputs))  # the QAT model as one layer of another
    assert [quantization_aware(m) for m in (student, qat, wrapper)] == [False, True, True]


def test_native_qat_model_saves_and_reloads_as_it_was(tmp_path):
    from keras_kd.optimize import native

    qat = native.quantize_model(_perturbed(_tiny()))
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    qat(x, training=True)  # ranges tracked, so that the reloaded ones are not initial values
    qat.save(tmp_path / "qat.keras")
    reloaded = keras.saving.load_model(tmp_path / "qat.keras")
    kinds = [type(layer).__name__ for layer in reloaded.layers]
    assert kinds.count("FoldedQuantConv") == 5 and "ActivationFakeQuant" in kinds
    assert [w.path for w in reloaded.weights] == [w.path for w in qat.weights]
    for old, new in zip(qat.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    np.testing.assert_array_equal(reloaded(x), qat(x))


def test_native_quantize_model_rejects_unsupported_layers():
    from keras_kd.optimize import native

    inputs = keras.Input((8,))
    x = keras.layers.LayerNormalization(name="ln")(inputs)
    with pytest.raises(ValueError, match=r"Layer 'ln' \(LayerNormalization\).*Way out"):
        native.quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)))


# ------------------------------------------------------------------------------ examples
@pytest.mark.slow
def test_qat_example_writes_rows_and_resumes(tmp_path):
    """examples/qat_distill.py at a tiny budget on real CIFAR-10; a rerun reuses the rows."""
    _needs_tfmot()
    if not CIFAR10_TEST.is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR10_TEST}")
    out = tmp_path / "qat.json"
    args = [sys.executable, str(REPO / "examples" / "qat_distill.py"),
            "--data", str(CIFAR10_TEST.parent), "--teacher", str(tmp_path / "teacher.keras"),
            "--teacher-model", "cnn-small", "--teacher-epochs", "1", "--students",
            "mobile-small", "--student-epochs", "1", "--epochs", "1", "--steps-per-epoch", "5",
            "--rows", "float,ptq_int8,qat_kd", "--workdir", str(tmp_path), "--out", str(out),
            "--verbose", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"mobile-small/float", "mobile-small/ptq_int8", "mobile-small/qat_kd"}
    assert rows["mobile-small/qat_kd"]["input_dtype"] == "float32"
    assert 0.0 <= rows["mobile-small/qat_kd"]["test_accuracy"] <= 1.0
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(out.read_text())["rows"] == rows  # nothing recomputed
    assert "mobile-small/qat_kd" in again.stdout


def test_recalibrate_batch_norm_averages_batch_statistics(cifar_batch):
    from keras_kd.optimize.compress import recalibrate_batch_norm

    model = _perturbed(_tiny())
    data = _dataset(cifar_batch)
    conv = keras.Model(model.input, model.get_layer("conv").output)
    batch_means = [np.asarray(conv(x)).mean(axis=(0, 1, 2)) for x, _ in data]
    batch_vars = [np.asarray(conv(x)).var(axis=(0, 1, 2)) for x, _ in data]
    assert recalibrate_batch_norm(model, data, batches=10) == len(batch_means) == 4
    bn = model.get_layer("bn")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean(batch_means, 0), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), np.mean(batch_vars, 0),
                               rtol=1e-3, atol=1e-4)
    assert bn.momentum == 0.99  # restored
