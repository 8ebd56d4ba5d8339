"""The edge path on real CIFAR-10 JPEG files: raw pixels in, the same decode on the device
(Pillow, no TensorFlow) as in training (`keras_kd.data.from_directory`), and the exported
file equal to the Keras model on raw pixels.

A cnn-small student is trained ~20 s on 3,000 training images (a slice), so its predictions
spread over the classes; 100 test JPEG files (10 per class) are classified.
"""

import importlib.util
import json
import os
import pathlib

import keras
import numpy as np
import pytest

from helpers import run_without_tensorflow
from keras_kd import data, edge_parity, export, models

pytest.importorskip("ai_edge_litert")
pytest.importorskip("PIL")

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNNER = REPO / "export" / "edge" / "run_litert.py"
CIFAR10 = pathlib.Path(
    os.environ.get("KERAS_KD_CIFAR10", REPO.parent / "shared" / "data" / "cifar10"))
TRAIN_PER_CLASS, TEST_PER_CLASS = 300, 10


def _load_run_litert():
    spec = importlib.util.spec_from_file_location("run_litert", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_litert = _load_run_litert()


def _slice_folder(root):
    """`root/{train,test}/<class>/` holding links to the first files of each real class folder."""
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for class_dir in sorted((CIFAR10 / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for f in sorted(class_dir.glob("*.jpg"))[:per_class]:
                (target / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """The slice, a briefly trained cnn-small, its float32, int8 and int8-I/O exports, the
    test arrays as the loader decoded them and the test files in the same order."""
    if not (CIFAR10 / "test").is_dir():
        pytest.skip(f"CIFAR-10 JPEG folders not found at {CIFAR10} (set KERAS_KD_CIFAR10)")
    root = _slice_folder(tmp_path_factory.mktemp("cifar10_slice"))
    splits = data.from_directory(root, validation_split=0.0, batch_size=64, seed=0)
    x_test, y_test = splits.test_arrays()
    test_files = data.list_image_folder(root / "test")[0]  # the loader's order
    keras.utils.set_random_seed(0)
    model = models.build("cnn-small", splits.input_shape, splits.num_classes)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(splits.train, epochs=6, verbose=0)
    x_calibration, _ = splits.train_arrays(limit=300)
    out = tmp_path_factory.mktemp("export")
    files = {}
    for mode in ("float32", "int8", "int8_io"):
        files[mode] = str(out / f"cifar_{mode}.tflite")
        export.to_tflite(model, files[mode], quantization=mode.removesuffix("_io"), splits=splits,
                         representative_data=x_calibration, int8_io=mode == "int8_io")
    return splits, model, files, (x_test, y_test), test_files


def _tflite_logits(path, x):
    from ai_edge_litert.interpreter import Interpreter

    from keras_kd.litert_runner import Runner

    return Runner(Interpreter(model_path=path))(x)


def test_pillow_decodes_the_training_pixels(cifar):
    splits, _, _, (x_test, y_test), test_files = cifar
    assert x_test.shape == (100, 32, 32, 3) and splits.scale == 1.0
    folders = [pathlib.Path(f).parent.name for f in test_files]
    assert [splits.class_names.index(name) for name in folders] == list(y_test)
    pillow = np.stack([run_litert.read_image(f, (32, 32, 3))[0] for f in test_files])
    # Bit for bit: from_directory decodes JPEG with libjpeg's accurate DCT, as Pillow does.
    np.testing.assert_array_equal(pillow.astype(np.float32), x_test)
    # Keras' loader as it comes (TensorFlow's fast DCT) is close but not identical.
    plain = keras.utils.image_dataset_from_directory(
        pathlib.Path(test_files[0]).parents[1], batch_size=None, image_size=(32, 32),
        shuffle=False, verbose=False)
    plain = np.stack([x.numpy() for x, _ in plain])
    assert np.abs(plain - pillow).max() <= 8


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_edge_runner_on_jpeg_files_equals_tflite_on_loader_pixels(cifar, tmp_path, mode):
    splits, model, files, (x_test, y_test), test_files = cifar
    out = run_without_tensorflow(tmp_path, [str(RUNNER), "--model", files[mode], "--input",
                                            *test_files, "--top-k", "10"])
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["input"] for line in lines] == list(test_files)
    assert not any(line["resized"] for line in lines)
    edge_top1 = np.array([line["top"][0]["class"] for line in lines])
    edge_probs = np.zeros((len(lines), 10))
    for i, line in enumerate(lines):
        for entry in line["top"]:
            edge_probs[i, entry["class"]] = entry["probability"]
    logits = _tflite_logits(files[mode], x_test)  # the same file on the loader's pixels
    z = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_array_equal(edge_top1, logits.argmax(-1))
    np.testing.assert_allclose(edge_probs, z / z.sum(-1, keepdims=True), atol=1e-6)
    # A trained model (not one class for everything) that agrees with Keras.
    assert len(set(edge_top1)) >= 5
    assert np.mean(edge_top1 == y_test) >= 0.3
    keras_top1 = model.predict(x_test, verbose=0).argmax(-1)
    # int8 flips near-ties of this small test model: 0.93 on an AMD EPYC without AVX-512 (the
    # CPU changes the trained model); a decoding or scaling error would fall far below
    assert np.mean(edge_top1 == keras_top1) >= (0.99 if mode == "float32" else 0.9)


def test_edge_runner_says_when_it_resizes(cifar, tmp_path):
    from PIL import Image

    _, _, files, _, test_files = cifar
    Image.open(test_files[0]).resize((64, 48)).save(tmp_path / "big.png")
    out = run_without_tensorflow(tmp_path, [str(RUNNER), "--model", files["float32"], "--input",
                                            str(tmp_path / "big.png"), test_files[0]])
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["resized"] for line in out.stdout.splitlines()] == [True, False]
    assert "1 image(s) resized to 32x32" in out.stderr


def test_edge_parity_check_on_the_test_folder(cifar):
    splits, model, files, _, test_files = cifar
    folder = pathlib.Path(test_files[0]).parents[1]
    report = edge_parity.check(model, files["int8"], folder, limit=40)
    assert report["files"] == 40 and report["resized"] is False
    assert report["edge_equals_tflite"] == 40
    assert report["edge_agrees_keras"] >= 38 and report["keras_correct"] >= 12
    with pytest.raises(FileNotFoundError, match="runner_script"):
        edge_parity.check(model, files["int8"], folder, runner_script="missing.py")


def test_in_model_preprocessing_keras_equals_exported_file_on_raw_pixels(cifar):
    splits, model, files, (x_test, y_test), _ = cifar
    assert x_test.max() > 200  # raw pixels, not scaled in the pipeline
    reports = {mode: export.verify(model, files[mode], (x_test, y_test), latency_repeats=3)
               for mode in files}
    keras_logits = model.predict(x_test, verbose=0)
    assert reports["float32"]["max_abs_diff"] <= 1e-4 * max(1.0, np.abs(keras_logits).max())
    assert reports["float32"]["top1_agreement"] == 1.0
    assert reports["int8"]["top1_agreement"] >= 0.9  # 0.93 on a CPU without AVX-512, see above
    assert reports["int8_io"]["top1_agreement"] >= 0.9
    for mode, path in files.items():
        metadata = json.load(open(export.sidecar_paths(path)[1]))
        assert metadata["input_scale"] == 1.0
        assert metadata["input_description"].startswith("raw pixels 0-255, RGB, HxWxC = 32x32x3")
        assert metadata["input"]["dtype"] == ("int8" if mode == "int8_io" else "float32")
        assert metadata["input"]["shape"] == [-1, 32, 32, 3]
        assert metadata["class_names"] == splits.class_names


@pytest.mark.parametrize("mode", ["float32", "int8", "int8_io"])
def test_android_sample_steps_on_compiled_model(cifar, mode):
    """What export/android's Classifier.kt does, through the same LiteRT CompiledModel runtime
    (Python binding): batch-1 buffers of the dynamic-batch file, raw pixels written as float32
    (or int8 with the sidecar's scale and zero point, rounding half up as Kotlin's
    roundToInt), run, logits read back (dequantized when int8)."""
    from ai_edge_litert.compiled_model import CompiledModel

    _, _, files, (x_test, _), test_files = cifar
    metadata = json.load(open(export.sidecar_paths(files[mode])[1]))
    model = CompiledModel.from_file(files[mode])
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    expected = _tflite_logits(files[mode], x_test[:10])
    for i, path in enumerate(test_files[:10]):
        pixels = run_litert.read_image(path, (32, 32, 3))[0].reshape(-1).astype(np.float32)
        if metadata["input"]["dtype"] == "int8":
            q = metadata["input"]["quantization"]
            pixels = np.floor(pixels / q["scale"] + 0.5) + q["zero_point"]
            inputs[0].write(np.clip(pixels, -128, 127).astype(np.int8))
        else:
            inputs[0].write(pixels)
        model.run_by_index(0, inputs, outputs)
        if metadata["output"]["dtype"] == "int8":
            q = metadata["output"]["quantization"]
            raw = outputs[0].read(10, np.int8).astype(np.float32)
            logits = (raw - q["zero_point"]) * q["scale"]
        else:
            logits = outputs[0].read(10, np.float32)
        np.testing.assert_allclose(logits, expected[i], atol=1e-5)


def test_runner_converts_and_resizes_other_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "big.png")
    gray = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    pixels, resized = run_litert.read_image(str(tmp_path / "big.png"), (32, 32, 3))
    assert resized and pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    pixels, resized = run_litert.read_image(str(tmp_path / "gray.png"), (32, 32, 3))
    assert not resized
    for c in range(3):  # grayscale to RGB repeats the value, unchanged
        np.testing.assert_array_equal(pixels[..., c], gray)
    names, raw, flags = run_litert.read_inputs(
        [str(tmp_path / "gray.png"), str(tmp_path / "big.png")], (32, 32, 3), 1.0)
    assert flags == [False, True] and raw.dtype == np.float32 and raw.max() > 200
    with pytest.raises(SystemExit, match="input_scale=0.0625"):  # digits: raw values 0-16
        run_litert.read_inputs([str(tmp_path / "gray.png")], (32, 32, 3), 1 / 16)


def test_input_description_of_scaled_and_raw_inputs():
    scaled = export.describe_input(models.cnn((28, 28, 1), 10), 1 / 255)
    assert scaled.startswith("raw pixels times input_scale=0.00392157, grayscale, HxWxC = 28x28x1")
    raw = export.describe_input(models.build("mobile-small", (32, 32, 3), 10), 1.0)
    assert raw.startswith("raw pixels 0-255, RGB, HxWxC = 32x32x3") and "pixel_normalization" in raw
    # No preprocessing layer inside: a scale of 1 does not mean raw pixels are normalised.
    assert export.describe_input(models.cnn((32, 32, 3), 10), 1.0).startswith("raw pixels times")
    assert "shape [12]" in export.describe_input(models.mlp((12,), 4, (8,)), 1.0)


def test_from_directory_decodes_png_and_jpeg_files_as_pillow(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    files = []
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i, ext in enumerate(("png", "jpg", "jpg")):
                path = tmp_path / split / name / f"{i}.{ext}"
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(path, quality=75)
                if split == "test":
                    files.append(path)
    splits = data.from_directory(tmp_path, validation_split=0.0, batch_size=4)
    x_test, y_test = splits.test_arrays()
    pillow = np.stack([run_litert.read_image(str(f), (8, 8, 3))[0] for f in files])
    np.testing.assert_array_equal(x_test, pillow.astype(np.float32))
    np.testing.assert_array_equal(y_test, [0, 0, 0, 1, 1, 1])
