"""Argument checks shared by the package, with Keras-style error messages."""

import numbers

import keras


def one_of(argument, value, choices, alternatives=""):
    """Returns `value` if it is one of `choices`; else raises a ValueError naming all three.

    `alternatives` extends the expectation, e.g. ", a keras.losses.Loss or a callable".
    """
    if value not in choices:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected one of {list(choices)}"
            f"{alternatives}. Received: {argument}={value!r}"
        )
    return value


def loss(argument, identifier, registry, default=None):
    """Resolves a loss the Keras way: None, a registered name, a config dict or a callable.

    `registry` maps names to zero-argument factories; `None` gives `default()` (or None).
    """
    if identifier is None:
        return default() if default else None
    if isinstance(identifier, str):
        return registry[one_of(argument, identifier, sorted(registry),
                               ", a keras.losses.Loss or a callable")]()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if not callable(identifier):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a name, a keras.losses.Loss "
            f"or a callable. Received: {argument}={identifier!r}"
        )
    return identifier


def positive_int(argument, value, allow_none=False):
    """Returns `value` as an int if it is a positive integer (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a positive integer"
            f"{' or None' if allow_none else ''}. Received: {argument}={value!r}"
        )
    return int(value)


def non_negative_int(argument, value):
    """Returns `value` as an int if it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected an integer >= 0. "
            f"Received: {argument}={value!r}"
        )
    return int(value)
