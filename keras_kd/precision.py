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
