"""Microseconds per step that each way of feeding `fit` adds, on a pair so small that the
overhead is most of the step.

    python benchmarks/step_overhead.py --repeats 7 --out runs/bench/step_overhead

A teacher and a student of 784-16-10 on the 60,000 MNIST training images, batch 64
(937 steps), KD loss as in `train_throughput.py`. Variants, one epoch each, round-robin
(in an order drawn per round):
- `limit`: the compiled loop over batches already in memory (`train_throughput`'s limit);
- `limit_cached_tfdata`: the same loop reading the cached, pre-batched `tf.data` batches
  that `fit_cached_tfdata` reads (the input's own cost);
- `step_loop`: `Distiller.train_step` (its loss trackers and logs included) in the limit's
  loop over pre-batched tensors (the step's own cost, without `fit` or `tf.data`);
- `limit_array_batches`: the same loop reading `kd.data.array_batches` (a `tf.data`
  element per step);
- `fit_cached_tfdata`: `Distiller.fit` on cached, pre-batched `tf.data` batches;
- `fit_numpy`: `Distiller.fit(x, y, batch_size=64)`: the arrays read one execution at a time
  (`keras_kd.fit_arrays.ExecutionBlocks`);
- `fit_array_batches`: `Distiller.fit` on `kd.data.array_batches(x, y, batch_size=64)`, read
  step by step (`.take(-1)`, a derived dataset): a `tf.data` element per step (what `fit(x, y)` read before session 17);
- `fit_numpy_keras_adapter`: `keras.Model.fit(distiller, x, y, batch_size=64)`: Keras' own
  array adapter;
- `limit_student`: the compiled loop training the student alone;
- `fit_cached_logits`: `Distiller.fit` on `kd.teachers.cache_logits(teacher, batches)`, read
  one execution at a time; `fit_cached_logits_per_step`: the same cache read step by step
  (a dataset derived from it, as before session 17).
`fit` epochs are timed from `on_epoch_begin` to `on_epoch_end`. Prints, per variant, the
fastest and the median epoch in microseconds per step and what it adds to its limit's step
(the student-alone limit for the cached variants), and the paired ratio to that limit with
its 90 % interval (`common.paired_interval`).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import train_throughput as tt  # noqa: E402
from common import DEFAULT_MNIST  # noqa: E402
from common import load_mnist  # noqa: E402
from common import markdown_table  # noqa: E402
from common import paired_interval  # noqa: E402
from common import paired_ratio  # noqa: E402
from common import write_outputs  # noqa: E402

import keras_kd as kd  # noqa: E402


def tiny_pair(seed=0):
    keras.utils.set_random_seed(seed)

    def mlp():
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(10)])

    return mlp(), mlp()


def variants(x, y, batch_size):
    n = (len(x) // batch_size) * batch_size
    x, y = x[:n].reshape(n, -1), y[:n]
    xb = tf.constant(x.reshape(-1, batch_size, x.shape[1]))
    yb = tf.constant(y.reshape(-1, batch_size))
    cached = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()
    cached = kd.data.prefetched(cached)
    list(cached)  # fill the cache
    (teacher, student), (teacher2, student2) = tiny_pair(), tiny_pair()
    return n // batch_size, {
        "limit": tt.compiled_loop(*tiny_pair(), xb, yb, True, False),
        "limit_cached_tfdata": tt.dataset_loop(*tiny_pair(), cached, None, True, False,
                                               steps=n // batch_size),
        "step_loop": tt.distiller_step_loop(tt.keras_kd_distiller(*tiny_pair()), x, y, xb, yb),
        "limit_array_batches": tt.dataset_loop(
            *tiny_pair(), kd.data.array_batches(x, y, batch_size=batch_size), None, True, False,
            steps=n // batch_size),
        "fit_cached_tfdata": tt.fit_epoch(tt.keras_kd_distiller(*tiny_pair()), cached),
        "fit_numpy": tt.fit_numpy_epoch(tt.keras_kd_distiller(*tiny_pair()), x, y, batch_size),
        "fit_array_batches": tt.fit_epoch(  # derived: read step by step
            tt.keras_kd_distiller(*tiny_pair()),
            kd.data.array_batches(x, y, batch_size=batch_size).take(-1)),
        "fit_numpy_keras_adapter": tt.fit_numpy_epoch(
            tt.keras_array_adapter(tt.keras_kd_distiller(*tiny_pair())), x, y, batch_size),
        "limit_student": tt.compiled_loop(*tiny_pair(), xb, yb, False, False),
        "fit_cached_logits": tt.fit_epoch(
            tt.keras_kd_distiller(teacher, student), kd.teachers.cache_logits(teacher, cached)),
        "fit_cached_logits_per_step": tt.fit_epoch(
            tt.keras_kd_distiller(teacher2, student2),
            kd.teachers.cache_logits(teacher2, cached).take(-1)),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_MNIST)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="results/step_overhead")
    args = p.parse_args(argv)
    (x, y), _ = load_mnist(args.data)
    steps, runs = variants(x, y, args.batch_size)
    times, _ = tt.time_round_robin(runs, args.repeats)
    per_step = {k: {"min_us": 1e6 * min(v) / steps, "median_us": 1e6 * statistics.median(v) / steps}
                for k, v in times.items()}
    for name, stats in per_step.items():  # cached logits: against the student-alone limit
        limit = "limit_student" if "student" in name or "cached_logits" in name else "limit"
        stats["added_us"] = stats["min_us"] - per_step[limit]["min_us"]
        stats["paired"] = paired_ratio(times[name], times[limit])
        stats["interval"] = "[{:.3f}, {:.3f}]".format(*paired_interval(times[name], times[limit]))
    results = {"batch_size": args.batch_size, "steps": steps, "repeats": args.repeats,
               "cpus": os.cpu_count(), "tensorflow": tf.__version__,
               "keras": keras.__version__, "seconds": times, "per_step": per_step}
    md = markdown_table([{"variant": k, **v} for k, v in per_step.items()], [
        ("variant", "variant", ""), ("min_us", "µs/step (min)", ".0f"),
        ("median_us", "median", ".0f"), ("added_us", "added to the limit (min)", "+.0f"),
        ("paired", "x limit, paired", ".3f"), ("interval", "90 % interval", "")])
    write_outputs(results, args.out, md)


if __name__ == "__main__":
    main()
