"""Teachers made of several models."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_kd")
class TeacherEnsemble(keras.Model):
    """Several teachers seen as one: their combined logits.

    `mode="logits"` returns the weighted mean of the members' logits. `mode="probabilities"`
    returns `log(sum_i w_i * softmax(logits_i))`, logits whose softmax is the ensemble's mean
    prediction (Hinton et al., 2015, distil an ensemble's averaged predictions).

    Args:
        teachers: list of built `keras.Model`s with the same input and number of classes.
        weights: optional list of non-negative weights, one per teacher (normalised to sum 1).
        mode: `"logits"` (default) or `"probabilities"`.
    """

    def __init__(self, teachers, weights=None, mode="logits", **kwargs):
        super().__init__(**kwargs)
        teachers = list(teachers)
        if not teachers or not all(isinstance(t, keras.Model) for t in teachers):
            raise ValueError(
                "Invalid value for argument `teachers`. Expected a non-empty list of "
                f"keras.Model. Received: teachers={teachers!r}"
            )
        if weights is None:
            weights = [1.0] * len(teachers)
        weights = [float(w) for w in weights]
        if len(weights) != len(teachers) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                "Invalid value for argument `weights`. Expected one non-negative weight per "
                f"teacher ({len(teachers)}) with a positive sum. Received: weights={weights!r}"
            )
        if mode not in ("logits", "probabilities"):
            raise ValueError(
                "Invalid value for argument `mode`. Expected 'logits' or 'probabilities'. "
                f"Received: mode={mode!r}"
            )
        self.teachers = teachers
        self.ensemble_weights = [w / sum(weights) for w in weights]
        self.mode = mode
        self.built = all(t.built for t in teachers)

    def call(self, inputs, training=False):
        outputs = [ops.cast(t(inputs, training=training), "float32") for t in self.teachers]
        if self.mode == "logits":
            return sum(w * o for w, o in zip(self.ensemble_weights, outputs))
        probs = sum(w * ops.softmax(o, axis=-1) for w, o in zip(self.ensemble_weights, outputs))
        return ops.log(ops.maximum(probs, 1e-30))

    def get_config(self):
        config = super().get_config()
        config.update(
            teachers=[keras.saving.serialize_keras_object(t) for t in self.teachers],
            weights=self.ensemble_weights,
            mode=self.mode,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teachers"] = [keras.saving.deserialize_keras_object(t) for t in config["teachers"]]
        return cls(**config)
