"""The export module: a Keras student to a TFLite (LiteRT) file, and its verification.

`to_tflite` goes through TensorFlow's own converter (a SavedModel with one named signature,
`serving_default(input) -> {"logits"}`, then `tf.lite.TFLiteConverter`), which supports every
quantization mode:

| quantization | weights        | activations | needs representative data |
|--------------|----------------|-------------|---------------------------|
| `float32`    | float32        | float32     | no                        |
| `float16`    | float16        | float32     | no                        |
| `dynamic`    | int8           | float32 (int8 kernels where possible) | no      |
| `int8`       | int8           | int8        | yes (capped number of samples) |
| `qat`        | int8           | int8, ranges from the model's FakeQuant ops (quantization-aware training, `keras_kd.optimize.native`) | no |

Only TFLite built-in ops are allowed by default, so files run on phones and edge runtimes
without the Flex delegate; `allow_tf_ops=True` is an explicit opt-in and the report flags it.
The batch dimension stays dynamic (resize the input at run time). Files are written to a
temporary name and renamed, with `labels.txt` and `metadata.json` beside them.
"""

import os
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_kd import atomic
from keras_kd import checks
from keras_kd import data as data_lib
from keras_kd import litert_runner
from keras_kd.litert_runner import INPUT_NAME, OUTPUT_NAME, SIGNATURE

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "qat")


def _representative(data, max_samples):
    def gen():
        for x, _ in data_lib.numpy_batches(data, max_samples):
            for i in range(len(x)):
                yield {INPUT_NAME: x[i : i + 1]}

    return gen


def _check(quantization, representative_data, max_samples):
    checks.one_of("quantization", quantization, QUANTIZATIONS)
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "Invalid value for argument `representative_data`: quantization='int8' calibrates "
            "activation ranges. Expected example inputs (numpy array, (x, y) or tf.data "
            "dataset). Received: representative_data=None"
        )
    checks.positive_int("max_calibration_samples", max_samples)


def _check_model(model):
    """The input shape (without batch) of a model export supports: one float32 input of
    known shape, one output."""
    import keras

    if isinstance(model, keras.Model) or not type(model).__module__.startswith("tf_keras"):
        checks.classifier_model("model", model)  # a keras.Model with one output
    # else a tf_keras model from keras_kd.optimize (quantization-aware or pruned)
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise ValueError(
            "Invalid value for argument `model`. Expected a Functional/Sequential model built "
            "with one keras.Input (the exported signature takes one float32 tensor named "
            f"'input'). Received: model '{model.name}' with {len(inputs)} inputs"
        )
    input_shape = tuple(inputs[0].shape[1:])
    if None in input_shape:
        raise ValueError(
            "Invalid value for argument `model`. Expected an input of known shape except the "
            f"batch axis. Received: model '{model.name}' with input shape {tuple(inputs[0].shape)}"
        )
    if inputs[0].dtype != "float32":
        raise ValueError(
            "Invalid value for argument `model`. Expected one float32 input (raw pixels as "
            "float32; put casts and preprocessing inside the model after a float32 "
            f"keras.Input). Received: model '{model.name}' with an input of dtype {inputs[0].dtype}"
        )
    return input_shape


def saved_model_converter(model, directory):
    """The `tf.lite.TFLiteConverter` of `model`, read from a SavedModel written to `directory`
    (one signature, `serving_default(input) -> {"logits"}`), before any quantization setting.

    `convert` configures it; tools that take a converter, such as
    `tf.lite.experimental.QuantizationDebugger`, can take it too. `directory` must outlive the
    converter's `convert()`.
    """
    import keras

    input_shape = _check_model(model)
    spec = tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)
    if isinstance(model, keras.Model):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name=SIGNATURE,
            fn=lambda x: {OUTPUT_NAME: model(x, training=False)},
            input_signature=[spec],
        )
        archive.write_out(directory, verbose=False)
    else:  # a tf_keras model (keras_kd.optimize: quantization-aware or pruned)
        serve = tf.function(lambda x: {OUTPUT_NAME: model(x, training=False)})
        tf.saved_model.save(model, directory,
                            signatures={SIGNATURE: serve.get_concrete_function(spec)})
    return tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[SIGNATURE])


