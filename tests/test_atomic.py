"""keras_kd.atomic: files appear whole or not at all."""

import os

import pytest

from keras_kd import atomic


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"a":2}'
    assert os.listdir(tmp_path / "sub") == ["out.json"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.weights.h5"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic.atomic_path(target) as tmp:
            assert tmp.endswith("-model.weights.h5") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.weights.h5"]


def test_overwrite_false_refuses_an_existing_file_and_leaves_it(tmp_path):
    target = tmp_path / "results.json"
    atomic.write_json(target, {"a": 1}, overwrite=False)  # a new file is fine
    with pytest.raises(FileExistsError, match="results.json' exists; pass overwrite=True"):
        atomic.write_json(target, {"a": 2}, overwrite=False)
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert os.listdir(tmp_path) == ["results.json"]
