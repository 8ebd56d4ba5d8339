"""`keras-kd` command line: help texts, each command end to end on bundled data, errors."""

import json
import os
import subprocess
import sys

import pytest

from keras_kd import cli


def run_cli(*argv):
    return cli.main([str(a) for a in argv])


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "keras_kd.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("train-teacher", "distill", "evaluate", "export", "verify", "demo"):
        assert command in out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():
        for action in subparser._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"


def test_train_distill_evaluate_export_verify(tmp_path, capsys):
    teacher, student, tflite = tmp_path / "t.keras", tmp_path / "s.keras", tmp_path / "s.tflite"
    assert run_cli("train-teacher", "--data", "digits", "--epochs", 8, "--batch-size", 64,
                   "--output", teacher, "--results", tmp_path / "t.json", "--verbose", 0) == 0
    t = json.load(open(tmp_path / "t.json"))
    assert t["test_accuracy"] > 0.9 and t["params"] == 1_531_210 and teacher.exists()

    assert run_cli("distill", "--data", "digits", "--teacher", teacher, "--student", "mlp-tiny",
                   "--epochs", 30, "--lr", 3e-3, "--temperature", 3, "--batch-size", 64,
                   "--output", student, "--results", tmp_path / "s.json", "--verbose", 0) == 0
    s = json.load(open(tmp_path / "s.json"))
    assert s["test_accuracy"] > 0.85 and s["params"] == 1930 and s["temperature"] == 3.0
    assert {"loss", "hard_loss", "distillation_loss", "val_loss"} <= set(s["history"])
    assert s["replicas"] == 1 and s["per_replica_batch_size"] == 64

    assert run_cli("evaluate", "--data", "digits", "--model", student,
                   "--results", tmp_path / "e.json") == 0
    e = json.load(open(tmp_path / "e.json"))
    assert e["test_accuracy"] == pytest.approx(s["test_accuracy"])

    assert run_cli("export", "--data", "digits", "--model", student, "--output", tflite,
                   "--quantization", "int8", "--results", tmp_path / "x.json") == 0
    x = json.load(open(tmp_path / "x.json"))
    assert x["metadata"]["quantization"] == "int8" and x["verify"]["top1_agreement"] > 0.97
    assert run_cli("verify", "--data", "digits", "--model", student, "--tflite", tflite) == 0
    assert "agreement" in capsys.readouterr().out


def test_export_script_wraps_the_cli(tmp_path):
    assert run_cli("train-teacher", "--data", "digits", "--model", "mlp-tiny", "--epochs", 2,
                   "--output", tmp_path / "m.keras", "--verbose", 0) == 0
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, os.path.join(repo, "export", "export_tflite.py"), tmp_path / "m.keras",
         "--quantization", "dynamic", "--calibration-data", "digits", "--output",
         tmp_path / "m.tflite"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m.tflite").exists() and (tmp_path / "m.metadata.json").exists()


def test_demo_small_budget(tmp_path, capsys):
    assert run_cli("demo", "--output-dir", tmp_path, "--teacher-epochs", 3,
                   "--student-epochs", 3, "--pairs", 2, "--verbose", 0) == 0
    results = json.load(open(tmp_path / "results.json"))
    assert set(results["models"]) == {"teacher", "student_scratch", "student_distilled"}
    assert set(results["tflite"]) == {"float32", "int8"}
    assert results["tflite"]["float32"]["top1_agreement"] == 1.0
    assert set(results["tflite_float32"]) == {"teacher", "student_scratch", "student_distilled"}
    assert [p["seed"] for p in results["pairs"]] == [1, 2]
    assert results["pairs"][0]["distilled"] == results["models"]["student_distilled"]["test_accuracy"]
    out = capsys.readouterr().out
    assert "distillation gain over the scratch twin" in out and "student int8" in out
    for name in ("report.md", "curves.png", "tradeoffs.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| teacher | 1,531,210 |" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="expected a 'models' section"):
        run_cli("report", tmp_path / "teacher_float32.metadata.json")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["distill", "--teacher", "t.keras", "--epochs", "0"], "--epochs: expected a positive"),
        (["train-teacher", "--model", "resnet9000", "--epochs", "1"], "Expected one of"),
    ],
)
def test_bad_values_are_named(argv, message, capsys):
    try:
        code = cli.main(argv)
    except ValueError as e:
        assert message in str(e)
        return
    assert code == 2 and message in capsys.readouterr().err
