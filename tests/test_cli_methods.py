"""`keras-kd distill --method/--hint/--attention/--qat/--prune`: the options' validation
(exact messages, before any work), tiny runs on the bundled digits that check the logged
objective against its terms, the results JSON and `rerun`."""

import importlib.util
import inspect
import json

import keras
import numpy as np
import pytest

from keras_kd import cli
from keras_kd import cli_methods
from keras_kd import models
from keras_kd import runconfig
from keras_kd import terms


def run_cli(*argv):
    return cli.main([str(a) for a in argv])


@pytest.fixture()
def teachers(tmp_path, monkeypatch):
    """Untrained digits teachers (an MLP and a CNN) in the working directory."""
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    models.build("mlp-tiny", (8, 8, 1), 10).save("mlp.keras")
    models.build("cnn-student", (8, 8, 1), 10).save("cnn.keras")
    return tmp_path


def test_defaults_are_the_librarys():
    dkd = inspect.signature(terms.dkd).parameters
    assert cli_methods.DKD_DEFAULTS == {"dkd_alpha": dkd["alpha"].default,
                                        "dkd_beta": dkd["beta"].default,
                                        "dkd_warmup": dkd["warmup_epochs"].default}
    assert dkd["temperature"].default == cli.DEFAULT_TEMPERATURE
    assert dkd["weight"].default == 1.0  # what --alpha's help says DKD weighs
    hint = inspect.signature(terms.Hint).parameters
    assert cli_methods.HINT_WEIGHT == hint["weight"].default and hint["adapter"].default == "auto"
    at = inspect.signature(terms.AttentionTransfer).parameters
    assert cli_methods.ATTENTION_WEIGHT == at["weight"].default


