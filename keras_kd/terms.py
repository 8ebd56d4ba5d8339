"""Weighted distillation terms and the objective the `Distiller` minimises.

    loss = alpha * hard + sum_i weight_i * warmup_i(epoch) * term_i

`hard` is the student's hard-label loss and each `term_i` is a mean over the global batch
(weighted by `sample_weight`), logged under the term's name. A term whose `weight` is `None`
(the default of `Logits`) weighs `1 - alpha`, so `terms=[Logits()]` is exactly the classic
`alpha * hard + (1 - alpha) * soft` of Hinton et al. (2015); any other term carries its own
absolute weight, independent of `alpha` (e.g. DKD and attention transfer use `alpha = 1`,
a cross-entropy weight of 1, as their papers do).

Terms read the teacher's and the student's logits and/or named intermediate layers
(`keras_kd.features.view` gives them in one call of each model). `alpha`, term weights,
warm-up factors and temperatures live in non-trainable variables, read inside the training
step, so schedules (`keras_kd.schedules`) change them without retracing.
"""

import numbers

import keras
from keras import ops

from keras_kd import checks
from keras_kd import features
from keras_kd import losses as kd_losses

RESERVED_NAMES = ("loss", "hard_loss", "count")


def _scalar(layer, name, value):
    return layer.add_weight(shape=(), initializer=keras.initializers.Constant(value),
                            trainable=False, name=name)


def _check_weight(weight, allow_none):
    if weight is None and allow_none:
        return None
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not weight >= 0:
        raise ValueError(
            f"Invalid value for argument `weight`. Expected a number >= 0"
            f"{' or None (1 - alpha)' if allow_none else ''}. Received: weight={weight!r}"
        )
    return float(weight)


