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
import os
from typing import Any

from keras_kd import checks
from keras_kd import export
from keras_kd.losses.logits import check_temperature
from keras_kd.objective import DEFAULT_ALPHA
from keras_kd.objective import DEFAULT_TEMPERATURE
from keras_kd.objective import check_alpha
from keras_kd.optimize import bridge
from keras_kd.optimize import legacy
from keras_kd.optimize import legacy_distiller
from keras_kd.optimize import measure


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
    return check_alpha(alpha), check_temperature(temperature, allow_none=False)


LEARNING_RATE_DECAYS = ("constant", "cosine")


def _distil(tf_keras, wrapped, teacher, data, epochs, alpha, temperature, optimizer,
            learning_rate, validation_data, callbacks, verbose, learning_rate_decay="constant"):
    distiller = legacy_distiller.make(tf_keras, wrapped, teacher, alpha, temperature)
    if optimizer is None and learning_rate_decay == "cosine":
        learning_rate = tf_keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=_steps(data, "learning_rate_decay='cosine'") * epochs)
    optimizer = optimizer or tf_keras.optimizers.Adam(learning_rate)
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
                     temperature=DEFAULT_TEMPERATURE, optimizer=None, learning_rate=1e-4,
                     validation_data=None, path=None, representative_data=None, int8_io=False, verify_data=None,
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
        optimizer: a tf_keras optimizer. Default `tf_keras.optimizers.Adam(learning_rate)`.
        learning_rate: of the default optimizer. Default 1e-4 (QAT fine-tunes a trained
            student: a small learning rate).
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
                      learning_rate, validation_data, callbacks, verbose)
    result = CompressionResult(model, None, history)
    if path is not None:
        export.to_tflite(model, path, quantization="int8",
                         representative_data=data if representative_data is None else representative_data,
                         int8_io=int8_io)
        result.path = os.fspath(path)
        if verify_data is not None:
            result.report = export.verify(model, path, verify_data)
    return result


def _steps(data, needed_by):
    steps = int(data.cardinality())
    if steps < 1:
        raise ValueError(f"Invalid value for argument `data`: {needed_by} needs a dataset of "
                         f"known length (its cardinality is {steps}); use "
                         "`tf.data.experimental.assert_cardinality` or `take`.")
    return steps


