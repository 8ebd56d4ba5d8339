"""Export to TFLite on real MNIST: agreement with Keras per quantization mode, sizes,
batch sizes, operators, sidecars, and the edge runner in a process without TensorFlow."""

import json
import os

import keras
import numpy as np
import pytest

from helpers import run_without_tensorflow
from keras_kd import export, models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    """A small CNN student (~105k parameters) trained 1 epoch on real MNIST, exported 5 ways.

    (Under ~30k parameters the flatbuffer's fixed overhead keeps int8 files above 0.3x the
    float32 size: the 27k-parameter `cnn-student` measures 0.30x.)
    """
    (x_train, y_train), (x_test, y_test) = mnist
    keras.utils.set_random_seed(0)
    model = models.cnn((28, 28, 1), 10, filters=(16, 32), dense=64, name="cnn_student_105k")
    # one epoch at 3e-3: 96.11 % test accuracy (two at 1e-3: 97.84 %, in 2.7x the time)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0)
    out = tmp_path_factory.mktemp("export")
    files, reports = {}, {}
    for mode in export.QUANTIZATIONS:
        files[mode] = str(out / f"student_{mode}.tflite")
        export.to_tflite(model, files[mode], quantization=mode,
                         representative_data=x_train[:1000], class_names=list("0123456789"),
                         input_scale=1 / 255)
        reports[mode] = export.verify(model, files[mode], (x_test, y_test), latency_repeats=20)
    return model, files, reports, (x_test, y_test)


def ties(logits, tolerance):
    """Examples whose two best logits are within `tolerance`: their top-1 may flip."""
    top = np.sort(logits, axis=-1)
    return top[:, -1] - top[:, -2] <= tolerance


