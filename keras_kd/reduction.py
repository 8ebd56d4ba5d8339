"""One reduction for every loss term: a (weighted) mean over the *global* batch.

Keras 3 `Loss.__call__` divides by the number of replicas inside a replica context while a
hand-written mean does not; mixing the two is how a distillation loss ends up scaled wrongly
under `tf.distribute`. Here every term goes through the same arithmetic: each replica sums
`sample_weight * loss` over its examples and divides by the number of examples in the whole
global batch (found with one all-reduce), so that the replicas' gradients, summed by the
optimizer, equal the single-device gradient of the same global batch, even when the last
batch splits unevenly.
"""

import tensorflow as tf
from keras import ops


def per_example(values, argument):
    """Reduces a loss output to one float32 value per example (mean over other axes)."""
    values = ops.cast(values, "float32")
    rank = len(values.shape)
    if rank == 0:
        raise ValueError(
            f"Invalid value returned by `{argument}`: expected one loss value per example "
            "(shape (batch_size,)), received a scalar. Return unreduced values, e.g. a "
            "`keras.losses.Loss` instance or a function such as "
            "`keras.losses.sparse_categorical_crossentropy`."
        )
    if rank > 1:
        values = ops.mean(values, axis=tuple(range(1, rank)))
    return values


def weighted_sum(values, sample_weight):
    """Sum over the local batch of `sample_weight * values`."""
    if sample_weight is not None:
        sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        values = values * sample_weight
    return ops.sum(values)


def global_count(local_count):
    """The number of examples in the whole global batch: one all-reduce across replicas."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return local_count
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_count)


def num_replicas():
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync
