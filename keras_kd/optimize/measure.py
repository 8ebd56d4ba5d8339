"""Measurements of compressed students: weight sparsity and compressed file size."""

import gzip
import os

import numpy as np

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def gzip_size(path):
    """Bytes of `path` after gzip at the highest level (what a download or an APK store
    compresses it to): sparse weights only shrink a file once it is compressed."""
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


def kernel_sparsity(model):
    """Fraction of exactly-zero entries in the kernels of the prunable layers (Keras 3 or
    tf_keras model; biases and batch-norm parameters are not counted)."""
    zeros = total = 0
    for layer in model.layers:
        if type(layer).__name__ not in PRUNABLE:
            continue
        for weight in layer.weights:
            if "kernel" in weight.name:
                values = np.asarray(weight)
                zeros += int((values == 0).sum())
                total += values.size
    return zeros / total if total else 0.0


def tflite_weight_sparsity(path):
    """Fraction of zero entries in a `.tflite` file's constant tensors of rank >= 2 (the
    kernels and filters; for int8 files the zero-point of weights is 0, so zeros stay zeros).

    Returns:
        `(sparsity, number_of_weights)`.
    """
    from keras_kd.export import _interpreter

    interpreter = _interpreter(model_path=os.fspath(path))
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    produced = {i for op in ops for i in op["outputs"]}
    constants = {i for op in ops for i in op["inputs"] if i >= 0 and i not in produced}
    constants -= {d["index"] for d in interpreter.get_input_details()}
    zeros = total = 0
    for index in sorted(constants):
        try:
            values = interpreter.get_tensor(index)
        except ValueError:  # not readable (no buffer)
            continue
        if values.ndim >= 2 and values.size >= 16:
            zeros += int((values == 0).sum())
            total += values.size
    return (zeros / total if total else 0.0), total
