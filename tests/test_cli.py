"""`keras-kd` command line: validation before work, quiet output, each command end to end,
results JSON that reproduces its run, crash safety (subprocess tests), clean errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import REPO
from keras_kd import cli
from keras_kd import data
from keras_kd import models
from keras_kd import workflows

NATIVE_LOG = re.compile(
    r"^(?:[IWEF]\d{4} |\d{4}-\d\d-\d\d \d\d:\d\d|WARNING: All log messages before absl)|"
    r"oneDNN|cuInit|cuda|SavedModel|flatbuffer|XNNPACK|fully_quantize|tf\.lite\.Interpreter",
    re.MULTILINE,
)


def run_cli(*argv):
    return cli.main([str(a) for a in argv])


def keras_kd_process(*argv, cwd=None, **kwargs):
    """`python -m keras_kd.cli ARGV` in a subprocess, importing this checkout's keras_kd."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # conftest sets it; the CLI must do it itself
    return subprocess.run([sys.executable, "-m", "keras_kd.cli", *map(str, argv)], cwd=cwd,
                          env=env, capture_output=True, text=True, **kwargs)


def weights_of(path):
    return keras.saving.load_model(path).get_weights()


# ---------------------------------------------------------------- validation before work
def test_help_explains_every_option():
    out = keras_kd_process("--help", check=True).stdout
    for command in ("train-teacher", "distill", "evaluate", "export", "verify", "demo", "rerun"):
        assert command in out
    for name, subparser in cli.build_parser().commands.items():
        for action in subparser._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"


def test_version_without_tensorflow():
    start = time.time()
    proc = keras_kd_process("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "keras-kd 0.1.0"
    assert time.time() - start < 5


def test_cli_lists_match_the_library():
    from keras_kd import distribute, export, losses, precision

    assert cli.MODEL_NAMES == tuple(models.names())
    assert cli.STRATEGIES == tuple(distribute.STRATEGIES)
    assert cli.QUANTIZATIONS == export.QUANTIZATIONS  # qat: a saved `distill --qat` model
    assert set(cli.PRECISIONS) == set(precision.POLICIES)
    for name in cli.LOSSES:
        losses.get(name)  # every CLI loss name resolves


# Each case: argv, the option the error must name. `--data bad.npz` exists but is not an
# .npz: had any data loaded, the error would be another one, and later.
BAD_VALUES = [
    (["distill", "--teacher", "t.keras", "--alpha", "1.5"], "--alpha"),
    (["distill", "--teacher", "t.keras", "--alpha", "-0.1"], "--alpha"),
    (["distill", "--teacher", "t.keras", "--temperature", "0"], "--temperature"),
    (["distill", "--teacher", "t.keras", "--temperature", "nan"], "--temperature"),
    (["distill", "--teacher", "t.keras", "--temperature", "inf"], "--temperature"),
    (["distill", "--teacher", "t.keras", "--temperature", "hot"], "--temperature"),
    (["distill", "--teacher", "t.keras", "--loss", "logits_mse", "--temperature", "2"],
     "--temperature"),
    (["distill", "--teacher", "t.keras", "--lr", "-1e-3"], "--lr"),
    (["distill", "--teacher", "t.keras", "--lr", "0"], "--lr"),
    (["distill", "--teacher", "missing.keras"], "--teacher"),
    (["distill", "--teacher", "notes.txt"], "--teacher"),
    (["distill", "--teacher", "t.keras", "--student", "resnet9000"], "--student"),
    (["distill", "--teacher", "t.keras", "--loss", "hinge"], "--loss"),
    (["distill", "--teacher", "t.keras", "--strategy", "gpu"], "--strategy"),
    (["distill", "--teacher", "t.keras", "--output", "t.keras", "--overwrite"], "--output"),
    (["distill", "--teacher", "t.keras", "--hint", "conv1"], "--hint"),
    (["distill", "--teacher", "t.keras", "--attention", "a:b:0"], "--attention"),
    (["distill", "--teacher", "t.keras", "--prune", "1"], "--prune"),
    (["distill", "--teacher", "t.keras", "--qat", "--prune", "0.5"], "--prune"),
    (["distill", "--teacher", "t.keras", "--dkd-beta", "2"], "--dkd-beta"),
    (["train-teacher", "--epochs", "0"], "--epochs"),
    (["train-teacher", "--epochs", "2.5"], "--epochs"),
    (["train-teacher", "--batch-size", "-4"], "--batch-size"),
    (["train-teacher", "--seed", "-1"], "--seed"),
    (["train-teacher", "--model", "resnet9000"], "--model"),
    (["train-teacher", "--mixed-precision", "fp8"], "--mixed-precision"),
    (["train-teacher", "--validation-split", "1"], "--validation-split"),
    (["train-teacher", "--verbose", "3"], "--verbose"),
    (["train-teacher", "--output", "t.keras"], "--output"),  # exists, no --overwrite
    (["train-teacher", "--results", "notes.txt"], "--results"),  # exists, no --overwrite
    (["export", "--model", "t.keras", "--output", "x.tflite", "--quantization", "int4"],
     "--quantization"),
    (["export", "--model", "t.keras", "--output", "x.tflite", "--calibration-samples", "0"],
     "--calibration-samples"),
    (["export", "--model", "t.keras", "--output", "x.tflite", "--int8-io"], "--int8-io"),
    (["verify", "--model", "t.keras", "--tflite", "missing.tflite"], "--tflite"),
    (["demo", "--pairs", "0"], "--pairs"),
    (["demo", "--student-epochs", "-5"], "--student-epochs"),
    (["rerun", "notes.txt"], "config"),
]


@pytest.mark.parametrize("argv,option", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_value_fails_before_any_work(argv, option, tmp_path):
    (tmp_path / "bad.npz").write_text("not an npz")
    (tmp_path / "t.keras").write_text("not loaded before the arguments are checked")
    (tmp_path / "notes.txt").write_text("{}")
    data = [] if argv[0] in ("demo", "rerun") else ["--data", "bad.npz"]
    start = time.time()
    proc = keras_kd_process(*argv[:1], *data, *argv[1:], cwd=tmp_path)
    elapsed = time.time() - start
    assert proc.returncode == 2, proc.stderr
    assert f"argument {option}" in proc.stderr, proc.stderr
    assert "usage: keras-kd" in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 5, f"{elapsed:.1f} s"


def test_bad_data_path_fails_before_any_work(tmp_path):
    proc = keras_kd_process("train-teacher", "--data", "no/such/mnist.npz", cwd=tmp_path)
    assert proc.returncode == 2 and "argument --data: no such file" in proc.stderr


def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch, capsys):
    # (the tests may run as root, for whom every directory is writable: simulate one that is not)
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["train-teacher", "--output", str(tmp_path / "sub" / "t.keras")])
    assert exit_info.value.code == 2
    assert f"argument --output: cannot write '{tmp_path}/sub/t.keras' ('{tmp_path}' is not " \
           "writable)" in capsys.readouterr().err


