"""Teacher-initialised students, repeated rounds and the search for T and alpha."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import X, Y, make_student, make_teacher

import keras_kd as kd
from keras_kd import rounds, search, transfer


def test_init_from_teacher_copies_matching_layers_and_reports_the_rest():
    inputs = keras.Input((12,))
    h = keras.layers.Dense(16, name="shared")(inputs)
    h = keras.layers.Dense(8, name="only_teacher")(h)
    teacher = keras.Model(inputs, keras.layers.Dense(4, name="head")(h))
    inputs = keras.Input((12,))
    h = keras.layers.Dense(16, name="shared")(inputs)
    h = keras.layers.Dense(6, name="mine")(h)
    student = keras.Model(inputs, keras.layers.Dense(4, name="head")(h))
    report = transfer.init_from_teacher(student, teacher)
    assert [c["student"] for c in report["copied"]] == ["shared"]
    np.testing.assert_array_equal(student.get_layer("shared").kernel.numpy(),
                                  teacher.get_layer("shared").kernel.numpy())
    skipped = {s["student"]: s["reason"] for s in report["skipped"]}
    assert skipped["mine"] == "no matching teacher layer"
    assert skipped["head"].startswith("shapes differ: [(6, 4), (4,)] vs [(8, 4), (4,)]")
    assert report["copied_params"] == 12 * 16 + 16
    assert report["student_params"] == student.count_params()
    mapped = transfer.init_from_teacher(student, teacher, mapping={"mine": "only_teacher"},
                                        match_names=False)
    assert mapped["copied"] == [] and "shapes differ" in mapped["skipped"][1]["reason"]
    assert "copied 0 of" in transfer.format_report(mapped)
    with pytest.raises(ValueError, match=r"teacher has no layer with weights named 'x'. "
                                         r"Available: \['head', 'only_teacher', 'shared'\]"):
        transfer.init_from_teacher(student, teacher, mapping={"mine": "x"})


def data():
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(10)


def test_rounds_chain_students_as_teachers():
    teacher = make_teacher()
    trained, rows = rounds.distill_rounds(
        teacher, [make_student, make_student], data(), epochs=1, validation=data(), test=data(),
        compile_kwargs=lambda: {"optimizer": keras.optimizers.Adam(0.01), "alpha": 0.5})
    assert len(trained) == 2 and [r["round"] for r in rows] == [1, 2]
    assert rows[0]["teacher"] == "teacher" and rows[1]["teacher"] == trained[0].name
    assert not trained[0].trainable  # it taught round 2, frozen
    expected = np.mean(np.argmax(trained[1].predict(X, verbose=0), -1) == Y)
    np.testing.assert_allclose(rows[1]["test_accuracy"], expected)
    assert "val acc" in rounds.format_rounds(rows)


def test_search_grid_random_and_early_stopping(tmp_path):
    teacher = make_teacher()
    start = make_student()
    calls = []

    def build(setting):
        calls.append(setting)
        student = keras.models.clone_model(start)
        student.set_weights(start.get_weights())
        distiller = kd.Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
                          alpha=setting["alpha"], temperature=setting["temperature"])
        return distiller

    space = {"temperature": [1.0, 4.0], "alpha": [0.1, 0.9]}
    assert search.grid(space)[1] == {"temperature": 1.0, "alpha": 0.9}
    result = search.search(build, data(), data(), space, epochs=3, patience=1,
                           monitor="val_loss", mode="min")
    assert len(result["trials"]) == 4 and calls == search.grid(space)
    assert result["best_score"] == min(t["score"] for t in result["trials"])
    best = next(t for t in result["trials"] if t["score"] == result["best_score"])
    assert result["best"] == {"temperature": best["temperature"], "alpha": best["alpha"]}
    assert all(t["epochs_run"] <= 3 for t in result["trials"])
    assert format(result["best_score"], ".4f") in search.format_trials(result).splitlines()[2]
    sampled = search.search(build, data(), data(), space, epochs=1, max_trials=2, seed=3)
    assert len(sampled["trials"]) == 2
    pytest.importorskip("matplotlib")
    assert search.plot_trials(result, tmp_path / "trials.png") is not None
    assert (tmp_path / "trials.png").stat().st_size > 0
    with pytest.raises(ValueError, match="Expected a dict of non-empty lists"):
        search.grid({"temperature": []})
