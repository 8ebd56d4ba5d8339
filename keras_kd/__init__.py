"""keras_kd: knowledge distillation for Keras 3 on TensorFlow, with TFLite/LiteRT export.

Importing keras_kd loads Keras and TensorFlow only; optional dependencies
(tensorflow-datasets, tensorflow-model-optimization, tf-keras, ai-edge-litert, scikit-learn,
matplotlib) are imported inside the functions that need them.

The `keras-kd` command (and `python -m keras_kd[.cli]`) is the one exception to the eager
imports below: it validates its arguments and quiets TensorFlow's native logs before
TensorFlow loads, then calls `import_all()` itself (see `keras_kd/cli.py`).
"""

import importlib
import os
import sys

__version__ = "0.1.0"

# `optimize` last: it imports the Distiller, which needs the others loaded (it registers the
# Keras classes of QAT models, so that a `keras-kd distill --qat` model loads).
_SUBMODULES = ("augment", "callbacks", "dark_knowledge", "data", "distribute", "edge_parity",
               "ensemble", "export", "features", "losses", "models", "precision", "rounds",
               "schedules", "search", "terms", "transfer", "views", "optimize")
_CLASSES = {"Distiller": "keras_kd.distiller", "TeacherEnsemble": "keras_kd.teachers"}

__all__ = [*sorted(_CLASSES), *_SUBMODULES, "__version__"]


def launched_as_cli():
    """True in a process started as `keras-kd ...` or `python -m keras_kd[.cli] ...`."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("keras-kd", "keras-kd.exe"):
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b in ("keras_kd", "keras_kd.cli") for a, b in zip(argv, argv[1:]))


def import_all():
    """Imports the public modules and classes, registering every Keras serializable class."""
    for name in _SUBMODULES:
        importlib.import_module(f"keras_kd.{name}")
    for name, module in _CLASSES.items():
        globals()[name] = getattr(importlib.import_module(module), name)


def __getattr__(name):  # only reached before `import_all()` (in the CLI's first second)
    # Only what is asked: `from keras_kd import terms` inside a module that `import_all` is
    # importing comes here, and a nested `import_all` would meet that module half-initialised.
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_kd.{name}")
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'keras_kd' has no attribute {name!r}")


if not launched_as_cli():
    import_all()