# ---------------------------------------------------------------- clean errors at run time
def test_bad_model_file_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = keras_kd_process("evaluate", "--data", "digits", "--model", bad)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        f"keras-kd evaluate: error: argument --model: cannot load '{bad}' as a Keras model")
    assert "Traceback" not in proc.stderr
    # the one line, then where TensorFlow's native log of the failed run was kept
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("TensorFlow's native log of this run: ")


@pytest.fixture()
def mnist_shaped(tmp_path):
    path = tmp_path / "mnist_like.keras"
    models.build("mlp-tiny", (28, 28, 1), 10).save(path)
    return path


def test_export_without_data_says_what_the_model_needs(mnist_shaped, tmp_path, capsys):
    assert run_cli("export", "--model", mnist_shaped, "--output", tmp_path / "m.tflite") == 1
    err = capsys.readouterr().err
    assert "argument --data: required for a model whose input shape is (28, 28, 1)" in err
    assert run_cli("export", "--model", mnist_shaped, "--data", "digits",
                   "--output", tmp_path / "m.tflite") == 1
    err = capsys.readouterr().err
    assert "takes inputs of shape (28, 28, 1), but --data 'digits' has (8, 8, 1)" in err
    assert not (tmp_path / "m.tflite").exists()


# ---------------------------------------------------------------- the commands end to end
def test_train_distill_evaluate_export_verify(tmp_path, capsys):
    teacher, student, tflite = tmp_path / "t.keras", tmp_path / "s.keras", tmp_path / "s.tflite"
    assert run_cli("train-teacher", "--data", "digits", "--epochs", 8, "--batch-size", 64,
                   "--output", teacher, "--results", tmp_path / "t.json", "--verbose", 0) == 0
    t = json.load(open(tmp_path / "t.json"))
    assert t["test_accuracy"] > 0.9 and t["params"] == 1_531_210 and teacher.exists()
    # validation metrics come from 10 % of the 1,348 training images, never from the test set
    assert len(t["history"]["val_accuracy"]) == 8 and t["config"]["validation_split"] == 0.1

    assert run_cli("distill", "--data", "digits", "--teacher", teacher, "--student", "mlp-tiny",
                   "--epochs", 30, "--lr", 3e-3, "--temperature", 3, "--batch-size", 64,
                   "--output", student, "--results", tmp_path / "s.json", "--verbose", 0) == 0
    s = json.load(open(tmp_path / "s.json"))
    assert s["test_accuracy"] > 0.85 and s["params"] == 1930 and s["temperature"] == 3.0
    assert {"loss", "hard_loss", "distillation_loss", "val_loss"} <= set(s["history"])
    assert s["replicas"] == 1 and s["per_replica_batch_size"] == 64
    config = s["config"]
    assert {k: config[k] for k in ("command", "data", "teacher", "student", "epochs",
                                   "batch_size", "lr", "alpha", "temperature", "loss", "seed",
                                   "precision_policy", "strategy")} == {
        "command": "distill", "data": "digits", "teacher": str(teacher), "student": "mlp-tiny",
        "epochs": 30, "batch_size": 64, "lr": 3e-3, "alpha": 0.1, "temperature": 3.0,
        "loss": "kl_divergence", "seed": 0, "precision_policy": "float32", "strategy": "auto"}
    assert s["versions"]["keras"] == keras.__version__ and s["versions"]["keras_kd"] == "0.1.0"

    assert run_cli("evaluate", "--model", student, "--results", tmp_path / "e.json") == 0
    e = json.load(open(tmp_path / "e.json"))
    assert e["test_accuracy"] == pytest.approx(s["test_accuracy"]) and e["data"] == "digits"

    assert run_cli("export", "--data", "digits", "--model", student, "--output", tflite,
                   "--quantization", "int8", "--results", tmp_path / "x.json") == 0
    x = json.load(open(tmp_path / "x.json"))
    assert x["metadata"]["quantization"] == "int8" and x["verify"]["top1_agreement"] > 0.97
    assert run_cli("verify", "--model", student, "--tflite", tflite) == 0
    assert "agreement" in capsys.readouterr().out
    # an existing output is refused without --overwrite, by argparse (exit 2)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("export", "--model", student, "--output", tflite)
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_distill_predicts_the_test_set_once_per_model(tmp_path):
    from helpers import INFERENCE_IDS, InferenceRecorder

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4, 4, 1)).astype("float32")
    x[:, 0, 0, 0] = np.arange(60)  # each example carries its index: the test set is 40..59
    y = rng.integers(0, 3, size=60)
    np.savez(tmp_path / "d.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    for name in ("teacher_ids", "student_ids"):
        inputs = keras.Input((4, 4, 1))
        h = keras.layers.Flatten()(InferenceRecorder(name=name)(inputs))
        keras.Model(inputs, keras.layers.Dense(3)(h)).save(tmp_path / f"{name}.keras")
    INFERENCE_IDS.clear()
    assert run_cli("distill", "--data", tmp_path / "d.npz", "--teacher",
                   tmp_path / "teacher_ids.keras", "--student", tmp_path / "student_ids.keras",
                   "--epochs", 1, "--batch-size", 8, "--output", tmp_path / "s.keras",
                   "--results", tmp_path / "s.json", "--verbose", 0) == 0
    for name in ("teacher_ids", "student_ids"):  # each test example exactly once per model
        assert sorted(i for i in INFERENCE_IDS[name] if i >= 40) == list(range(40, 60))
    s = json.load(open(tmp_path / "s.json"))
    per_class = s["dark_knowledge"]["per_class"]
    assert sum(per_class["examples"]) == 20
    assert np.dot(per_class["student_accuracy"], per_class["examples"]) / 20 == pytest.approx(
        s["test_accuracy"], abs=1e-12)


def test_logits_mse_records_no_temperature(tmp_path):
    teacher = tmp_path / "t.keras"
    models.build("mlp-tiny", (8, 8, 1), 10).save(teacher)
    assert run_cli("distill", "--teacher", teacher, "--student", "mlp-tiny", "--epochs", 1,
                   "--loss", "logits_mse", "--output", tmp_path / "s.keras",
                   "--results", tmp_path / "s.json", "--verbose", 0) == 0
    s = json.load(open(tmp_path / "s.json"))
    assert s["config"]["temperature"] is None and s["temperature"] is None


def test_export_a_saved_distiller_exports_its_student(tmp_path):
    from keras_kd import Distiller

    teacher = models.build("mlp-tiny", (8, 8, 1), 10)
    student = models.build("mlp-tiny", (8, 8, 1), 10)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.save(tmp_path / "distiller.keras")
    assert run_cli("export", "--model", tmp_path / "distiller.keras", "--output",
                   tmp_path / "s.tflite", "--results", tmp_path / "x.json") == 0
    x = json.load(open(tmp_path / "x.json"))
    assert x["data"] == "digits"  # inferred from the student's (8, 8, 1) input
    assert x["verify"]["top1_agreement"] == 1.0
    assert x["verify"]["keras_accuracy"] == workflows.accuracy(student, data.load("digits"))


def test_demo_small_budget(tmp_path, capsys, monkeypatch):
    from keras_kd import dark_knowledge

    predicted = []  # (model, examples) of each look at the test set for the scores

    def predict_labelled(model, batches, _predict=workflows.predict_labelled):
        predictions = _predict(model, batches)
        predicted.append((model, len(predictions.labels)))
        return predictions

    def compute(*args, **kwargs):
        raise AssertionError("the dark-knowledge section predicts the test set again")

    monkeypatch.setattr(workflows, "predict_labelled", predict_labelled)
    monkeypatch.setattr(dark_knowledge, "compute", compute)
    assert run_cli("demo", "--output-dir", tmp_path, "--teacher-epochs", 3,
                   "--student-epochs", 3, "--pairs", 2) == 0
    # the teacher and 2 pairs of students, each predicted once on the 449 test images
    assert len(predicted) == 5 and len({id(m) for m, _ in predicted}) == 5
    assert all(n == 449 for _, n in predicted)
    results = json.load(open(tmp_path / "results.json"))
    assert set(results["models"]) == {"teacher", "student_scratch", "student_distilled"}
    assert set(results["tflite"]) == {"float32", "int8"}
    assert results["tflite"]["float32"]["top1_agreement"] == 1.0
    assert set(results["tflite_float32"]) == {"teacher", "student_scratch", "student_distilled"}
    assert [p["seed"] for p in results["pairs"]] == [1, 2]
    first = results["pairs"][0]["distilled"]
    assert first == results["models"]["student_distilled"]["test_accuracy"]
    assert results["config"]["alpha"] == 0.3 and results["config"]["student_epochs"] == 3
    out = capsys.readouterr().out.splitlines()
    # one line per trained model (1 teacher + 2 pairs x 2), tables, and the gain last
    assert sum(" epochs " in line and "test accuracy" in line for line in out) == 5
    assert not any(line.startswith("Epoch ") for line in out)
    assert out[-1].startswith("distillation gain over the scratch twin, 2 pairs")
    assert any(line.startswith("student int8") for line in out[-8:])
    # the first pair's distilled student against the teacher, per test class
    per_class = results["dark_knowledge"]["per_class"]
    assert sum(per_class["examples"]) == 449
    assert np.dot(per_class["student_accuracy"], per_class["examples"]) / 449 == pytest.approx(
        results["models"]["student_distilled"]["test_accuracy"], abs=1e-12)
    assert np.dot(per_class["teacher_accuracy"], per_class["examples"]) / 449 == pytest.approx(
        results["models"]["teacher"]["test_accuracy"], abs=1e-12)
    for name in ("report.md", "curves.png", "tradeoffs.png", "dark_knowledge_similarity.png",
                 "dark_knowledge_per_class.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| teacher | 1,531,210 |" in (tmp_path / "report.md").read_text()
    assert run_cli("report", tmp_path / "teacher_float32.metadata.json") == 1
    assert "expected a 'models' section" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # results of an earlier demo: refused without --overwrite
        run_cli("demo", "--output-dir", tmp_path, "--pairs", 1)


# ---------------------------------------------------------------- processes: quiet, reproducible,
# crash-safe
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory with an (untrained) digits teacher."""
    path = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    models.build("mlp-tiny", (8, 8, 1), 10).save(path / "t.keras")
    return path


DISTILL = ["distill", "--teacher", "t.keras", "--student", "mlp-tiny", "--batch-size", "16",
           "--lr", "3e-3", "--seed", "3", "--verbose", "0"]


# Lines TensorFlow printed in a `keras-kd demo` run before the CLI silenced them.
SEEN_BEFORE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795439492.488391    3359 port.cc:153] oneDNN custom operations are on.
E0000 00:00:1795439495.107422    3359 cuda_platform.cc:52] failed call to cuInit: INTERNAL
W0000 00:00:1795439499.689198    3359 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.
I0000 00:00:1795439499.689576    3359 reader.cc:83] Reading SavedModel from: /tmp/tmplaxspeov
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, output_inference_type: FLOAT32
2026-11-23 13:02:11.123456: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow
"""


def test_export_script_wraps_the_cli_and_an_int8_export_prints_no_tensorflow_log_line(workdir):
    assert len(NATIVE_LOG.findall(SEEN_BEFORE)) >= 8  # the pattern catches each kind of line
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # conftest sets it; the CLI must do it itself
    out = subprocess.run(
        [sys.executable, str(REPO / "export" / "export_tflite.py"), "t.keras",
         "--quantization", "int8", "--output", "q.tflite"],  # data inferred: digits
        cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert (workdir / "q.tflite").exists() and (workdir / "q.metadata.json").exists()
    assert "agreement" in out.stdout
    assert NATIVE_LOG.findall(out.stdout + out.stderr) == [], out.stdout + out.stderr


def test_same_command_killed_resumed_and_rerun_give_identical_weights_and_figures(workdir):
    """One command run three ways, each in its own process: straight through; killed after
    epoch 3 and run again (it resumes from its backup); and `rerun` of the first run's results.
    All three end with the same weights, bit for bit."""
    epochs = 12
    reference = keras_kd_process(*DISTILL, "--epochs", epochs, "--output", "ref.keras",
                                 "--results", "ref.json", "--backup-dir", "backup_ref", cwd=workdir)
    assert reference.returncode == 0, reference.stderr
    assert f"distilled student: {epochs} epochs" in reference.stdout
    assert NATIVE_LOG.findall(reference.stdout + reference.stderr) == []  # quiet training

    argv = [*DISTILL, "--epochs", str(epochs), "--output", "resumed.keras",
            "--results", "resumed.json", "--backup-dir", "backup", "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    victim = subprocess.Popen([sys.executable, "-m", "keras_kd.cli", *argv], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = workdir / "backup" / "training_metadata.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(metadata.read_text())["epoch"] >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = json.loads(metadata.read_text())["epoch"]
    assert 3 <= killed_at < epochs and not (workdir / "resumed.keras").exists()
    again = keras_kd_process(*argv, cwd=workdir)
    assert again.returncode == 0, again.stderr

    rerun = keras_kd_process("rerun", "ref.json", "--output", "c.keras", "--results", "c.json",
                             cwd=workdir)
    assert rerun.returncode == 0, rerun.stderr
    assert f"distilled student: {epochs} epochs" in rerun.stdout

    figures = {name: json.loads((workdir / f"{name}.json").read_text())
               for name in ("ref", "resumed", "c")}
    assert figures["resumed"]["initial_epoch"] == killed_at
    assert figures["resumed"]["initial_epoch"] + figures["resumed"]["epochs_run"] == epochs
    for key, values in figures["resumed"]["history"].items():  # the epochs after the kill
        assert values == figures["ref"]["history"][key][killed_at:], key
    assert figures["c"]["history"] == figures["ref"]["history"]
    assert figures["c"]["test_accuracy"] == figures["ref"]["test_accuracy"]
    assert figures["resumed"]["test_accuracy"] == figures["ref"]["test_accuracy"]
    assert figures["c"]["config"] == {**figures["ref"]["config"], "output": "c.keras",
                                      "results": "c.json"}
    expected = weights_of(workdir / "ref.keras")
    for name in ("resumed", "c"):
        for u, v in zip(expected, weights_of(workdir / f"{name}.keras")):
            np.testing.assert_array_equal(u, v)
    assert figures["ref"]["history"]["loss"][-1] < figures["ref"]["history"]["loss"][0]  # trained


# Runs the CLI with `os.replace` (the rename that publishes a finished temporary file) made to
# announce itself and wait: the test kills the process while the file is written but not
# yet in place, the moment a non-atomic writer would leave a partial destination.
SLOW_RENAME = """
import runpy, sys, time
import tensorflow as tf
rename = tf.io.gfile.rename  # keras_kd.atomic publishes files with it
def announce_and_wait(src, dst, overwrite=False):
    if str(dst).endswith(".tflite"):
        open(MARKER, "w").close()
        time.sleep(60)
    rename(src, dst, overwrite=overwrite)
tf.io.gfile.rename = announce_and_wait
sys.argv = ["keras-kd", *sys.argv[2:]]  # drops "-c" and the "_" placeholder
runpy.run_module("keras_kd.cli", run_name="__main__")
"""


def test_killed_export_leaves_no_partial_file(workdir):
    out, marker = workdir / "exports", workdir / "renaming"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    victim = subprocess.Popen(
        [sys.executable, "-c", SLOW_RENAME.replace("MARKER", repr(str(marker))), "_",
         "export", "--model", "t.keras", "--quantization", "int8", "--output",
         str(out / "e.tflite")],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not marker.exists() and victim.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), victim.communicate()[1][-2000:]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    leftovers = [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 1000  # written, not published
    assert not (out / "e.tflite").exists()
