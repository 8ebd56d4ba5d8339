"""Repeated distillation: round k's student teaches round k + 1.

Born-again networks (Furlanello et al. 2018) distil a model into a student of the *same*
architecture, several times; teacher assistants (Mirzadeh et al. 2020) distil through
students of *decreasing* size. Both are `distill_rounds` with a list of student builders.
"""

import time
import types

from keras_kd import workflows
from keras_kd.distiller import Distiller

ROUND_COLUMNS = [
    ("round", "round", ""), ("teacher", "teacher", ""), ("student", "student", ""),
    ("params", "params", ","), ("val_accuracy", "val acc", ".4f"),
    ("test_accuracy", "test acc", ".4f"), ("train_seconds", "seconds", ".1f"),
]


def distill_rounds(teacher, students, train, *, epochs, compile_kwargs=None,
                   distiller_kwargs=None, validation=None, test=None, fit_kwargs=None):
    """Distils `teacher` into `students[0]`, that student into `students[1]`, and so on.

    Args:
        teacher: the first round's teacher (a trained logits `keras.Model`).
        students: list of zero-argument callables, each building a fresh student for one
            round (the same builder repeated: born-again networks; shrinking sizes: teacher
            assistants).
        train: training `tf.data.Dataset` (the same for every round).
        epochs: epochs per round.
        compile_kwargs: `Distiller.compile` arguments for every round, or a zero-argument
            callable returning them (e.g. to make a fresh optimizer per round; default: a
            fresh Adam).
        distiller_kwargs: `Distiller` arguments for every round (e.g. `augment`, `terms`;
            terms hold variables, so pass a callable returning fresh ones).
        validation: optional dataset monitored each epoch; its last accuracy is reported.
        test: optional dataset scored once per round.
        fit_kwargs: extra `fit` arguments.

    Returns:
        `(students, rows)`: the trained students in order, and one dict per round (round,
        teacher, student, params, val/test accuracy, seconds); `format_rounds(rows)` prints it.
    """
    trained, rows = [], []
    for index, build in enumerate(students, start=1):
        student = build()
        kwargs = distiller_kwargs() if callable(distiller_kwargs) else dict(distiller_kwargs or {})
        distiller = Distiller(student, teacher, **kwargs)
        options = compile_kwargs() if callable(compile_kwargs) else dict(compile_kwargs or {})
        options.setdefault("optimizer", "adam")
        options.setdefault("metrics", ["accuracy"])
        distiller.compile(**options)
        start = time.time()
        history = distiller.fit(train, validation_data=validation, epochs=epochs, verbose=0,
                                **(fit_kwargs or {})).history
        row = {"round": index, "teacher": teacher.name, "student": student.name,
               "params": int(student.count_params()),
               "train_seconds": round(time.time() - start, 1)}
        if "val_accuracy" in history:
            row["val_accuracy"] = float(history["val_accuracy"][-1])
        if test is not None:
            row["test_accuracy"] = workflows.accuracy(student, types.SimpleNamespace(test=test))
        rows.append(row)
        trained.append(student)
        teacher = student
    return trained, rows


def format_rounds(rows):
    """The rounds' table as plain text."""
    return workflows.table(rows, ROUND_COLUMNS)