def _schedule(tfmot, target_sparsity, total_steps, end_fraction):
    """Polynomial decay 0 -> target over the first `end_fraction` of the run, pruning about
    50 times in all (the last update at that point); the rest trains at the target."""
    end = max(1, int(round(end_fraction * total_steps)) - 1)
    frequency = max(1, end // 50)
    end_step = frequency * max(1, end // frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target_sparsity, begin_step=0,
        end_step=end_step, frequency=frequency)


def prune_distill(student, teacher, data, *, target_sparsity=0.8, schedule=None, epochs=1,
                  alpha=DEFAULT_ALPHA, temperature=DEFAULT_TEMPERATURE, optimizer=None,
                  learning_rate=1e-4, validation_data=None, path=None, quantization="float32",
                  representative_data=None, verify_data=None, batch_norm_batches=100,
                  pruning_end=1.0, learning_rate_decay="constant", callbacks=None,
                  verbose="auto"):
    """Pruning-aware distillation (TFMOT magnitude pruning), stripped and exported.

    The kernels of the Conv2D and Dense layers and the pointwise kernels of SeparableConv2D
    layers are pruned by magnitude (TFMOT leaves depthwise kernels dense) while the student is distilled (same loss as `quantize_distill`); the
    pruning wrappers are then removed (`strip_pruning`) and the weights copied back into a
    Keras 3 copy of the student, which `keras_kd.export.to_tflite` exports and
    `keras_kd.export.verify` checks. Zeros only pay off in compressed files: the report gives
    the measured sparsity (of the kernels and of the file's weight tensors) and the
    gzip-compressed sizes of the pruned file and of the dense student's file.

    Args:
        student, teacher, data, epochs, alpha, temperature, optimizer, learning_rate,
        validation_data, callbacks, verbose: as in `quantize_distill`.
        target_sparsity: final fraction of zero kernel weights, in (0, 1). Default 0.8.
        schedule: a `tfmot.sparsity.keras.PruningSchedule`. Default: `PolynomialDecay` from
            0 to `target_sparsity` over the first `pruning_end` of the training steps (which
            needs a dataset of known length), then training at the target sparsity.
        pruning_end: fraction of the training steps by which the default schedule reaches
            `target_sparsity`, in (0, 1]; the remaining steps train the pruned student at the
            target (Zhu & Gupta 2017). Default 1.0 (the last pruning update near the last
            step): on CIFAR-10, 2/3 measured no better (docs/optimize.md).
        learning_rate_decay: "constant" (default) or "cosine" (cosine decay of the default
            optimizer's learning rate to 0 over the run, which needs a dataset of known
            length; measured worse for 80 % pruning on CIFAR-10, docs/optimize.md).
        path: where to write the pruned `.tflite`; the dense student is exported beside it
            (`<stem>.dense.tflite`) for the size comparison.
        quantization: export mode of both files (`keras_kd.export.QUANTIZATIONS`).
        representative_data: calibration data for `quantization="int8"` (default: `data`).
        verify_data: if given (with `path`), `keras_kd.export.verify` runs on it.
        batch_norm_batches: after pruning, BatchNorm moving statistics are re-estimated as
            the plain average over this many batches of `data` (0: keep them). Each pruning
            update shifts the activations abruptly and the moving averages lag behind:
            measured on CIFAR-10 (`mobile-small`, 0 -> 80 % in 150 steps, training
            accuracy 29 %), test accuracy was at chance (9.9 %) with the lagging statistics
            and 28.1 % after re-estimation (docs/optimize.md).

    Returns:
        A `CompressionResult` whose `student` is the pruned Keras 3 student and whose
        `report` holds `kernel_sparsity` (over the `pruned_weights` pruning acts on),
        `file_weight_sparsity` (over all `file_weights` of rank >= 2 in the file, depthwise
        kernels included), `gzip_bytes`,
        `dense_gzip_bytes`, `gzip_ratio` (and the verification with `verify_data`).
    """
    import keras

    alpha, temperature = _check(student, epochs, alpha, temperature)
    target_sparsity = checks.fraction("target_sparsity", target_sparsity)
    pruning_end = checks.fraction("pruning_end", pruning_end, one_allowed=True)
    checks.one_of("learning_rate_decay", learning_rate_decay, LEARNING_RATE_DECAYS)
    tf_keras, tfmot = legacy.modules()
    sparsity = tfmot.sparsity.keras
    if schedule is None:
        steps = _steps(data, "the default pruning schedule (or pass `schedule`)")
        schedule = _schedule(tfmot, target_sparsity, steps * epochs, pruning_end)
    model = tf_keras.models.clone_model(
        bridge.to_tf_keras(student), clone_function=lambda layer: (
            sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
            if type(layer).__name__ in measure.PRUNED_WEIGHTS else layer))
    history = _distil(tf_keras, model, teacher, data, epochs, alpha, temperature, optimizer,
                      learning_rate, validation_data, [sparsity.UpdatePruningStep(), *(callbacks or [])],
                      verbose, learning_rate_decay)
    stripped = sparsity.strip_pruning(model)
    pruned = keras.models.clone_model(student)
    pruned.set_weights(student.get_weights())
    bridge.to_keras3(stripped, pruned)
    if recalibrate_batch_norm(pruned, data, batch_norm_batches):
        bridge.copy_weights(pruned, stripped)  # the same statistics on both sides
    report = {"target_sparsity": target_sparsity}
    report["kernel_sparsity"], report["pruned_weights"] = measure.kernel_sparsity(pruned)
    result = CompressionResult(stripped, pruned, history, report=report)
    if path is not None:
        path = os.fspath(path)
        dense_path = os.path.splitext(path)[0] + ".dense.tflite"
        options = dict(quantization=quantization, representative_data=(
            data if representative_data is None else representative_data)
            if quantization == "int8" else None)
        export.to_tflite(pruned, path, **options)
        export.to_tflite(student, dense_path, **options)
        result.path = path
        if verify_data is not None:
            report.update(export.verify(pruned, path, verify_data))
        report["file_weight_sparsity"], report["file_weights"] = (
            measure.tflite_weight_sparsity(path))
        report.update(dense_file=dense_path, gzip_bytes=measure.gzip_size(path),
                      dense_gzip_bytes=measure.gzip_size(dense_path))
        report["gzip_ratio"] = report["gzip_bytes"] / report["dense_gzip_bytes"]
    return result


def recalibrate_batch_norm(model, data, batches):
    """Re-estimates the BatchNorm moving statistics of a Keras 3 `model` with its current
    weights: the plain average of the batch statistics over `batches` batches of `data`
    (training-mode forward passes, no weight update). Returns the number of batches used."""
    import keras

    from keras_kd.teachers import split_cached

    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or not batches:
        return 0
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for used, batch in enumerate(data.take(batches)):
            for layer in layers:  # moving = (used * moving + batch) / (used + 1)
                layer.momentum = used / (used + 1)
            model(split_cached(batch[0])[0], training=True)
        used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used
