"""Reference teacher and student models used by the examples, the CLI and the benchmarks.

All output logits (no softmax), as the `Distiller` expects. The MLPs are those of Hinton,
Vinyals & Dean (2015), section 3: teacher 784-1200-1200-10 with dropout, students
784-800-800-10 and 784-20-20-10.
"""

import keras

from keras_kd import checks


def mlp(input_shape, num_classes, hidden=(800, 800), dropout=0.0, input_dropout=0.0, name="mlp"):
    """A ReLU MLP on flattened inputs, returning logits.

    Args:
        input_shape: shape of one example (flattened first).
        num_classes: number of output logits.
        hidden: widths of the hidden layers.
        dropout: dropout rate after each hidden layer.
        input_dropout: dropout rate on the inputs (Hinton's teacher used 0.2).
        name: model name.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Flatten()(inputs)
    if input_dropout:
        x = keras.layers.Dropout(input_dropout)(x)
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def cnn(input_shape, num_classes, filters=(32, 64), dense=128, dropout=0.0, batch_norm=True,
        name="cnn"):
    """A small VGG-style CNN (conv-BN-ReLU blocks with max pooling), returning logits."""
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=not batch_norm, name=f"conv_{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    if dense:
        x = keras.layers.Dense(dense, activation="relu", name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


_BUILDERS = {
    # Hinton et al. 2015: teacher 2x1200 with dropout (0.2 on inputs, 0.5 on hidden units).
    "mlp-teacher": lambda s, n: mlp(s, n, (1200, 1200), dropout=0.5, input_dropout=0.2,
                                    name="mlp_teacher_2x1200"),
    "mlp-student": lambda s, n: mlp(s, n, (800, 800), name="mlp_student_2x800"),
    "mlp-tiny": lambda s, n: mlp(s, n, (20, 20), name="mlp_student_2x20"),
    "cnn-teacher": lambda s, n: cnn(s, n, (32, 64, 128), dense=256, dropout=0.3,
                                    name="cnn_teacher"),
    "cnn-student": lambda s, n: cnn(s, n, (8, 16), dense=32, name="cnn_student"),
}


def names():
    """The names `build` accepts."""
    return sorted(_BUILDERS)


def build(name, input_shape, num_classes):
    """Builds a reference model by name (see `names()`).

    Raises:
        ValueError: for an unknown name, listing the available ones.
    """
    checks.one_of("model", name, names())
    return _BUILDERS[name](tuple(input_shape), int(num_classes))
