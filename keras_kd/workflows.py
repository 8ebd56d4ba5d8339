"""The jobs behind the CLI: train a teacher, distil or train a student, evaluate, the demo.

Each returns a JSON-serialisable dict; callers save models and results with
`keras_kd.atomic`, so an interrupted run never leaves a half-written file behind.
"""

import collections
import hashlib
import math
import time
import types

import keras
import numpy as np
import tensorflow as tf

from keras_kd import callbacks as kd_callbacks
from keras_kd import data as data_lib
from keras_kd.distiller import Distiller


def optimizer(lr, epochs, steps):
    """Adam whose learning rate decays (cosine) to 1 % over `epochs * steps` steps."""
    if steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps), alpha=0.01)
    return keras.optimizers.Adam(lr)


def _steps(splits):
    try:
        return int(splits.train.cardinality().numpy()) if splits.train.cardinality() > 0 else None
    except (TypeError, ValueError):
        return None


def _history(history):
    return {k: [round(float(v), 6) for v in vals] for k, vals in history.history.items()}


def model_facts(model):
    """Parameter count and float32 weight size of a model."""
    params = int(model.count_params())
    return {"name": model.name, "params": params, "weights_bytes": params * 4}


Predictions = collections.namedtuple("Predictions", ["logits", "labels"])
Predictions.__doc__ = """A model's logits `(N, C)` on labelled data and the true classes `(N,)`,
in the order of the data: what `predict_labelled` returns and the workflows' test score uses."""


def predict_labelled(model, batches, limit=None):
    """Runs a logits model once, in inference mode, over labelled data.

    Labels may be integers of shape (N,) or (N, 1) (the keras.datasets layout) or one-hot.

    Args:
        model: a logits model.
        batches: a `tf.data.Dataset` of `(x, y)` batches or a tuple of arrays `(x, y)`.
        limit: at most this many examples (default: all).

    Returns:
        `Predictions(logits, labels)`: the concatenated logits and the labels as class indices.

    Raises:
        ValueError: for data without labels or without any example.
    """
    return predict_labelled_together([model], batches, limit)[0]


def predict_labelled_together(models, batches, limit=None):
    """`predict_labelled` of several models on the same batches, read once (so a reshuffling
    dataset gives every model the same examples in the same order); one `Predictions` each."""
    logits, labels = [[] for _ in models], []
    for x, y in data_lib.numpy_batches(batches, limit):
        if y is None:
            raise ValueError("Expected labelled data `(x, y)`. Received inputs without labels")
        for outputs, model in zip(logits, models):
            outputs.append(np.asarray(model(x, training=False)))
        labels.append(data_lib.class_indices(y))
    if not labels:
        raise ValueError("Expected at least one labelled example. Received an empty dataset")
    labels = np.concatenate(labels)
    return [Predictions(np.concatenate(outputs), labels) for outputs in logits]


def accuracy_of(predictions):
    """Top-1 accuracy of `Predictions`."""
    correct = data_lib.predicted_classes(predictions.logits) == predictions.labels
    return int(np.sum(correct)) / len(correct)


def accuracy(model, splits):
    """Top-1 accuracy of a logits model on the test split (plain numpy, no compile needed).

    Labels may be integers of shape (N,) or (N, 1) (the keras.datasets layout) or one-hot.
    """
    return accuracy_on(model, splits.test)


def accuracy_on(model, batches):
    """Top-1 accuracy of a logits model on `(x, y)` batches (e.g. `splits.validation`)."""
    return accuracy_of(predict_labelled(model, batches))


