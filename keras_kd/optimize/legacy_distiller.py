"""Distillation of a tf_keras student (TFMOT-wrapped) from a Keras 3 teacher or cached logits.

The same objective as `keras_kd.Distiller`, computed with the same loss objects:

    loss = alpha * hard + (1 - alpha) * T**2 * KL(softmax(t / T) || softmax(s / T))

`hard` is the sparse cross-entropy on the student's logits; the KL term is
`keras_kd.losses.KLDivergence` (log-softmax based); both are means over the batch weighted
by `sample_weight`. Without a teacher (`teacher=None` and no cached logits) the loss is the
hard loss alone, the "same training without a teacher" baseline. The teacher (a Keras 3
model) runs with `training=False`, outside the gradient tape. Single device only.
"""

import keras
import tensorflow as tf

from keras_kd import losses as kd_losses
from keras_kd import reduction
from keras_kd.teachers import split_cached


def batch_losses(y, teacher_logits, student_logits, alpha, kl, sample_weight=None):
    """`(loss, hard, soft)` batch means; `soft` is 0 and `loss = hard` without a teacher."""
    student_logits = tf.cast(student_logits, tf.float32)
    n = tf.cast(tf.shape(student_logits)[0], tf.float32)
    hard = reduction.per_example(
        keras.losses.sparse_categorical_crossentropy(y, student_logits, from_logits=True),
        "hard loss")
    hard = reduction.weighted_sum(hard, sample_weight) / n
    if teacher_logits is None:
        return hard, hard, tf.constant(0.0)
    soft = reduction.weighted_sum(kl.call(teacher_logits, student_logits), sample_weight) / n
    return alpha * hard + (1.0 - alpha) * soft, hard, soft


def make(tf_keras, student, teacher, alpha, temperature):
    """A tf_keras `Model` whose `fit` distils `student` (tf_keras) from `teacher` (Keras 3)."""

    class LegacyDistiller(tf_keras.Model):
        def __init__(self):
            super().__init__(name="legacy_distiller")
            self.student = student
            self.teacher = teacher
            self.kl = kd_losses.KLDivergence(temperature=temperature)
            self.trackers = {
                name: tf_keras.metrics.Mean(name=name)
                for name in ("loss", "hard_loss", "distillation_loss")
            }
            self.accuracy = tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [*self.trackers.values(), self.accuracy]

        def call(self, inputs, training=False):
            return self.student(split_cached(inputs)[0], training=training)

        def _teacher_logits(self, inputs):
            inputs, cached = split_cached(inputs)
            if cached is not None or self.teacher is None:
                return inputs, cached
            return inputs, tf.stop_gradient(
                tf.cast(self.teacher(inputs, training=False), tf.float32))

        def _update(self, values, y, logits, sample_weight):
            for tracker, value in zip(self.trackers.values(), values):
                tracker.update_state(value)
            self.accuracy.update_state(y, logits, sample_weight)
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
            inputs, teacher_logits = self._teacher_logits(x)
            with tf.GradientTape() as tape:
                logits = self.student(inputs, training=True)
                values = batch_losses(y, teacher_logits, logits, alpha, self.kl, sample_weight)
                total = values[0] + tf.add_n(self.student.losses or [tf.constant(0.0)])
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            return self._update(values, y, logits, sample_weight)

        def test_step(self, data):
            x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
            inputs, teacher_logits = self._teacher_logits(x)
            logits = self.student(inputs, training=False)
            values = batch_losses(y, teacher_logits, logits, alpha, self.kl, sample_weight)
            return self._update(values, y, logits, sample_weight)

    return LegacyDistiller()
