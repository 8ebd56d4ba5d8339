"""Distillation losses: `keras.losses.Loss` subclasses on teacher and student logits."""

import keras

from keras_kd import checks
from keras_kd.losses.dkd import DecoupledKD
from keras_kd.losses.logits import KLDivergence
from keras_kd.losses.logits import LogitsMSE
from keras_kd.losses.logits import SoftenedKerasLoss
from keras_kd.losses.logits import SoftTargetCrossEntropy
from keras_kd.losses.logits import TemperatureLoss

_REGISTRY = {
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "soft_target_crossentropy": SoftTargetCrossEntropy,
    "logits_mse": LogitsMSE,
    "mse": LogitsMSE,
    "dkd": DecoupledKD,
    "decoupled_kd": DecoupledKD,
}

# Keras losses that expect probabilities: applied to softened logits (`SoftenedKerasLoss`).
_PROBABILITY_LOSSES = (keras.losses.KLDivergence, keras.losses.CategoricalCrossentropy,
                       keras.losses.CategoricalFocalCrossentropy)
_PROBABILITY_FUNCTIONS = (keras.losses.kl_divergence, keras.losses.categorical_crossentropy,
                          keras.losses.categorical_focal_crossentropy)
# Keras losses of integer or 0/1 labels: they cannot compare two models' outputs.
_LABEL_LOSSES = (keras.losses.SparseCategoricalCrossentropy, keras.losses.BinaryCrossentropy,
                 keras.losses.BinaryFocalCrossentropy, keras.losses.sparse_categorical_crossentropy,
                 keras.losses.binary_crossentropy, keras.losses.binary_focal_crossentropy)


def _label_loss(identifier):
    if isinstance(identifier, keras.losses.Loss):
        return isinstance(identifier, _LABEL_LOSSES[:3])
    return any(identifier is f for f in _LABEL_LOSSES[3:])


def get(identifier):
    """Returns a distillation loss from a name, a config dict, a loss instance or a callable.

    Keras probability losses (`keras.losses.KLDivergence()`, `CategoricalCrossentropy`, ...)
    come back wrapped in `SoftenedKerasLoss` (softmax at `T` of both models' logits, times
    `T**2`); Keras losses of labels (sparse or binary cross-entropy) are refused.

    Raises:
        ValueError: for an unknown name, listing the available ones, or a label loss.
    """
    if isinstance(identifier, str):
        identifier = identifier.lower()
    loss = checks.loss("distillation_loss_fn", identifier, _REGISTRY, default=KLDivergence)
    if isinstance(loss, _PROBABILITY_LOSSES) or any(loss is f for f in _PROBABILITY_FUNCTIONS):
        return SoftenedKerasLoss(loss)
    if _label_loss(loss):
        raise ValueError(
            "Invalid value for argument `distillation_loss_fn`: it compares the student with "
            "integer or 0/1 labels, not with the teacher's outputs. Expected a keras_kd loss "
            "such as keras_kd.losses.KLDivergence() (one-logit binary models included) or a "
            f"Keras probability loss such as keras.losses.KLDivergence(). Received: "
            f"distillation_loss_fn={getattr(loss, '__name__', type(loss).__name__)}"
        )
    return loss


__all__ = ["DecoupledKD", "KLDivergence", "LogitsMSE", "SoftTargetCrossEntropy", "SoftenedKerasLoss",
           "TemperatureLoss", "get"]
