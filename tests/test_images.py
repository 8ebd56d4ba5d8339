"""Image folders, raw-pixel image models and the keras.applications path (all offline)."""

import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_kd import data, models

CIFAR10 = pathlib.Path(os.environ.get(
    "KERAS_KD_CIFAR10", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))


def _write_folder(root, classes=("cat", "dog", "emu"), per_class=10, size=(6, 5), seed=0):
    """PNG files (lossless) in class folders; returns {path: pixels}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            path = root / name / f"{i:03d}.png"
            tf.io.write_file(str(path), tf.io.encode_png(image))
            pixels[str(path)] = image
    return pixels


def _all(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def _keys(x):
    return {bytes(img.astype(np.uint8).tobytes()) for img in x}


def test_train_test_folders_give_raw_pixels_class_names_and_a_seeded_disjoint_validation(tmp_path):
    train = _write_folder(tmp_path / "train", per_class=10, seed=1)
    test = _write_folder(tmp_path / "test", per_class=4, seed=2)
    splits = data.load(str(tmp_path), batch_size=7, seed=3)
    assert splits.class_names == ["cat", "dog", "emu"]
    assert (splits.train_size, splits.validation_size, splits.test_size) == (27, 3, 12)
    assert splits.input_shape == (6, 5, 3) and splits.scale == 1.0
    x_train, y_train = _all(splits.train)
    x_val, _ = _all(splits.validation)
    x_test, y_test = _all(splits.test)
    assert x_train.dtype == np.float32 and x_train.max() > 200  # raw 0-255 pixels
    # every file exactly once, pixels unchanged, labels = folder
    assert _keys(np.concatenate([x_train, x_val])) == _keys(np.stack(list(train.values())))
    assert _keys(x_test) == _keys(np.stack(list(test.values())))
    assert not _keys(x_train) & _keys(x_val)
    by_pixels = {bytes(v.tobytes()): pathlib.Path(k).parent.name for k, v in test.items()}
    assert [by_pixels[bytes(x.astype(np.uint8).tobytes())] for x in x_test] == [
        splits.class_names[i] for i in y_test]
    # the validation split is a function of the seed
    again = data.load(str(tmp_path), batch_size=7, seed=3)
    other = data.load(str(tmp_path), batch_size=7, seed=4)
    assert _keys(_all(again.validation)[0]) == _keys(x_val)
    assert _keys(_all(other.validation)[0]) != _keys(x_val)


def test_one_folder_of_classes_carves_test_and_validation(tmp_path):
    pixels = _write_folder(tmp_path / "photos", per_class=20)
    splits = data.from_directory(tmp_path / "photos", batch_size=16, seed=0, test_split=0.2,
                                 validation_split=0.25)
    assert (splits.train_size, splits.validation_size, splits.test_size) == (36, 12, 12)
    parts = [_keys(_all(d)[0]) for d in (splits.train, splits.validation, splits.test)]
    assert sum(len(p) for p in parts) == 60
    assert set.union(*parts) == _keys(np.stack(list(pixels.values())))
    examples, _ = _all(splits.train_examples.batch(100))
    assert _keys(examples) == parts[0] and examples.dtype == np.uint8


@pytest.mark.parametrize("argument,value", [("validation_split", 1.0), ("test_split", -0.1)])
def test_bad_fractions_are_refused(tmp_path, argument, value):
    _write_folder(tmp_path / "photos", per_class=3)
    with pytest.raises(ValueError, match=f"argument `{argument}`.*Received: {argument}={value}"):
        data.from_directory(tmp_path / "photos", **{argument: value})


def test_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image files"):
        data.from_directory(tmp_path / "empty")


@pytest.mark.skipif(not CIFAR10.exists(), reason="CIFAR-10 folder not found")
def test_cifar10_folder_decodes_the_jpeg_files_with_the_accurate_dct(tmp_path):
    """A slice of the real folder (10 files per class, linked): Keras' loader gives the
    pixels `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")` gives (= Pillow, the edge
    runner's decoder), raw, with the folder names as classes."""
    files = {}
    for split in ("train", "test"):
        for cls in sorted(os.listdir(CIFAR10 / split)):
            (tmp_path / split / cls).mkdir(parents=True)
            for name in sorted(os.listdir(CIFAR10 / split / cls))[:10]:
                os.symlink(CIFAR10 / split / cls / name, tmp_path / split / cls / name)
                files[(split, cls, name)] = CIFAR10 / split / cls / name
    splits = data.load(str(tmp_path), batch_size=32, seed=0)
    assert splits.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                  "frog", "horse", "ship", "truck"]
    assert splits.input_shape == (32, 32, 3) and splits.test_size == 100
    x_test, y_test = _all(splits.test)
    expected = [tf.io.decode_jpeg(tf.io.read_file(str(p)), dct_method="INTEGER_ACCURATE").numpy()
                for (split, _, _), p in sorted(files.items()) if split == "test"]
    np.testing.assert_array_equal(x_test, np.stack(expected).astype(np.float32))
    np.testing.assert_array_equal(y_test, np.repeat(np.arange(10), 10))


