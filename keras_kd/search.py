"""Choosing T, alpha (and a method's own weights) on the validation split.

A grid search, or a seeded random sample of the grid when `max_trials` is smaller, with early
stopping on a validation metric; every trial is recorded. It needs nothing beyond Keras.
(keras-tuner 1.4.8 is an alternative for larger spaces; it is not a dependency.) The test
split is never touched here: score the chosen setting on it once, afterwards.
"""

import itertools
import random
import time

import keras

from keras_kd import atomic
from keras_kd import workflows


def grid(space):
    """Every combination of a `{name: [values]}` space, as a list of dicts (in order)."""
    if not space or not all(isinstance(v, (list, tuple)) and v for v in space.values()):
        raise ValueError("Invalid value for argument `space`. Expected a dict of non-empty "
                         f"lists of values, e.g. {{'temperature': [2, 4]}}. Received: {space!r}")
    names = list(space)
    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def search(build, train, validation, space, *, epochs, max_trials=None, patience=2,
           monitor="val_accuracy", mode="max", seed=0, verbose=0, fit_kwargs=None):
    """Trains one compiled model per setting and returns the best on `validation`.

    Args:
        build: `build(setting) -> compiled keras.Model` (e.g. a `Distiller` compiled with
            `alpha=setting["alpha"], temperature=setting["temperature"]`). Build a fresh
            student each time, from the same initial weights, so trials differ only by the
            setting.
        train, validation: datasets for `fit`.
        space: `{name: [values]}`.
        epochs: the budget of each trial.
        max_trials: at most this many settings, drawn at random (seeded) from the grid;
            `None`: the whole grid.
        patience: early-stopping patience in epochs (the best epoch's score counts).
        monitor, mode: the validation metric and whether higher (`"max"`) is better.
        seed: seed of the random draw.
        verbose: passed to `fit`.
        fit_kwargs: extra `fit` arguments.

    Returns:
        dict: `best` (the best setting), `best_score`, `trials` (one row per trial: the
        setting, its best score, the epoch it came from, epochs run, seconds), `monitor`,
        `mode`. `format_trials` and `plot_trials` show it.
    """
    settings = grid(space)
    if max_trials is not None and max_trials < len(settings):
        settings = random.Random(seed).sample(settings, max_trials)
    sign = 1.0 if mode == "max" else -1.0
    trials = []
    for number, setting in enumerate(settings, start=1):
        model = build(dict(setting))
        stop = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience)
        start = time.time()
        history = model.fit(train, validation_data=validation, epochs=epochs, verbose=verbose,
                            callbacks=[stop], **(fit_kwargs or {})).history
        if monitor not in history:
            raise ValueError(f"Invalid value for argument `monitor`: '{monitor}' is not logged. "
                             f"Logged: {sorted(history)}")
        scores = [sign * float(v) for v in history[monitor]]
        best_epoch = max(range(len(scores)), key=scores.__getitem__)
        trials.append({"trial": number, **setting, "score": sign * scores[best_epoch],
                       "best_epoch": best_epoch + 1, "epochs_run": len(scores),
                       "seconds": round(time.time() - start, 1)})
    best = max(trials, key=lambda t: sign * t["score"])
    return {"best": {k: best[k] for k in space}, "best_score": best["score"], "monitor": monitor,
            "mode": mode, "trials": trials}


def format_trials(result):
    """The trials as a plain-text table, best first."""
    names = list(result["best"])
    columns = [("trial", "trial", "")] + [(n, n, "") for n in names] + [
        ("score", result["monitor"], ".4f"), ("best_epoch", "best epoch", ""),
        ("epochs_run", "epochs", ""), ("seconds", "seconds", ".1f")]
    sign = 1.0 if result["mode"] == "max" else -1.0
    rows = sorted(result["trials"], key=lambda t: -sign * t["score"])
    return workflows.table(rows, columns)


def plot_trials(result, path, x="temperature", hue="alpha"):
    """Saves a plot of the trials' scores against `x`, one line per value of `hue`.

    Needs matplotlib (imported here); returns the path, or None without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for value in sorted({t.get(hue) for t in result["trials"]}, key=str):
        points = sorted((t[x], t["score"]) for t in result["trials"] if t.get(hue) == value)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{hue}={value}")
    ax.set_xlabel(x)
    ax.set_ylabel(result["monitor"])
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
    return path