def test_float32_matches_keras(trained):
    from ai_edge_litert.interpreter import Interpreter

    from keras_kd.litert_runner import Runner

    model, files, reports, (x_test, y_test) = trained
    r = reports["float32"]
    assert r["examples"] == 10000 and r["keras_accuracy"] > 0.95
    keras_logits = np.concatenate([np.asarray(model(x_test[i : i + 500], training=False))
                                   for i in range(0, len(x_test), 500)])
    runner = Runner(Interpreter(model_path=files["float32"]))
    lite_logits = np.concatenate([runner(x_test[i : i + 500]) for i in range(0, len(x_test), 500)])
    diff = np.abs(keras_logits - lite_logits).max()
    assert diff <= 1e-5 * np.abs(keras_logits).max()  # float32 rounding, nothing more
    disagree = keras_logits.argmax(-1) != lite_logits.argmax(-1)
    assert not np.any(disagree & ~ties(keras_logits, 2 * diff))  # only exact (rounding) ties
    assert r["top1_agreement"] == pytest.approx(1 - disagree.mean())
    assert r["max_abs_diff"] <= 1e-5 * np.abs(keras_logits).max()
    assert r["tflite_accuracy"] == pytest.approx(r["keras_accuracy"], abs=disagree.mean())


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_half_and_dynamic_agree(trained, mode):
    assert trained[2][mode]["top1_agreement"] >= 0.995


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_disagreement_diagnostics(trained, mode):
    """`tflite_top2_ties` and `disagreement_max_keras_margin`, recomputed from the logits."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_kd.litert_runner import Runner

    model, files, reports, (x_test, _) = trained
    runner = Runner(Interpreter(model_path=files[mode]))
    keras_logits = np.concatenate([np.asarray(model(x_test[i : i + 500], training=False))
                                   for i in range(0, len(x_test), 500)])
    lite_logits = np.concatenate([runner(x_test[i : i + 500]) for i in range(0, len(x_test), 500)])
    keras_top2, lite_top2 = np.sort(keras_logits)[:, -2:], np.sort(lite_logits)[:, -2:]
    flips = keras_logits.argmax(-1) != lite_logits.argmax(-1)
    r = reports[mode]
    assert r["tflite_top2_ties"] == int((lite_top2[:, 0] == lite_top2[:, 1]).sum())
    if mode == "float32":
        assert r["tflite_top2_ties"] == 0
        margin = r["disagreement_max_keras_margin"]  # None, or a float32 rounding tie
        assert margin is None or margin <= 2 * r["max_abs_diff"]
    else:
        assert flips.any() and r["tflite_top2_ties"] > 0
        expected = (keras_top2[:, 1] - keras_top2[:, 0])[flips].max()
        assert r["disagreement_max_keras_margin"] == pytest.approx(expected, abs=1e-4)
        # int8 flips only near-ties (measured: 15 flips, largest margin 0.16, max |logit| 23)
        assert r["disagreement_max_keras_margin"] < 0.05 * np.abs(keras_logits).max()


def test_int8_accuracy_and_size(trained):
    _, _, reports, _ = trained
    r = reports["int8"]
    assert abs(r["tflite_accuracy"] - r["keras_accuracy"]) <= 0.005
    assert r["size_bytes"] <= 0.3 * reports["float32"]["size_bytes"]
    assert reports["float16"]["size_bytes"] < 0.6 * reports["float32"]["size_bytes"]


def test_only_builtin_ops_and_sidecars(trained):
    _, files, reports, _ = trained
    for mode, path in files.items():
        assert reports[mode]["flex_ops"] == [], mode
        assert not any(op.startswith("Flex") for op in reports[mode]["operators"])
        labels, meta = export.sidecar_paths(path)
        assert open(labels).read().split() == list("0123456789")
        metadata = json.load(open(meta))
        assert metadata["input"]["shape"] == [-1, 28, 28, 1]  # resizable batch
        assert metadata["quantization"] == mode and metadata["needs_flex_delegate"] is False
        # a float model: post-training quantization (or none), except the "qat" mode's claim
        assert metadata["quantization_aware_training"] is (mode == "qat")
        assert metadata["input_scale"] == pytest.approx(1 / 255)
    assert "CONV_2D" in reports["int8"]["operators"]
    assert not [f for f in os.listdir(os.path.dirname(files["int8"])) if f.startswith(".tmp")]


@pytest.mark.parametrize("mode", export.QUANTIZATIONS)
def test_batch_one_and_batch_n(trained, mode):
    from ai_edge_litert.interpreter import Interpreter

    from keras_kd.litert_runner import Runner

    model, files, _, (x_test, _) = trained
    runner = Runner(Interpreter(model_path=files[mode]))
    batch = runner(x_test[:37])
    single = np.concatenate([runner(x_test[i : i + 1]) for i in range(37)])
    assert batch.shape == single.shape == (37, 10)
    np.testing.assert_allclose(batch, single, atol=1e-5)
    keras_pred = model.predict(x_test[:37], verbose=0).argmax(-1)
    assert np.mean(batch.argmax(-1) == keras_pred) >= 0.97


def test_int8_io_tensors(trained, tmp_path):
    model, _, _, (x_test, y_test) = trained
    path = str(tmp_path / "io.tflite")
    metadata = export.to_tflite(model, path, quantization="int8", int8_io=True,
                                representative_data=x_test[:300])
    assert metadata["input"]["dtype"] == "int8" and metadata["output"]["dtype"] == "int8"
    assert metadata["input"]["quantization"]["scale"] > 0
    report = export.verify(model, path, (x_test[:2000], y_test[:2000]), latency_repeats=5)
    assert report["input_dtype"] == "int8"
    assert abs(report["tflite_accuracy"] - report["keras_accuracy"]) <= 0.01


def test_to_tflite_and_verify_is_to_tflite_then_verify_with_the_splits(trained, tmp_path):
    from keras_kd import data, workflows

    model, _, _, (x_test, y_test) = trained
    splits = data.from_arrays((x_test[:600], y_test[:600]), (x_test[600:900], y_test[600:900]),
                              batch_size=100, class_names=list("abcdefghij"), scale=1.0)
    path = tmp_path / "float32.tflite"
    metadata, report = export.to_tflite_and_verify(model, path, splits, latency_repeats=3)
    by_hand = tmp_path / "by_hand.tflite"
    expected = export.to_tflite(model, by_hand, representative_data=splits.train, splits=splits)
    assert path.read_bytes() == by_hand.read_bytes()
    assert metadata == expected and metadata["class_names"] == list("abcdefghij")
    assert json.load(open(export.sidecar_paths(str(path))[1])) == metadata
    assert report["examples"] == 300 and report["top1_agreement"] == 1.0
    assert report["keras_accuracy"] == workflows.accuracy(model, splits)
    int8, int8_report = export.to_tflite_and_verify(model, tmp_path / "int8.tflite", splits,
                                                    quantization="int8", int8_io=True,
                                                    max_calibration_samples=200)
    assert int8["quantization"] == "int8" and int8["input"]["dtype"] == "int8"  # kwargs passed
    assert int8_report["examples"] == 300 and int8_report["top1_agreement"] >= 0.95


def test_bad_arguments_name_the_argument(trained, tmp_path):
    model = trained[0]
    with pytest.raises(ValueError, match=r"argument `quantization`.*Received: quantization='int4'"):
        export.to_tflite(model, str(tmp_path / "a.tflite"), quantization="int4")
    with pytest.raises(ValueError, match=r"argument `representative_data`"):
        export.to_tflite(model, str(tmp_path / "b.tflite"), quantization="int8")
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_edge_runner_without_tensorflow(trained, tmp_path):
    model, files, _, (x_test, _) = trained
    raw = np.round(x_test[:25] * 255).astype(np.uint8)  # raw pixels, as stored on a device
    np.save(tmp_path / "x.npy", raw)
    keras_logits = model.predict(x_test[:25], verbose=0)
    expected = keras_logits.argmax(-1)
    for mode in ("float32", "int8"):
        out = run_without_tensorflow(tmp_path, [
            os.path.join(REPO, "export", "edge", "run_litert.py"),
            "--model", files[mode], "--input", str(tmp_path / "x.npy"), "--top-k", "2"])
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        predicted = np.array([line["top"][0]["class"] for line in lines])
        assert len(lines) == 25 and len(lines[0]["top"]) == 2
        if mode == "float32":  # every image, but (rounding) ties
            assert np.all((predicted == expected) | ties(keras_logits, 1e-4))
        else:  # int8 quantizes activations: a bound, as for its accuracy
            assert np.mean(predicted == expected) >= 0.96
