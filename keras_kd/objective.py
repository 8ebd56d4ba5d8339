"""The Distiller's objective: `alpha * hard + sum_i weight_i * warmup_i * term_i`.

See `keras_kd.terms` for the terms and the convention for `alpha`. The `Objective` holds the
terms (and their adapters, whose variables are trained with the student), `alpha` in a
non-trainable variable, and builds the one-call feature views of the two models.

The functions below turn `Distiller.compile`'s arguments into the objective's parts: `alpha`
(`check_alpha`), the hard-label loss (`student_loss`, computed by `hard_losses`) and the
logits loss with its temperature (`logits_loss`).
"""

import numbers
import warnings

import keras
from keras import ops

from keras_kd import checks
from keras_kd import features
from keras_kd import losses as kd_losses
from keras_kd import reduction
from keras_kd import terms as terms_lib

DEFAULT_ALPHA = 0.1
DEFAULT_TEMPERATURE = 4.0

# Student-loss names resolved to *logit* losses: `keras.losses.get(name)` would return the
# probability version (`from_logits=False`) and silently mistreat the student's logits.
STUDENT_LOSSES = {
    "sparse_categorical_crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True
    ),
    "categorical_crossentropy": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
    "binary_crossentropy": lambda: keras.losses.BinaryCrossentropy(from_logits=True),
}


class Views:
    """The student and teacher views (not tracked by Keras: they own no weights)."""

    def __init__(self, student, teacher):
        self.student, self.teacher = student, teacher


@keras.saving.register_keras_serializable(package="keras_kd")
class Objective(keras.layers.Layer):
    """The weighted terms of a distillation and the weight `alpha` of the hard-label loss.

    Args:
        terms: a list of `keras_kd.terms.Term`s with distinct names.
        alpha: weight in [0, 1] of the hard-label loss.
    """

    def __init__(self, terms, alpha=DEFAULT_ALPHA, **kwargs):
        super().__init__(**kwargs)
        terms = list(terms)
        if not terms or not all(isinstance(t, terms_lib.Term) for t in terms):
            raise ValueError(
                "Invalid value for argument `terms`. Expected a non-empty list of "
                "keras_kd.terms.Term (e.g. [keras_kd.terms.Logits(), keras_kd.terms.Hint("
                f"'stage2_out', 'stage2_out')]). Received: terms={terms!r}"
            )
        names = [t.name for t in terms]
        clashes = sorted({n for n in names if names.count(n) > 1 or n in terms_lib.RESERVED_NAMES})
        if clashes:
            raise ValueError(
                f"Invalid term names {clashes}: each term is logged under its name, which must "
                f"be unique and not one of {list(terms_lib.RESERVED_NAMES)}. Pass `name=`."
            )
        self.terms = terms
        self.alpha = self.add_weight(shape=(), initializer=keras.initializers.Constant(alpha),
                                     trainable=False, name="alpha")
        self.built = True

    @property
    def names(self):
        return [t.name for t in self.terms]

    def connect(self, teacher, student):
        """Builds adapters and returns the `Views` that give each model's read layers."""
        student_layers = [n for t in self.terms for n in t.student_layers]
        teacher_layers = [n for t in self.terms for n in t.teacher_layers]
        views = Views(features.view(student, student_layers, "student"),
                      features.view(teacher, teacher_layers, "teacher"))
        for term in self.terms:
            term.connect(teacher, student)
        return views

    @property
    def reads_teacher_layers(self):
        return any(t.teacher_layers for t in self.terms)

    def configure(self, alpha, temperature):
        """Sets `alpha`, and `temperature` on logits terms that have no temperature of their own."""
        self.alpha.assign(alpha)
        for term in self.terms:
            if isinstance(term, terms_lib.Logits) and term._at_unit_temperature is not None:
                term.temperature_variable.assign(term.fixed_temperature or temperature)

    def set_epoch(self, epoch):
        for term in self.terms:
            term.warmup_variable.assign(term.warmup_factor(epoch))

    def term_weight(self, term):
        weight = 1.0 - self.alpha if term.weight is None else term.weight_variable
        return weight * term.warmup_variable

    def weighted_sums(self, hard_sum, teacher, student, labels, sample_weight):
        """`(alpha * hard_sum + sum_i w_i * term_sum_i, {name: term_sum})` over the local batch."""
        total = self.alpha * hard_sum
        sums = {}
        for term in self.terms:
            values = reduction.per_example(term.per_example(teacher, student, labels), term.name)
            sums[term.name] = reduction.weighted_sum(values, sample_weight)
            total += self.term_weight(term) * sums[term.name]
        return total, sums

    def local_losses(self, student_loss_fn, y, teacher, student, sample_weight):
        """`(weighted loss sum, logs)` of this replica's batch, with no collective.

        `teacher` and `student` are dicts of outputs (`keras_kd.features.as_outputs`); `y`
        None (an unlabelled batch, `alpha = 0`) gives a hard loss of 0. `logs` holds the
        local means of `loss` (without the student's regularisation losses: the Distiller
        adds them), `hard_loss` and each term, and the local example count.
        """
        student_logits = student[features.LOGITS]
        if y is None:  # unlabelled transfer set, alpha = 0: the hard loss is logged as 0
            hard = ops.zeros_like(student_logits[:, 0])
        else:
            hard = reduction.per_example(hard_losses(student_loss_fn, y, student_logits),
                                         "student_loss_fn")
        hard_sum = reduction.weighted_sum(hard, sample_weight)
        total_sum, term_sums = self.weighted_sums(hard_sum, teacher, student, y, sample_weight)
        local_n = ops.cast(ops.shape(student_logits)[0], "float32")
        logs = {
            "loss": ops.divide_no_nan(total_sum, local_n),
            "hard_loss": ops.divide_no_nan(hard_sum, local_n),
            **{name: ops.divide_no_nan(value, local_n) for name, value in term_sums.items()},
            "count": local_n,
        }
        return total_sum, logs

    def get_config(self):
        config = super().get_config()
        config.update(terms=[keras.saving.serialize_keras_object(t) for t in self.terms],
                      alpha=float(ops.convert_to_numpy(self.alpha)))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["terms"] = [keras.saving.deserialize_keras_object(t) for t in config["terms"]]
        return cls(**config)


