"""Callbacks that are safe under multi-worker training: only the chief writes.

Paths go through `tf.io.gfile` (local, `gs://`, ...); the chief is the strategy's own
(`strategy.extended.should_checkpoint`).

Keras 3's own `BackupAndRestore` and `ModelCheckpoint` write from every worker to the same
path, which races on shared storage. Here every worker still runs the save (saving may
read distributed variables, which takes all workers), but non-chief workers write into a
private temporary directory that is deleted at once; the chief writes the real files, through
a temporary name and a rename.
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_kd import checks
from keras_kd import compat
from keras_kd.atomic import atomic_path
from keras_kd.distribute import tf_config


def task():
    """`(task_type, task_index)` from `TF_CONFIG`, or `(None, 0)` outside a cluster."""
    info = tf_config().get("task", {})
    return info.get("type"), int(info.get("index", 0))


def is_chief(strategy=None):
    """True where files are written: the strategy's own notion,
    `strategy.extended.should_checkpoint`, which holds under any cluster resolver.

    With no `strategy`, the one in scope is used; outside any strategy scope, `TF_CONFIG`
    decides: the `chief` task, else worker 0, else a single process.
    """
    if strategy is None and tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    if strategy is not None:
        return bool(strategy.extended.should_checkpoint)
    task_type, index = task()
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in tf_config().get("cluster", {})


def _save(path, save_fn, strategy):
    """Atomic save on the chief; a throw-away save elsewhere."""
    if is_chief(strategy):
        with atomic_path(path) as tmp:
            save_fn(tmp)
    else:
        scratch = tempfile.mkdtemp(prefix="keras_kd_worker_")
        try:
            save_fn(os.path.join(scratch, os.path.basename(path)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` where only the chief writes, atomically.

    Restoring continues an interrupted `fit` from the last completed epoch (or `save_freq`
    batch), with the weights and optimizer state. Under multi-worker training `backup_dir`
    must be storage that every worker can read (all workers restore from the chief's files).
    """

    def _save_model(self):
        strategy = self.model.distribute_strategy
        weights_path, metadata_path = compat.backup_paths(self)
        _save(weights_path, lambda p: self.model.save_weights(p, overwrite=True), strategy)
        metadata = json.dumps(compat.backup_position(self))

        def write_metadata(p):
            with tf.io.gfile.GFile(p, "w") as f:
                f.write(metadata)

        _save(metadata_path, write_metadata, strategy)

    def on_train_end(self, logs=None):
        if is_chief(self.model.distribute_strategy):
            super().on_train_end(logs)


class StudentCheckpoint(keras.callbacks.Callback):
    """Saves the `Distiller`'s student as `.keras` at the end of epochs (chief only, atomic).

    Args:
        filepath: where to save; may use `{epoch}` and log keys, as in `ModelCheckpoint`.
        monitor: with `save_best_only`, the log key to watch (e.g. `"val_loss"`).
        mode: `"min"` or `"max"`, the better direction of `monitor`.
        save_best_only: save only when `monitor` improves.
    """

    def __init__(self, filepath, monitor="val_loss", mode="min", save_best_only=False):
        super().__init__()
        checks.one_of("mode", mode, ("min", "max"))
        self.filepath = os.fspath(filepath)
        self.monitor, self.mode, self.save_best_only = monitor, mode, save_best_only
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise ValueError(
                    "Invalid value for argument `monitor` of StudentCheckpoint. Expected one of "
                    f"the logged keys {sorted(logs)}. Received: monitor={self.monitor!r}"
                )
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not better:
                return
            self.best = value
        student = getattr(self.model, "student", self.model)
        path = self.filepath.format(epoch=epoch + 1, **logs)
        _save(path, student.save, self.model.distribute_strategy)
