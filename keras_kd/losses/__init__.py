"""Distillation losses: `keras.losses.Loss` subclasses on teacher and student logits."""

from keras_kd import checks
from keras_kd.losses.dkd import DecoupledKD
from keras_kd.losses.logits import KLDivergence
from keras_kd.losses.logits import LogitsMSE
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


def get(identifier):
    """Returns a distillation loss from a name, a config dict, a loss instance or a callable.

    Raises:
        ValueError: for an unknown name, listing the available ones.
    """
    if isinstance(identifier, str):
        identifier = identifier.lower()
    return checks.loss("distillation_loss_fn", identifier, _REGISTRY, default=KLDivergence)


__all__ = ["DecoupledKD", "KLDivergence", "LogitsMSE", "SoftTargetCrossEntropy", "TemperatureLoss", "get"]
