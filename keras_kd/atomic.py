"""Files are written whole or not at all: to a temporary name beside them, then renamed.

Every operation goes through `tf.io.gfile`, so paths may be local or any filesystem
TensorFlow knows (`gs://`, `s3://` with its plugin, `ram://`, ...).
"""

import contextlib
import json
import os
import uuid

import tensorflow as tf


def _is_url(path):
    return "://" in path


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path in `path`'s directory, ending like `path` (so `.keras`,
    `.weights.h5` or `.png` writers accept it), and renames it to `path` when the block
    succeeds. If the block raises, the temporary file is removed and `path` is untouched."""
    path = os.fspath(path)
    if not _is_url(path):
        path = os.path.abspath(path)
    directory, name = os.path.split(path)
    tf.io.gfile.makedirs(directory)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    try:
        yield tmp
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def write_bytes(path, data, mode="wb"):
    """Writes `data` (bytes, or text with `mode="w"`) to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        with tf.io.gfile.GFile(tmp, mode) as f:
            f.write(data)
    return os.fspath(path)


def write_text(path, text):
    return write_bytes(path, text, mode="w")


def write_json(path, obj):
    return write_text(path, json.dumps(obj, indent=2))


def save_model(model, path):
    """`model.save(path)` (a `.keras` file) through a temporary name; returns `path`."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return os.fspath(path)
