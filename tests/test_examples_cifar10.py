"""The CIFAR-10 examples run end to end on a slice of the real JPEG folders and write what
they print (cifar10.py, cifar10_summary.py, cifar10_edge.py)."""

import json
import os

import numpy as np
import pytest

from conftest import REPO, run_example


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


def _first_comparison(tmp_path):
    """examples/cifar10.py once on a 240-image slice with an untrained teacher: its arguments
    and the rows it wrote (scratch, keras_kd, keras_distillation for mobile-small, seed 0)."""
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
    assert sorted(p.name for p in (tmp_path / "students").iterdir()) == [
        f"mobile-small_{m}_s0.keras" for m in ("keras_distillation", "keras_kd", "scratch")]
    return args, rows


def test_cifar10_comparison_small_budget_and_summary(tmp_path):
    _, rows = _first_comparison(tmp_path)
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


@pytest.mark.slow  # seven more runs of the example (about 140 s on 2 cores)
def test_cifar10_comparison_resumes_and_adds_dkd_live_hints_and_bfloat16_rows(tmp_path):
    import keras

    args, rows = _first_comparison(tmp_path)
    again = run_example(*args, script="cifar10.py")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "rows.json").read_text())["rows"] == rows  # resumed: no rerun

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
    # a FitNets hint of weight 0 leaves keras_kd_live's student; weight 1 changes it
    hints = {}
    for weight in ("0", "1"):
        proc = run_example(*args, "--methods", "keras_kd_hints", "--hint-weight", weight,
                           script="cifar10.py")
        assert proc.returncode == 0, proc.stderr[-3000:]
        hints[weight] = keras.saving.load_model(saved / "mobile-small_keras_kd_hints_s0.keras")
        assert not any("adapter" in w.name for w in hints[weight].weights)
    for a, b in zip(hints["0"].get_weights(), live_student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert max(np.max(np.abs(a - b)) for a, b in
               zip(hints["1"].get_weights(), live_student.get_weights())) > 1e-3
    rows_hints = json.loads((tmp_path / "rows.json").read_text())["rows"][5:]
    assert [r["method"] for r in rows_hints] == ["keras_kd_hints"] * 2
    assert rows_hints[0]["config"]["hint_weight"] == 0.0
    assert "hint_weight" not in rows_hints[1]["config"]  # the default, as for older rows
    # a bfloat16 teacher stores its own views (another file) and is recorded in the row
    bf16 = run_example(*args[:-2], "--methods", "keras_kd", "--teacher-dtype", "bfloat16",
                       script="cifar10.py")
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    row_bf16 = json.loads((tmp_path / "rows.json").read_text())["rows"][7]
    assert (row_bf16["method"], row_bf16["config"]["teacher_dtype"]) == ("keras_kd", "bfloat16")
    assert "teacher_dtype" not in rows[1]["config"]
    assert sorted(p.name for p in (tmp_path / "views").glob("*.npz"))[1].endswith("_bfloat16.npz")
    wrong = run_example(*args, "--methods", "keras_kd,live", script="cifar10.py")
    assert wrong.returncode == 2 and "--methods: live is not one of" in wrong.stderr
    wrong = run_example(*args, "--methods", "keras_kd_hints", "--loss", "dkd", script="cifar10.py")
    assert wrong.returncode == 2 and "keras_kd_hints takes the logits losses" in wrong.stderr


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


def test_cifar10_edge_qat_route_exports_the_saved_qat_student_and_reuses_it(tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("PIL")
    import keras

    from keras_kd import models

    folder = _cifar10_slice(tmp_path / "cifar10", per_class=8)
    models.build("cnn-small", (32, 32, 3), 10).save(tmp_path / "s.keras")
    models.build("mobile-small", (32, 32, 3), 10).save(tmp_path / "t.keras")
    out = tmp_path / "tflite"
    args = (str(tmp_path / "s.keras"), "--data", str(folder), "--output-dir", str(out),
            "--edge-files", "10", "--qat-teacher", str(tmp_path / "t.keras"), "--qat-steps", "2")
    proc = run_example(*args, script="cifar10_edge.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "s_qat.json").read_text())
    assert report["qat"]["model"] == str(out / "s_qat.keras")
    assert (report["qat"]["steps_per_epoch"], report["qat"]["alpha"]) == (2, 0.5)
    qat = keras.saving.load_model(out / "s_qat.keras")
    assert "FoldedQuantConv" in {type(layer).__name__ for layer in qat.layers}
    metadata = json.loads((out / "s_qat_int8.metadata.json").read_text())
    assert metadata["quantization"] == "int8" and metadata["quantization_aware_training"]
    assert report["int8"]["file"] == str(out / "s_qat_int8.tflite")
    assert report["edge"]["edge_equals_tflite"] == 10
    # a second run exports the saved QAT student instead of training another
    again = run_example(*args, script="cifar10_edge.py")
    assert again.returncode == 0 and f"reusing {out / 's_qat.keras'}" in again.stdout
    rerun = json.loads((out / "s_qat.json").read_text())["int8"]
    for key in ("tflite_accuracy", "top1_agreement", "max_abs_diff", "size_bytes"):
        assert rerun[key] == report["int8"][key]
    wrong = run_example(*args, "--qat-epochs", "0", script="cifar10_edge.py")
    assert wrong.returncode == 2 and "--qat-epochs must be at least 1, got 0" in wrong.stderr
