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

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def _workers_in_tf_config():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ValueError(f"Invalid TF_CONFIG environment variable: {e}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _tpu():
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(name="auto"):
    """Returns a `tf.distribute.Strategy` by name.

    Args:
        name: `"auto"` (a TPU when one resolves, MultiWorkerMirrored when `TF_CONFIG` names
            more than one worker, Mirrored when more than one GPU is visible, else the default
            strategy), `"default"`, `"mirrored"` (all local GPUs, or all logical CPUs when
            there is no GPU), `"multi_worker"` (needs `TF_CONFIG`) or `"tpu"`.

    Raises:
        ValueError: for an unknown name, listing the available ones.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Invalid value for argument `strategy`. Expected one of {list(STRATEGIES)}. "
            f"Received: strategy={name!r}"
        )
    if name == "tpu":
        return _tpu()
    if name == "multi_worker" or (name == "auto" and _workers_in_tf_config() > 1):
        return tf.distribute.MultiWorkerMirroredStrategy()
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