def convert(model, quantization="float32", representative_data=None,
            max_calibration_samples=500, int8_io=False, allow_tf_ops=False):
    """Converts a Keras model to TFLite flatbuffer bytes (see `to_tflite` for the arguments).

    `model` is a Keras 3 model, or a tf_keras one (the quantization-aware and pruned models of
    `keras_kd.optimize`), saved through `tf.saved_model.save` with the same signature.
    """
    _check(quantization, representative_data, max_calibration_samples)
    with tempfile.TemporaryDirectory() as saved_model:
        converter = saved_model_converter(model, saved_model)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.representative_dataset = _representative(
                representative_data, max_calibration_samples
            )
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        if quantization == "qat" and int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        if allow_tf_ops:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        return converter.convert()


def quantization_aware(model):
    """Whether `model` was rewritten for quantization-aware training: it holds the fake-quant
    layers of `keras_kd.optimize.native.quantize_model` or the quantize wrappers of
    tensorflow-model-optimization (`keras_kd.optimize.quantize_distill`), in nested models too.
    An int8 export of such a model keeps the ranges it learnt in training."""
    from keras_kd.optimize import native  # here: native imports this module

    for layer in getattr(model, "layers", []):
        if isinstance(layer, (native.ActivationFakeQuant, native.FoldedQuantConv)):
            return True
        if type(layer).__module__.startswith(
                "tensorflow_model_optimization.python.core.quantization"):
            return True  # QuantizeWrapperV2, QuantizeLayer (tf_keras, checked by name only)
        if layer is not model and quantization_aware(layer):
            return True
    return False


def sidecar_paths(path):
    """`(labels_path, metadata_path)` written next to a `.tflite` file."""
    stem = os.path.splitext(path)[0]
    return f"{stem}.labels.txt", f"{stem}.metadata.json"


def to_tflite(model, path, quantization="float32", representative_data=None,
              max_calibration_samples=500, int8_io=False, allow_tf_ops=False, splits=None,
              class_names=None, input_scale=None):
    """Exports `model` to a TFLite file, with `labels.txt` and `metadata.json` beside it.

    Args:
        model: a Keras model with a known input shape, outputting logits.
        path: destination `.tflite` path (written atomically).
        quantization: `"float32"`, `"float16"`, `"dynamic"`, `"int8"` or `"qat"` (a model
            with fake-quant ops: int8 from its own ranges, see the table above).
        representative_data: calibration inputs for `"int8"`: array, `(x, y)` or tf.data.
        max_calibration_samples: cap on the calibration samples used. Default 500.
        int8_io: with `"int8"` or `"qat"`, make the input and output tensors int8 too (integer-only
            accelerators); otherwise they stay float32 with int8 inside.
        allow_tf_ops: allow TensorFlow (Flex) ops, which need the Flex delegate. Off by default.
        splits: optional `keras_kd.data.DataSplits`, the source of class names and scaling.
        class_names: class names (default: from `splits`, else "0".."N-1").
        input_scale: the factor applied to raw inputs (default: from `splits`, else 1). Image
            models with their normalisation inside (`keras_kd.models` image models, data from
            `keras_kd.data.from_directory`) take raw pixels: 1.0.

    Returns:
        The metadata dict written to the `.metadata.json` sidecar. Its `quantization` is the
        mode above (`"int8"`: the file is int8, whether its ranges were calibrated or learnt)
        and `quantization_aware_training` says whether `model` was trained quantization-aware
        (`quantization_aware(model)`; always true for `"qat"`): an int8 file exported from a
        QAT model says `"quantization": "int8", "quantization_aware_training": true`.
    """
    import keras_kd

    path = os.fspath(path)
    atomic.check_writable("path", path)
    flatbuffer = convert(model, quantization, representative_data, max_calibration_samples,
                         int8_io, allow_tf_ops)
    atomic.write_bytes(path, flatbuffer)
    num_classes = int(model.outputs[0].shape[-1])
    names = list(class_names or (splits.class_names if splits else None)
                 or [str(i) for i in range(num_classes)])
    details = _interpreter(model_content=flatbuffer)
    scale = float(input_scale if input_scale is not None else (splits.scale if splits else 1.0))
    metadata = litert_runner.describe(
        details, quantization=quantization,
        quantization_aware_training=quantization == "qat" or quantization_aware(model),
        class_names=names, input_scale=scale,
        input_description=describe_input(model, scale),
        source_model=model.name, version=keras_kd.__version__, allow_tf_ops=allow_tf_ops,
    )
    labels_path, metadata_path = sidecar_paths(path)
    atomic.write_text(labels_path, "\n".join(names) + "\n")
    atomic.write_json(metadata_path, metadata)
    return metadata