class EpochHook(keras.callbacks.Callback):
    """Tells the objective which epoch begins (term warm-ups). Added by `Distiller.fit`."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective

    def on_epoch_begin(self, epoch, logs=None):
        self.objective.set_epoch(epoch)


# ------------------------------------------------------------ compile arguments
def check_alpha(alpha):
    """Returns `alpha` as a float if it is a number in [0, 1]; else raises a ValueError."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(
            "Invalid value for argument `alpha`. Expected a number in [0, 1] (the weight of "
            f"the hard-label loss). Received: alpha={alpha!r}"
        )
    return float(alpha)


def student_loss(identifier):
    """The hard-label loss of `compile(student_loss_fn=...)`: a name of `STUDENT_LOSSES`
    (taken on logits), a config dict or a callable; `None` stays None (`hard_losses` then
    picks the loss from the labels' shape at trace time)."""
    return checks.loss("student_loss_fn", identifier, STUDENT_LOSSES)


def _unreduced(loss_fn, y_true, y_pred):
    """Per-example values of a Keras `Loss` (its `call`, bypassing its reduction) or a function."""
    if isinstance(loss_fn, keras.losses.Loss):
        y_true = ops.convert_to_tensor(y_true, dtype=loss_fn.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=loss_fn.dtype)
        return loss_fn.call(y_true, y_pred)
    return loss_fn(y_true, y_pred)


def hard_losses(loss_fn, y, student_logits):
    """The per-example hard-label loss `loss_fn(y, student_logits)`.

    A one-logit student takes 0/1 labels as a `(batch, 1)` column (binary cross-entropy on
    logits when `loss_fn` is None). Otherwise `loss_fn=None` is categorical cross-entropy for
    one-hot labels shaped like the logits, sparse categorical cross-entropy for `(batch,)` or
    `(batch, 1)` labels, all on logits; other label shapes are refused.
    """
    if student_logits.shape[-1] == 1:  # one-logit binary: 0/1 labels as a (batch, 1) column
        y = ops.reshape(ops.cast(y, "float32"), (-1, 1))
        if loss_fn is None:
            return keras.losses.binary_crossentropy(y, student_logits, from_logits=True)
    if loss_fn is None:
        y_rank, logit_rank = len(y.shape), len(student_logits.shape)
        if y_rank == logit_rank and y.shape[-1] == student_logits.shape[-1]:
            loss_fn = keras.losses.categorical_crossentropy
        elif y_rank == logit_rank and y.shape[-1] not in (1, None):
            checks.label_shape(tuple(y.shape), tuple(student_logits.shape))
        else:
            loss_fn = keras.losses.sparse_categorical_crossentropy
        return loss_fn(y, student_logits, from_logits=True)
    return _unreduced(loss_fn, y, student_logits)


def logits_loss(loss, temperature, terms_given=False, ensemble_temperature=None):
    """`(loss, temperature)` of `Distiller.compile(distillation_loss_fn=loss, temperature=...)`.

    The temperature is set in one place, or in places that agree: `temperature` (already
    checked), the teacher ensemble's (`ensemble_temperature`) and a temperature loss's own;
    none of them gives `DEFAULT_TEMPERATURE`, and the loss is returned at that temperature.
    A loss that applies no temperature (`logits_mse`, a plain callable) gets `None`, with a
    warning if a temperature was given.

    Raises:
        ValueError: for a `loss` when the Distiller has `terms` (`terms_given`: the logits
            loss is then a term), an unknown loss name, or temperatures that disagree.
    """
    if terms_given and loss is not None:
        raise ValueError(
            "The Distiller has `terms`: pass the logits loss as a term "
            "(`keras_kd.terms.Logits(loss)`), not as `distillation_loss_fn`. Received: "
            f"distillation_loss_fn={loss!r}"
        )
    loss = kd_losses.get(loss)
    ensemble_t = ensemble_temperature
    if ensemble_t is not None and temperature is not None and ensemble_t != temperature:
        raise ValueError(
            "Invalid value for argument `temperature`: the teacher ensemble has "
            f"temperature={ensemble_t}. Expected the same value or None (set it in one "
            f"place). Received: temperature={temperature}"
        )
    temperature = temperature or ensemble_t
    if not isinstance(loss, kd_losses.TemperatureLoss):
        if temperature is not None:
            warnings.warn(
                f"temperature={temperature} is not used by distillation_loss_fn="
                f"{getattr(loss, 'name', None) or loss!r}, which applies no temperature; "
                "it is recorded as temperature=None.",
                stacklevel=3,  # the caller of `Distiller.compile`
            )
        return loss, None
    own = loss.temperature
    if own is not None and temperature is not None and own != temperature:
        raise ValueError(
            "Invalid value for argument `temperature`: `distillation_loss_fn` has "
            f"temperature={own}. Expected the same value or None (set it in one "
            f"place). Received: temperature={temperature}"
        )
    temperature = temperature or own or DEFAULT_TEMPERATURE
    return loss.with_temperature(temperature), temperature
