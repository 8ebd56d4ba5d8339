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


def _temporary(path):
    """`(path, temporary name beside it)`; local paths made absolute."""
    path = os.fspath(path)
    if not _is_url(path):
        path = os.path.abspath(path)
    directory, name = os.path.split(path)
    return path, os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{name}")


@contextlib.contextmanager
def atomic_path(path, overwrite=True):
    """Yields a temporary path in `path`'s directory, ending like `path` (so `.keras`,
    `.weights.h5` or `.png` writers accept it), and renames it to `path` when the block
    succeeds. If the block raises, the temporary file is removed and `path` is untouched.

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False (checked before the block).
    """
    path, tmp = _temporary(path)
    if not overwrite and tf.io.gfile.exists(path):
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    tf.io.gfile.makedirs(os.path.dirname(tmp))
    try:
        yield tmp
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def check_writable(argument, path):
    """Raises a ValueError naming `argument` unless a file can be written beside `path`
    (a probe file is created and removed; `path` itself is not touched)."""
    path, probe = _temporary(path)
    try:
        tf.io.gfile.makedirs(os.path.dirname(probe))
        with tf.io.gfile.GFile(probe, "wb") as f:
            f.write(b"probe")  # GFile creates the file on its first write
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as e:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a path where a file can be "
            f"written. Received: {argument}={path!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160]})"
        ) from None


def write_bytes(path, data, mode="wb", overwrite=True):
    """Writes `data` (bytes, or text with `mode="w"`) to `path` atomically; returns `path`."""
    with atomic_path(path, overwrite) as tmp:
        with tf.io.gfile.GFile(tmp, mode) as f:
            f.write(data)
    return os.fspath(path)


def write_text(path, text, overwrite=True):
    return write_bytes(path, text, mode="w", overwrite=overwrite)


def write_json(path, obj, overwrite=True):
    return write_text(path, json.dumps(obj, indent=2), overwrite=overwrite)


def save_model(model, path, overwrite=True):
    """`model.save(path)` (a `.keras` file) through a temporary name; returns `path`."""
    with atomic_path(path, overwrite) as tmp:
        model.save(tmp)
    return os.fspath(path)
