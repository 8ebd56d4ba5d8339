"""The examples run end to end at a small budget and write what they print."""

import json
import subprocess
import sys

import numpy as np

from conftest import REPO


def run_example(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "mnist_hinton.py"), *args],
        capture_output=True, text=True, timeout=600,
    )


def test_mnist_hinton_small_budget_on_the_validation_split(mnist_path, tmp_path):
    out = tmp_path / "hinton.json"
    proc = run_example("--data", mnist_path, "--teacher-epochs", "1", "--student-epochs", "1",
                       "--only", "2x20", "--seeds-20", "0,1", "--validation",
                       "--teacher-path", str(tmp_path / "teacher.keras"),
                       "--out", str(out), "--verbose", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["scored_on"] == "validation"
    assert set(results["errors"]) == {"teacher_2x1200", "scratch_2x20", "distilled_2x20_T2"}
    # One teacher epoch already gets most of the 10,000 held-out images right.
    assert results["errors"]["teacher_2x1200"][0] < 600
    for run in ("scratch_2x20", "distilled_2x20_T2"):
        counts = results["errors"][run]
        assert len(counts) == 2 and all(0 < c < 2500 for c in counts)
        assert results["mean_errors"][run] == round(float(np.mean(counts)), 1)
        assert f"{run:<26}{results['mean_errors'][run]:>8g}" in proc.stdout
    # The saved teacher is reused, not retrained.
    assert (tmp_path / "teacher.keras").exists()
    again = run_example("--data", mnist_path, "--teacher-epochs", "1", "--student-epochs", "1",
                        "--only", "2x20", "--seeds-20", "0", "--validation",
                        "--teacher-path", str(tmp_path / "teacher.keras"),
                        "--out", str(tmp_path / "again.json"), "--verbose", "0")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / "again.json").read_text())
    assert rerun["teacher_loaded_from"] == str(tmp_path / "teacher.keras")
    assert rerun["errors"]["teacher_2x1200"] == results["errors"]["teacher_2x1200"]
    # Same seed, same initial weights and data order: the same error counts.
    assert rerun["errors"]["scratch_2x20"] == results["errors"]["scratch_2x20"][:1]
    assert rerun["errors"]["distilled_2x20_T2"] == results["errors"]["distilled_2x20_T2"][:1]


def test_mnist_hinton_names_a_bad_seed_list(tmp_path):
    proc = run_example("--seeds-20", "0,x", "--out", str(tmp_path / "never.json"))
    assert proc.returncode == 2
    assert "--seeds-20" in proc.stderr and "'0,x'" in proc.stderr
    assert "comma-separated integers" in proc.stderr
    assert not (tmp_path / "never.json").exists()
