"""The Distiller's objective: `alpha * hard + sum_i weight_i * warmup_i * term_i`.

See `keras_kd.terms` for the terms and the convention for `alpha`. The `Objective` holds the
terms (and their adapters, whose variables are trained with the student), `alpha` in a
non-trainable variable, and builds the one-call feature views of the two models.
"""

import keras
from keras import ops

from keras_kd import features
from keras_kd import reduction
from keras_kd import terms as terms_lib


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

    def __init__(self, terms, alpha=0.1, **kwargs):
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
