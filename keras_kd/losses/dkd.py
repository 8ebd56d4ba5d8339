"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022): a logits loss that reads labels."""

import keras
from keras import ops

from keras_kd.losses.logits import TemperatureLoss

# Offset that sends a masked logit's probability to exactly 0 in float32 (exp(-1000) == 0).
_MASK_OFFSET = 1000.0


def target_mask(labels, num_classes):
    """Boolean `(batch, num_classes)` mask of each example's target class.

    `labels` are integer class indices of shape `(batch,)` or `(batch, 1)`, or one-hot /
    mixed (MixUp, CutMix) rows of shape `(batch, num_classes)`, whose argmax is the target.
    """
    rank = len(labels.shape)
    if rank >= 2 and labels.shape[-1] == num_classes and num_classes > 1:
        index = ops.argmax(labels, axis=-1)
    else:
        index = ops.reshape(ops.cast(labels, "int32"), (-1,))
    return ops.cast(ops.one_hot(index, num_classes), "bool")


def _kl(log_p, log_q):
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


@keras.saving.register_keras_serializable(package="keras_kd")
class DecoupledKD(TemperatureLoss):
    """Decoupled Knowledge Distillation: target-class plus non-target-class KD (DKD).

    Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022. With
    `p = softmax(teacher_logits / T)`, `q = softmax(student_logits / T)` and `g` the target
    class of the example, per example:

        TCKD = KL([p_g, 1 - p_g] || [q_g, 1 - q_g])          (binary: target vs the rest)
        NCKD = KL(p_{c != g} / (1 - p_g) || q_{c != g} / (1 - q_g))  (among non-targets)
        loss = T**2 * (alpha * TCKD + beta * NCKD)

    as in the reference implementation (mdistiller, `mdistiller/distillers/DKD.py`:
    `dkd_loss`), which builds the non-target distributions by subtracting 1000 from the
    target logit before the softmax ("gt-mask trick"). Here the target logit is replaced by
    `min(logits) - 1000` instead, which gives the same distributions (the target's
    probability is exactly 0 in float32) for logits of any size. `1 - q_g` comes from a
    log-sum-exp over the non-target classes, never from `log(1 - q_g)`, so value and
    gradient stay finite when `q_g` rounds to 1. The paper's defaults for CIFAR are
    `alpha=1, beta=8, T=4`, with the loss's weight warmed up linearly over the first 20
    epochs (`keras_kd.terms.dkd(...)` sets this up for the `Distiller`).

    The labels are needed to know the target class, so `y_true` is a pair
    `(teacher_logits, labels)`; labels may be integer indices or one-hot / mixed rows
    (their argmax is the target).

    Args:
        alpha: weight of TCKD (default 1.0).
        beta: weight of NCKD (default 8.0).
        temperature: softening temperature `T > 0`, or `None` to take the `Distiller`'s
            (`T = 1` when used on its own).
        scale_by_temperature_squared: multiply by `T**2` (default `True`, as the reference).
        name, reduction, dtype: as for any `keras.losses.Loss`.

    Example:

    >>> loss = DecoupledKD(temperature=4.0)
    >>> value = loss(([[2.0, 0.0, -1.0]], [0]), [[1.0, 0.5, 0.0]])
    """

    needs_labels = True

    def __init__(self, alpha=1.0, beta=8.0, temperature=None, scale_by_temperature_squared=True,
                 name="decoupled_kd", reduction="sum_over_batch_size", dtype=None):
        super().__init__(temperature, scale_by_temperature_squared, name, reduction, dtype)
        for argument, value in (("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"Invalid value for argument `{argument}`. Expected a number >= 0. "
                    f"Received: {argument}={value!r}"
                )
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, y_true, y_pred):
        if not isinstance(y_true, (tuple, list)) or len(y_true) != 2:
            raise ValueError(
                "DecoupledKD needs the labels: call it with y_true=(teacher_logits, labels). "
                f"Received: y_true of type {type(y_true).__name__}"
            )
        teacher_logits, labels = y_true
        t = self.effective_temperature
        log_p = ops.log_softmax(ops.cast(teacher_logits, "float32") / t, axis=-1)
        log_q = ops.log_softmax(ops.cast(y_pred, "float32") / t, axis=-1)
        mask = target_mask(labels, log_q.shape[-1])
        return self._scaled(self.alpha * _tckd(log_p, log_q, mask)
                            + self.beta * _nckd(log_p, log_q, mask))

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, beta=self.beta)
        return config


def _binary(log_probs, mask):
    """`(log p_g, log(1 - p_g))` per example, as a `(batch, 2)` tensor."""
    target = ops.sum(ops.where(mask, log_probs, 0.0), axis=-1)
    rest = ops.logsumexp(ops.where(mask, -1e30, log_probs), axis=-1)
    return ops.stack([target, rest], axis=-1)


def _tckd(log_p, log_q, mask):
    return _kl(_binary(log_p, mask), _binary(log_q, mask))


def _non_target(log_probs, mask):
    """Log-probabilities among the non-target classes (the target's probability is 0)."""
    floor = ops.min(log_probs, axis=-1, keepdims=True) - _MASK_OFFSET
    return ops.log_softmax(ops.where(mask, floor, log_probs), axis=-1)


def _nckd(log_p, log_q, mask):
    return _kl(_non_target(log_p, mask), _non_target(log_q, mask))
