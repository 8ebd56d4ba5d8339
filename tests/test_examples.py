"""The MNIST example and the seed tables run end to end at a small budget and write what they
print (the CIFAR-10 examples: test_examples_cifar10.py, another test process)."""

import json

import numpy as np
import pytest

from conftest import REPO, run_example


def _mnist_slice(mnist_path, path, train, test):
    """The first `train` and `test` images of real MNIST, in the keras.datasets layout."""
    with np.load(mnist_path) as full:
        np.savez(path, x_train=full["x_train"][:train], y_train=full["y_train"][:train],
                 x_test=full["x_test"][:test], y_test=full["y_test"][:test])
    return str(path)


def test_mnist_hinton_small_budget_on_the_validation_split(mnist_path, tmp_path):
    # 12,000 training images: the validation split is their last sixth (2,000)
    mnist_path = _mnist_slice(mnist_path, tmp_path / "mnist12k.npz", 12000, 1000)
    out = tmp_path / "hinton.json"
    proc = run_example("--data", mnist_path, "--teacher-epochs", "1", "--student-epochs", "1",
                       "--only", "2x20", "--seeds-20", "0,1", "--validation",
                       "--teacher-path", str(tmp_path / "teacher.keras"),
                       "--out", str(out), "--verbose", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["scored_on"] == "validation"
    assert "MNIST validation errors (of 2000)" in proc.stdout
    assert set(results["errors"]) == {"teacher_2x1200", "scratch_2x20", "distilled_2x20_T2"}
    # One teacher epoch on 12,000 images gets most of the 2,000 held-out images right
    # (measured: 212 errors; the students after one epoch: 759-855 scratch, 382-489 distilled).
    assert results["errors"]["teacher_2x1200"][0] < 300
    for run in ("scratch_2x20", "distilled_2x20_T2"):
        counts = results["errors"][run]
        assert len(counts) == 2 and all(0 < c < 1000 for c in counts)
        assert results["mean_errors"][run] == round(float(np.mean(counts)), 1)
        assert f"{run:<26}{results['mean_errors'][run]:>8g}" in proc.stdout
    # The saved teacher is reused, not retrained; this time the students distil with DKD plus a
    # FitNets hint from the teacher's second hidden layer (1200 units) through an adapter.
    assert (tmp_path / "teacher.keras").exists()
    again = run_example("--data", mnist_path, "--teacher-epochs", "1", "--student-epochs", "1",
                        "--only", "2x20", "--seeds-20", "0", "--validation", "--loss", "dkd",
                        "--temperature-20", "4", "--hint", "dense_1:dense_1",
                        "--teacher-path", str(tmp_path / "teacher.keras"),
                        "--out", str(tmp_path / "again.json"), "--verbose", "0")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / "again.json").read_text())
    assert rerun["teacher_loaded_from"] == str(tmp_path / "teacher.keras")
    assert rerun["errors"]["teacher_2x1200"] == results["errors"]["teacher_2x1200"]
    # Same seed, same initial weights and data order: the same error counts.
    assert rerun["errors"]["scratch_2x20"] == results["errors"]["scratch_2x20"][:1]
    key = "hint_dense_1-dense_1_w1_dkd_2x20_T4_b8"
    assert set(rerun["errors"]) == {"teacher_2x1200", "scratch_2x20", key}
    assert 0 < rerun["errors"][key][0] < 1000
    assert rerun["dkd_warmup_epochs"] == 1 and rerun["budget"]["loss"] == "dkd"
    assert rerun["budget"]["hint"] == ["dense_1", "dense_1"]
    assert key in again.stdout


def test_mnist_hinton_names_a_bad_seed_list(tmp_path):
    proc = run_example("--seeds-20", "0,x", "--out", str(tmp_path / "never.json"))
    assert proc.returncode == 2
    assert "--seeds-20" in proc.stderr and "'0,x'" in proc.stderr
    assert "comma-separated integers" in proc.stderr
    assert not (tmp_path / "never.json").exists()
    proc = run_example("--hint", "dense_1", "--out", str(tmp_path / "never.json"))
    assert proc.returncode == 2
    assert "--hint" in proc.stderr and "'dense_1'" in proc.stderr
    assert "TEACHER_LAYER:STUDENT_LAYER" in proc.stderr
    assert not (tmp_path / "never.json").exists()


def _seed_rows():
    """Hand-made rows: two students, three methods, three seeds (cnn-b's dkd: seed 1 only)."""
    acc = {("cnn-a", "scratch"): [0.70, 0.72, 0.71], ("cnn-a", "kd"): [0.73, 0.72, 0.75],
           ("cnn-a", "dkd"): [0.69, 0.74, 0.70], ("cnn-b", "scratch"): [0.60, 0.62, 0.64],
           ("cnn-b", "dkd"): [None, 0.65, None]}
    params = {"cnn-a": 24570, "cnn-b": 1234}
    return [{"method": method, "student": student, "seed": seed, "params": params[student],
             "test_accuracy": a, "val_accuracy": 0.5}
            for (student, method), values in acc.items()
            for seed, a in enumerate(values) if a is not None]


def test_seed_table_mean_std_per_seed_and_paired_gain(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    import seed_table

    rows = _seed_rows()
    with pytest.raises(ValueError, match=r"one kind of score.*test_accuracy.*val_accuracy"):
        seed_table.markdown(rows)  # two *_accuracy keys: the score must be named
    lines = seed_table.markdown(rows, score="test_accuracy",
                                method_order=("scratch", "kd", "dkd")).splitlines()
    assert lines[0].startswith("| student | params | method | seeds | mean test accuracy |")
    assert lines[2:] == [
        "| cnn-a | 24,570 | scratch | 0,1,2 | 71.00 % | 1.00 | 70.00, 72.00, 71.00 |  |",
        "| cnn-a | 24,570 | kd | 0,1,2 | 73.33 % | 1.53 | 73.00, 72.00, 75.00 | "
        "+3.00, +0.00, +4.00 |",
        "| cnn-a | 24,570 | dkd | 0,1,2 | 71.00 % | 2.65 | 69.00, 74.00, 70.00 | "
        "-1.00, +2.00, -1.00 |",
        "| cnn-b | 1,234 | scratch | 0,1,2 | 62.00 % | 2.00 | 60.00, 62.00, 64.00 |  |",
        "| cnn-b | 1,234 | dkd | 1 | 65.00 % | - | 65.00 | +3.00 |",
    ]
    # methods outside method_order follow, in the rows' order
    order = [line.split(" | ")[2] for line in seed_table.markdown(
        rows, score="test_accuracy").splitlines()[2:]]
    assert order == ["scratch", "kd", "dkd", "scratch", "dkd"]


def test_methods_summarize_prints_the_seed_table(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    import seed_table

    rows = _seed_rows()
    for row in rows:
        name = f"{row['method']}-{row['student']}-seed{row['seed']}.json"
        (tmp_path / name).write_text(json.dumps(row))
    proc = run_example("--summarize", "--output", str(tmp_path), script="methods_cifar10.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = seed_table.markdown(rows, score="test_accuracy",
                                   method_order=("scratch", "kd", "dkd"))
    assert proc.stdout == expected
    assert "| cnn-a | 24,570 | kd | 0,1,2 | 73.33 % | 1.53 |" in proc.stdout
