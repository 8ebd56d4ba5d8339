"""Distillation losses on logits.

Every loss here is a `keras.losses.Loss` whose `call(teacher_logits, student_logits)`
returns one value per example, so it can be used on its own like any Keras loss
(`loss(teacher_logits, student_logits, sample_weight)`) and the `Distiller` can apply its
own global-batch reduction. Arguments follow the Keras convention `(y_true, y_pred)`:
the teacher's logits are the target, the student's logits the prediction.
"""

import numbers

import keras
from keras import ops


def check_temperature(temperature, allow_none=True):
    """Validates a temperature in Keras' words; returns it as a float (or None)."""
    if temperature is None and allow_none:
        return None
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not temperature > 0
        or temperature == float("inf")
    ):
        raise ValueError(
            "Invalid value for argument `temperature`. Expected a finite number > 0"
            f"{' or None' if allow_none else ''}. Received: temperature={temperature!r}"
        )
    return float(temperature)


def softened_log_probs(logits, temperature):
    """`log softmax(logits / T)` over the last axis, in float32.

    A one-logit binary model (shape `(..., 1)`) is the two classes `[sigmoid(-z/T),
    sigmoid(z/T)]`: `[log_sigmoid(-z/T), log_sigmoid(z/T)]`, stable for any `z`.
    """
    z = ops.cast(logits, "float32") / temperature
    if z.shape[-1] == 1:
        return ops.concatenate([ops.log_sigmoid(-z), ops.log_sigmoid(z)], axis=-1)
    return ops.log_softmax(z, axis=-1)


