"""Device/training parity of an exported image classifier, on raw image files.

`check` answers the deployment question of issue 11: does the edge runner
(`export/edge/run_litert.py`: Pillow + LiteRT, no TensorFlow) on the raw files give the
predictions of the same `.tflite` file on the pixels the training loader
(`keras_kd.data.from_directory`) decoded from those files, and how often does it agree with
the Keras model?
"""

import json
import os
import subprocess
import sys

import numpy as np

from keras_kd import data as data_lib

RUNNER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "export", "edge", "run_litert.py")


def _edge_top1(tflite_path, paths, runner_script):
    out = subprocess.run([sys.executable, runner_script, "--model", tflite_path, "--input", *paths],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{runner_script} failed (exit {out.returncode}): {out.stderr[-2000:]}")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return (np.array([line["top"][0]["class"] for line in lines]),
            any(line["resized"] for line in lines))


def check(model, tflite_path, folder, limit=100, runner_script=RUNNER):
    """Edge runner on `limit` raw image files of `folder` vs the file on loader pixels vs Keras.

    Args:
        model: the Keras model the file was exported from (raw-pixel input).
        tflite_path: the `.tflite` file, with its sidecars beside it.
        folder: a folder of class folders (e.g. `../shared/data/cifar10/test`).
        limit: number of files, evenly spaced over the folder's sorted listing (so every class
            is represented).
        runner_script: path of `run_litert.py` (default: the repository's `export/edge/`).

    Returns:
        A JSON-serialisable dict: `files`, `edge_equals_tflite` (files where the runner's top-1
        equals the file's top-1 on the loader's pixels), `edge_agrees_keras`, `edge_correct`,
        `keras_correct`, `resized` (whether the runner had to resize any image).
    """
    from keras_kd import litert_runner
    from keras_kd.export import _interpreter, sidecar_paths

    if not os.path.exists(runner_script):
        raise FileNotFoundError(
            f"Invalid value for argument `runner_script`: no file at {runner_script!r}. It is "
            "export/edge/run_litert.py in the keras_kd repository."
        )
    paths, labels, _ = data_lib.list_image_folder(folder)
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).astype(int))
    paths, labels = [paths[i] for i in chosen], np.array([labels[i] for i in chosen])
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    pixels = np.stack([x.numpy() for x, _ in data_lib.read_images(
        paths, labels, (height, width), channels)])
    pixels *= np.float32(litert_runner.load_metadata(sidecar_paths(tflite_path)[1])["input_scale"])
    lite = litert_runner.Runner(_interpreter(model_path=os.fspath(tflite_path)))
    lite_top1 = lite(pixels).argmax(-1)
    keras_top1 = np.asarray(model(pixels, training=False)).argmax(-1)
    edge_top1, resized = _edge_top1(os.fspath(tflite_path), paths, runner_script)
    return {
        "files": len(paths),
        "edge_equals_tflite": int((edge_top1 == lite_top1).sum()),
        "edge_agrees_keras": int((edge_top1 == keras_top1).sum()),
        "edge_correct": int((edge_top1 == labels).sum()),
        "keras_correct": int((keras_top1 == labels).sum()),
        "resized": bool(resized),
    }