def calibration_data(splits, max_samples=500):
    """The int8 calibration inputs drawn from `splits`, the same ones on every call.

    `splits.train` is reshuffled on each pass, so calibrating on its first batches gives a
    different int8 file for each export made in one process (top-1 agreement with the Keras
    model of one CIFAR-10 student ranged from 98.13 % to 98.59 % that way). When the source
    keeps its training examples in a fixed order (`splits.train_examples`, image folders),
    this takes `max_samples` of them evenly spaced over that order (so every class of a
    class-sorted folder is represented); otherwise it returns `splits.train`, whose first
    pass in a fresh process is fixed by the data seed.
    """
    examples = splits.train_examples
    if examples is None:
        return splits.train
    size = splits.train_size or int(examples.reduce(0, lambda n, _: n + 1))
    stride = max(1, size // max_samples)
    return (examples.enumerate().filter(lambda i, example: i % stride == 0)
            .map(lambda i, example: example).take(max_samples).batch(64))


def to_tflite_and_verify(model, path, splits, quantization="float32", latency_repeats=200,
                         **kwargs):
    """`to_tflite` with what `splits` provides, then `verify` of the file on its test split.

    Args:
        model: as in `to_tflite`.
        path: destination `.tflite` path.
        splits: `keras_kd.data.DataSplits`: the training split calibrates `"int8"` (a fixed
            sample, `calibration_data`), its class names and scale go into the sidecars, its
            test split verifies the file.
        quantization: as in `to_tflite`.
        latency_repeats: as in `verify`.
        **kwargs: further arguments of `to_tflite` (`max_calibration_samples`, `int8_io`,
            `allow_tf_ops`, ...).

    Returns:
        `(metadata, report)`: the sidecar's metadata dict and the `verify` report.

    Example:
    >>> metadata, report = keras_kd.export.to_tflite_and_verify(
    ...     student, "student_int8.tflite", splits, quantization="int8")
    """
    samples = kwargs.pop("max_calibration_samples", 500)
    metadata = to_tflite(model, path, quantization=quantization,
                         representative_data=calibration_data(splits, samples),
                         max_calibration_samples=samples, splits=splits, **kwargs)
    return metadata, verify(model, path, splits.test, latency_repeats=latency_repeats)


def _preprocessing_layer(model):
    """The model's first layer if it is a Keras preprocessing layer (Normalization, Rescaling),
    as in the image models of `keras_kd.models` and keras.applications models built with
    `include_preprocessing=True`; else None."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if layers and isinstance(layers[0], (keras.layers.Normalization, keras.layers.Rescaling)):
        return layers[0]
    return None


def describe_input(model, input_scale):
    """What the exported file's input takes, in words (the sidecar's `input_description`)."""
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    if len(shape) == 3 and shape[-1] in (1, 3):
        layout = f"{'RGB' if shape[-1] == 3 else 'grayscale'}, HxWxC = {'x'.join(map(str, shape))}"
        inside = _preprocessing_layer(model)
        if input_scale == 1.0 and inside is not None:
            return (f"raw pixels 0-255, {layout}, float32; the model normalises them inside "
                    f"(layer {inside.name!r}): feed decoded pixels unchanged")
        return f"raw pixels times input_scale={input_scale:g}, {layout}, float32"
    return f"raw values times input_scale={input_scale:g}, shape {shape}, float32"


def _interpreter_class():
    """The LiteRT interpreter (`ai-edge-litert`), TensorFlow's as a fallback."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter


