"""The jobs behind the CLI: train a teacher, distil or train a student, evaluate, the demo.

Each returns a JSON-serialisable dict; callers save models and results with
`keras_kd.atomic`, so an interrupted run never leaves a half-written file behind.
"""

import time

import keras
import numpy as np

from keras_kd import data
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


def accuracy(model, splits):
    """Top-1 accuracy of a logits model on the test split (plain numpy, no compile needed)."""
    correct = total = 0
    for x, y in splits.test:
        pred = data.predicted_classes(model(x, training=False))
        correct += int(np.sum(pred == data.class_indices(y)))
        total += len(pred)
    return correct / total


def compile_classifier(model, lr, epochs, steps):
    """Compiles a logits model for training on integer labels with `optimizer(...)`."""
    model.compile(
        optimizer=optimizer(lr, epochs, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def train_supervised(model, splits, *, epochs, lr=1e-3, verbose="auto", callbacks=None):
    """Trains a logits model on the labels alone (a teacher, or a student's scratch twin)."""
    compile_classifier(model, lr, epochs, _steps(splits))
    start = time.time()
    history = model.fit(splits.train, validation_data=splits.test, epochs=epochs, verbose=verbose,
                        callbacks=callbacks)
    return {
        **model_facts(model),
        "test_accuracy": accuracy(model, splits),
        "train_seconds": round(time.time() - start, 2),
        "history": _history(history),
    }


def distill(student, teacher, splits, *, epochs, alpha=0.1, temperature=4.0,
            distillation_loss_fn=None, lr=1e-3, verbose="auto", callbacks=None):
    """Distils `teacher` into `student`; returns the facts and the trained `Distiller`."""
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=optimizer(lr, epochs, _steps(splits)),
        metrics=["accuracy"],
        distillation_loss_fn=distillation_loss_fn,
        alpha=alpha,
        temperature=temperature,
    )
    start = time.time()
    history = distiller.fit(splits.train, validation_data=splits.test, epochs=epochs,
                            verbose=verbose, callbacks=callbacks)
    results = {
        **model_facts(student),
        "alpha": alpha,
        "temperature": distiller.temperature,
        "test_accuracy": accuracy(student, splits),
        "train_seconds": round(time.time() - start, 2),
        "history": _history(history),
    }
    return results, distiller


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