@pytest.mark.parametrize("name,low,high", [("resnet-teacher", 250_000, 320_000),
                                           ("resnet8-teacher", 70_000, 90_000),
                                           ("cnn-small", 20_000, 30_000),
                                           ("mobile-small", 20_000, 30_000)])
def test_image_models_take_raw_pixels(name, low, high):
    model = models.build(name, (32, 32, 3), 10)
    assert low <= model.count_params() <= high
    norm = model.get_layer("pixel_normalization")
    pixels = np.full((1, 32, 32, 3), [125.31, 122.95, 113.87], "float32")
    np.testing.assert_allclose(norm(pixels), 0.0, atol=1e-5)  # the mean pixel maps to 0
    white = norm(np.full((1, 2, 2, 3), 255.0, "float32")).numpy()[0, 0, 0]
    np.testing.assert_allclose(white, (255 - np.array(models.CIFAR10_MEAN))
                               / np.array(models.CIFAR10_STD), rtol=1e-5)
    assert model(pixels).shape == (1, 10)
    for stage in ("stage1_out", "stage2_out", "stage3_out"):
        model.get_layer(stage)  # named for feature hints and attention transfer


def test_keras_applications_student_offline():
    model = models.applications("MobileNetV3Small", (32, 32, 3), 10, minimalistic=True)
    assert model.output.shape[-1] == 10
    assert model.layers[-1].activation is None or model.layers[-1].activation.__name__ == "linear"
    out = model(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    assert out.shape == (2, 10) and not np.allclose(np.sum(np.exp(out), 1), 1.0)  # logits
    with pytest.raises(ValueError, match="Expected one of"):
        models.applications("NoSuchNet", (32, 32, 3), 10)


def test_int8_calibration_is_a_fixed_spread_sample_and_the_file_is_reproducible(tmp_path):
    from keras_kd import export

    _write_folder(tmp_path / "train", per_class=20, size=(8, 8), seed=1)
    _write_folder(tmp_path / "test", per_class=4, size=(8, 8), seed=2)
    splits = data.load(str(tmp_path), batch_size=8, seed=0, validation_split=0.0)
    order = _all(splits.train_examples.batch(100))
    sample = _all(export.calibration_data(splits, max_samples=6))
    # every 10th of the 60 stored examples: the stored order is class-sorted, so all 3 classes
    np.testing.assert_array_equal(sample[0], order[0][::10])
    assert sorted(sample[1].tolist()) == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(_all(export.calibration_data(splits, 6))[0], sample[0])
    _all(splits.train)  # a pass over the reshuffled training split must not change the file
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    files = []
    for name in ("a", "b"):
        export.to_tflite_and_verify(model, tmp_path / f"{name}.tflite", splits,
                                    quantization="int8", max_calibration_samples=6,
                                    latency_repeats=1)
        files.append((tmp_path / f"{name}.tflite").read_bytes())
        _all(splits.train)
    assert files[0] == files[1]
