"""Reference teacher and student models used by the examples, the CLI and the benchmarks.

All output logits (no softmax), as the `Distiller` expects. The MLPs are those of Hinton,
Vinyals & Dean (2015), section 3: teacher 784-1200-1200-10 with dropout, students
784-800-800-10 and 784-20-20-10.

The image models for 32x32 RGB photos (CIFAR-10 and the like) take *raw pixels* in [0, 255]:
their first layer (`pixel_normalization`) rescales and normalises per channel, so an exported
`.tflite` file takes the pixels a phone camera or a JPEG decoder gives, with nothing to get
wrong on the device:

| name             | what                                                     | parameters |
|------------------|----------------------------------------------------------|------------|
| `resnet-teacher` | ResNet-20 (He et al. 2016, CIFAR variant, widths 16-32-64) | ~0.27M   |
| `resnet8-teacher`| ResNet-8, the same with one block per stage (a second, cheaper teacher for ensembles) | ~78k |
| `cnn-small`      | plain conv-BN-ReLU CNN, 16-32-64 filters, global pooling  | ~25k      |
| `mobile-small`   | depthwise-separable (MobileNet-style) blocks              | ~25k      |

For `keras.applications` models (e.g. `MobileNetV3Small(include_preprocessing=True,
classifier_activation=None, weights=None)`) see `applications`.
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


# Per-channel mean and standard deviation of the CIFAR-10 training images, on the 0-255 scale
# (the usual figures 0.4914 0.4822 0.4465 / 0.2470 0.2435 0.2616, times 255).
CIFAR10_MEAN = (125.31, 122.95, 113.87)
CIFAR10_STD = (62.99, 62.09, 66.70)


def pixel_normalization(mean=CIFAR10_MEAN, std=CIFAR10_STD, name="pixel_normalization"):
    """`(raw - mean) / std` per channel, as a Keras layer (raw pixels in [0, 255] in)."""
    return keras.layers.Normalization(
        mean=list(mean), variance=[s * s for s in std], name=name
    )


def _conv_bn(x, filters, kernel, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def resnet(input_shape, num_classes, widths=(16, 32, 64), blocks=3, name="resnet"):
    """A CIFAR-style ResNet (He et al. 2016, section 4.2): `6 * blocks + 2` layers.

    Raw pixels in; a 3x3 stem, three stages of `blocks` basic blocks (two 3x3 convolutions and
    an identity or 1x1-projection shortcut), global average pooling, logits. The stages end in
    layers named `stage{1,2,3}_out` (for feature hints and attention transfer).
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = pixel_normalization()(inputs)
    x = _conv_bn(x, widths[0], 3, 1, "stem")
    for s, width in enumerate(widths):
        for b in range(blocks):
            strides = 2 if s > 0 and b == 0 else 1
            prefix = f"stage{s + 1}_block{b + 1}"
            shortcut = x
            y = _conv_bn(x, width, 3, strides, f"{prefix}_a")
            y = _conv_bn(y, width, 3, 1, f"{prefix}_b", relu=False)
            if strides != 1 or shortcut.shape[-1] != width:
                shortcut = _conv_bn(shortcut, width, 1, strides, f"{prefix}_proj", relu=False)
            x = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
            last = b == blocks - 1
            x = keras.layers.ReLU(name=f"stage{s + 1}_out" if last else f"{prefix}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def cnn_small(input_shape, num_classes, filters=(16, 32, 64), name="cnn_small"):
    """A plain conv-BN-ReLU CNN: one 3x3 convolution per stage, max pooling between stages,
    global average pooling, logits. Stages end in layers named `stage{i}_out`."""
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = pixel_normalization()(inputs)
    for i, f in enumerate(filters):
        if i:
            x = keras.layers.MaxPooling2D(name=f"pool_{i}")(x)
        x = _conv_bn(x, f, 3, 1, f"stage{i + 1}")
        x = keras.layers.Identity(name=f"stage{i + 1}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def mobile_small(input_shape, num_classes, widths=(24, 48, 96), stem=16, name="mobile_small"):
    """A MobileNet-style student (Howard et al. 2017): a 3x3 stem, then per stage a stride-2
    depthwise 3x3 + pointwise 1x1 block (BN + ReLU6 after each) and a stride-1 one, global
    average pooling, logits. Stages end in layers named `stage{i}_out`."""
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = pixel_normalization()(inputs)
    x = _conv_bn(x, stem, 3, 1, "stem")
    for s, width in enumerate(widths):
        for b, strides in enumerate((2, 1)):
            prefix = f"stage{s + 1}_block{b + 1}"
            x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                             name=f"{prefix}_dw")(x)
            x = keras.layers.BatchNormalization(name=f"{prefix}_dw_bn")(x)
            x = keras.layers.ReLU(6.0, name=f"{prefix}_dw_relu")(x)
            x = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{prefix}_pw")(x)
            x = keras.layers.BatchNormalization(name=f"{prefix}_pw_bn")(x)
            x = keras.layers.ReLU(6.0, name=f"stage{s + 1}_out" if b else f"{prefix}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def applications(name, input_shape, num_classes, **kwargs):
    """A `keras.applications` model as a logits teacher or student for raw-pixel inputs.

    Builds `keras.applications.<name>(weights=None, classes=num_classes,
    classifier_activation=None, ...)`; models that take `include_preprocessing` get it set
    to True, so they too take raw pixels in [0, 255]. Pass `weights="imagenet"` (with
    `include_top=False` and your own head) where downloads are possible.

    Example:

    ```python
    student = keras_kd.models.applications("MobileNetV3Small", (32, 32, 3), 10,
                                           minimalistic=True)
    ```
    """
    import inspect

    available = sorted(n for n in dir(keras.applications) if n[0].isupper())
    checks.one_of("name", name, available)
    builder = getattr(keras.applications, name)
    params = inspect.signature(builder).parameters
    options = dict(input_shape=tuple(input_shape), classes=int(num_classes), weights=None,
                   classifier_activation=None)
    if "include_preprocessing" in params:
        options["include_preprocessing"] = True
    options.update(kwargs)
    return builder(**options)


_BUILDERS = {
    # Hinton et al. 2015: teacher 2x1200 with dropout (0.2 on inputs, 0.5 on hidden units).
    "mlp-teacher": lambda s, n: mlp(s, n, (1200, 1200), dropout=0.5, input_dropout=0.2,
                                    name="mlp_teacher_2x1200"),
    "mlp-student": lambda s, n: mlp(s, n, (800, 800), name="mlp_student_2x800"),
    "mlp-tiny": lambda s, n: mlp(s, n, (20, 20), name="mlp_student_2x20"),
    "cnn-teacher": lambda s, n: cnn(s, n, (32, 64, 128), dense=256, dropout=0.3,
                                    name="cnn_teacher"),
    "cnn-student": lambda s, n: cnn(s, n, (8, 16), dense=32, name="cnn_student"),
    # Raw-pixel image models (32x32 RGB): see the module docstring.
    "resnet-teacher": lambda s, n: resnet(s, n, name="resnet20_teacher"),
    "resnet8-teacher": lambda s, n: resnet(s, n, blocks=1, name="resnet8_teacher"),
    "cnn-small": lambda s, n: cnn_small(s, n),
    "mobile-small": lambda s, n: mobile_small(s, n),
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
