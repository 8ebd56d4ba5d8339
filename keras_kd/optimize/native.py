"""Keras 3 native quantization-aware training: fake-quant layers, no tf_keras, no TFMOT.

`quantize_model(student)` returns a Keras 3 model computing what the int8 file will compute:

* every Conv2D / DepthwiseConv2D / Dense followed by a BatchNormalization becomes one
  `FoldedQuantConv` layer: batch norm folded into the kernel and bias with the moving
  statistics (frozen during QAT, as in TensorFlow's `freeze_bn_delay` recipe), the folded
  kernel fake-quantized per output channel (symmetric, narrow range, as TFLite's int8
  kernels want);
* a Normalization / Rescaling layer on channels-last images (the raw-pixel input of the
  reference models) becomes a `FoldedQuantConv` too: a 1x1 depthwise convolution with one
  weight per channel (which int8 holds exactly). The file then normalises exactly as the QAT
  model does (its own SUB/MUL would round differently: see `_foldable_preprocessing`);
* every `ActivationFakeQuant` hands its step to the `FoldedQuantConv` reading it (through
  pass-through layers), which puts its folded bias on the file's int32 grid;
* activation ranges are fake-quantized after each block (after its activation when one
  follows), after preprocessing, pooling to a vector, Add and Concatenate, and on the input,
  with `ActivationFakeQuant` layers tracking min/max by exponential moving average;
* shape and max-pooling layers pass values through and keep their input's quantization.

All quantization is `keras.quantizers.fake_quant_with_min_max_vars` (TensorFlow's FakeQuant
ops on the TensorFlow backend), which the TFLite converter reads: `to_tflite` converts with
`optimizations=[tf.lite.Optimize.DEFAULT]`; the file's int8 scales are the trained ones
(representative data only fills ranges the graph lacks, e.g. of preprocessing that could not
be folded: see `to_tflite`). `ops_report` lists the converted file's ops and any that stayed
float.

The QAT model shares no weights with the student (it works on a clone); train it with
`keras_kd.Distiller(student=qat_model, teacher=teacher)` like any student (that is what
`quantize_distill` does).
"""

import keras
import numpy as np
from keras import ops

from keras_kd import export

QUANTIZED = ("Conv2D", "DepthwiseConv2D", "Dense")
ACTIVATIONS = ("ReLU", "Activation", "LeakyReLU", "Softmax")
OUTPUT_QUANTIZED = ("Normalization", "Rescaling", "GlobalAveragePooling2D", "Add",
                    "Concatenate", "AveragePooling2D")
# Preprocessing on images (4-D, channels last) becomes a 1x1 depthwise convolution: see
# `_foldable_preprocessing`.
PREPROCESSING = ("Normalization", "Rescaling")
PASS_THROUGH = ("MaxPooling2D", "GlobalMaxPooling2D", "Flatten", "Reshape", "Dropout",
                "Identity")


@keras.saving.register_keras_serializable(package="keras_kd")
class ActivationFakeQuant(keras.layers.Layer):
    """Fake-quantizes activations to 8 bits over a `[min, max]` range tracked by EMA.

    In training, the range is the batch's `[min(x, 0), max(x, 0)]` on the first step and
    `decay * range + (1 - decay) * batch range` afterwards; in inference it is frozen.
    With `with_step=True` it also returns the range's step, shape `(1,)`, which the
    convolutions after it use to put their bias on the file's int32 grid.
    """

    def __init__(self, decay=0.99, with_step=False, **kwargs):
        super().__init__(**kwargs)
        self.decay = float(decay)
        self.with_step = bool(with_step)

    def build(self, input_shape):
        self.min = self.add_weight(shape=(), initializer="zeros", trainable=False, name="min")
        self.max = self.add_weight(shape=(), initializer="zeros", trainable=False, name="max")
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, x, training=False):
        if training:
            low = ops.minimum(ops.min(ops.stop_gradient(x)), 0.0)
            high = ops.maximum(ops.max(ops.stop_gradient(x)), 0.0)
            keep = ops.where(self.seen > 0, self.decay, 0.0)
            self.min.assign(keep * self.min + (1.0 - keep) * low)
            self.max.assign(keep * self.max + (1.0 - keep) * high)
            self.seen.assign(1.0)
            low, high = self.min.value, self.max.value
        else:
            low, high = self.min, self.max
        high = ops.maximum(high, low + 1e-6)
        y = keras.quantizers.fake_quant_with_min_max_vars(x, low, high, num_bits=8)
        if self.with_step:
            return y, ops.reshape((high - low) / 255.0, (1,))
        return y

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "with_step": self.with_step}


