"""Intermediate features of unmodified models, adapters between them, attention maps.

`view(model, layer_names)` is one multi-output `keras.Model` over the same layers as `model`
(`keras.Model(model.inputs, [model.output] + [model.get_layer(n).output ...])`): calling it
runs `model` once and returns its logits and the named layers' outputs. It holds no weights
of its own, so training through it trains `model`, and `model` itself stays exactly as it
was (what you save and export is the original).

An `Adapter` maps a student feature to the shape of a teacher feature (FitNets' regressor,
Romero et al. 2015): a 1x1 convolution for 4-D feature maps, a Dense layer for 2-D
features, after resizing the student map to the teacher's height and width when they
differ. It is trained with the student and is never part of the student.
"""

import keras
from keras import ops

LOGITS = "logits"


def _layer_names(model):
    return [layer.name for layer in model.layers]


def view(model, layer_names, argument="student"):
    """A model returning `{"logits": model output, name: layer output, ...}` in one call.

    Args:
        model: a built Functional or Sequential `keras.Model`.
        layer_names: names of layers of `model` whose outputs are wanted.
        argument: the argument name used in error messages.

    Returns:
        `model` itself when `layer_names` is empty, else a `keras.Model` sharing its layers
        whose outputs are a dict keyed by `"logits"` and the layer names.

    Raises:
        ValueError: for a subclassed model (its intermediate tensors cannot be reached), an
            unbuilt model, or an unknown layer name (the available ones are listed).
    """
    layer_names = list(dict.fromkeys(layer_names))
    if not layer_names:
        return model
    try:  # Sequential models have `inputs`/`outputs` (not `input`/`output`) until called
        inputs, model_outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = model_outputs = None
    if not inputs or not model_outputs or len(model_outputs) != 1:
        kind = "not built" if not model.built else "a subclassed model"
        raise ValueError(
            f"Invalid value for argument `{argument}`: feature terms read named layers, which "
            f"needs a Functional or Sequential model with a single output, but "
            f"'{model.name}' is {kind}. Rebuild it with the Functional API "
            "(`keras.Model(inputs, outputs)`) or as a `keras.Sequential` with an `Input`, "
            "or use only logits terms (e.g. `keras_kd.terms.Logits()`)."
        )
    available = _layer_names(model)
    outputs = {LOGITS: model_outputs[0]}
    for name in layer_names:
        if name not in available:
            raise ValueError(
                f"Invalid layer name for `{argument}` '{model.name}': no layer named "
                f"'{name}'. Available layers: {available}"
            )
        outputs[name] = model.get_layer(name).output
    inputs = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")


def as_outputs(outputs):
    """A model's outputs as a float32 dict: logits alone become `{"logits": logits}`."""
    if not isinstance(outputs, dict):
        outputs = {LOGITS: outputs}
    return {k: ops.cast(v, "float32") for k, v in outputs.items()}


def outputs_of(model_view, x, training):
    """Calls a `view` once; returns its outputs as a float32 dict (logits under "logits")."""
    return as_outputs(model_view(x, training=training))


def feature_shape(model, layer_name):
    """The output shape of a named layer of a Functional/Sequential model (batch first)."""
    if layer_name == LOGITS:
        return tuple(model.outputs[0].shape)
    return tuple(model.get_layer(layer_name).output.shape)


@keras.saving.register_keras_serializable(package="keras_kd")
class Adapter(keras.layers.Layer):
    """Maps a student feature to a teacher feature's shape: FitNets' learned regressor.

    4-D maps `(batch, h, w, c)`: bilinear resize to the teacher's `(h, w)` when they differ,
    then a 1x1 `Conv2D` to the teacher's channels. 2-D features `(batch, d)`: a `Dense` to
    the teacher's width. Other ranks are refused.

    Args:
        target_shape: the teacher feature's shape without the batch axis.
        use_bias: whether the projection has a bias (default True).
    """

    def __init__(self, target_shape, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if len(self.target_shape) not in (1, 3):
            raise ValueError(
                "Invalid value for argument `target_shape`: adapters handle 2-D features "
                "(batch, d) and 4-D feature maps (batch, h, w, c). Received: "
                f"target_shape={self.target_shape}"
            )
        self.use_bias = bool(use_bias)
        width = self.target_shape[-1]
        if len(self.target_shape) == 3:
            self.projection = keras.layers.Conv2D(width, 1, use_bias=use_bias, name="conv1x1")
        else:
            self.projection = keras.layers.Dense(width, use_bias=use_bias, name="dense")

    def build(self, input_shape):
        if len(input_shape) != len(self.target_shape) + 1:
            raise ValueError(
                f"Adapter '{self.name}': the student feature of shape {tuple(input_shape)} and "
                f"the teacher feature of shape (None, {', '.join(map(str, self.target_shape))}) "
                "have different ranks; pick layers of the same kind (both feature maps or both "
                "vectors)."
            )
        shape = tuple(input_shape)
        if len(shape) == 4:
            shape = (shape[0], *self.target_shape[:2], shape[3])
        self.projection.build(shape)

    def call(self, x):
        if len(self.target_shape) == 3 and tuple(x.shape[1:3]) != self.target_shape[:2]:
            x = ops.image.resize(x, self.target_shape[:2], interpolation="bilinear")
        return self.projection(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.target_shape)

    def get_config(self):
        config = super().get_config()
        config.update(target_shape=list(self.target_shape), use_bias=self.use_bias)
        return config


def match_spatial(student, teacher):
    """Average-pools the larger of two `(batch, h, w, c)` maps to the other's `(h, w)`.

    As in the attention-transfer reference code (adaptive average pooling); sizes must divide.
    """
    s_hw, t_hw = tuple(student.shape[1:3]), tuple(teacher.shape[1:3])
    if s_hw == t_hw:
        return student, teacher
    big, small = (s_hw, t_hw) if s_hw[0] >= t_hw[0] else (t_hw, s_hw)
    if big[0] % small[0] or big[1] % small[1] or big[0] // small[0] != big[1] // small[1]:
        raise ValueError(
            f"Feature maps of spatial sizes {s_hw} (student) and {t_hw} (teacher) cannot be "
            "matched by average pooling: the larger size must be an integer multiple of the "
            "smaller, by the same factor on both axes. Pick layers of compatible resolutions."
        )
    factor = big[0] // small[0]
    pool = lambda z: ops.average_pool(z, factor, factor, padding="valid")  # noqa: E731
    return (pool(student), teacher) if s_hw == big else (student, pool(teacher))


def attention_map(feature, p=2.0):
    """Zagoruyko & Komodakis (2017) spatial attention: `mean_c |A_c|**p`, flattened, then
    L2-normalised per example. `feature` is `(batch, h, w, c)`; returns `(batch, h * w)`.

    The mean over channels (the reference code's `x.pow(p).mean(1)`) and the paper's sum
    differ by a constant factor that the normalisation removes.
    """
    if len(feature.shape) != 4:
        raise ValueError(
            "Attention transfer needs 4-D feature maps (batch, height, width, channels). "
            f"Received a feature of shape {tuple(feature.shape)}."
        )
    q = ops.mean(ops.power(ops.abs(feature), p), axis=-1)
    q = ops.reshape(q, (ops.shape(q)[0], -1))
    norm = ops.sqrt(ops.sum(ops.square(q), axis=-1, keepdims=True))
    return q / ops.maximum(norm, 1e-12)
