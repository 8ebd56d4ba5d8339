#!/usr/bin/env python3
"""Classify inputs with an exported keras_kd model, using only LiteRT and NumPy.

Never imports TensorFlow: on a device, install `ai-edge-litert` and `numpy` (and Pillow for
image files), copy this file, `litert_runner.py` (from keras_kd/) and the model with its
sidecars (`NAME.tflite`, `NAME.labels.txt`, `NAME.metadata.json`), then:

    python run_litert.py --model student_int8.tflite --input digits.npy
    python run_litert.py --model student_int8.tflite --input three.png seven.png --top-k 3

Inputs are raw values, as stored in the dataset (e.g. uint8 pixels): the runner multiplies
them by the metadata's `input_scale`, quantizes them when the model's input is int8, and
prints one JSON line per example with the top-k classes and their probabilities.
"""

import argparse
import importlib.util
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_litert_runner():
    """litert_runner.py next to this script (on a device) or in the repository's keras_kd/."""
    for path in (os.path.join(HERE, "litert_runner.py"),
                 os.path.join(HERE, "..", "..", "keras_kd", "litert_runner.py")):
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("litert_runner", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # a plain file: keras_kd/__init__ (TF) is not run
            return module
    sys.exit("run_litert.py: litert_runner.py not found next to this script")


def _read_inputs(paths, shape):
    """Raw example arrays from .npy files (one example or a batch) or image files."""
    examples = []
    for path in paths:
        if path.endswith(".npy"):
            array = np.load(path)
            examples.extend(array if array.ndim > len(shape) else array[None])
        else:
            from PIL import Image  # only needed for image files

            height, width, channels = shape
            image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height))
            examples.append(np.asarray(image).reshape(shape))
    return np.stack([np.asarray(e).reshape(shape) for e in examples])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Classify inputs with a .tflite model (no TensorFlow).")
    parser.add_argument("--model", required=True, help="the .tflite file (sidecars beside it)")
    parser.add_argument("--input", required=True, nargs="+", help=".npy files or image files")
    parser.add_argument("--top-k", type=int, default=1, help="classes to print per example")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    args = parser.parse_args(argv)

    from ai_edge_litert.interpreter import Interpreter

    litert_runner = _load_litert_runner()
    stem = os.path.splitext(args.model)[0]
    metadata = litert_runner.load_metadata(f"{stem}.metadata.json")
    with open(f"{stem}.labels.txt") as f:
        labels = [line.rstrip("\n") for line in f]
    _, runner = litert_runner.open_model(Interpreter, args.model, args.threads, argument="--model")
    shape = tuple(metadata["input"]["shape"][1:])
    raw = _read_inputs(args.input, shape)
    logits = runner(raw.astype(np.float32) * float(metadata["input_scale"]))
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    for i, p in enumerate(probs):
        top = np.argsort(-p)[: args.top_k]
        print(json.dumps({"index": i, "top": [{"class": int(c), "label": labels[c],
                                               "probability": round(float(p[c]), 6)} for c in top]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
