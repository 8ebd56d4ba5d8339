"""Consistent augmentation: one augmented batch, seen identically by teacher and student.

Beyer et al. (2022, "Knowledge distillation: a good teacher is patient and consistent") show
that the teacher must see exactly the view the student sees. `Augmentation` applies Keras'
own image augmentation layers (`RandomFlip`, `RandomTranslation`, `RandomCrop`,
`RandomRotation`, ..., and the label-mixing `MixUp` and `CutMix`) inside the `Distiller`'s
`train_step`, once per batch, on the device, and hands the same tensor to both models.

Every random draw comes from an explicit seed (stateless random ops): the view of a batch is
a pure function of `(images, labels, seed)`. The Distiller seeds batch `k` of a run with
`(seed, k)`, so a run is reproducible, and a stored view can be recomputed bit for bit
(replayed teacher outputs, `keras_kd.teachers`).

With `MixUp`/`CutMix`, integer labels become one-hot and are mixed with the images, so the
hard-label loss is the cross-entropy against the mixed labels.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_kd import compat

LABEL_MIXING = (keras.layers.MixUp, keras.layers.CutMix)


def _flatten(layers):
    if layers is None:
        return []
    if isinstance(layers, Augmentation):
        return list(layers.layers)
    if isinstance(layers, keras.Sequential):
        return [l for l in layers.layers if not isinstance(l, keras.layers.InputLayer)]
    if isinstance(layers, (list, tuple)):
        flat = []
        for layer in layers:
            flat.extend(_flatten(layer))
        return flat
    return [layers]


def _check_layer(layer):
    seedable = hasattr(layer, "get_random_transformation") and hasattr(layer, "transform_images")
    if not seedable:
        raise ValueError(
            "Invalid value for argument `augment`. Expected Keras image augmentation layers "
            "(keras.layers.RandomFlip, RandomTranslation, RandomCrop, RandomRotation, RandomZoom, "
            "MixUp, CutMix, ..., alone, in a list or in a keras.Sequential): they draw their "
            "randomness from an explicit seed, so teacher and student see the same view and a "
            f"view can be replayed. Received: {layer!r}"
        )
    return layer


@keras.saving.register_keras_serializable(package="keras_kd")
class Augmentation(keras.layers.Layer):
    """Keras image augmentation layers applied with an explicit seed.

    Args:
        layers: Keras image augmentation layers (a layer, a list, or a `keras.Sequential`),
            applied in order. `MixUp` and `CutMix` also mix the labels.
        num_classes: number of classes, to one-hot integer labels when a layer mixes labels
            (the Distiller sets it from the student's outputs).

    Call `augmentation(images, labels, seed)` with `seed` an integer tensor of shape (2,);
    it returns `(augmented_images, labels)`, the labels one-hot and mixed if a layer mixes.

    Example:

    ```python
    augment = keras_kd.augment.Augmentation([
        keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect"),
        keras.layers.RandomFlip("horizontal"),
    ])
    distiller = keras_kd.Distiller(student, teacher, augment=augment)
    ```
    """

    def __init__(self, layers, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        self.augment_layers = [_check_layer(layer) for layer in _flatten(layers)]
        if not self.augment_layers:
            raise ValueError(
                "Invalid value for argument `layers`. Expected at least one Keras image "
                f"augmentation layer. Received: layers={layers!r}"
            )
        self.num_classes = None if num_classes is None else int(num_classes)

    def build(self, *args, **kwargs):
        self.built = True  # the augmentation layers hold no weights

    @property
    def layers(self):
        return list(self.augment_layers)

    @property
    def mixes_labels(self):
        return any(isinstance(layer, LABEL_MIXING) for layer in self.augment_layers)

    def call(self, images, labels=None, seed=None):
        if seed is None:
            raise ValueError(
                "Invalid value for argument `seed`: `Augmentation` needs an explicit seed "
                "(an integer tensor of shape (2,)). Received: seed=None"
            )
        seed = ops.cast(seed, "int32")
        images = ops.cast(images, "float32")
        if labels is not None and self.mixes_labels:
            labels = self._one_hot(labels)
        for index, layer in enumerate(self.augment_layers):
            generator = compat.TensorSeedGenerator(
                tf.random.experimental.stateless_fold_in(seed, index)
            )
            transformation = layer.get_random_transformation(images, training=True, seed=generator)
            images = ops.cast(layer.transform_images(images, transformation, training=True),
                              "float32")
            if labels is not None and isinstance(layer, LABEL_MIXING):
                labels = layer.transform_labels(labels, transformation, training=True)
        return images, labels

    def _one_hot(self, labels):
        if len(labels.shape) >= 2 and labels.shape[-1] not in (None, 1):
            return ops.cast(labels, "float32")  # already one-hot or soft
        if self.num_classes is None:
            raise ValueError(
                "`Augmentation` with MixUp/CutMix needs `num_classes` to one-hot integer labels "
                "(the Distiller sets it from the student's outputs). Received: num_classes=None"
            )
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return ops.one_hot(labels, self.num_classes)

    def compute_output_spec(self, images, labels=None, seed=None):
        return images, labels

    def get_config(self):
        config = super().get_config()
        config.update(
            layers=[keras.saving.serialize_keras_object(layer) for layer in self.augment_layers],
            num_classes=self.num_classes,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [keras.saving.deserialize_keras_object(c) for c in config["layers"]]
        return cls(**config)


def get(augment):
    """`None`, or an `Augmentation` from layers / an `Augmentation`."""
    if augment is None or isinstance(augment, Augmentation):
        return augment
    return Augmentation(augment)


def _output_width(model):
    """The number of logits of a built Functional model (or an ensemble of them), else None."""
    members = getattr(model, "teachers", [model])
    outputs = [getattr(m, "outputs", None) for m in members]
    widths = {o[0].shape[-1] for o in outputs if o}
    return widths.pop() if len(widths) == 1 else None


def for_models(augment, student, teacher):
    """`get(augment)`, its `num_classes` (unless set) taken from the student's logits, else
    the teacher's (a `TeacherEnsemble`'s members must agree); left None when unknown."""
    augment = get(augment)
    if augment is not None and augment.num_classes is None:
        augment.num_classes = _output_width(student) or _output_width(teacher)
    return augment


def step_seed(base_seed, step):
    """The seed of batch `step` of a run seeded with `base_seed`: `(base_seed, step)`,
    folded with the replica id under a tf.distribute strategy (replicas see other examples)."""
    seed = ops.stack([ops.cast(base_seed, "int32"), ops.cast(step, "int32")])
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        seed = tf.random.experimental.stateless_fold_in(seed, ctx.replica_id_in_sync_group)
    return seed
