"""The examples run end to end at a small budget and write what they print."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO


def run_example(*args, script="mnist_hinton.py"):
    """The example in a subprocess, importing this checkout's keras_kd."""
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / script), *args],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
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


def _cifar10_slice(root, per_class):
    """A small CIFAR-10 folder of links to the real JPEG files."""
    source = REPO.parent / "shared" / "data" / "cifar10"
    if not source.exists():
        pytest.skip(f"CIFAR-10 folder not found at {source}")
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for cls in sorted(os.listdir(source / split)):
            (root / split / cls).mkdir(parents=True)
            for name in sorted(os.listdir(source / split / cls))[:count]:
                os.symlink(source / split / cls / name, root / split / cls / name)
    return root


def test_cifar10_comparison_small_budget_and_resume(tmp_path):
    import keras

    from keras_kd import models

    folder = _cifar10_slice(tmp_path / "cifar10", per_class=24)
    teacher = models.build("cnn-small", (32, 32, 3), 10)
    teacher.save(tmp_path / "teacher.keras")
    args = ["--data", str(folder), "--teacher", str(tmp_path / "teacher.keras"),
            "--students", "mobile-small", "--seeds", "0", "--epochs", "1", "--alpha", "0.3",
            "--views-dir", str(tmp_path / "views"), "--out", str(tmp_path / "rows.json"),
            "--verbose", "0", "--save-dir", str(tmp_path / "students")]
    proc = run_example(*args, script="cifar10.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["scratch", "keras_kd", "keras_distillation"]
    for r in rows:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["params"] == rows[0]["params"]
    assert len(list((tmp_path / "views").glob("*.npz"))) == 1  # teacher views stored once
    again = run_example(*args, script="cifar10.py")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "rows.json").read_text())["rows"] == rows  # resumed: no rerun
    assert sorted(p.name for p in (tmp_path / "students").iterdir()) == [
        f"mobile-small_{m}_s0.keras" for m in ("keras_distillation", "keras_kd", "scratch")]

    # DKD is another keras_kd row (the scratch and keras.distillation rows still serve it); a
    # longer run replays the stored epoch of views instead of computing new ones
    dkd = run_example(*args[:-2], "--loss", "dkd", "--dkd-beta", "2", "--epochs", "2",
                      "--view-epochs", "1", "--methods", "keras_kd", script="cifar10.py")
    assert dkd.returncode == 0, dkd.stderr[-3000:]
    assert "reuse the 1 stored epochs" in dkd.stdout
    rows_dkd = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert rows_dkd[:3] == rows and [r["method"] for r in rows_dkd[3:]] == ["keras_kd"]
    config = rows_dkd[3]["config"]
    assert (config["loss"], config["dkd_alpha"], config["dkd_beta"]) == ("dkd", 1.0, 2.0)
    assert (config["epochs"], config["view_epochs"]) == (2, 1)
    assert "dkd_beta" not in rows[1]["config"] and "view_epochs" not in rows[1]["config"]
    assert len(list((tmp_path / "views").glob("*.npz"))) == 1

    # the live teacher on the same views trains the same student as the stored views: the
    # stored logits are the teacher's outputs on exactly those views
    live = run_example(*args, "--methods", "keras_kd_live", script="cifar10.py")
    assert live.returncode == 0, live.stderr[-3000:]
    rows_live = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [r["method"] for r in rows_live[4:]] == ["keras_kd_live"]
    saved = tmp_path / "students"
    stored_student = keras.saving.load_model(saved / "mobile-small_keras_kd_s0.keras")
    live_student = keras.saving.load_model(saved / "mobile-small_keras_kd_live_s0.keras")
    for a, b in zip(stored_student.get_weights(), live_student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert rows_live[4]["test_accuracy"] == rows[1]["test_accuracy"]
    # a bfloat16 teacher stores its own views (another file) and is recorded in the row
    bf16 = run_example(*args[:-2], "--methods", "keras_kd", "--teacher-dtype", "bfloat16",
                       script="cifar10.py")
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    row_bf16 = json.loads((tmp_path / "rows.json").read_text())["rows"][5]
    assert (row_bf16["method"], row_bf16["config"]["teacher_dtype"]) == ("keras_kd", "bfloat16")
    assert "teacher_dtype" not in rows[1]["config"]
    assert sorted(p.name for p in (tmp_path / "views").glob("*.npz"))[1].endswith("_bfloat16.npz")
    wrong = run_example(*args, "--methods", "keras_kd,live", script="cifar10.py")
    assert wrong.returncode == 2 and "--methods: live is not one of" in wrong.stderr

    (tmp_path / "rows.json").write_text(json.dumps({"rows": rows}))
    summary = run_example(str(tmp_path / "rows.json"), "--tflite-dir", str(tmp_path / "none"),
                          script="cifar10_summary.py")
    assert summary.returncode == 0, summary.stderr[-3000:]
    table = (tmp_path / "rows.md").read_text().splitlines()[2:]
    by_method = {line.split(" | ")[2]: line for line in table}
    assert sorted(by_method) == ["keras_distillation", "keras_kd", "scratch"]
    score = {r["method"]: r["test_accuracy"] for r in rows}
    for method, line in by_method.items():
        assert f"| {100 * score[method]:.2f} % |" in line
        if method != "scratch":  # the gain column is the difference to the scratch twin
            assert line.endswith(f"| {100 * (score[method] - score['scratch']):+.2f} |")
    assert (tmp_path / "rows.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cifar10_edge_exports_verifies_and_runs_the_edge_runner(tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("PIL")
    from keras_kd import models

    folder = _cifar10_slice(tmp_path / "cifar10", per_class=8)  # 20 test images
    models.build("cnn-small", (32, 32, 3), 10).save(tmp_path / "s.keras")
    out = tmp_path / "tflite"
    proc = run_example(str(tmp_path / "s.keras"), "--data", str(folder), "--output-dir", str(out),
                       "--edge-files", "10", script="cifar10_edge.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "s.json").read_text())
    assert set(report) == {"model", "data", "float32", "int8", "edge"}
    for mode in ("float32", "int8"):
        row = report[mode]
        assert row["file"] == str(out / f"s_{mode}.tflite") and row["examples"] == 20
        assert row["size_bytes"] == os.path.getsize(row["file"])
        metadata = json.loads((out / f"s_{mode}.metadata.json").read_text())
        assert metadata["quantization"] == mode and metadata["input_scale"] == 1.0
        assert metadata["class_names"] == sorted(os.listdir(folder / "test"))
        assert (f"{mode}: {row['size_bytes']:,} bytes, Keras {row['keras_accuracy']:.4f}, "
                f"TFLite {row['tflite_accuracy']:.4f}, agreement {row['top1_agreement']:.4f} "
                "on 20 test images") in proc.stdout.splitlines()
    assert report["float32"]["top1_agreement"] == 1.0
    assert report["int8"]["keras_accuracy"] == report["float32"]["keras_accuracy"]
    assert report["int8"]["size_bytes"] < 0.5 * report["float32"]["size_bytes"]
    assert report["edge"]["files"] == 10 and report["edge"]["edge_equals_tflite"] == 10


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
