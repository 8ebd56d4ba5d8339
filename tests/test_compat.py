"""keras_kd.compat: private Keras/TensorFlow API behind version guards that fail loudly."""

import json
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd import compat
from keras_kd import data
from keras_kd import report
from helpers import X, Y, make_student, make_teacher


def test_installed_versions_are_in_the_checked_range():
    for lib, bounds in (("keras", compat.KERAS_RANGE), ("tensorflow", compat.TENSORFLOW_RANGE)):
        assert bounds[0] <= compat._major_minor(compat.installed_versions()[lib]) <= bounds[1]


@pytest.mark.parametrize("version", ["3.16.0", "3.99.1", "4.0.0", "3.11.3"])
def test_outside_the_keras_range_the_guard_raises_before_private_api(version, monkeypatch):
    monkeypatch.setattr(keras, "__version__", version)
    model = make_student()
    with pytest.raises(RuntimeError, match=(
            rf"keras_kd.compat.loss_tracker was written for Keras 3.12-3.15; Keras "
            rf"{version.replace('.', '[.]')} is installed")):
        compat.loss_tracker(model)


def test_a_newer_keras_stops_the_distiller_at_compile(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher(train=False))
    with pytest.raises(RuntimeError, match="compat.distribute_strategy was written for Keras"):
        distiller.compile(optimizer="adam")


def test_warn_mode_lets_a_newer_keras_train_with_a_warning(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    monkeypatch.setenv("KERAS_KD_UNTESTED_VERSIONS", "warn")
    distiller = keras_kd.Distiller(student=make_student(), teacher=make_teacher(train=False))
    with pytest.warns(RuntimeWarning, match="Keras 3.99.0 is installed"):
        distiller.compile(optimizer="adam")
        history = distiller.fit(X, Y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_tensorflow_guard(monkeypatch):
    monkeypatch.setattr(tf, "__version__", "2.30.0")
    with pytest.raises(RuntimeError, match="written for TensorFlow 2.16-2.21; TensorFlow 2.30.0"):
        compat.dataset_graph_def(tf.data.Dataset.range(3))


def test_guarded_functions_still_read_what_keras_holds():
    student = make_student()
    student.compile("adam", "mse")
    assert compat.loss_tracker(student) is student._loss_tracker
    assert compat.distribute_strategy(student) is None
    callback = keras.callbacks.BackupAndRestore("/tmp/unused-backup")
    weights, metadata = compat.backup_paths(callback)
    assert weights.endswith("latest.weights.h5") and metadata.endswith("training_metadata.json")
    assert compat.backup_position(callback) == {"epoch": 0, "batch": 0}
    graph = compat.dataset_graph_def(tf.data.Dataset.range(3).shuffle(3))
    assert any("Shuffle" in node.op for node in graph.node)


@pytest.mark.parametrize("module,extra,call", [
    ("tensorflow_datasets", "tfds", lambda tmp: data.load("mnist")),
    ("sklearn.datasets", "demo", lambda tmp: data.load("digits")),
    ("matplotlib", "plots", lambda tmp: report.write(_results_file(tmp))),
])
def test_missing_optional_dependency_gives_an_install_hint(module, extra, call, monkeypatch,
                                                            tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # its import now raises ImportError
    with pytest.raises(ImportError, match=rf"pip install 'keras-kd\[{extra}\]'"):
        call(tmp_path)


def _results_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"models": {}}))
    return path
