"""The TFMOT bridge: a Keras 3 model rebuilt as a tf_keras model with the same weights.

tensorflow-model-optimization (quantization-aware training, pruning) only accepts tf_keras
(Keras 2) models. `to_tf_keras` walks a Keras 3 Functional or Sequential model's graph and
calls, for each Keras 3 layer, the tf_keras layer of the same class and configuration, then
copies the weights, so the copy computes the same function (to float rounding).
`to_keras3` copies weights back the other way (after training on the tf_keras side).

Supported layers (exact classes; subclasses may change behaviour and are refused):
Dense, Conv2D, DepthwiseConv2D, SeparableConv2D, BatchNormalization, ReLU, Activation,
LeakyReLU, Softmax, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D, Flatten, Reshape, Dropout, Add, Concatenate, Rescaling, Normalization,
Identity, InputLayer, and nested Functional/Sequential models made of these.
"""

import inspect

import keras
import numpy as np

from keras_kd.optimize import legacy

SUPPORTED = (
    "Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "ReLU",
    "Activation", "LeakyReLU", "Softmax", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Reshape", "Dropout", "Add",
    "Concatenate", "Rescaling", "Normalization", "Identity",
)
_SERIALIZED = ("regularizer", "constraint")


def _unsupported(layer, reason):
    return ValueError(
        f"Layer '{layer.name}' ({type(layer).__module__}.{type(layer).__name__}) cannot be "
        f"rebuilt for tensorflow-model-optimization: {reason}. Supported layers: "
        f"{', '.join(SUPPORTED)}. Way out: replace it with supported layers (e.g. a custom "
        "preprocessing layer by Rescaling/Normalization), or apply it outside the student "
        "(in the tf.data pipeline), or use the Keras 3 native path "
        "`keras_kd.optimize.native` which takes any Keras 3 model."
    )


def _check_supported(layer):
    if type(layer) is not getattr(keras.layers, type(layer).__name__, None) or (
        type(layer).__name__ not in SUPPORTED
    ):
        raise _unsupported(layer, "this layer class is not supported")
    if layer.dtype_policy.name != "float32":
        raise _unsupported(layer, f"dtype policy '{layer.dtype_policy.name}' is not float32")


def _legacy_config(layer, tf_class):
    """Keras 3 layer config -> tf_keras constructor arguments."""
    config = layer.get_config()
    config.pop("dtype", None)
    accepted = {"name", "trainable"}
    for cls in tf_class.__mro__:
        if "__init__" in vars(cls):
            accepted |= set(inspect.signature(cls.__init__).parameters)
    defaults = {
        k: p.default for k, p in inspect.signature(type(layer).__init__).parameters.items()
    }
    arguments = {}
    for key, value in config.items():
        if key.endswith("initializer"):
            continue  # the weights are copied, initial values do not matter
        if isinstance(value, dict) and "class_name" in value:  # Keras 3 serialized object
            if not key.endswith(_SERIALIZED) and key != "activation":
                raise _unsupported(layer, f"argument `{key}`={value} has no tf_keras form")
            value = {"class_name": value["class_name"], "config": value.get("config", {})}
        if key in accepted:
            arguments[key] = value
        elif value not in (None, False, 0, {}, []) and value != defaults.get(key):
            raise _unsupported(layer, f"argument `{key}={value!r}` does not exist in tf_keras")
    return arguments


def _normalization(layer, tf_keras):
    axis = tuple(layer.axis)
    mean, variance = np.asarray(layer.mean), np.asarray(layer.variance)
    if len(axis) == 1:
        mean, variance = mean.reshape(-1), variance.reshape(-1)
    return tf_keras.layers.Normalization(axis=axis, mean=mean, variance=variance,
                                         invert=layer.invert, name=layer.name)


def _graph(model):
    if isinstance(model, keras.Sequential):
        model = model._functional if getattr(model, "_functional", None) else None
    if model is None or not hasattr(model, "_run_through_graph"):
        raise ValueError(
            "Invalid value for argument `model`. Expected a built Functional or Sequential "
            f"Keras 3 model (subclassed models have no graph to rebuild). Received: {model!r}"
        )
    return model


class _Rebuilder:
    def __init__(self, tf_keras):
        self.tf_keras = tf_keras
        self.pairs = {}  # id(keras 3 layer) -> (keras 3 layer, tf_keras layer or None)

    def layer(self, layer):
        if isinstance(layer, keras.Model):
            return lambda *args, **kwargs: self.run(layer, args[0])
        if id(layer) not in self.pairs:
            _check_supported(layer)
            name = type(layer).__name__
            if name == "Normalization":
                new = _normalization(layer, self.tf_keras)
            else:
                tf_class = getattr(self.tf_keras.layers, name)
                new = tf_class(**_legacy_config(layer, tf_class))
            self.pairs[id(layer)] = (layer, new)
        return self.pairs[id(layer)][1]

    def run(self, model, inputs):
        return _graph(model)._run_through_graph(inputs, operation_fn=self.layer)


def to_tf_keras(model):
    """Rebuilds a Keras 3 model as a tf_keras model with the same weights.

    Args:
        model: a built Keras 3 Functional or Sequential model of supported layers (see the
            module docstring), float32.

    Returns:
        A `tf_keras.Model` with the same layer names, configuration and weights; its outputs
        equal `model`'s to float rounding (tested to 1e-5 on CIFAR-10 images).

    Raises:
        ValueError: for a subclassed model, or a layer the bridge does not support (named,
            with its class and the way out).
        ImportError: if tf-keras / tensorflow-model-optimization are not installed.
    """
    tf_keras, _ = legacy.modules()
    graph = _graph(model)
    inputs = [
        tf_keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype,
                       name=x._keras_history.operation.name)
        for x in graph.inputs
    ]
    rebuilder = _Rebuilder(tf_keras)
    outputs = rebuilder.run(graph, inputs if len(inputs) > 1 else inputs[0])
    copy = tf_keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=model.name)
    for layer, new in rebuilder.pairs.values():
        if isinstance(layer, keras.layers.Normalization):
            continue  # mean and variance are constructor arguments on both sides
        _copy_weights(layer.get_weights(), new, layer)
    return copy


def _copy_weights(values, target, source):
    shapes = [tuple(w.shape) for w in target.get_weights()]
    if shapes != [tuple(v.shape) for v in values]:
        raise ValueError(
            f"Layer '{source.name}': weight shapes {[tuple(v.shape) for v in values]} do not "
            f"match the rebuilt layer's {shapes}."
        )
    target.set_weights(values)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential",
                                                                 "Model"):
            yield from _leaf_layers(layer)
        else:
            yield layer


def copy_weights(source, target):
    """Copies weights layer by layer, matched by name, between a model and its bridge copy
    (either direction: Keras 3 <-> tf_keras); returns `target`."""
    by_name = {layer.name: layer for layer in _leaf_layers(source)}
    for layer in _leaf_layers(target):
        if layer.weights and type(layer).__name__ != "Normalization":
            _copy_weights(by_name[layer.name].get_weights(), layer, by_name[layer.name])
    return target


def to_keras3(tf_keras_model, model):
    """Copies the weights of `tf_keras_model` (made by `to_tf_keras(model)`, then trained and,
    for pruning, stripped) back into the Keras 3 `model`."""
    return copy_weights(tf_keras_model, model)
