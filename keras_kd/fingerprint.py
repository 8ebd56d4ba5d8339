"""What a stored cache of teacher outputs was made from, and refusing a stale one.

A fingerprint is a flat dict of plain values (digests of the teacher's weights and of the
data, settings); a cache file stores the fingerprint it was made with, and reading it back
compares that with the fingerprint of the request: any difference is an error that names the
keys that differ (`check`), never a silent reuse of another teacher's outputs.
"""

import hashlib
import json

import keras
import numpy as np


def digest(*arrays):
    """A short SHA-256 digest of arrays: their dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def weights_digest(model):
    """The digest of a model's weights (the same weights in any dtype policy give the same)."""
    return digest(*[np.asarray(w) for w in model.get_weights()])


def _without_names(config):
    """A serialized config without layer names (auto-numbered, so they differ run to run)."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def config_digest(obj):
    """The digest of a Keras object's serialized config, layer names left out."""
    config = _without_names(keras.saving.serialize_keras_object(obj))
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check(path, stored, requested, what="teacher outputs"):
    """Raises a ValueError naming what differs if the `stored` fingerprint (from the file at
    `path`) is not the `requested` one."""
    if stored == requested:
        return
    differ = sorted(k for k in set(stored) | set(requested) if stored.get(k) != requested.get(k))
    raise ValueError(
        f"Invalid value for argument `path`: {str(path)!r} holds {what} made from other "
        f"{', '.join(differ)} than requested (stored {stored}, requested {requested}). "
        "Delete it or choose another path."
    )
