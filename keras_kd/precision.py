"""Mixed precision for distillation: which policy suits this machine, and switching it on.

The Distiller computes every loss in float32 whatever the models' compute dtype, and with
`mixed_float16` Keras wraps the optimizer in a `LossScaleOptimizer` (`compile(...,
auto_scale_loss=True)`), whose `scale_loss` and `apply_gradients` the Distiller's step uses.
"""

import keras
import tensorflow as tf

from keras_kd import checks

POLICIES = ("auto", "off", "mixed_float16", "mixed_bfloat16")


def _cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def recommended_policy():
    """`"mixed_float16"` with a GPU, `"mixed_bfloat16"` on CPUs with bf16 instructions
    (AVX512-BF16 or AMX), else `"float32"`."""
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


def enable(policy="auto"):
    """Sets Keras' global dtype policy; call it before building the models.

    Args:
        policy: `"auto"` (`recommended_policy()`), `"off"` (float32), `"mixed_float16"` or
            `"mixed_bfloat16"`.

    Returns:
        The name of the policy now in force.

    Raises:
        ValueError: for an unknown policy.
    """
    checks.one_of("policy", policy, POLICIES)
    name = {"auto": recommended_policy(), "off": "float32"}.get(policy, policy)
    keras.mixed_precision.set_global_policy(name)
    return name


TEACHER_DTYPES = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def teacher_in(teacher, dtype):
    """A copy of `teacher` that computes in `dtype`, for inference only.

    Only the teacher changes: the copy holds the same weights (float32 variables, cast to
    `dtype` as each layer runs, Keras' mixed precision) and its layers get the policy
    `mixed_<dtype>`; Keras' global policy is left alone, so the student (and every model
    built later) keeps its own. Its outputs are in `dtype`: the Distiller and the caches
    cast them to float32 before the losses.

    On CPUs with bf16 instructions (AVX512-BF16, AMX) `"bfloat16"` speeds up the teacher's
    forward pass; on GPUs `"float16"`. The soft targets change a little (measured by
    `benchmarks/teacher_precision.py`: the KL between the float32 and reduced-precision
    teachers' softened distributions).

    Args:
        teacher: a built `keras.Model` (Functional, Sequential, or with a `get_config`).
        dtype: `"bfloat16"`, `"float16"`, or `"float32"`/None (the teacher itself).

    Returns:
        The teacher in `dtype` (non-trainable), or `teacher` itself for float32.

    Raises:
        ValueError: for another dtype.
    """
    if dtype is None:
        return teacher
    policy = TEACHER_DTYPES[checks.one_of("teacher_dtype", dtype, list(TEACHER_DTYPES))]
    if policy is None:
        return teacher
    copy = keras.models.clone_model(teacher)
    copy.set_weights(teacher.get_weights())
    for layer in copy._flatten_layers(include_self=True):
        if not isinstance(layer, keras.layers.InputLayer):
            layer.dtype_policy = policy
    copy.trainable = False
    return copy
