"""examples/methods_cifar10.py end to end on a slice of real CIFAR-10 (slow: reads the images)."""

import json
import os
import subprocess
import sys

import keras
import pytest

from conftest import REPO

CIFAR10 = os.environ.get("KERAS_KD_CIFAR10", str(REPO.parent / "shared" / "data" / "cifar10"))


@pytest.mark.slow
def test_methods_example_writes_a_row_and_resumes(tmp_path):
    if not os.path.isdir(CIFAR10):
        pytest.skip(f"CIFAR-10 folders not found at {CIFAR10} (set KERAS_KD_CIFAR10)")
    from keras_kd import models

    teacher = tmp_path / "teacher.keras"
    models.build("resnet-teacher", (32, 32, 3), 10).save(teacher)  # untrained: a smoke test
    command = [sys.executable, str(REPO / "examples" / "methods_cifar10.py"), "--teacher",
               str(teacher), "--data", CIFAR10, "--method", "hints+kd", "--epochs", "1",
               "--limit", "128", "--output", str(tmp_path / "rows")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((tmp_path / "rows" / "hints+kd-cnn-small-seed0.json").read_text())
    assert row["method"] == "hints+kd" and row["seed"] == 0 and 0 <= row["test_accuracy"] <= 1
    assert {"hint_loss", "kd_loss", "hard_loss", "loss"} <= set(row["history"])
    assert row["settings"]["hint"] == ["stage2_out", "stage2_out"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "skip:" in again.stdout
    keras.backend.clear_session()