class Term(keras.layers.Layer):
    """Base class of a distillation term: what it reads, its weight, its warm-up.

    Subclasses set `teacher_layers` / `student_layers` (names of layers read, besides the
    logits), may create adapters in `connect`, and return one value per example from
    `per_example(teacher, student, labels)`, where `teacher` and `student` are dicts with
    the logits under `"logits"` and each read layer's output under its name.

    Args:
        weight: the term's weight in the total loss, a number >= 0 (`None`: `1 - alpha`,
            for logits terms only).
        warmup_epochs: the weight rises linearly over this many epochs:
            `min((epoch + 1) / warmup_epochs, 1)` in epoch `epoch` (0-based), as DKD's
            reference code (`min(epoch / warmup, 1)` with 1-based epochs). 0: no warm-up.
        name: the name the term's value is logged under.
    """

    default_name = "term"
    needs_labels = False
    allows_complement_weight = False

    def __init__(self, weight=1.0, warmup_epochs=0, name=None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)
        self.weight = _check_weight(weight, self.allows_complement_weight)
        self.warmup_epochs = checks.non_negative_int("warmup_epochs", warmup_epochs)
        self.weight_variable = _scalar(self, "weight", 0.0 if weight is None else weight)
        self.warmup_variable = _scalar(self, "warmup", self.warmup_factor(0))
        self.teacher_layers = ()
        self.student_layers = ()
        self.built = True

    def warmup_factor(self, epoch):
        if not self.warmup_epochs:
            return 1.0
        return min((epoch + 1) / self.warmup_epochs, 1.0)

    def connect(self, teacher, student):
        """Called once by the `Distiller` with the two models (to build adapters)."""

    def per_example(self, teacher, student, labels):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, warmup_epochs=self.warmup_epochs)
        for key in ("trainable", "dtype"):
            config.pop(key, None)
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class Logits(Term):
    """A loss on teacher and student logits: KD (default), DKD, logits MSE, ...

    Args:
        loss: a `keras_kd.losses` loss or name (default `KLDivergence`, Hinton's soft
            loss times `T**2`), e.g. `keras_kd.losses.DecoupledKD()`, or any
            `(teacher_logits, student_logits) -> per-example loss`.
        weight: the term's weight; `None` (default) weighs `1 - alpha`.
        temperature: `T` for a temperature loss; `None` takes the loss's own, else the
            `Distiller.compile(temperature=...)` one. Held in a variable (schedulable).
        warmup_epochs, name: see `Term`. Default name `"kd_loss"`.
    """

    default_name = "kd_loss"
    allows_complement_weight = True

    def __init__(self, loss=None, weight=None, temperature=None, warmup_epochs=0, name=None,
                 **kwargs):
        super().__init__(weight=weight, warmup_epochs=warmup_epochs, name=name, **kwargs)
        self.temperature = kd_losses.logits.check_temperature(temperature)
        self.temperature_variable = _scalar(self, "temperature", self.temperature or 1.0)
        self.set_loss(loss)

    def set_loss(self, loss):
        """Sets the loss (the `Distiller` does for `compile(distillation_loss_fn=...)`)."""
        self.loss = kd_losses.get(loss)
        self.needs_labels = bool(getattr(self.loss, "needs_labels", False))
        self._at_unit_temperature = None
        if isinstance(self.loss, kd_losses.TemperatureLoss):
            own = self.loss.temperature
            if own is not None and self.temperature is not None and own != self.temperature:
                raise ValueError(
                    f"Conflicting temperatures for term '{self.name}': its loss has "
                    f"temperature={own} and the term temperature={self.temperature}."
                )
            if own is not None:
                self.temperature_variable.assign(own)
            self._at_unit_temperature = self.loss.with_temperature(1.0)

    @property
    def fixed_temperature(self):
        """The temperature set on the term or its loss, or None (take the Distiller's)."""
        if self._at_unit_temperature is None:
            return None
        return self.temperature or self.loss.temperature

    def per_example(self, teacher, student, labels):
        t_logits, s_logits = teacher[features.LOGITS], student[features.LOGITS]
        loss, scale = self.loss, 1.0
        if self._at_unit_temperature is not None:
            # softmax(z / T) at T = 1 of the divided logits; the variable T is read each step.
            temperature = self.temperature_variable
            t_logits, s_logits = t_logits / temperature, s_logits / temperature
            loss = self._at_unit_temperature
            if self.loss.scale_by_temperature_squared:
                scale = ops.square(temperature)
        y_true = (t_logits, labels) if self.needs_labels else t_logits
        if isinstance(loss, keras.losses.Loss):
            values = loss.call(y_true, s_logits)
        else:
            values = loss(y_true, s_logits)
        return ops.cast(values, "float32") * scale

    def get_config(self):
        config = super().get_config()
        config.update(loss=keras.saving.serialize_keras_object(self.loss),
                      temperature=self.temperature)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = kd_losses.get(config["loss"])
        return cls(**config)


def dkd(alpha=1.0, beta=8.0, temperature=4.0, weight=1.0, warmup_epochs=20, name="dkd_loss"):
    """A DKD term with the paper's CIFAR settings (compile the Distiller with `alpha=1.0`).

    Zhao et al. (2022) train with `CE + min(epoch / 20, 1) * DKD(alpha=1, beta=8, T=4)`;
    `Distiller(..., terms=[terms.dkd()]).compile(alpha=1.0)` is that objective.
    """
    return Logits(kd_losses.DecoupledKD(alpha=alpha, beta=beta), weight=weight,
                  temperature=temperature, warmup_epochs=warmup_epochs, name=name)


