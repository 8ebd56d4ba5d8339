"""Argument checks shared by the package, with Keras-style error messages."""

import numbers

import keras
import numpy as np
import tensorflow as tf


def one_of(argument, value, choices, alternatives=""):
    """Returns `value` if it is one of `choices`; else raises a ValueError naming all three.

    `alternatives` extends the expectation, e.g. ", a keras.losses.Loss or a callable".
    """
    if value not in choices:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected one of {list(choices)}"
            f"{alternatives}. Received: {argument}={value!r}"
        )
    return value


def loss(argument, identifier, registry, default=None):
    """Resolves a loss the Keras way: None, a registered name, a config dict or a callable.

    `registry` maps names to zero-argument factories; `None` gives `default()` (or None).
    """
    if identifier is None:
        return default() if default else None
    if isinstance(identifier, str):
        return registry[one_of(argument, identifier, sorted(registry),
                               ", a keras.losses.Loss or a callable")]()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if not callable(identifier):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a name, a keras.losses.Loss "
            f"or a callable. Received: {argument}={identifier!r}"
        )
    return identifier


def positive_int(argument, value, allow_none=False):
    """Returns `value` as an int if it is a positive integer (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a positive integer"
            f"{' or None' if allow_none else ''}. Received: {argument}={value!r}"
        )
    return int(value)


def fraction(argument, value, one_allowed=False):
    """Returns `value` as a float if it is a real number in (0, 1), or (0, 1] when
    `one_allowed`."""
    inside = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        0 < value < 1 or (one_allowed and value == 1))
    if not inside:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a fraction in "
            f"(0, 1{']' if one_allowed else ')'}. Received: {argument}={value!r}"
        )
    return float(value)


def non_negative_int(argument, value):
    """Returns `value` as an int if it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected an integer >= 0. "
            f"Received: {argument}={value!r}"
        )
    return int(value)


def no_other_compile_arguments(kwargs):
    """Refuses keyword arguments `Distiller.compile` does not document, `loss` first (the
    Distiller composes its own loss; the hard-label loss is `student_loss_fn`)."""
    if "loss" in kwargs:
        raise ValueError(
            "Invalid argument `loss`: the Distiller composes its own loss. Expected the "
            "hard-label loss as `student_loss_fn`. Received: "
            f"loss={kwargs['loss']!r}"
        )
    if kwargs:
        received = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
        raise ValueError(
            "Invalid keyword argument for `Distiller.compile`. Expected only its documented "
            f"arguments. Received: {received}"
        )


