"""Choosing a `tf.distribute` strategy by name.

Build the teacher, the student and the `Distiller` and call `compile` under the strategy's
scope; `fit` then distributes the input and the `Distiller` keeps every loss a mean over the
global batch (see `keras_kd.reduction`):

```python
strategy = keras_kd.distribute.get_strategy("auto")
with strategy.scope():
    teacher = keras.saving.load_model("teacher.keras")
    distiller = keras_kd.Distiller(student=make_student(), teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
distiller.fit(train_ds.batch(per_replica_batch * strategy.num_replicas_in_sync), epochs=5)
```
"""

import json
import os

import tensorflow as tf

from keras_kd import checks
from keras_kd import compat

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def tf_config():
    """The `TF_CONFIG` environment variable as a dict (`{}` when unset or empty).

    Raises:
        ValueError: if it is not a JSON object; the message shows the value.
    """
    raw = os.environ.get("TF_CONFIG") or "{}"
    try:
        config, problem = json.loads(raw), ""
    except json.JSONDecodeError as e:
        config, problem = None, f" ({e})"
    if not isinstance(config, dict):
        raise ValueError(
            "Invalid value for environment variable `TF_CONFIG`. Expected a JSON object such "
            'as {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
            f'"index": 0}}{problem}. Received: TF_CONFIG={raw!r}'
        )
    return config


def _workers_in_tf_config():
    cluster = tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _tpu():
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(name="auto", collective_timeout=None):
    """Returns a `tf.distribute.Strategy` by name.

    Args:
        name: `"auto"` (a TPU when one resolves, MultiWorkerMirrored when `TF_CONFIG` names
            more than one worker, Mirrored when more than one GPU is visible, else the default
            strategy), `"default"`, `"mirrored"` (all local GPUs, or all logical CPUs when
            there is no GPU), `"multi_worker"` (needs `TF_CONFIG`) or `"tpu"`.
        collective_timeout: multi-worker only: seconds after which a collective operation
            (gradient all-reduce) waiting for a stuck worker fails the run instead of hanging.
            `None` (default) sets no timeout; a *crashed* worker still fails the run, since
            TensorFlow's coordination service notices its missed heartbeats. Costly:
            TensorFlow arms each collective's timeout with a thread that sleeps for the whole
            timeout, so (collectives per second x timeout) threads stay alive (measured in
            docs/guide.md, "Scaling out"). Keep it short.

    Raises:
        ValueError: for an unknown name, listing the available ones.
    """
    checks.one_of("strategy", name, STRATEGIES)
    if name == "tpu":
        return _tpu()
    if name == "multi_worker" or (name == "auto" and _workers_in_tf_config() > 1):
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "auto":
        if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
            try:
                return _tpu()
            except (ValueError, tf.errors.OpError):
                pass
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def batch_sizes(strategy, global_batch_size=None, per_replica_batch_size=None):
    """Returns `(global_batch_size, per_replica_batch_size)` from either one.

    `fit` takes the global batch (what one optimizer step sees); each of the strategy's
    `num_replicas_in_sync` replicas processes `global / replicas` examples of it.

    Raises:
        ValueError: unless exactly one is given, positive, and the global batch divides
            evenly among the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if (global_batch_size is None) == (per_replica_batch_size is None):
        raise ValueError(
            "Pass exactly one of `global_batch_size` and `per_replica_batch_size`. Received: "
            f"global_batch_size={global_batch_size}, per_replica_batch_size={per_replica_batch_size}"
        )
    if per_replica_batch_size is not None:
        checks.positive_int("per_replica_batch_size", per_replica_batch_size)
        return per_replica_batch_size * replicas, per_replica_batch_size
    if global_batch_size <= 0 or global_batch_size % replicas:
        raise ValueError(
            "Invalid value for argument `global_batch_size`. Expected a positive multiple of "
            f"the {replicas} replicas. Received: global_batch_size={global_batch_size}"
        )
    return global_batch_size, global_batch_size // replicas


def symbolic_build_from_one_replica(model, iterator):
    """Builds `model`'s metrics and state from the first batch seen by one local replica.

    Keras 3's `TensorFlowTrainer._maybe_symbolic_build` all-reduces a whole distributed
    batch with `strategy.reduce("MEAN", (x, y, ...))` only to learn its shapes, which fails
    under MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica...) to a
    Tensor", keras-team/keras#20585) and costs a collective under MirroredStrategy. The
    shapes of one local replica's batch are the ones each replica's step sees.
    """
    strategy = model.distribute_strategy
    for _, _, it in iterator:
        batch = next(it)
        break

    def first_local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    with strategy.scope():
        compat.symbolic_build(model, tf.nest.map_structure(first_local, batch))


def step_logs(strategy, logs):
    """Makes a step's logs reducible by Keras under MultiWorkerMirroredStrategy.

    Keras 3 reduces step outputs across workers with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on the scalar metric results every step returns ("Invalid reduction dimension
    0 for input with 0 dimensions"). Metric results are already synchronised (equal on every
    replica), so giving them a length-1 axis changes no value; elsewhere logs pass unchanged.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        compat.in_multi_worker_mode(strategy)
    ):
        return {k: tf.reshape(v, [1]) if v.shape.rank == 0 else v for k, v in logs.items()}
    return logs
