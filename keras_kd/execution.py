"""Steps per execution of `Distiller.fit`: how many training steps one call into TensorFlow runs.

`Distiller.compile(steps_per_execution="auto")` runs `AUTO_STEPS_PER_EXECUTION` (64) steps per
call: for small students the per-step overhead of `fit` otherwise costs as much as the
arithmetic (benchmarks/train_throughput.py). It runs 1 when `run_eagerly`, or under a
tf.distribute strategy, where Keras' multi-step loop fails. `fit(steps_per_epoch=...)` then
lowers the count to a divisor of the epoch (`for_epoch`).
"""

import warnings

import keras

AUTO_STEPS_PER_EXECUTION = 64


def resolve(steps_per_execution, run_eagerly, distributed):
    """The number of steps per execution `compile(steps_per_execution=...)` asks for.

    Args:
        steps_per_execution: `"auto"` or a positive integer.
        run_eagerly: `compile`'s `run_eagerly`.
        distributed: whether the model trains under a tf.distribute strategy.

    Returns:
        A positive int: `"auto"` gives `AUTO_STEPS_PER_EXECUTION`, or 1 when `run_eagerly`
        or `distributed`.

    Raises:
        ValueError: unless `steps_per_execution` is `"auto"` or a positive integer. An
            integer > 1 under a strategy only warns (Keras' multi-step loop fails there).
    """
    if steps_per_execution == "auto":
        return 1 if run_eagerly or distributed else AUTO_STEPS_PER_EXECUTION
    if isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int) or (
        steps_per_execution < 1
    ):
        raise ValueError(
            "Invalid value for argument `steps_per_execution`. Expected 'auto' or a positive "
            f"integer. Received: steps_per_execution={steps_per_execution!r}"
        )
    if steps_per_execution > 1 and distributed:
        warnings.warn(
            f"steps_per_execution={steps_per_execution} under a tf.distribute strategy: "
            f"Keras {keras.__version__}'s multi-step loop fails under MirroredStrategy "
            "('You must feed a value for placeholder tensor ... while/cond'); use 1.",
            stacklevel=3,  # the caller of `Distiller.compile`
        )
    return steps_per_execution


def for_epoch(steps_per_epoch, current):
    """The largest divisor of `steps_per_epoch` that is <= `AUTO_STEPS_PER_EXECUTION`.

    Keras 3.15's multi-step loop runs whole executions when `fit` gets `steps_per_epoch` on a
    repeated dataset: steps_per_execution=64 with steps_per_epoch=3 runs 64 steps an epoch
    (tests/test_views.py). A divisor keeps every epoch exact. `current == 1` stays 1."""
    if current == 1:
        return 1
    steps = int(steps_per_epoch)
    return max(d for d in range(1, min(steps, AUTO_STEPS_PER_EXECUTION) + 1) if steps % d == 0)
