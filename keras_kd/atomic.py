"""Files are written whole or not at all: to a temporary name beside them, then renamed."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path in `path`'s directory, ending like `path` (so `.keras`,
    `.weights.h5` or `.png` writers accept it), and renames it to `path` when the block
    succeeds. If the block raises, the temporary file is removed and `path` is untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=f"-{os.path.basename(path)}")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data, mode="wb"):
    """Writes `data` (bytes, or text with `mode="w"`) to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
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
