"""Distillation losses: `keras.losses.Loss` subclasses on teacher and student logits."""

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
}


def get(identifier):
    """Returns a distillation loss from a name, a config dict, a loss instance or a callable.

    Raises:
        ValueError: for an unknown name, listing the available ones.
    """
    if identifier is None:
        return KLDivergence()
    if isinstance(identifier, str):
        try:
            return _REGISTRY[identifier.lower()]()
        except KeyError:
            raise ValueError(
                "Invalid value for argument `distillation_loss_fn`. Expected one of "
                f"{sorted(_REGISTRY)}, a keras.losses.Loss or a callable. "
                f"Received: distillation_loss_fn={identifier!r}"
            ) from None
    if isinstance(identifier, dict):
        import keras

        return keras.saving.deserialize_keras_object(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        "Invalid value for argument `distillation_loss_fn`. Expected a name, a "
        f"keras.losses.Loss or a callable. Received: distillation_loss_fn={identifier!r}"
    )


__all__ = ["KLDivergence", "LogitsMSE", "SoftTargetCrossEntropy", "TemperatureLoss", "get"]