class TemperatureLoss(keras.losses.Loss):
    """Base class of the losses that soften logits with a temperature `T`.

    `temperature=None` means "set by the `Distiller`" (its `compile(temperature=...)`);
    used on its own, such a loss behaves as with `T = 1`. Subclasses compute the per-example
    value at `T` in `call` and pass it through `_scaled`, which multiplies by `T**2` unless
    `scale_by_temperature_squared=False`.
    """

    def __init__(self, temperature=None, scale_by_temperature_squared=True, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_temperature(temperature)
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)

    def _scaled(self, values):
        if self.scale_by_temperature_squared:
            return values * self.effective_temperature**2
        return values

    @property
    def effective_temperature(self):
        return 1.0 if self.temperature is None else self.temperature

    def with_temperature(self, temperature):
        """Returns a copy of this loss with `temperature` set."""
        config = self.get_config()
        config["temperature"] = check_temperature(temperature, allow_none=False)
        return self.__class__.from_config(config)

    def _log_probs(self, teacher_logits, student_logits):
        t = self.effective_temperature
        return softened_log_probs(teacher_logits, t), softened_log_probs(student_logits, t)

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        config["scale_by_temperature_squared"] = self.scale_by_temperature_squared
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class KLDivergence(TemperatureLoss):
    """Temperature-scaled KL divergence between teacher and student (Hinton et al., 2015).

    Per example, with `p = softmax(teacher_logits / T)` and `q = softmax(student_logits / T)`:

        loss = T**2 * sum_c p_c * (log p_c - log q_c)

    Both log-probabilities come from `log_softmax`, so the value and its gradient stay finite
    for logits of any size and any `T > 0` (no `log(0)`, no overflow in `exp`). For one-logit
    binary models (outputs of shape `(batch, 1)`), `p = sigmoid(teacher_logits / T)` and the
    sum runs over the two classes: `T**2 * (p log(p/q) + (1-p) log((1-p)/(1-q)))` with
    `q = sigmoid(student_logits / T)`, from `log_sigmoid`. The `T**2`
    factor (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015,
    section 2) keeps the gradient's magnitude independent of `T`, so the weight of this term
    against the hard-label loss need not be re-tuned when `T` changes; turn it off with
    `scale_by_temperature_squared=False`.

    Args:
        temperature: softening temperature `T > 0`, or `None` to take the `Distiller`'s
            (`T = 1` when used on its own).
        scale_by_temperature_squared: multiply by `T**2` (default `True`).
        name: name of the loss.
        reduction: Keras reduction, used only when the loss is called on its own.
        dtype: dtype of the computation; logits are cast to float32 in any case.

    Example:

    >>> loss = KLDivergence(temperature=2.0)
    >>> float(loss([[1.0, 2.0]], [[1.0, 2.0]]))
    0.0
    """

    def __init__(self, temperature=None, scale_by_temperature_squared=True, name="kl_divergence",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(temperature, scale_by_temperature_squared, name, reduction, dtype)

    def call(self, y_true, y_pred):
        log_p_teacher, log_p_student = self._log_probs(y_true, y_pred)
        kl = ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
        return self._scaled(kl)


@keras.saving.register_keras_serializable(package="keras_kd")
class SoftTargetCrossEntropy(TemperatureLoss):
    """Cross-entropy of the student's softened outputs against the teacher's soft targets.

    Per example, with `p = softmax(teacher_logits / T)` and `log q = log_softmax(student_logits / T)`:

        loss = -T**2 * sum_c p_c * log q_c

    This is the objective written in Hinton et al. (2015); it equals `KLDivergence` plus the
    teacher's entropy `T**2 * H(p)`, which does not depend on the student, so the gradients
    are identical and only the logged value differs (it does not reach 0 at a perfect match).

    Args:
        temperature: softening temperature `T > 0`, or `None` to take the `Distiller`'s.
        scale_by_temperature_squared: multiply by `T**2` (default `True`).
        name: name of the loss.
        reduction: Keras reduction, used only when the loss is called on its own.
        dtype: dtype of the computation.
    """

    def __init__(self, temperature=None, scale_by_temperature_squared=True, name="soft_target_crossentropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(temperature, scale_by_temperature_squared, name, reduction, dtype)

    def call(self, y_true, y_pred):
        log_p_teacher, log_p_student = self._log_probs(y_true, y_pred)
        ce = -ops.sum(ops.exp(log_p_teacher) * log_p_student, axis=-1)
        return self._scaled(ce)


@keras.saving.register_keras_serializable(package="keras_kd")
class LogitsMSE(keras.losses.Loss):
    """Mean squared error between teacher and student logits (Ba & Caruana, 2014).

    Per example: `loss = mean_c (student_logits_c - teacher_logits_c)**2`. Hinton et al. (2015)
    show that this is the high-temperature limit of the soft-target loss when logits are
    zero-mean; it uses no temperature, so the `Distiller`'s `temperature` does not apply.

    Args:
        name: name of the loss.
        reduction: Keras reduction, used only when the loss is called on its own.
        dtype: dtype of the computation.
    """

    def __init__(self, name="logits_mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        diff = ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")
        return ops.mean(ops.square(diff), axis=-1)


@keras.saving.register_keras_serializable(package="keras_kd")
class SoftenedKerasLoss(TemperatureLoss):
    """A Keras loss on probabilities, applied to temperature-softened logits, times `T**2`.

    Keras' probability losses (`keras.losses.KLDivergence`, `CategoricalCrossentropy`,
    `CategoricalFocalCrossentropy` and their functions) expect probabilities; given logits
    they clip them to `[1e-7, 1]` and return nonsense. The `Distiller` wraps them in this
    class, so per example:

        loss = T**2 * keras_loss(softmax(teacher_logits / T), softmax(student_logits / T))

    (`student_logits / T`, shifted by a constant, when the Keras loss has `from_logits=True`).
    Both softmaxes come from `log_softmax`, so no probability overflows; a one-logit model is
    the two classes `[sigmoid(-z/T), sigmoid(z/T)]`, as in `KLDivergence`.

    With `keras.losses.KLDivergence()` this equals `keras_kd.losses.KLDivergence` to float32
    rounding (rtol 1e-5) whenever every softened probability of both models is at least
    `1e-7`, which holds for the usual `T >= 2` and logit ranges below about `14 * T`. Where a
    probability falls below `1e-7`, Keras' clip replaces it by `1e-7`: the class's term of the
    divergence is then misvalued and its gradient is 0. Prefer `keras_kd.losses.KLDivergence`
    for very confident teachers at `T` near 1. With `CategoricalCrossentropy` it equals
    `keras_kd.losses.SoftTargetCrossEntropy` under the same condition (Keras clips to
    `[1e-7, 1 - 1e-7]`).

    Args:
        loss: a Keras probability loss instance or function.
        temperature: softening temperature `T > 0`, or `None` to take the `Distiller`'s.
        scale_by_temperature_squared: multiply by `T**2` (default `True`).
        name: name of the loss (default: the wrapped loss's name).
        reduction: Keras reduction, used only when the loss is called on its own.
        dtype: dtype of the computation.
    """

    def __init__(self, loss, temperature=None, scale_by_temperature_squared=True, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        name = name or getattr(loss, "name", None) or getattr(loss, "__name__", "softened")
        super().__init__(temperature, scale_by_temperature_squared, f"softened_{name}"
                         if not name.startswith("softened_") else name, reduction, dtype)
        self.loss = loss
        self.from_logits = bool(getattr(loss, "from_logits", False))

    def call(self, y_true, y_pred):
        log_p_teacher, log_p_student = self._log_probs(y_true, y_pred)
        student = log_p_student if self.from_logits else ops.exp(log_p_student)
        if isinstance(self.loss, keras.losses.Loss):
            values = self.loss.call(ops.exp(log_p_teacher), student)
        else:
            values = self.loss(ops.exp(log_p_teacher), student)
        return self._scaled(ops.cast(values, "float32"))

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config