def _fake_quant_kernel(kernel, kind):
    """A (folded) kernel fake-quantized as the file stores it: symmetric narrow-range int8,
    per output channel (per tensor for Dense). Also returns the largest |w| of each channel
    (of the tensor for Dense): the channel's int8 step is that / 127."""
    if kind == "Dense":
        bound = ops.maximum(ops.max(ops.abs(kernel)), 1e-8)
        return keras.quantizers.fake_quant_with_min_max_vars(
            kernel, -bound, bound, num_bits=8, narrow_range=True), bound
    depthwise = kind != "Conv2D"  # DepthwiseConv2D, and folded preprocessing
    shape = ops.shape(kernel)
    flat = ops.reshape(kernel, (*shape[:-2], -1)) if depthwise else kernel
    axes = tuple(range(len(flat.shape) - 1))
    bound = ops.maximum(ops.max(ops.abs(flat), axis=axes), 1e-8)
    quantized = keras.quantizers.fake_quant_with_min_max_vars(
        flat, -bound, bound, num_bits=8, narrow_range=True, axis=-1)
    return (ops.reshape(quantized, shape) if depthwise else quantized), bound


@keras.saving.register_keras_serializable(package="keras_kd")
class FoldedQuantConv(keras.layers.Layer):
    """A Conv2D / DepthwiseConv2D / Dense (and the BatchNormalization after it, if any),
    folded and with its kernel fake-quantized per output channel. Holds the original
    layers: their variables are the ones trained. Saved and loaded with the model (a QAT
    model written to `.keras` reloads and exports as it was)."""

    def __init__(self, layer, batch_norm=None, name=None, **kwargs):
        super().__init__(name=name or f"{layer.name}_quant", **kwargs)
        self.layer = layer
        self.batch_norm = batch_norm
        self.kind = type(layer).__name__

    def build(self, input_shape):
        if isinstance(input_shape[0], (list, tuple)):  # [x, step of x]
            input_shape = input_shape[0]
        self._channels = int(input_shape[-1])
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.layer.compute_output_shape(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer),
                      batch_norm=keras.saving.serialize_keras_object(self.batch_norm))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("layer", "batch_norm"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def _affine(self):
        """Per-channel `(scale, offset)` of a Normalization / Rescaling layer on the last axis."""
        layer = self.layer
        if self.kind == "Normalization":
            std = ops.maximum(ops.sqrt(ops.reshape(layer.variance, (-1,))), keras.config.epsilon())
            mean = ops.reshape(layer.mean, (-1,))
            if layer.invert:
                return std, mean
            return 1.0 / std, -mean / std
        scale = ops.reshape(ops.convert_to_tensor(layer.scale, "float32"), (-1,))
        offset = ops.reshape(ops.convert_to_tensor(layer.offset, "float32"), (-1,))
        return scale, offset

    def _folded(self):
        if self.kind in PREPROCESSING:
            scale, offset = self._affine()
            channels = self._channels
            scale = ops.broadcast_to(scale, (channels,))
            offset = ops.broadcast_to(offset, (channels,))
            return ops.reshape(scale, (1, 1, channels, 1)), offset
        kernel = self.layer.kernel
        bias = self.layer.bias if self.layer.use_bias else 0.0
        bn = self.batch_norm
        if bn is None:
            return kernel, bias
        factor = ops.rsqrt(bn.moving_variance + bn.epsilon)
        if bn.scale:
            factor = factor * bn.gamma
        offset = bn.beta if bn.center else 0.0
        bias = (bias - bn.moving_mean) * factor + offset
        if self.kind == "DepthwiseConv2D":
            factor = ops.reshape(factor, (kernel.shape[2], kernel.shape[3]))
        return kernel * factor, bias

    def call(self, inputs):
        """`inputs`: `x`, or `[x, step of x]` from the `ActivationFakeQuant` before it; with
        the step, the bias goes on the file's int32 grid (the input's step x each output
        channel's weight step), straight-through for its gradient."""
        x, step = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        kernel, bias = self._folded()
        kernel, bound = _fake_quant_kernel(kernel, self.kind)
        if step is not None:
            unit = step * bound / 127.0
            bias = bias + ops.stop_gradient(ops.round(bias / unit) * unit - bias)
        layer = self.layer
        if self.kind == "Dense":
            y = ops.matmul(x, kernel)
        elif self.kind == "Conv2D":
            y = ops.conv(x, kernel, strides=layer.strides, padding=layer.padding,
                         data_format=layer.data_format, dilation_rate=layer.dilation_rate)
        elif self.kind in PREPROCESSING:
            y = ops.depthwise_conv(x, kernel, strides=1, padding="valid")
        else:
            y = ops.depthwise_conv(x, kernel, strides=layer.strides, padding=layer.padding,
                                   data_format=layer.data_format,
                                   dilation_rate=layer.dilation_rate)
        y = y + bias
        activation = getattr(layer, "activation", None)  # preprocessing has none
        return activation(y) if activation is not None else y


def _unsupported(layer):
    return ValueError(
        f"Layer '{layer.name}' ({type(layer).__name__}) is not supported by the Keras 3 native "
        f"QAT transform. Supported: {', '.join(QUANTIZED + ACTIVATIONS + OUTPUT_QUANTIZED + PASS_THROUGH)}, "
        "BatchNormalization after a convolution or Dense layer. Way out: the TFMOT path "
        "(`keras_kd.optimize.quantize_distill`) or post-training int8 "
        "(`keras_kd.export.to_tflite(quantization='int8')`)."
    )


def _foldable_preprocessing(layer):
    """Whether a Normalization / Rescaling layer is a per-channel affine map of 4-D
    channels-last images, which `FoldedQuantConv` computes as a 1x1 depthwise convolution.

    Why: the converter turns the layer's SUB and MUL into int8 ops with their own rounding
    (the input requantized, the constant mean quantized, the difference rounded), which the
    layer computed in float cannot simulate; measured on a QAT cnn-small, 41 % of the
    normalised values then differ from the file's by one or two steps and 1.2 % of the test
    predictions flip. A 1x1 depthwise convolution has one weight per channel, which
    per-channel int8 holds exactly, and an int32 bias: the file then computes what the QAT
    model computes.
    """
    shape = layer.input.shape
    if len(shape) != 4 or shape[-1] is None:
        return False
    channels = int(shape[-1])
    if type(layer).__name__ == "Normalization":
        mean_shape = tuple(layer.mean.shape)
        return all(d == 1 for d in mean_shape[:-1]) and mean_shape[-1] in (1, channels)
    sizes = [int(np.size(value)) for value in (layer.scale, layer.offset)]
    return all(size in (1, channels) for size in sizes)


def _fusable_relu(layer):
    """A ReLU the converter fuses into the op before it (RELU, RELU6): no slope, no threshold,
    no cap other than 6."""
    return (type(layer).__name__ == "ReLU" and not float(layer.negative_slope)
            and not float(layer.threshold) and layer.max_value in (None, 6.0))


def _consumers(graph):
    consumers = {}
    for nodes in graph._nodes_by_depth.values():
        for node in nodes:
            for tensor in node.input_tensors:
                consumers.setdefault(id(tensor), []).append(node.operation)
    return consumers


def quantize_model(model, decay=0.99):
    """The fake-quantized (QAT) Keras 3 version of a Functional/Sequential float model.

    Args:
        model: a built Keras 3 model of the supported layers (see `_unsupported`'s list).
        decay: EMA decay of the activation ranges.

    Returns:
        A `keras.Model` (working on a clone of `model`'s weights) to train, e.g. as a
        `keras_kd.Distiller` student, then to export with `to_tflite`.
    """
    from keras_kd.optimize.bridge import _graph

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    graph = _graph(clone)
    consumers = _consumers(graph)

    def only_consumer(layer):
        following = consumers.get(id(layer.output), [])
        return following[0] if len(following) == 1 else None

    folded = {}  # id(conv or dense) -> the BatchNormalization folded into it
    quantize_later = set()  # layers whose output range is taken after their activation
    for layer in graph.layers:
        if type(layer).__name__ in QUANTIZED:
            nxt = only_consumer(layer)
            if type(nxt).__name__ == "BatchNormalization":
                folded[id(layer)] = nxt
                nxt = only_consumer(nxt)
            if type(nxt).__name__ in ACTIVATIONS:
                quantize_later.add(id(layer))
        elif type(layer).__name__ == "Add" and _fusable_relu(only_consumer(layer)):
            quantize_later.add(id(layer))  # the file fuses the ReLU into its ADD: one rounding
    folded_bns = {id(bn) for bn in folded.values()}

    # The step of each fake-quantized tensor (and of what pass-through layers make of it), for
    # the FoldedQuantConv that reads it: its bias goes on the file's int32 grid.
    steps = {}

    def fake_quant(x, name):
        y, step = ActivationFakeQuant(decay, with_step=True, name=name)(x)
        steps[id(y)] = step
        return y

    def with_step(x):
        return [x, steps[id(x)]] if id(x) in steps else x

    def passed(layer):
        def run(x, **kwargs):
            y = layer(x, **kwargs)
            if id(x) in steps:
                steps[id(y)] = steps[id(x)]  # max pooling, reshapes: the same int8 scale
            return y
        return run

    def operation(layer):
        kind = type(layer).__name__
        if kind == "BatchNormalization" and id(layer) in folded_bns:
            return lambda x, **kwargs: x  # folded into the layer before it
        if kind in QUANTIZED:
            wrapped = FoldedQuantConv(layer, folded.get(id(layer)))
            if id(layer) in quantize_later:
                return lambda x, **kwargs: wrapped(with_step(x))
            return lambda x, **kwargs: fake_quant(wrapped(with_step(x)), f"{layer.name}_act_quant")
        if kind in PREPROCESSING and _foldable_preprocessing(layer):
            wrapped = FoldedQuantConv(layer)
            return lambda x, **kwargs: fake_quant(wrapped(with_step(x)), f"{layer.name}_act_quant")
        if kind == "Add" and id(layer) in quantize_later:
            return layer
        if kind in ACTIVATIONS + OUTPUT_QUANTIZED:
            return lambda *args, **kwargs: fake_quant(layer(*args, **kwargs), f"{layer.name}_quant")
        if kind in PASS_THROUGH:
            return passed(layer)
        raise _unsupported(layer)

    inputs = [keras.Input(tuple(x.shape[1:]), name=x._keras_history.operation.name)
              for x in graph.inputs]
    quantized_inputs = [fake_quant(x, f"{x.name}_quant") for x in inputs]
    outputs = graph._run_through_graph(
        quantized_inputs if len(inputs) > 1 else quantized_inputs[0], operation_fn=operation)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs,
                       name=f"{model.name}_qat")


