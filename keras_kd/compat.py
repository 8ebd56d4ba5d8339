"""Where keras_kd relies on Keras behaviour beyond its documented API, in one place."""

import keras
import tensorflow as tf


class TensorSeedGenerator(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` that derives each draw from a given seed tensor.

    Keras' random ops take `seed=SeedGenerator` and call its `next()` once per draw (the
    `keras.src.random.seed_generator.draw_seed` contract, Keras 3.x). This one holds no
    state variable: draw `i` uses `stateless_fold_in(seed, i)`, so the same seed tensor gives
    the same draws, in a `tf.function` or eagerly (tests/test_augment.py checks it).
    """

    def __init__(self, seed):  # no super().__init__: no state variable to create or track
        self._seed_tensor = tf.cast(seed, tf.int32)
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._seed_tensor, self._draws)
