"""Teacher-initialised students: copy teacher weights into matching student layers.

Layers match by name (the default) or through a `mapping` {student layer: teacher layer};
a pair is copied only when every weight has the same shape. The report says what was copied
and why the rest was not, so a silent no-op (nothing matched) cannot pass unnoticed.
"""

import keras


def _weighted_layers(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def _shapes(layer):
    return [tuple(w.shape) for w in layer.weights]


def init_from_teacher(student, teacher, mapping=None, match_names=True):
    """Copies teacher weights into student layers whose names (or `mapping`) and shapes match.

    Args:
        student: the `keras.Model` to initialise (changed in place).
        teacher: the `keras.Model` to copy from.
        mapping: optional dict `{student_layer_name: teacher_layer_name}`; takes precedence
            over name matching.
        match_names: also pair layers with the same name (default True).

    Returns:
        A dict: `copied` (list of `{"student", "teacher", "params"}`), `skipped` (list of
        `{"student", "teacher", "reason"}` for every student layer with weights that was not
        copied), `copied_params` and `student_params`.

    Raises:
        ValueError: if `mapping` names a layer that does not exist (the names are listed).

    Example:

    ```python
    report = keras_kd.transfer.init_from_teacher(
        student, teacher, mapping={"stage1_conv": "stem_conv", "stage1_bn": "stem_bn"})
    print(keras_kd.transfer.format_report(report))
    ```
    """
    for model, argument in ((student, "student"), (teacher, "teacher")):
        if not isinstance(model, keras.Model) or not model.built:
            raise ValueError(f"Invalid value for argument `{argument}`. Expected a built "
                             f"keras.Model. Received: {argument}={model!r}")
    s_layers, t_layers = _weighted_layers(student), _weighted_layers(teacher)
    mapping = dict(mapping or {})
    for s_name, t_name in mapping.items():
        for name, layers, which in ((s_name, s_layers, "student"), (t_name, t_layers, "teacher")):
            if name not in layers:
                raise ValueError(
                    f"Invalid value for argument `mapping`: the {which} has no layer with "
                    f"weights named '{name}'. Available: {sorted(layers)}"
                )
    copied, skipped = [], []
    for s_name, s_layer in s_layers.items():
        t_name = mapping.get(s_name, s_name if match_names else None)
        t_layer = t_layers.get(t_name)
        if t_layer is None:
            skipped.append({"student": s_name, "teacher": None, "reason": "no matching teacher layer"})
        elif _shapes(s_layer) != _shapes(t_layer):
            skipped.append({"student": s_name, "teacher": t_name,
                            "reason": f"shapes differ: {_shapes(s_layer)} vs {_shapes(t_layer)}"})
        else:
            s_layer.set_weights(t_layer.get_weights())
            copied.append({"student": s_name, "teacher": t_name,
                           "params": sum(int(w.numpy().size) for w in s_layer.weights)})
    return {
        "copied": copied,
        "skipped": skipped,
        "copied_params": sum(c["params"] for c in copied),
        "student_params": int(sum(int(w.numpy().size) for w in student.weights)),
    }


def format_report(report):
    """A plain-text table of an `init_from_teacher` report."""
    lines = [f"copied {report['copied_params']:,} of {report['student_params']:,} student weights"]
    lines += [f"  copied   {c['student']:<28} <- {c['teacher']}" for c in report["copied"]]
    lines += [f"  skipped  {s['student']:<28} ({s['reason']})" for s in report["skipped"]]
    return "\n".join(lines)
