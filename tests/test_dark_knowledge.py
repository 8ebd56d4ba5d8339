"""keras_kd.dark_knowledge against hand computations, and the report's two plots."""

import json
import math

import keras
import numpy as np
import pytest

from keras_kd import cli, dark_knowledge, models, report
from helpers import X, Y, make_student, make_teacher

NAMES = ["cat", "dog", "ship"]
T = 2.0
TEACHER = [[4.0, 1.0, 0.0], [2.0, 3.0, 0.0], [0.0, 0.0, 5.0],
           [1.0, 4.0, 1.0], [3.0, 0.0, 1.0], [0.0, 2.0, 2.5]]  # top-1: 0, 1, 2, 1, 0, 2
STUDENT = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0],
           [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]  # top-1: 0, 1, 1, 1, 2, 2
LABELS = [0, 0, 1, 1, 2, 2]


def hand_similarity(logits, labels, t, num_classes):
    """Row c: mean over the examples of class c of exp(z_j / t) / sum_k exp(z_k / t)."""
    rows = []
    for c in range(num_classes):
        softened = []
        for z, y in zip(logits, labels):
            if y == c:
                e = [math.exp(v / t) for v in z]
                softened.append([v / sum(e) for v in e])
        rows.append([sum(p[j] for p in softened) / len(softened) for j in range(num_classes)])
    return rows


def test_similarity_and_per_class_figures_equal_the_hand_computation():
    summary = dark_knowledge.from_logits(TEACHER, STUDENT, LABELS, NAMES, temperature=T)
    assert summary["temperature"] == T and summary["class_names"] == NAMES
    np.testing.assert_allclose(summary["similarity"], hand_similarity(TEACHER, LABELS, T, 3),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.sum(summary["similarity"], axis=1), 1.0, rtol=0, atol=1e-12)
    # dog (row 1): its examples [0, 0, 5]/2 -> e^[0, 0, 2.5], and [1, 4, 1]/2 -> e^[.5, 2, .5]
    dog = (np.exp([0, 0, 2.5]) / np.exp([0, 0, 2.5]).sum()
           + np.exp([0.5, 2, 0.5]) / np.exp([0.5, 2, 0.5]).sum()) / 2
    np.testing.assert_allclose(summary["similarity"][1], dog, rtol=0, atol=1e-6)
    assert summary["per_class"] == {
        "examples": [2, 2, 2],
        "teacher_accuracy": [0.5, 0.5, 0.5],
        "student_accuracy": [0.5, 1.0, 1.0],
        "agreement": [1.0, 0.5, 0.5],
    }
    assert json.loads(json.dumps(summary)) == summary  # plain lists and numbers


def test_class_order_is_the_order_of_class_names():
    base = dark_knowledge.from_logits(TEACHER, STUDENT, LABELS, NAMES, temperature=T)
    perm = [2, 0, 1]  # old class i becomes class perm[i]
    inverse = np.argsort(perm)
    names = [NAMES[i] for i in inverse]  # ["dog", "ship", "cat"]
    moved = dark_knowledge.from_logits(
        np.asarray(TEACHER)[:, inverse], np.asarray(STUDENT)[:, inverse],
        [perm[y] for y in LABELS], names, temperature=T)
    assert moved["class_names"] == ["dog", "ship", "cat"]
    by_name = {n: row for n, row in zip(NAMES, base["similarity"])}
    for i, name in enumerate(names):  # the same row, columns in the new order
        np.testing.assert_allclose(moved["similarity"][i],
                                   [by_name[name][NAMES.index(m)] for m in names], atol=1e-12)
        for key, values in moved["per_class"].items():
            assert values[i] == base["per_class"][key][NAMES.index(name)]


