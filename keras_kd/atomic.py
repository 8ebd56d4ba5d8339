"""Files are written whole or not at all: to a temporary name beside them, then renamed."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, overwrite=True):
    """Yields a temporary path in `path`'s directory, ending like `path` (so `.keras`,
    `.weights.h5` or `.png` writers accept it), and renames it to `path` when the block
    succeeds. If the block raises, the temporary file is removed and `path` is untouched.

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False (checked before the block).
    """
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
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


def write_bytes(path, data, mode="wb", overwrite=True):
    """Writes `data` (bytes, or text with `mode="w"`) to `path` atomically; returns `path`."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, mode) as f:
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
