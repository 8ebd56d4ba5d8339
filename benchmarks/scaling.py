"""Steps/s and examples/s of distillation at 1 and N replicas (MirroredStrategy).

    python benchmarks/scaling.py --replicas 1 2           # CPU: N logical CPU devices
    python benchmarks/scaling.py --replicas 1 2 4 8       # GPU host: N GPUs

On a CPU-only machine the N replicas are logical devices sharing the same cores, so this is
a correctness run (the weights after one epoch must match the single-replica run), not a
speed-up measurement; on a GPU host the same script reports scaling efficiency
(examples/s at N replicas / (N x examples/s at 1 replica)) at a fixed per-replica batch.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--per-replica-batch-size", type=int, default=64)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="results/scaling")
    args = p.parse_args(argv)

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * max(args.replicas))
    import keras
    import numpy as np
    from common import load_mnist, markdown_table, write_outputs

    import keras_kd as kd

    kind = "GPU" if gpus else "CPU"
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    (x, y), _ = load_mnist()
    keras.utils.set_random_seed(0)
    teacher0 = kd.models.build("mlp-teacher", (28, 28, 1), 10)
    student0 = kd.models.build("mlp-student", (28, 28, 1), 10)
    rows, weights = [], {}
    for n in args.replicas:
        strategy = tf.distribute.MirroredStrategy(devices[:n])
        if kind == "CPU":  # same global batch for every n: the runs must give the same weights
            global_batch = args.per_replica_batch_size * max(args.replicas)
        else:  # fixed work per replica: the global batch grows with n
            global_batch, _ = kd.distribute.batch_sizes(
                strategy, per_replica_batch_size=args.per_replica_batch_size)
        # Same examples per epoch for every n, a whole number of global batches.
        size = (args.train_size // (global_batch * max(args.replicas))) * global_batch * max(args.replicas)
        ds = tf.data.Dataset.from_tensor_slices((x[:size], y[:size])).batch(global_batch).cache()
        with strategy.scope():
            teacher = keras.models.clone_model(teacher0)
            teacher.set_weights(teacher0.get_weights())
            student = keras.models.clone_model(student0)
            student.set_weights(student0.get_weights())
            distiller = kd.Distiller(student, teacher)
            distiller.compile(optimizer=keras.optimizers.SGD(0.05), alpha=0.1, temperature=4.0)
        times = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.start)

        distiller.fit(ds, epochs=1 + args.repeats, verbose=0, callbacks=[Timer()])
        steps = size // global_batch
        med = statistics.median(times[1:])
        weights[n] = student.get_weights()
        rows.append({"replicas": n, "device": kind, "global_batch": global_batch,
                     "steps_per_s": steps / med, "examples_per_s": size / med,
                     "seconds_per_epoch": med})
    base = rows[0]["examples_per_s"] / rows[0]["replicas"]
    for r in rows:
        r["scaling_efficiency"] = r["examples_per_s"] / (r["replicas"] * base)
    md = markdown_table(rows, [
        ("replicas", "replicas", "d"), ("device", "device", ""), ("global_batch", "global batch", "d"),
        ("steps_per_s", "steps/s", ".1f"), ("examples_per_s", "examples/s", ".0f"),
        ("scaling_efficiency", "efficiency", ".2f")])
    results = {"rows": rows, "note": "CPU logical devices share cores: a correctness run"
               if kind == "CPU" else "GPU scaling at fixed per-replica batch"}
    if kind == "CPU":
        ref = weights[args.replicas[0]]
        results["max_weight_diff_vs_1_replica"] = {
            n: float(max(np.abs(a - b).max() for a, b in zip(ref, w))) for n, w in weights.items()}
    write_outputs(results, args.out, md)


if __name__ == "__main__":
    main()