def test_temperature_softens_and_one_logit_models_are_two_classes():
    cold = dark_knowledge.from_logits(TEACHER, STUDENT, LABELS, temperature=1.0)
    hot = dark_knowledge.from_logits(TEACHER, STUDENT, LABELS, temperature=10.0)
    assert cold["class_names"] == ["0", "1", "2"]
    diagonal = [np.trace(np.asarray(s["similarity"])) for s in (cold, hot)]
    assert diagonal[0] > diagonal[1] > 1.0  # 3 / 3 classes would be uniform
    z = np.array([[2.0], [-1.0], [0.5]])
    binary = dark_knowledge.from_logits(z, [[1.0], [1.0], [-3.0]], [1, 0, 0], temperature=2.0)
    sigmoid = 1 / (1 + np.exp(-z[:, 0] / 2.0))
    np.testing.assert_allclose(binary["similarity"], [
        [np.mean(1 - sigmoid[1:]), np.mean(sigmoid[1:])], [1 - sigmoid[0], sigmoid[0]]], atol=1e-12)
    # teacher top-1: 1, 0, 1; student: 1, 1, 0 (class 0 is examples 2 and 3: both disagree)
    assert binary["per_class"]["agreement"] == [0.0, 1.0]


def test_a_class_without_test_examples_is_none_not_nan():
    teacher = np.asarray(TEACHER)[:4]
    summary = dark_knowledge.from_logits(teacher, np.asarray(STUDENT)[:4], LABELS[:4], NAMES)
    assert summary["similarity"][2] is None and summary["per_class"]["examples"] == [2, 2, 0]
    assert summary["per_class"]["agreement"] == [1.0, 0.5, None]
    json.dumps(summary, allow_nan=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": 0}, "Expected a number > 0. Received: temperature=0"),
    ({"temperature": -1.0}, "Received: temperature=-1.0"),
    ({"class_names": ["a", "b"]}, "Expected 3 names"),
    ({"labels": [0, 1, 2, 3, 0, 1]}, r"class indices in \[0, 3\)"),
    ({"student_logits": np.zeros((6, 4))}, "The teacher has 3 classes and the student 4"),
    ({"labels": [0, 1]}, "Received: 6, 6 and 2"),
])
def test_invalid_arguments_are_refused_in_keras_words(kwargs, match):
    args = {"teacher_logits": TEACHER, "student_logits": STUDENT, "labels": LABELS,
            "class_names": NAMES, "temperature": T, **kwargs}
    with pytest.raises(ValueError, match=match):
        dark_knowledge.from_logits(**args)


def test_compute_runs_both_models_in_inference_mode_on_arrays_or_datasets():
    import tensorflow as tf

    teacher, student = make_teacher(), make_student()
    expected = dark_knowledge.from_logits(teacher.predict(X, verbose=0),
                                          student.predict(X, verbose=0), Y, temperature=3.0)
    from_arrays = dark_knowledge.compute(teacher, student, (X, Y), temperature=3.0)
    batches = tf.data.Dataset.from_tensor_slices((X, Y[:, None])).batch(7)  # (N, 1) labels
    from_dataset = dark_knowledge.compute(teacher, student, batches, temperature=3.0)
    for got in (from_arrays, from_dataset):  # Dropout off: the same numbers as predict
        np.testing.assert_allclose(got["similarity"], expected["similarity"], atol=1e-6)
        assert got["per_class"] == expected["per_class"]
    assert sum(expected["per_class"]["examples"]) == len(X)
    with pytest.raises(ValueError, match="Expected labelled data"):
        dark_knowledge.compute(teacher, student, X)


def test_from_predictions_equals_from_logits_and_refuses_other_examples():
    expected = dark_knowledge.from_logits(TEACHER, STUDENT, LABELS, NAMES, T)
    one_hot = np.eye(3)[LABELS]  # the same classes, written another way
    got = dark_knowledge.from_predictions((np.asarray(TEACHER), LABELS), (STUDENT, one_hot),
                                          NAMES, temperature=T)
    assert got == expected
    assert got["per_class"]["agreement"] == [1.0, 0.5, 0.5]
    shuffled = LABELS[1:] + LABELS[:1]  # the student's examples in another order
    with pytest.raises(ValueError, match="same examples in the same order"):
        dark_knowledge.from_predictions((TEACHER, LABELS), (STUDENT, shuffled), NAMES, T)
    with pytest.raises(ValueError, match="same examples in the same order"):
        dark_knowledge.from_predictions((TEACHER, LABELS), (STUDENT[:5], LABELS[:5]), NAMES, T)