@keras.saving.register_keras_serializable(package="keras_kd")
class Hint(Term):
    """FitNets hint (Romero et al., 2015): L2 between a teacher layer and a student layer.

    Per example: `mean((adapter(student_feature) - teacher_feature)**2)` over the feature's
    elements (the reference implementations' `F.mse_loss`; the paper's `1/2 ||.||^2` is the
    sum, i.e. a constant factor). When shapes differ (or `adapter=True`) a learned
    `keras_kd.features.Adapter` (1x1 Conv2D for feature maps, Dense for vectors, bilinear
    resize when heights/widths differ) maps the student feature to the teacher's shape; it
    is trained with the student and is not part of it. mdistiller weighs this term by 100
    (with a cross-entropy weight of 1) on CIFAR-100.

    Args:
        teacher_layer: name of the teacher's layer (the hint).
        student_layer: name of the student's layer (the guided layer).
        weight: the term's weight (default 1.0).
        adapter: `"auto"` (an adapter only when shapes differ), `True` or `False`.
        warmup_epochs, name: see `Term`. Default name `"hint_loss"`.
    """

    default_name = "hint_loss"

    def __init__(self, teacher_layer, student_layer, weight=1.0, adapter="auto", warmup_epochs=0,
                 name=None, **kwargs):
        super().__init__(weight=weight, warmup_epochs=warmup_epochs, name=name, **kwargs)
        checks.one_of("adapter", adapter, ("auto", True, False))
        self.teacher_layer, self.student_layer = str(teacher_layer), str(student_layer)
        self.use_adapter = adapter
        self.teacher_layers, self.student_layers = (self.teacher_layer,), (self.student_layer,)
        self.adapter = None

    def connect(self, teacher, student):
        t_shape = features.feature_shape(teacher, self.teacher_layer)
        s_shape = features.feature_shape(student, self.student_layer)
        if self.use_adapter is True or (self.use_adapter == "auto" and t_shape[1:] != s_shape[1:]):
            self.adapter = features.Adapter(t_shape[1:], name=f"{self.name}_adapter")
            self.adapter.build(s_shape)
        elif t_shape[1:] != s_shape[1:]:
            raise ValueError(
                f"Term '{self.name}': teacher layer '{self.teacher_layer}' outputs "
                f"{t_shape[1:]} but student layer '{self.student_layer}' outputs "
                f"{s_shape[1:]}; use adapter='auto' to learn a projection."
            )

    def per_example(self, teacher, student, labels):
        s = student[self.student_layer]
        if self.adapter is not None:
            s = ops.cast(self.adapter(s), "float32")
        diff = s - teacher[self.teacher_layer]
        return ops.mean(ops.reshape(ops.square(diff), (ops.shape(diff)[0], -1)), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(teacher_layer=self.teacher_layer, student_layer=self.student_layer,
                      adapter=self.use_adapter)
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class AttentionTransfer(Term):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017) between matched conv layers.

    With `Q = vec(mean_c |A_c|**p)` L2-normalised per example
    (`keras_kd.features.attention_map`), per example:

        at = sum_j mean_positions (Q_s,j - Q_t,j)**2

    over the pairs `j`, the larger map average-pooled to the smaller's size first. The paper
    writes `beta/2 * sum_j || Q_s/||Q_s|| - Q_t/||Q_t|| ||_p` with `beta = 1000`, "divided
    by the number of elements in attention map and batch size"; its reference code
    (github.com/szagoruyko/attention-transfer, `at_loss`: `(at(x) - at(y)).pow(2).mean()`)
    squares the difference, as here. The default weight is that `beta / 2 = 500`;
    mdistiller (`mdistiller/distillers/AT.py`) uses 1000 with a cross-entropy weight of 1.

    Args:
        pairs: `(teacher_layer, student_layer)` name pairs, or one such pair.
        p: exponent of the attention map (default 2).
        weight: the term's weight (default 500 = beta / 2).
        warmup_epochs, name: see `Term`. Default name `"at_loss"`.
    """

    default_name = "at_loss"

    def __init__(self, pairs, p=2.0, weight=500.0, warmup_epochs=0, name=None, **kwargs):
        super().__init__(weight=weight, warmup_epochs=warmup_epochs, name=name, **kwargs)
        if pairs and isinstance(pairs[0], str):
            pairs = [pairs]
        self.pairs = [(str(t), str(s)) for t, s in pairs]
        if not self.pairs:
            raise ValueError("Invalid value for argument `pairs`: expected at least one "
                             "(teacher_layer, student_layer) pair. Received: pairs=[]")
        self.p = float(p)
        self.teacher_layers = tuple(t for t, _ in self.pairs)
        self.student_layers = tuple(s for _, s in self.pairs)

    def per_example(self, teacher, student, labels):
        total = 0.0
        for t_name, s_name in self.pairs:
            s_map, t_map = features.match_spatial(student[s_name], teacher[t_name])
            diff = features.attention_map(s_map, self.p) - features.attention_map(t_map, self.p)
            total += ops.mean(ops.square(diff), axis=-1)
        return total

    def get_config(self):
        config = super().get_config()
        config.update(pairs=[list(p) for p in self.pairs], p=self.p)
        return config