class _EpochSeed(keras.callbacks.Callback):
    """Tells the training pipeline which epoch starts (before Keras creates its iterator)."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


def epoch_seeded_train(splits, seed):
    """The training split, reshuffled every epoch in an order that depends on (seed, epoch) only.

    tf.data's own `shuffle(seed=...)` draws a new order per *iterator*, so a run resumed from a
    backup at epoch k would see epoch 0's order again; here epoch k sees the same batches in an
    uninterrupted run and in a resumed one. Returns `(dataset, callback)`: pass both to `fit`.
    """
    batches = list(data_lib.numpy_batches(splits.train))
    batch_size = len(batches[0][0])
    x, y = (np.concatenate([b[i] for b in batches]) for i in (0, 1))
    # `splits.train` comes in a new order at each pass: sort the examples by content first.
    keys = [hashlib.blake2b(xi.tobytes() + yi.tobytes(), digest_size=16).digest()
            for xi, yi in zip(x, y)]
    canonical = sorted(range(len(x)), key=keys.__getitem__)
    x, y = tf.constant(x[canonical]), tf.constant(y[canonical])
    n = int(x.shape[0])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_seed")
    steps = math.ceil(n / batch_size)

    def batch(step):  # the epoch's order is recomputed per batch: cheap, and stateless
        key = tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
        i = order[step * batch_size:tf.minimum((step + 1) * batch_size, n)]
        return tf.gather(x, i), tf.gather(y, i)

    dataset = data_lib.prefetched(tf.data.Dataset.range(steps).map(batch))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = data_lib.DATA_SHARDING
    return dataset.with_options(options), _EpochSeed(epoch)


def _fit(model, splits, *, epochs, verbose, callbacks, seed, backup_dir):
    """`model.fit` on `epoch_seeded_train`, validated on `splits.validation` (never the test
    set), resuming from `backup_dir` when it holds a backup. Returns `(history, seconds)`."""
    train, epoch_seed = epoch_seeded_train(splits, seed)
    callbacks = [epoch_seed, *(callbacks or [])]
    if backup_dir:
        callbacks.append(kd_callbacks.BackupAndRestore(backup_dir))
    start = time.time()
    history = model.fit(train, validation_data=splits.validation, epochs=epochs,
                        verbose=verbose, callbacks=callbacks, shuffle=False)  # shuffled above
    return history, round(time.time() - start, 2)


def compile_classifier(model, lr, epochs, steps):
    """Compiles a logits model for training on integer labels with `optimizer(...)`."""
    model.compile(
        optimizer=optimizer(lr, epochs, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _facts(model, history, seconds, splits):
    """`(facts, test Predictions)` of a trained model: the test set is predicted here, once."""
    predictions = predict_labelled(model, splits.test)  # the one look at the test set
    return {
        **model_facts(model),
        "test_accuracy": accuracy_of(predictions),
        "train_seconds": seconds,
        "initial_epoch": history.epoch[0] if history.epoch else None,  # > 0 when resumed
        "epochs_run": len(history.epoch),
        "history": _history(history),
    }, predictions


def train_supervised(model, splits, *, epochs, lr=1e-3, verbose="auto", callbacks=None, seed=0,
                     backup_dir=None, return_test_predictions=False):
    """Trains a logits model on the labels alone (a teacher, or a student's scratch twin).

    Validation metrics come from `splits.validation`; the test set is scored once, at the end.
    With `backup_dir`, training state is backed up after every epoch and an interrupted run
    called again with the same arguments resumes from the last completed epoch.

    Returns the facts (a JSON-serialisable dict); with `return_test_predictions=True`,
    `(facts, predictions)`, the `Predictions` the test accuracy was computed from (for a
    further look at the same outputs, e.g. `keras_kd.dark_knowledge.from_predictions`,
    without predicting the test set again).
    """
    compile_classifier(model, lr, epochs, _steps(splits))
    history, seconds = _fit(model, splits, epochs=epochs, verbose=verbose, callbacks=callbacks,
                            seed=seed, backup_dir=backup_dir)
    facts, predictions = _facts(model, history, seconds, splits)
    return (facts, predictions) if return_test_predictions else facts


def distill(student, teacher, splits, *, epochs, alpha=0.1, temperature=4.0,
            distillation_loss_fn=None, terms=None, lr=1e-3, verbose="auto", callbacks=None,
            seed=0, backup_dir=None, return_test_predictions=False):
    """Distils `teacher` into `student`; returns the facts and the trained `Distiller`.

    `terms` (`keras_kd.terms`) replace the single KD term of `distillation_loss_fn`.
    Validation, test scoring and `backup_dir` as in `train_supervised`; with
    `return_test_predictions=True`, `(facts, distiller, predictions)`: the student's test
    `Predictions`.
    """
    distiller = Distiller(student=student, teacher=teacher, terms=terms)
    distiller.compile(
        optimizer=optimizer(lr, epochs, _steps(splits)),
        metrics=["accuracy"],
        distillation_loss_fn=None if terms else distillation_loss_fn,
        alpha=alpha,
        temperature=temperature,
    )
    history, seconds = _fit(distiller, splits, epochs=epochs, verbose=verbose, callbacks=callbacks,
                            seed=seed, backup_dir=backup_dir)
    facts, predictions = _facts(student, history, seconds, splits)
    results = {"alpha": alpha, "temperature": distiller.temperature, **facts}
    return (results, distiller, predictions) if return_test_predictions else (results, distiller)


def prune_distill(student, teacher, splits, *, epochs, target_sparsity, alpha=0.1,
                  temperature=4.0, lr=1e-3, verbose="auto", return_test_predictions=False):
    """Pruning-aware distillation (`keras_kd.optimize.prune_distill`, TFMOT, one device,
    constant learning rate `lr`); returns the facts, with the pruning report under
    `"pruning"`, and the pruned Keras 3 student (and its test `Predictions` with
    `return_test_predictions=True`)."""
    from keras_kd import optimize

    start = time.time()
    result = optimize.prune_distill(
        student, teacher, splits.train, target_sparsity=target_sparsity, epochs=epochs,
        alpha=alpha, temperature=temperature, learning_rate=lr,
        validation_data=splits.validation, verbose=verbose)
    seconds = round(time.time() - start, 2)
    pruned = result.student
    history = types.SimpleNamespace(epoch=list(range(epochs)), history=result.history)  # as Keras
    facts, predictions = _facts(pruned, history, seconds, splits)
    results = {"alpha": alpha, "temperature": temperature, **facts, "pruning": result.report}
    return (results, pruned, predictions) if return_test_predictions else (results, pruned)


EXPORT_COLUMNS = [
    ("name", "tflite file", ""), ("size_bytes", "bytes", ","),
    ("keras_accuracy", "keras acc", ".4f"), ("tflite_accuracy", "tflite acc", ".4f"),
    ("top1_agreement", "agreement", ".4f"), ("max_abs_diff", "max |diff|", ".2e"),
    ("latency_ms_batch1", "ms/sample", ".4f"),
]


def table(rows, columns):
    """A plain-text table: `rows` are dicts, `columns` (key, header, format) triples."""
    header = "  ".join(f"{h:>{max(len(h), 10)}}" if i else f"{h:<22}"
                       for i, (_, h, _) in enumerate(columns))
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for i, (key, h, fmt) in enumerate(columns):
            value = row.get(key, "")
            text = format(value, fmt) if value != "" else ""
            cells.append(f"{text:>{max(len(h), 10)}}" if i else f"{text:<22}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