def _results(tmp_path, with_dark_knowledge):
    results = {"data": "toy", "models": {
        "teacher": {"params": 1000, "test_accuracy": 0.5,
                    "history": {"loss": [2.0, 1.0], "val_accuracy": [0.4, 0.5]}},
        "student": {"params": 100, "test_accuracy": 0.83,
                    "history": {"loss": [2.5, 1.5], "val_accuracy": [0.7, 0.8]}}}}
    if with_dark_knowledge:
        results["dark_knowledge"] = dark_knowledge.from_logits(TEACHER, STUDENT, LABELS, NAMES, T)
    path = tmp_path / f"results_{with_dark_knowledge}.json"
    path.write_text(json.dumps(results))
    return path


def test_report_draws_both_plots_when_the_results_have_the_section(tmp_path):
    import matplotlib.image

    plain_dir, dk_dir = tmp_path / "plain", tmp_path / "dk"
    plain = report.write(_results(tmp_path, False), plain_dir)
    with_dk = report.write(_results(tmp_path, True), dk_dir)
    assert sorted(p.name for p in plain_dir.iterdir()) == ["curves.png", "report.md",
                                                            "tradeoffs.png"]
    similarity = matplotlib.image.imread(dk_dir / "dark_knowledge_similarity.png")
    per_class = matplotlib.image.imread(dk_dir / "dark_knowledge_per_class.png")
    assert similarity.shape[1] > 1.5 * similarity.shape[0]  # two square panels side by side
    assert per_class.shape[1] > per_class.shape[0] and per_class.std() > 0
    text, old = open(with_dk).read(), open(plain).read()
    assert text.startswith(old)  # the report of a file without the section is unchanged
    added = text[len(old):]
    assert "![teacher's class similarity at T = 2](dark_knowledge_similarity.png)" in added
    assert "![per-class accuracy and agreement](dark_knowledge_per_class.png)" in added
    assert "(6 in all; rows sum to 1)" in added and "diagonal masked" in added


def test_distill_command_stores_the_section_and_report_reads_a_distill_file(tmp_path):
    keras.utils.set_random_seed(0)
    models.build("mlp-tiny", (8, 8, 1), 10).save(tmp_path / "t.keras")
    assert cli.main(["distill", "--teacher", str(tmp_path / "t.keras"), "--student", "mlp-tiny",
                     "--epochs", "1", "--batch-size", "64", "--verbose", "0", "--temperature",
                     "3", "--output", str(tmp_path / "s.keras"),
                     "--results", str(tmp_path / "r.json")]) == 0
    results = json.load(open(tmp_path / "r.json"))
    summary = results["dark_knowledge"]
    assert summary["temperature"] == 3.0 and summary["class_names"] == [str(i) for i in range(10)]
    per_class = summary["per_class"]
    n = np.asarray(per_class["examples"])
    assert n.sum() == 449  # the digits test split
    np.testing.assert_allclose(np.sum(summary["similarity"], axis=1), 1.0, atol=1e-9)
    # the per-class accuracies, weighted by class sizes, are the command's own test accuracy
    assert np.dot(per_class["student_accuracy"], n) / n.sum() == pytest.approx(
        results["test_accuracy"], abs=1e-12)
    assert cli.main(["report", str(tmp_path / "r.json")]) == 0
    for name in ("report.md", "curves.png", "dark_knowledge_similarity.png",
                 "dark_knowledge_per_class.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert f"| {results['name']} |" in (tmp_path / "report.md").read_text()
