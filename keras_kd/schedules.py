"""Epoch schedules for `alpha`, temperatures and term weights, as Keras callbacks.

A schedule is a function of the 0-based epoch index. `ScheduleCallback(target, schedule)`
assigns its value at the beginning of each epoch to a non-trainable variable that the
`Distiller` reads inside its training step (no retracing), and logs it at the end of the
epoch (`history.history[log_name]`). The value depends only on the epoch index, and the
variables are saved with the Distiller's weights, so a run resumed by
`keras.callbacks.BackupAndRestore` continues with the same values.

Targets:
    "alpha"                 the weight of the hard-label loss (terms with `weight=None`
                            follow as `1 - alpha`);
    "temperature"           every temperature of the Distiller's logits terms;
    "<term>" / "<term>.weight"    a term's weight;
    "<term>.temperature"    one logits term's temperature.

Example:

```python
callbacks = [
    keras_kd.schedules.ScheduleCallback("temperature", keras_kd.schedules.Linear(8.0, 2.0, 20)),
    keras_kd.schedules.ScheduleCallback("hint_loss", keras_kd.schedules.Step([1.0, 0.0], [10])),
]
distiller.fit(train, epochs=30, callbacks=callbacks)
```
"""

import bisect
import math
import numbers

import keras

from keras_kd import checks


def _number(argument, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Invalid value for argument `{argument}`. Expected a finite number. "
                         f"Received: {argument}={value!r}")
    return float(value)


class Schedule:
    """Base class: `schedule(epoch) -> float` for the 0-based epoch index."""

    def __call__(self, epoch):
        raise NotImplementedError

    def get_config(self):
        return dict(self.__dict__)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_kd")
class Constant(Schedule):
    """The same value every epoch."""

    def __init__(self, value):
        self.value = _number("value", value)

    def __call__(self, epoch):
        return self.value


class _Ramp(Schedule):
    """From `start` at epoch 0 to `end` at epoch `epochs` (then `end`), along `shape`."""

    def __init__(self, start, end, epochs):
        self.start, self.end = _number("start", start), _number("end", end)
        self.epochs = checks.positive_int("epochs", epochs)

    def __call__(self, epoch):
        return self.start + (self.end - self.start) * self.shape(min(epoch / self.epochs, 1.0))


@keras.saving.register_keras_serializable(package="keras_kd")
class Linear(_Ramp):
    """`start` at epoch 0, linearly to `end` at epoch `epochs`, then `end`."""

    @staticmethod
    def shape(progress):
        return progress


@keras.saving.register_keras_serializable(package="keras_kd")
class Cosine(_Ramp):
    """Half a cosine from `start` at epoch 0 to `end` at epoch `epochs`, then `end`."""

    @staticmethod
    def shape(progress):
        return 0.5 * (1.0 - math.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="keras_kd")
class Step(Schedule):
    """`values[i]` from epoch `boundaries[i - 1]` on: `Step([4, 2, 1], [10, 20])` is 4 for
    epochs 0-9, 2 for 10-19, then 1."""

    def __init__(self, values, boundaries):
        self.values = [_number("values", v) for v in values]
        self.boundaries = [checks.non_negative_int("boundaries", b) for b in boundaries]
        if len(self.values) != len(self.boundaries) + 1 or self.boundaries != sorted(self.boundaries):
            raise ValueError(
                "Invalid arguments: expected increasing `boundaries` and one more value than "
                f"boundaries. Received: values={values!r}, boundaries={boundaries!r}"
            )

    def __call__(self, epoch):
        return self.values[bisect.bisect_right(self.boundaries, epoch)]


def get(schedule):
    """A `Schedule` from a schedule, a number (constant) or a serialized config."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return keras.saving.deserialize_keras_object(schedule)
    if isinstance(schedule, numbers.Real) and not isinstance(schedule, bool):
        return Constant(schedule)
    raise ValueError("Invalid value for argument `schedule`. Expected a keras_kd.schedules "
                     f"Schedule or a number. Received: schedule={schedule!r}")


def variables(distiller, target):
    """The variables a target names (see the module docstring), with Keras-worded errors."""
    objective = distiller.objective
    by_name = {t.name: t for t in objective.terms}
    temperature_terms = [t for t in objective.terms if hasattr(t, "temperature_variable")
                         and t._at_unit_temperature is not None]
    if target == "alpha":
        return [objective.alpha]
    if target == "temperature":
        if not temperature_terms:
            raise ValueError("Invalid target 'temperature': the Distiller has no temperature term.")
        return [t.temperature_variable for t in temperature_terms]
    name, _, attribute = target.partition(".")
    if name in by_name and attribute in ("", "weight"):
        term = by_name[name]
        if term.weight is None:
            raise ValueError(f"Invalid target '{target}': the term weighs 1 - alpha (weight=None);"
                             " schedule 'alpha', or give the term a weight.")
        return [term.weight_variable]
    if name in by_name and attribute == "temperature" and by_name[name] in temperature_terms:
        return [by_name[name].temperature_variable]
    available = ["alpha", "temperature"] + [f"{n}.weight" for n in by_name] + [
        f"{t.name}.temperature" for t in temperature_terms]
    raise ValueError(f"Invalid value for argument `target`. Expected one of {available}. "
                     f"Received: target={target!r}")


class ScheduleCallback(keras.callbacks.Callback):
    """Sets a Distiller variable from a schedule at each epoch's start, and logs it.

    Args:
        target: what to schedule: `"alpha"`, `"temperature"`, `"<term>"`/`"<term>.weight"`
            or `"<term>.temperature"` (see the module docstring).
        schedule: a `Schedule` or a number (constant).
        log_name: the key of the logged value. Default: `"alpha"`, `"temperature"`,
            `"<term>_weight"` or `"<term>_temperature"`.
    """

    def __init__(self, target, schedule, log_name=None):
        super().__init__()
        self.target = str(target)
        self.schedule = get(schedule)
        name, _, attribute = self.target.partition(".")
        if name not in ("alpha", "temperature"):
            name = f"{name}_{attribute or 'weight'}"
        self.log_name = log_name or name
        self.value = None

    def on_epoch_begin(self, epoch, logs=None):
        self.value = float(self.schedule(epoch))
        if self.target == "temperature" and not self.value > 0:
            raise ValueError(f"The temperature schedule gave {self.value} at epoch {epoch}; "
                             "temperatures must be > 0.")
        for variable in variables(self.model, self.target):
            variable.assign(self.value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.value is not None:
            logs[self.log_name] = self.value
