"""Loading tf_keras and tensorflow-model-optimization without switching the process to them.

TFMOT works only on tf_keras (Keras 2) models. Importing it sets `TF_USE_LEGACY_KERAS=1` in
`os.environ` and resolves `tf.keras`, which from then on would be tf_keras for the whole
process (and for every subprocess inheriting the variable). `modules()` prevents both:

1. it resolves `tf.keras` *before* TFMOT is imported, under the user's own setting (Keras 3
   unless they chose otherwise), so TensorFlow's lazy loader keeps that module;
2. it restores `TF_USE_LEGACY_KERAS` to its previous value (or removes it) afterwards.

Keras 3 (`import keras`) and tf_keras (`import tf_keras`) are distinct packages that can be
loaded side by side; keras_kd runs the TFMOT side in the process that asked for it, and
`tests/test_optimize.py::test_keras3_session_unaffected_after_qat` proves a Keras 3 session
keeps working afterwards (build, fit, save, load, `keras.__version__`, `tf.keras`).
"""

import os

_ENV = "TF_USE_LEGACY_KERAS"


def modules():
    """Returns `(tf_keras, tfmot)`, imported without changing `tf.keras` or the environment.

    Raises:
        ImportError: when tf-keras or tensorflow-model-optimization is not installed, naming
            the extra to install.
    """
    import tensorflow as tf

    _ = tf.keras.Model  # resolve tf.keras now, as the user's environment says (lazy loader)
    saved = os.environ.get(_ENV)
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as error:
        raise ImportError(
            "Quantization-aware and pruning-aware distillation need tf-keras and "
            "tensorflow-model-optimization: `pip install keras-kd[optimize]` "
            f"(missing: {error.name})."
        ) from error
    finally:
        if saved is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = saved
    return tf_keras, tfmot