PAIR = "TEACHER_LAYER:STUDENT_LAYER[:WEIGHT]"
BAD = [
    (["--hint", "conv1"], f"argument --hint: expected {PAIR}, received 'conv1'"),
    (["--attention", "a:b:c:d"], f"argument --attention: expected {PAIR}, received 'a:b:c:d'"),
    (["--hint", ":b"], f"argument --hint: expected {PAIR}, received ':b'"),
    (["--hint", "a:b:0"], f"argument --hint: expected {PAIR} with a WEIGHT that is a finite "
                          "number > 0, received 'a:b:0'"),
    (["--attention", "a:b:-2"], f"argument --attention: expected {PAIR} with a WEIGHT that is "
                                "a finite number > 0, received 'a:b:-2'"),
    (["--hint", "a:b:heavy"], f"argument --hint: expected {PAIR} with a WEIGHT that is a finite "
                              "number > 0, received 'a:b:heavy'"),
    (["--dkd-beta", "2"], "argument --dkd-beta: only with --method dkd, received --method kd"),
    (["--method", "dkd", "--dkd-alpha", "-1"],
     "argument --dkd-alpha: expected a finite number >= 0, received '-1'"),
    (["--method", "dkd", "--dkd-warmup", "1.5"],
     "argument --dkd-warmup: expected an integer, received '1.5'"),
    (["--method", "dkd", "--loss", "kl_divergence"],
     "argument --loss: --method dkd has its own loss (Decoupled KD); received --loss "
     "kl_divergence"),
    (["--prune", "1"], "argument --prune: expected a fraction of zero weights in (0, 1), "
                       "received '1'"),
    (["--prune", "0"], "argument --prune: expected a fraction of zero weights in (0, 1), "
                       "received '0'"),
    (["--qat", "--prune", "0.5"],
     "argument --prune: cannot be combined with --qat (the library has no joint route); "
     "distil with --prune, then export the pruned student with `keras-kd export "
     "--quantization int8` for a sparse int8 file"),
    (["--qat", "--hint", "a:b"], "argument --hint: not with --qat (it trains a rebuilt student "
                                 "whose layers differ); received --hint a:b"),
    (["--prune", "0.5", "--method", "dkd"],
     "argument --prune: the TFMOT training loop distils with --method kd --loss kl_divergence "
     "only; received --method dkd"),
    (["--prune", "0.5", "--strategy", "mirrored"],
     "argument --strategy: --prune trains on one device; received --strategy mirrored"),
    (["--qat", "--mixed-precision", "auto"],
     "argument --mixed-precision: --qat trains in float32; received --mixed-precision auto"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_method_options_fail_before_any_work(extra, message, tmp_path, capsys):
    (tmp_path / "t.keras").write_text("not loaded before the arguments are checked")
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["distill", "--teacher", str(tmp_path / "t.keras"), *extra])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"keras-kd distill: error: {message}"


LAYER_ERRORS = [
    ("mlp.keras", "mlp-tiny", ["--hint", "conv9:dense_0"],
     "argument --hint: no layer 'conv9' in --teacher 'mlp.keras' (received 'conv9:dense_0'); "
     f"expected {PAIR} naming layers that output 2-D vectors or 4-D feature maps, e.g. teacher "
     "layers 'input', 'flatten', 'dense_0', 'dense_1', 'logits'"),
    ("mlp.keras", "mlp.keras", ["--hint", "dense_0:dense_0", "--hint", "logits:nope:3"],
     "argument --hint: no layer 'nope' in --student 'mlp.keras' (received 'logits:nope:3'); "
     f"expected {PAIR} naming layers that output 2-D vectors or 4-D feature maps, e.g. student "
     "layers 'input', 'flatten', 'dense_0', 'dense_1', 'logits'"),
    ("cnn.keras", "cnn-student", ["--attention", "dense:conv_0"],
     "argument --attention: layer 'dense' outputs (None, 32) in --teacher 'cnn.keras' "
     f"(received 'dense:conv_0'); expected {PAIR} naming layers that output 4-D feature maps, "
     "e.g. teacher layers 'input', 'conv_0', 'bn_0', 're_lu', 'max_pooling2d', 'conv_1', ... "
     "(9 in all)"),
    ("cnn.keras", "mlp-tiny", ["--hint", "conv_0:dense_0"],
     "argument --hint: 'conv_0:dense_0' pairs a teacher output (None, 8, 8, 8) with a student "
     "output (None, 20); expected two 2-D vectors or two 4-D feature maps"),
]


@pytest.mark.parametrize("teacher,student,extra,message", LAYER_ERRORS,
                         ids=[" ".join(e[2]) for e in LAYER_ERRORS])
def test_layer_names_are_checked_against_the_models(teacher, student, extra, message, teachers,
                                                    capsys):
    assert run_cli("distill", "--teacher", teacher, "--student", student, *extra,
                   "--output", "s.keras", "--results", "s.json", "--verbose", 0) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == f"keras-kd distill: error: {message}"
    assert "Epoch" not in captured.out and not (teachers / "s.keras").exists()


def _history(path):
    results = json.loads(path.read_text())
    return results, {k: np.array(v) for k, v in results["history"].items()}


def test_dkd_logs_its_warmed_up_term_records_it_and_reruns(teachers):
    argv = ["distill", "--teacher", "mlp.keras", "--student", "mlp-tiny", "--method", "dkd",
            "--dkd-beta", 4, "--dkd-warmup", 2, "--epochs", 2, "--batch-size", 64, "--lr", 3e-3,
            "--verbose", 0]
    assert run_cli(*argv, "--output", "a.keras", "--results", "a.json") == 0
    results, h = _history(teachers / "a.json")
    config = results["config"]
    assert {k: config[k] for k in ("method", "alpha", "loss", "temperature", "dkd_alpha",
                                   "dkd_beta", "dkd_warmup", "hint", "attention", "qat",
                                   "prune")} == {
        "method": "dkd", "alpha": 1.0, "loss": None, "temperature": 4.0, "dkd_alpha": 1.0,
        "dkd_beta": 4.0, "dkd_warmup": 2, "hint": None, "attention": None, "qat": False,
        "prune": None}
    assert results["terms"] == [{"kind": "Logits", "name": "dkd_loss", "weight": 1.0,
                                 "warmup_epochs": 2, "temperature": 4.0,
                                 "loss": {"class_name": "DecoupledKD", "alpha": 1.0,
                                          "beta": 4.0}}]
    assert {"dkd_loss", "val_dkd_loss"} <= set(h) and "distillation_loss" not in h
    # loss = 1.0 * hard + min((epoch + 1) / 2, 1) * dkd: half the DKD weight in epoch 0
    np.testing.assert_allclose(h["loss"], h["hard_loss"] + [0.5, 1.0] * h["dkd_loss"],
                               rtol=1e-4)
    assert np.all(h["dkd_loss"] > 0)

    assert run_cli("rerun", "a.json", "--output", "b.keras", "--results", "b.json") == 0
    rerun, h2 = _history(teachers / "b.json")
    assert rerun["config"] == {**config, "output": "b.keras", "results": "b.json"}
    assert rerun["history"] == results["history"]


def test_hints_and_attention_add_weighted_terms(teachers):
    argv = ["distill", "--teacher", "cnn.keras", "--student", "cnn-student", "--alpha", 0.3,
            "--hint", "conv_1:conv_0:2", "--attention", "conv_0:conv_0", "--epochs", 1,
            "--batch-size", 64, "--verbose", 0, "--output", "s.keras", "--results", "s.json"]
    assert run_cli(*argv) == 0
    results, h = _history(teachers / "s.json")
    assert results["config"]["hint"] == ["conv_1:conv_0:2"]
    assert results["config"]["attention"] == ["conv_0:conv_0"]
    assert [(t["kind"], t["name"], t["weight"]) for t in results["terms"]] == [
        ("Logits", "distillation_loss", None), ("Hint", "hint_loss", 2.0),
        ("AttentionTransfer", "at_loss", 500.0)]
    hint = results["terms"][1]
    # the teacher's conv_1 is (4, 4, 16), the student's conv_0 (8, 8, 8): a learned adapter
    assert (hint["teacher_layer"], hint["student_layer"], hint["adapter"]) == (
        "conv_1", "conv_0", True)
    assert results["terms"][2]["pairs"] == [["conv_0", "conv_0"]]
    for name in ("hint_loss", "at_loss", "distillation_loss"):
        assert name in h and f"val_{name}" in h and h[name][0] > 0
    np.testing.assert_allclose(
        h["loss"], 0.3 * h["hard_loss"] + 0.7 * h["distillation_loss"] + 2.0 * h["hint_loss"]
        + 500.0 * h["at_loss"], rtol=1e-4)
    # rerun repeats a repeatable option once per recorded value
    argv = runconfig.argv_from_results("s.json", cli.build_parser())
    assert argv[argv.index("--hint"):][:2] == ["--hint", "conv_1:conv_0:2"]
    assert argv.count("--attention") == 1 and "--method" in argv and "--dkd-alpha" not in argv
    student = keras.saving.load_model("s.keras")  # the adapter is not part of the student
    fresh = models.build("cnn-student", (8, 8, 1), 10)
    assert len(student.layers) == len(fresh.layers)
    assert student.count_params() == fresh.count_params()


def test_qat_saves_a_model_that_export_qat_takes(teachers, capsys):
    from keras_kd.optimize import native

    assert run_cli("distill", "--teacher", "cnn.keras", "--student", "cnn-student", "--qat",
                   "--method", "dkd", "--epochs", 1, "--lr", 1e-4, "--verbose", 0,
                   "--output", "q.keras", "--results", "q.json") == 0
    results = json.loads((teachers / "q.json").read_text())
    assert results["config"]["qat"] is True and results["terms"][0]["name"] == "dkd_loss"
    qat = keras.saving.load_model("q.keras")
    kinds = [type(layer).__name__ for layer in qat.layers]
    assert kinds.count("FoldedQuantConv") == 4 and "ActivationFakeQuant" in kinds
    assert run_cli("export", "--model", "q.keras", "--quantization", "qat",
                   "--output", "q.tflite", "--results", "x.json") == 0
    x = json.loads((teachers / "x.json").read_text())
    assert x["config"]["quantization"] == "qat" and x["metadata"]["quantization"] == "int8"
    sidecar = json.loads((teachers / "q.metadata.json").read_text())
    assert sidecar == x["metadata"] and sidecar["quantization_aware_training"] is True
    assert sidecar["input"]["dtype"] == "float32" and sidecar["output"]["dtype"] == "float32"
    assert x["verify"]["top1_agreement"] >= 0.95
    assert native.ops_report("q.tflite")["int8_only"]
    # a float model has no trained ranges: refused, post-training int8 suggested
    capsys.readouterr()
    assert run_cli("export", "--model", "cnn.keras", "--quantization", "qat",
                   "--output", "f.tflite") == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "keras-kd export: error: argument --quantization: qat exports a model trained with "
        "`keras-kd distill --qat` (it has fake-quantization layers); --model 'cnn.keras' has "
        "none: use --quantization int8 for post-training quantization")


def test_prune_saves_a_student_with_the_target_sparsity(teachers):
    for name in ("tf_keras", "tensorflow_model_optimization"):  # find_spec: see test_optimize
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install keras-kd[optimize])")
    from keras_kd.optimize import measure

    assert run_cli("distill", "--teacher", "mlp.keras", "--student", "mlp-tiny",
                   "--prune", 0.5, "--epochs", 1, "--verbose", 0,
                   "--output", "p.keras", "--results", "p.json") == 0
    results = json.loads((teachers / "p.json").read_text())
    assert results["config"]["prune"] == 0.5 and results["pruning"]["target_sparsity"] == 0.5
    pruned = keras.saving.load_model("p.keras")  # a plain Keras 3 model: export takes it
    assert {type(layer).__module__.split(".")[0] for layer in pruned.layers} == {"keras"}
    sparsity, count = measure.kernel_sparsity(pruned)
    # the kernels of the three Dense layers: 64*20 + 20*20 + 20*10
    assert count == 1880 and sparsity == pytest.approx(0.5, abs=0.01)
    assert results["pruning"]["kernel_sparsity"] == pytest.approx(sparsity)
    assert {"loss", "hard_loss", "distillation_loss", "val_loss"} <= set(results["history"])