def to_tflite(qat_model, path, representative_data=None, int8_io=False, **kwargs):
    """Exports a `quantize_model` model to a full-int8 `.tflite`; returns the metadata dict.

    The converter keeps every range the model's FakeQuant ops trained (tested: a changed range
    shows up as the file's scale). With `representative_data` (`quantization="int8"`,
    int8 built-in ops only) it also calibrates what has no trained range; without it
    (`quantization="qat"`) such ops stay float between a DEQUANTIZE and a QUANTIZE
    (`ops_report` lists them). For the reference models, whose preprocessing is folded,
    both files are int8 throughout.
    """
    if representative_data is None:
        return export.to_tflite(qat_model, path, quantization="qat", int8_io=int8_io, **kwargs)
    return export.to_tflite(qat_model, path, quantization="int8",
                            representative_data=representative_data, int8_io=int8_io, **kwargs)


def quantize_distill(student, teacher, data, *, epochs=1, alpha=None, temperature=None,
                     optimizer=None, learning_rate=1e-4, validation_data=None, path=None, representative_data=None,
                     int8_io=False, verify_data=None, callbacks=None, verbose="auto"):
    """Keras 3 native quantization-aware distillation: `quantize_model(student)` trained as
    a `keras_kd.Distiller` student, then exported to full int8 with `to_tflite`.

    Arguments as in `keras_kd.optimize.quantize_distill` (`teacher=None`: labels only, with
    `keras.Model.fit`); the optimizer is a Keras 3 one (default `Adam(learning_rate)`).

    Returns:
        A `keras_kd.optimize.CompressionResult` whose `model` is the Keras 3 QAT model.
    """
    from keras_kd.distiller import DEFAULT_ALPHA
    from keras_kd.distiller import DEFAULT_TEMPERATURE
    from keras_kd.distiller import Distiller
    from keras_kd.optimize.compress import CompressionResult

    qat = quantize_model(student)
    optimizer = optimizer or keras.optimizers.Adam(learning_rate)
    if teacher is None:
        trainer = qat
        trainer.compile(optimizer=optimizer, metrics=["accuracy"],
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    else:
        trainer = Distiller(student=qat, teacher=teacher)
        trainer.compile(optimizer=optimizer, metrics=["accuracy"],
                        alpha=DEFAULT_ALPHA if alpha is None else alpha,
                        temperature=temperature or DEFAULT_TEMPERATURE)
    history = trainer.fit(data, epochs=epochs, validation_data=validation_data,
                          callbacks=callbacks, verbose=verbose).history
    result = CompressionResult(qat, None, history)
    if path is not None:
        to_tflite(qat, path, data if representative_data is None else representative_data,
                  int8_io=int8_io)
        result.path = str(path)
        if verify_data is not None:
            result.report = export.verify(qat, path, verify_data)
    return result


def ops_report(path):
    """The converted graph: each op with its input/output dtypes, and the ops computing in
    float (any float32 tensor other than the file's float input and output boundaries).

    Returns:
        `{"ops": [[name, input dtypes, output dtypes], ...], "float_ops": [...],
        "int8_only": bool}`.
    """
    interpreter = export._interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    rows, float_ops = [], []
    for op in interpreter._get_ops_details():
        ins = [dtypes[i] for i in op["inputs"] if i >= 0]
        outs = [dtypes[i] for i in op["outputs"]]
        rows.append([op["op_name"], ins, outs])
        boundary = (op["op_name"] == "QUANTIZE" and outs != ["float32"]) or (
            op["op_name"] == "DEQUANTIZE" and ins != ["float32"])
        if not boundary and op["op_name"] != "DELEGATE" and "float32" in ins + outs:
            float_ops.append(op["op_name"])
    return {"ops": rows, "float_ops": float_ops, "int8_only": not float_ops}