def _interpreter(model_path=None, model_content=None, num_threads=None):
    return _interpreter_class()(model_path=model_path, model_content=model_content,
                                num_threads=num_threads)


def _latency_ms(path, x_one, num_threads, repeats=200):
    interpreter = _interpreter(model_path=path, num_threads=num_threads)
    runner = litert_runner.Runner(interpreter)
    for _ in range(10):
        runner(x_one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(x_one)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def verify(model, tflite_path, dataset, batch_size=256, max_samples=None, latency_repeats=200):
    """Runs the TFLite file and the Keras model on the same data and compares them.

    Args:
        model: the Keras model the file was exported from.
        tflite_path: the `.tflite` file.
        dataset: `(x, y)` arrays or a tf.data dataset of `(x, y)` batches.
        batch_size: examples per interpreter call.
        max_samples: compare at most this many examples.
        latency_repeats: timed batch-1 calls for each thread setting.

    Returns:
        A JSON-serialisable dict: Keras and TFLite accuracy, top-1 agreement, max |output
        difference| (dequantized), file size, batch-1 latency at one thread and all threads,
        the file's operators and whether it needs the Flex delegate. Two fields say why
        top-1 predictions differ: `disagreement_max_keras_margin`, the largest gap between the
        Keras model's two best logits among the examples where the file's top-1 differs (None
        when none differs; small: the flips are near-ties that quantization noise tips over),
        and `tflite_top2_ties`, the examples whose two best file outputs are exactly equal (an
        int8 output's quantization step merged them; the argmax then takes the lower class).
    """
    interpreter, runner = litert_runner.open_model(_interpreter_class(), tflite_path)
    keras_correct = tflite_correct = agree = ties = n = 0
    max_diff = 0.0
    flip_margin = None
    first = None
    for x, y in data_lib.numpy_batches(dataset, max_samples):
        if first is None:
            first = x[:1]
        keras_logits = np.asarray(model(x, training=False), dtype=np.float32)
        lite_logits = np.concatenate(
            [runner(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )
        k, t = data_lib.predicted_classes(keras_logits), data_lib.predicted_classes(lite_logits)
        agree += int((k == t).sum())
        keras_top2 = np.sort(keras_logits, axis=-1)[:, -2:]
        lite_top2 = np.sort(lite_logits, axis=-1)[:, -2:]
        ties += int((lite_top2[:, 0] == lite_top2[:, 1]).sum())
        if np.any(k != t):
            margin = float((keras_top2[:, 1] - keras_top2[:, 0])[k != t].max())
            flip_margin = margin if flip_margin is None else max(flip_margin, margin)
        if y is not None:
            y = data_lib.class_indices(y)
            keras_correct += int((k == y).sum())
            tflite_correct += int((t == y).sum())
        max_diff = max(max_diff, float(np.abs(keras_logits - lite_logits).max()))
        n += len(x)
    ops = litert_runner.operators(interpreter)
    threads = os.cpu_count() or 1
    report = {
        "file": os.fspath(tflite_path),
        "size_bytes": os.path.getsize(tflite_path),
        "examples": n,
        "keras_accuracy": keras_correct / n if n else None,
        "tflite_accuracy": tflite_correct / n if n else None,
        "top1_agreement": agree / n if n else None,
        "max_abs_diff": max_diff,
        "disagreement_max_keras_margin": flip_margin,
        "tflite_top2_ties": ties,
        "latency_ms_batch1": _latency_ms(tflite_path, first, 1, latency_repeats),
        f"latency_ms_batch1_{threads}threads": _latency_ms(tflite_path, first, threads,
                                                           latency_repeats),
        "operators": ops,
        "flex_ops": [op for op in ops if op.startswith("Flex")],
        "input_dtype": runner.input_dtype.__name__,
    }
    return report
