#!/usr/bin/env python3
"""Classify image files (or .npy arrays) with an exported keras_kd model: LiteRT, NumPy, Pillow.

Never imports TensorFlow: on a device, install `ai-edge-litert`, `numpy` and `Pillow`, copy this
file, `litert_runner.py` (from keras_kd/) and the model with its sidecars (`NAME.tflite`,
`NAME.labels.txt`, `NAME.metadata.json`), then:

    python run_litert.py --model student_int8.tflite --input cat.jpg ship.jpg --top-k 3
    python run_litert.py --model student_int8.tflite --input ../shared/data/cifar10/test/cat/*.jpg
    python run_litert.py --model digits_int8.tflite --input digits.npy

Image files are decoded with Pillow (JPEG: libjpeg's accurate integer DCT, which is also how
`keras_kd.data.from_directory` decodes training images, bit for bit), converted to RGB (or
grayscale for 1-channel models) and fed as raw pixels 0-255: models with `input_scale` 1.0 in
their metadata (the image models of `keras_kd.models`) normalise inside the model. An image
whose size differs from the model's input is resized (Pillow bilinear) and the output line
says `"resized": true`; a resized image is not the pixels a TensorFlow-resized training
pipeline saw, so for exact parity give images at the model's size. `.npy` files hold raw
values as stored in the dataset (one example or a batch), multiplied by `input_scale` (e.g.
1/16 for the 0-16 digits). One JSON line per example: the input, its top-k classes and
their probabilities.
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


def read_image(path, shape):
    """Raw uint8 pixels `(H, W, C)` of an image file, and whether it had to be resized."""
    from PIL import Image  # only needed for image files

    height, width, channels = shape
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        resized = image.size != (width, height)
        if resized:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8).reshape(shape), resized


def _check_image_scale(input_scale):
    """Image files hold 0-255 pixels: only models taking raw pixels (input_scale 1) or
    pixels / 255 can read them; other scales belong to other raw ranges (digits: 0-16)."""
    if not (input_scale == 1.0 or abs(input_scale * 255 - 1) < 1e-6):
        sys.exit(f"run_litert.py: this model's metadata has input_scale={input_scale:g}, made "
                 "for raw values other than 0-255 pixels; pass .npy files of its raw values")


def read_inputs(paths, shape, input_scale):
    """`(names, raw float32 batch, resized flags)` from .npy files and image files."""
    names, examples, resized = [], [], []
    for path in paths:
        if path.endswith(".npy"):
            array = np.load(path)
            batch = array if array.ndim > len(shape) else array[None]
            names += [f"{path}[{i}]" for i in range(len(batch))]
            examples += [np.asarray(e).reshape(shape) for e in batch]
            resized += [False] * len(batch)
        else:
            _check_image_scale(input_scale)
            pixels, was_resized = read_image(path, shape)
            names.append(path)
            examples.append(pixels)
            resized.append(was_resized)
    return names, np.stack(examples).astype(np.float32), resized


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Classify images with a .tflite model (no TensorFlow).")
    parser.add_argument("--model", required=True, help="the .tflite file (sidecars beside it)")
    parser.add_argument("--input", required=True, nargs="+", help="image files or .npy files")
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
    input_scale = float(metadata["input_scale"])
    names, raw, resized = read_inputs(args.input, shape, input_scale)
    if any(resized):
        print(f"run_litert.py: {sum(resized)} image(s) resized to {shape[1]}x{shape[0]} (Pillow "
              "bilinear): not the pixels a TensorFlow-resized training pipeline sees",
              file=sys.stderr)
    logits = np.concatenate([runner(raw[i : i + 256] * np.float32(input_scale))
                             for i in range(0, len(raw), 256)])
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    for name, p, was_resized in zip(names, probs, resized):
        top = np.argsort(-p, kind="stable")[: args.top_k]  # ties: lowest class, as argmax
        print(json.dumps({"input": name, "resized": was_resized,
                          "top": [{"class": int(c), "label": labels[c],
                                   "probability": round(float(p[c]), 6)} for c in top]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
