"""Quantization-aware and pruning-aware distillation through tensorflow-model-optimization.

The Keras 3 student is rebuilt as a tf_keras model with the same weights (`bridge`), wrapped
by TFMOT, trained against the Keras 3 teacher (live, in the same process, or from logits
cached with `keras_kd.teachers.cache_logits`), and exported with `keras_kd.export`.

Process isolation: everything runs in the calling process. tf_keras and TFMOT are imported
only when one of these functions is called, through `legacy.modules()`, which keeps
`tf.keras` and `TF_USE_LEGACY_KERAS` as they were: the user's Keras 3 session keeps working
(tested: build, fit, save and load a Keras 3 model after a QAT run).
"""

import dataclasses
import gzip
import os
from typing import Any

import numpy as np

from keras_kd import checks
from keras_kd import export
from keras_kd.distiller import DEFAULT_ALPHA
from keras_kd.distiller import DEFAULT_TEMPERATURE
from keras_kd.distiller import _check_alpha
from keras_kd.losses.logits import check_temperature
from keras_kd.optimize import bridge
from keras_kd.optimize import legacy
from keras_kd.optimize import legacy_distiller


@dataclasses.dataclass
class CompressionResult:
    """What `quantize_distill` and `prune_distill` return.

    Attributes:
        model: the trained tf_keras model (quantization-aware, or pruned and stripped).
        student: for `prune_distill`, a Keras 3 copy of the student holding the pruned
            weights; None for `quantize_distill` (its result is the int8 file).
        history: the `fit` history (`loss`, `hard_loss`, `distillation_loss`, `accuracy`).
        path: the exported `.tflite` file (None if `path` was not given).
        report: `keras_kd.export.verify`'s report on `verify_data` (None without it), plus
            for pruning the measured sparsity and the gzip sizes.
    """

    model: Any
    student: Any
    history: dict
    path: str = None
    report: dict = None


def _check(student, epochs, alpha, temperature):
    import keras

    if not isinstance(student, keras.Model):
        raise ValueError(f"Invalid value for argument `student`. Expected a keras.Model. "
                         f"Received: student={student!r}")
    checks.positive_int("epochs", epochs)
    return _check_alpha(alpha), check_temperature(temperature, allow_none=False)


def _distil(tf_keras, wrapped, teacher, data, epochs, alpha, temperature, optimizer,
            validation_data, callbacks, verbose):
    distiller = legacy_distiller.make(tf_keras, wrapped, teacher, alpha, temperature)
    optimizer = optimizer or tf_keras.optimizers.Adam(1e-4)
    distiller.compile(optimizer=optimizer)
    history = distiller.fit(data, epochs=epochs, validation_data=validation_data,
                            callbacks=list(callbacks or []), verbose=verbose)
    return history.history


def _annotator(tfmot):
    """Marks every layer for TFMOT's default 8-bit scheme. Layers its registry does not know
    get an explicit config: preprocessing (Normalization, Rescaling) quantizes its output, so
    the file is int8 from the first op on; Identity is left alone. BatchNormalization is
    annotated like the rest: TFMOT's transforms fold it with the convolution before it."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    quantize = tfmot.quantization.keras
    output_only = ("Normalization", "Rescaling")

    def annotate(layer):
        name = type(layer).__name__
        if name == "InputLayer":
            return layer
        config = None
        if name in output_only:
            config = configs.Default8BitOutputQuantizeConfig()
        elif name == "Identity":
            config = configs.NoOpQuantizeConfig()
        return quantize.quantize_annotate_layer(layer, quantize_config=config)

    return annotate


def quantize_distill(student, teacher, data, *, epochs=1, alpha=DEFAULT_ALPHA,
                     temperature=DEFAULT_TEMPERATURE, optimizer=None, validation_data=None,
                     path=None, representative_data=None, int8_io=False, verify_data=None,
                     callbacks=None, verbose="auto"):
    """Quantization-aware distillation (TFMOT default 8-bit scheme), exported to full int8.

    The student is rebuilt in tf_keras, its supported layers wrapped by TFMOT's default 8-bit
    scheme (`quantize_annotate_layer` + `quantize_apply`: per-channel weight fake-quant,
    batch norm folded, activation ranges learned); layers TFMOT does not quantize
    (`Normalization`, `Rescaling`, `Identity`) stay float and are calibrated at conversion
    (`representative_data`). It is then trained with
    `alpha * hard + (1 - alpha) * T**2 * KL(teacher || student)` and converted with
    `keras_kd.export.to_tflite(quantization="int8")`: int8 built-in ops only
    (`TFLITE_BUILTINS_INT8`), float32 input and output by default (the file takes raw pixels,
    like the float export), int8 input and output with `int8_io=True`.

    Args:
        student: a Keras 3 Functional/Sequential student (distilled or fresh), logits out.
        teacher: the Keras 3 teacher (logits), or None to train on labels only (or on
            teacher logits cached in `data` with `keras_kd.teachers.cache_logits`).
        data: a tf.data dataset of `(x, y)` / `(x, y, sample_weight)` batches, integer labels.
        epochs: training epochs. Default 1.
        alpha: weight of the hard-label loss (keras.io convention). Default 0.1.
        temperature: softening temperature. Default 4.0.
        optimizer: a tf_keras optimizer. Default `tf_keras.optimizers.Adam(1e-4)` (QAT
            fine-tunes a trained student: a small learning rate).
        validation_data: optional validation dataset for `fit`.
        path: where to write the int8 `.tflite` (with `keras_kd.export`'s sidecars).
        representative_data: calibration inputs for the float layers (default: `data`).
        int8_io: int8 input and output tensors instead of float32.
        verify_data: if given (with `path`), `keras_kd.export.verify` runs on it.
        callbacks: tf_keras callbacks for `fit`.
        verbose: `fit` verbosity.

    Returns:
        A `CompressionResult`.

    Raises:
        ValueError: for an invalid argument or a layer the bridge does not support.
        ImportError: without tf-keras / tensorflow-model-optimization.
    """
    alpha, temperature = _check(student, epochs, alpha, temperature)
    tf_keras, tfmot = legacy.modules()
    quantize = tfmot.quantization.keras
    annotated = tf_keras.models.clone_model(bridge.to_tf_keras(student),
                                            clone_function=_annotator(tfmot))
    with quantize.quantize_scope():
        model = quantize.quantize_apply(annotated)
    history = _distil(tf_keras, model, teacher, data, epochs, alpha, temperature, optimizer,
                      validation_data, callbacks, verbose)
    result = CompressionResult(model, None, history)
    if path is not None:
        export.to_tflite(model, path, quantization="int8",
                         representative_data=data if representative_data is None else representative_data,
                         int8_io=int8_io)
        result.path = os.fspath(path)
        if verify_data is not None:
            result.report = export.verify(model, path, verify_data)
    return result