# ----------------------------------------------------------------- models and first batches
def classifier_model(argument, model):
    """Refuses what the Distiller cannot train: non-models, multi-output models and models
    whose last layer is a softmax (the outputs are checked again on the first batch)."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a keras.Model. "
            f"Received: {argument}={model!r}"
        )
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) > 1:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a model with one output of "
            "logits (batch, num_classes); distil one head by giving a model of that output, "
            "e.g. keras.Model(model.inputs, model.outputs[0]). Received: "
            f"'{model.name}' has {len(outputs)} outputs"
        )
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax":
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a model outputting logits "
            "(the Distiller applies its own softmax at T): give the last layer no activation "
            "(e.g. `keras.layers.Dense(num_classes)`, or `classifier_activation=None` for "
            f"keras.applications models). Received: {argument} '{model.name}', whose last "
            f"layer '{last.name}' applies a softmax"
        )


def student_and_teacher(student, teacher, same_input_shape=True):
    """Refuses a student and a teacher the Distiller cannot pair: models `classifier_model`
    refuses, an unbuilt teacher, one model as both, and (when `same_input_shape`, i.e. no
    `teacher_preprocessing`) input shapes that differ."""
    classifier_model("student", student)
    classifier_model("teacher", teacher)
    if not teacher.built:
        raise ValueError(
            "Invalid value for argument `teacher`. Expected a trained, built keras.Model. "
            f"Received: teacher '{teacher.name}', not built (it has no weights yet)"
        )
    if student is teacher:
        raise ValueError(
            "Invalid value for argument `teacher`. Expected a model other than the student "
            f"(the teacher stays frozen while the student trains). Received: teacher="
            f"student='{student.name}'"
        )
    if same_input_shape:
        same_inputs(student, teacher)


def _shape(model):
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def same_inputs(student, teacher):
    """Refuses a student and teacher whose (known) input shapes differ."""
    a, b = _shape(student), _shape(teacher)
    if a is None or b is None or len(a) != len(b):
        mismatch = a is not None and b is not None
    else:
        mismatch = any(x is not None and y is not None and x != y for x, y in zip(a, b))
    if mismatch:
        raise ValueError(
            "Invalid value for argument `teacher`: its input shape differs from the student's "
            "and both models see the same batches. Expected teacher input shape "
            f"(None, {', '.join(map(str, a))}). Received: teacher '{teacher.name}' with input "
            f"shape (None, {', '.join(map(str, b))})"
        )


def logits_output(argument, name, outputs, check_sigmoid=True):
    """Refuses outputs that are not one tensor of logits: several outputs, or probabilities
    (non-negative rows summing to 1; one column in [0, 1] when `check_sigmoid`).

    Returns the outputs as a float64 numpy array.
    """
    if isinstance(outputs, (list, tuple, dict)):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected one tensor of logits (batch, "
            f"num_classes). Received: '{name}' returns {len(outputs)} outputs "
            f"({type(outputs).__name__})"
        )
    values = np.asarray(outputs, dtype="float64")
    if values.ndim < 2:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected logits of shape (batch, "
            "num_classes); a binary classifier has one logit: (batch, 1). Received: "
            f"'{name}' returns outputs of shape {values.shape}"
        )
    if values.shape[-1] > 1:
        probabilities = values.min() >= 0 and np.allclose(values.sum(-1), 1.0, atol=1e-3)
        what = "every row is non-negative and sums to 1"
    else:
        probabilities = check_sigmoid and len(values) >= 8 and 0 <= values.min() <= values.max() <= 1
        what = "every output of its one unit is in [0, 1], as from a sigmoid"
    if probabilities:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected logits (the Distiller applies "
            "its own softmax at T): remove the final softmax/sigmoid (a Dense layer with no "
            "activation, `classifier_activation=None` for keras.applications models) or give "
            f"a model of its pre-activation output. Received: '{name}', which outputs "
            f"probabilities (on the first batch {what})"
        )
    return values


def label_shape(y_shape, logits_shape):
    """Refuses labels that are neither sparse `(batch,)`/`(batch, 1)` nor one-hot like the
    logits `(batch, num_classes)`."""
    if len(y_shape) == len(logits_shape) and y_shape[-1] not in (1, None, logits_shape[-1]):
        raise ValueError(
            "Invalid value for argument `y`. Expected sparse labels (batch,) or one-hot "
            f"labels like the student's outputs {tuple(logits_shape)}: labels match neither. "
            f"Received: y of shape {tuple(y_shape)}"
        )


def labels_given(y, alpha):
    """Refuses unlabelled data (`y=None`) when the hard-label loss has a weight `alpha > 0`."""
    if y is None and alpha > 0:
        raise ValueError(
            "Invalid value for argument `alpha`: the data has no labels (y=None), so the "
            "hard-label loss cannot be computed. Expected alpha=0 to distil on the teacher "
            f"alone, or labelled data. Received: alpha={alpha}"
        )


def labels_in_range(y, num_classes):
    """Refuses integer class labels outside [0, num_classes) (checked on a first batch)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or y.size == 0:
        return
    if y.ndim == 2 and y.shape[-1] != 1:
        return  # one-hot / multi-label: checked against the logits' shape
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            "Invalid value for argument `y`. Expected integer class labels in "
            f"[0, {num_classes - 1}] for {num_classes} classes. Received: labels from {low} to "
            f"{high} in the first batch"
        )


# ------------------------------------------------------------------------------ first batch
def first_batch(student, teacher, x, y, cached_teacher_logits=None, teacher_x=None):
    """Runs both models once, eagerly, on a first batch and refuses what would otherwise
    train silently wrong: an empty batch, probability outputs (a softmax anywhere: in an
    ensemble member, a nested model or `call`; a sigmoid teacher), several outputs, teacher
    and student class counts that differ, labels of the wrong shape or out of range.

    Calling the student here also builds a subclassed student before its variables are read.
    """
    if not tf.nest.flatten(x) or int(tf.nest.flatten(x)[0].shape[0]) == 0:
        raise ValueError(
            "Invalid value for argument `x`. Expected at least one example. "
            "Received: an empty dataset"
        )
    s = logits_output("student", student.name, student(x, training=False), check_sigmoid=False)
    if cached_teacher_logits is None:
        members = getattr(teacher, "teachers", [teacher])  # a TeacherEnsemble's members
        teacher_x = x if teacher_x is None else teacher_x  # after `teacher_preprocessing`
        outputs = {m.name: logits_output("teacher", m.name, m(teacher_x, training=False))
                   for m in members}
    else:
        outputs = {"cached teacher logits": np.asarray(cached_teacher_logits)}
    for name, t in outputs.items():
        if t.shape[-1] != s.shape[-1]:
            raise ValueError(
                f"Invalid value for argument `teacher`: '{name}' outputs {t.shape[-1]} logits "
                f"per example and the student '{student.name}' {s.shape[-1]}. Expected the "
                f"same number of classes. Received: teacher outputs of shape {t.shape}, "
                f"student outputs of shape {s.shape}"
            )
    if y is not None:
        label_shape(tuple(y.shape), s.shape)
        labels_in_range(y, max(2, s.shape[-1]))
