"""A file of teacher outputs that `tf.data` streams without loading it: a fingerprint
header, then one float32 row per example.

Layout: the 8 bytes `KKDLOGv1`, the header length as a little-endian uint64, the header
(JSON: `fingerprint`, per-example `shape`), then the rows (little-endian float32). `tf.data`
reads the rows with `FixedLengthRecordDataset`, so a cache of any size costs no graph
constant and no memory beyond the rows in flight.
"""

import json
import os
import struct

import numpy as np
import tensorflow as tf

from keras_kd import atomic

MAGIC = b"KKDLOGv1"


def write(path, rows, fingerprint):
    """Writes `rows` (`(examples, ...)`, stored as float32) and `fingerprint` atomically."""
    rows = np.ascontiguousarray(rows, dtype="<f4")
    header = json.dumps({"fingerprint": fingerprint, "shape": list(rows.shape[1:])}).encode()
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header)
        f.write(rows.tobytes())


def read_header(path):
    """`(fingerprint, per-example shape, header bytes)` of a file written by `write`."""
    start = b""
    if os.path.isfile(path):  # not a directory (e.g. a former `tf.data.Dataset.save` cache)
        with open(path, "rb") as f:
            start = f.read(16)
    if len(start) < 16 or start[:8] != MAGIC:
        raise ValueError(
            f"Invalid value for argument `path`: {os.fspath(path)!r} is not a keras_kd "
            "cache of teacher outputs (a file). Delete it or choose another path."
        )
    (length,) = struct.unpack("<Q", start[8:])
    with open(path, "rb") as f:
        f.seek(16)
        header = json.loads(f.read(length))
    return header["fingerprint"], tuple(header["shape"]), 16 + length


def dataset(path, shape, header_bytes):
    """The rows of the file as a `tf.data.Dataset` of float32 tensors of `shape`."""
    row_bytes = 4 * int(np.prod(shape, dtype=np.int64))
    records = tf.data.FixedLengthRecordDataset(
        os.fspath(path), record_bytes=row_bytes, header_bytes=header_bytes)
    return records.map(lambda r: tf.reshape(tf.io.decode_raw(r, tf.float32), shape),
                       num_parallel_calls=tf.data.AUTOTUNE)
