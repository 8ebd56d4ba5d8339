"""Running an exported classifier with the LiteRT interpreter: NumPy only, no TensorFlow.

This module imports nothing but NumPy (the interpreter object is passed in), so the edge
runner (`export/edge/run_litert.py`) can load it by path on a device where TensorFlow is not
installed, and `keras_kd.export.verify` uses the very same code to check exported files.
"""

import json
import os

import numpy as np

SIGNATURE = "serving_default"
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def _quant(details):
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


class Runner:
    """Calls a file's `serving_default` signature on float inputs, returning float logits.

    For int8/uint8 input or output tensors it quantizes the inputs (`q = round(x / scale) +
    zero_point`, clipped to the dtype's range) and dequantizes the outputs
    (`(q - zero_point) * scale`), so callers always see float32 in and out. The batch size
    of each call is free: the signature runner resizes its input.
    """

    def __init__(self, interpreter):
        self.runner = interpreter.get_signature_runner(SIGNATURE)
        self.input_details = self.runner.get_input_details()[INPUT_NAME]
        self.output_details = self.runner.get_output_details()[OUTPUT_NAME]
        self.input_dtype = np.dtype(self.input_details["dtype"]).type
        self.output_dtype = np.dtype(self.output_details["dtype"]).type

    def quantize_input(self, x):
        x = np.asarray(x, dtype=np.float32)
        if not np.issubdtype(self.input_dtype, np.integer):
            return x.astype(self.input_dtype)
        scale, zero_point = _quant(self.input_details)
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale) + zero_point
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def dequantize_output(self, y):
        if not np.issubdtype(self.output_dtype, np.integer):
            return np.asarray(y, dtype=np.float32)
        scale, zero_point = _quant(self.output_details)
        return ((np.asarray(y, dtype=np.float32) - zero_point) * scale).astype(np.float32)

    def __call__(self, x):
        out = self.runner(**{INPUT_NAME: self.quantize_input(x)})[OUTPUT_NAME]
        return self.dequantize_output(out)


def open_model(interpreter_class, path, num_threads=None, argument="tflite_path"):
    """`(interpreter, Runner)` for the `.tflite` file at `path`.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: naming `path` and what was expected, if the file is truncated, corrupt
            or lacks the `serving_default` signature written by `keras_kd.export`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Invalid value for argument `{argument}`. Expected a .tflite file written by "
            f"keras_kd.export.to_tflite. Received: {argument}={path!r} (no such file)"
        )
    try:
        interpreter = interpreter_class(model_path=path, num_threads=num_threads)
        return interpreter, Runner(interpreter)
    except (ValueError, RuntimeError, KeyError) as e:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a TFLite flatbuffer with a "
            f"'{SIGNATURE}' signature taking '{INPUT_NAME}' and returning '{OUTPUT_NAME}' (as "
            f"written by keras_kd.export.to_tflite). Received: {argument}={path!r} "
            f"({os.path.getsize(path)} bytes; the file is truncated, corrupt or not a keras_kd "
            f"export: {type(e).__name__}: {str(e)[:200]})"
        ) from None


def operators(interpreter):
    """Sorted names of the operators in the file (Flex ops appear as `Flex...`)."""
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def describe(interpreter, **facts):
    """The metadata of an exported file: tensors, quantization parameters, plus `facts`."""
    runner = Runner(interpreter)
    tensors = {}
    for role, details in (("input", runner.input_details), ("output", runner.output_details)):
        scale, zero_point = _quant(details)
        tensors[role] = {
            "name": INPUT_NAME if role == "input" else OUTPUT_NAME,
            "shape": [int(d) for d in details["shape_signature"]],
            "dtype": np.dtype(details["dtype"]).name,
            "quantization": {"scale": scale, "zero_point": zero_point},
        }
    ops = operators(interpreter)
    return {
        "signature": SIGNATURE,
        **tensors,
        "operators": ops,
        "needs_flex_delegate": any(op.startswith("Flex") for op in ops),
        "preprocessing": "x = raw_pixels * input_scale (float32), then quantized by the runner "
                         "when the input tensor is integer",
        **facts,
    }


def load_metadata(path):
    with open(path) as f:
        return json.load(f)
