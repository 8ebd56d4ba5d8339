"""Measurements of compressed students: weight sparsity and compressed file size."""

import gzip
import os

import numpy as np

# The weights TFMOT's magnitude pruning acts on (its PruneRegistry): depthwise kernels are
# left dense on purpose (few weights, large accuracy cost), so are biases and BatchNorm.
PRUNED_WEIGHTS = {"Conv2D": "kernel", "Dense": "kernel", "SeparableConv2D": "pointwise_kernel"}


def gzip_size(path):
    """Bytes of `path` after gzip at the highest level (what a download or an APK store
    compresses it to): sparse weights only shrink a file once it is compressed."""
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


def kernel_sparsity(model):
    """`(fraction of exact zeros, number of weights)` over the weights pruning acts on
    (`PRUNED_WEIGHTS`) of a Keras 3 or tf_keras model."""
    zeros = total = 0
    for layer in model.layers:
        wanted = PRUNED_WEIGHTS.get(type(layer).__name__)
        for weight in layer.weights if wanted else ():
            if weight.name.split("/")[-1].split(":")[0] == wanted:
                values = np.asarray(weight)
                zeros += int((values == 0).sum())
                total += values.size
    return (zeros / total if total else 0.0), total


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
