"""Dark knowledge, seen: what the teacher's softened outputs say about its classes, and where
the student follows it.

Two summaries of a test set, as plain lists (JSON-serialisable) for `keras-kd report`:

- the teacher's class-similarity matrix at temperature T: row c is the mean of
  `softmax(teacher_logits / T)` over the test examples of true class c (a C x C
  row-stochastic matrix; its off-diagonal mass is the "dark knowledge" of Hinton et al.,
  2015, that a student learns from);
- per true class: the teacher's and the student's accuracy, and their agreement (the fraction
  of examples where the student's top-1 class equals the teacher's).
"""

import numpy as np

from keras_kd import data as data_lib


def _probabilities(logits, temperature):
    """`softmax(logits / T)` in float64; a one-logit binary model is the two classes
    `[sigmoid(-z/T), sigmoid(z/T)] = softmax([0, z/T])`, as in `keras_kd.losses`."""
    z = np.asarray(logits, dtype="float64")
    if z.shape[-1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=-1)
    z = z / temperature
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _mean_or_none(values):
    return float(np.mean(values)) if len(values) else None


def from_logits(teacher_logits, student_logits, labels, class_names=None, temperature=1.0):
    """Both summaries from logits of the same examples.

    Args:
        teacher_logits: `(N, C)` teacher logits (`(N, 1)` for a one-logit binary model).
        student_logits: `(N, C)` student logits, same examples in the same order.
        labels: true classes, `(N,)`, `(N, 1)` or one-hot / soft `(N, C)` rows.
        class_names: one name per class, in class-index order (default: "0", "1", ...).
        temperature: the softening temperature T > 0 (the distillation's, for a matching view).

    Returns:
        A dict: `temperature`, `class_names`, `similarity` (C lists of C floats; row c is the
        mean of `softmax(teacher_logits / T)` over examples of true class c, `None` for a
        class with no example) and `per_class`: lists in class order of `examples`,
        `teacher_accuracy`, `student_accuracy` and `agreement` (`None` where a class has no
        example).

    Raises:
        ValueError: for a temperature that is not > 0, logits or labels whose counts or class
            numbers do not match, or `class_names` of the wrong length.

    Example:
    >>> summary = from_logits([[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], [0, 1])
    >>> summary["per_class"]["agreement"]
    [1.0, 0.0]
    """
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not temperature > 0):
        raise ValueError("Invalid value for argument `temperature`. Expected a number > 0. "
                         f"Received: temperature={temperature!r}")
    probs = _probabilities(teacher_logits, temperature)
    n, num_classes = probs.shape
    student_pred = data_lib.predicted_classes(student_logits)
    teacher_pred = data_lib.predicted_classes(teacher_logits)
    labels = data_lib.class_indices(labels)
    if not len(student_pred) == len(labels) == n:
        raise ValueError(f"Expected as many teacher logits, student logits and labels. Received: "
                         f"{n}, {len(student_pred)} and {len(labels)}")
    student_width = max(2, np.shape(student_logits)[-1])
    if student_width != num_classes:
        raise ValueError(f"The teacher has {num_classes} classes and the student "
                         f"{student_width}: they must match")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Labels must be class indices in [0, {num_classes}). Received: "
                         f"min={labels.min()}, max={labels.max()}")
    class_names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"Invalid value for argument `class_names`. Expected {num_classes} names "
                         f"(one per class). Received: {len(class_names)} names: {class_names}")
    similarity, per_class = [], {"examples": [], "teacher_accuracy": [], "student_accuracy": [],
                                 "agreement": []}
    for c in range(num_classes):
        of_c = labels == c
        similarity.append(probs[of_c].mean(0).tolist() if of_c.any() else None)
        per_class["examples"].append(int(of_c.sum()))
        per_class["teacher_accuracy"].append(_mean_or_none(teacher_pred[of_c] == c))
        per_class["student_accuracy"].append(_mean_or_none(student_pred[of_c] == c))
        per_class["agreement"].append(_mean_or_none(student_pred[of_c] == teacher_pred[of_c]))
    return {"temperature": float(temperature), "class_names": class_names,
            "similarity": similarity, "per_class": per_class}


def from_predictions(teacher, student, class_names=None, temperature=1.0):
    """Both summaries from the two models' outputs already computed on the same labelled data.

    What `keras_kd.workflows` returns with `return_test_predictions=True`: a test set that
    was predicted to score the models is not predicted again for this view.

    Args:
        teacher: the teacher's `(logits, labels)`, e.g. `keras_kd.workflows.Predictions`.
        student: the student's `(logits, labels)`, same examples in the same order.
        class_names: one name per class, in class-index order.
        temperature: the softening temperature T > 0.

    Returns:
        The dict of `from_logits`.

    Raises:
        ValueError: when the two label sequences differ (not the same examples in the same
            order), and as `from_logits`.
    """
    teacher_logits, teacher_labels = teacher
    student_logits, student_labels = student
    teacher_labels = data_lib.class_indices(teacher_labels)
    student_labels = data_lib.class_indices(student_labels)
    if not np.array_equal(teacher_labels, student_labels):
        raise ValueError("Expected the teacher's and the student's predictions of the same "
                         f"examples in the same order. Received {len(teacher_labels)} and "
                         f"{len(student_labels)} labels that differ")
    return from_logits(teacher_logits, student_logits, student_labels, class_names, temperature)


def compute(teacher, student, data, class_names=None, temperature=1.0, limit=None):
    """Both summaries for `teacher` and `student` on labelled data (usually the test split).

    Both models run in inference mode (`training=False`) on the same batches.

    Args:
        teacher: a `keras.Model` outputting logits.
        student: a `keras.Model` outputting logits for the same classes.
        data: a `tf.data.Dataset` of `(x, y)` batches or a tuple of arrays `(x, y)`.
        class_names: one name per class, in class-index order (e.g. `splits.class_names`).
        temperature: the softening temperature T > 0.
        limit: at most this many examples (default: all).

    Returns:
        The dict of `from_logits`.

    Example:
    >>> splits = keras_kd.data.load("digits")
    >>> summary = keras_kd.dark_knowledge.compute(
    ...     teacher, student, splits.test, splits.class_names, temperature=4.0)
    """
    from keras_kd import workflows  # workflows imports the Distiller: only when called

    teacher_predictions, student_predictions = workflows.predict_labelled_together(
        [teacher, student], data, limit)
    return from_predictions(teacher_predictions, student_predictions, class_names, temperature)
