"""How `cache_logits` holds cached teacher logits in memory: pipeline-only seconds per epoch.

    python benchmarks/cache_layouts.py                  # 60,000 MNIST images, batch 64
    python benchmarks/cache_layouts.py --limit 10000 --repeats 1

Three layouts of the same batches `({"inputs", "teacher_logits"}, y)`, iterated without a
model (what the input pipeline alone costs a cached-logits epoch), with and without
shuffling (buffer = the whole set):
- `variables_gather`: `keras_kd.teachers.cache_logits` today: inputs and logits in host
  `tf.Variable`s, a dataset of index batches, one gather per batch;
- `from_tensor_slices_constants`: the former layout, whole arrays given to
  `from_tensor_slices` (graph constants: TensorFlow's 2 GB GraphDef limit);
- `rezip_examples`: the original examples zipped with a dataset of logits rows.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=60000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="results/cache_layouts")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf
    from common import load_mnist, markdown_table, write_outputs

    import keras_kd as kd

    (x, y), _ = load_mnist()
    x, y, n, bs = x[:args.limit], y[:args.limit], min(args.limit, len(x)), args.batch_size
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:])
    teacher = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    logits = teacher.predict(x, batch_size=1024, verbose=0)
    logits_variable = tf.Variable(logits)

    def layouts(shuffle):
        buffer = n if shuffle else None
        out = {"variables_gather": kd.teachers.cache_logits(
            teacher, tf.data.Dataset.from_tensor_slices((x, y)).batch(bs), shuffle_buffer=buffer,
            seed=0)}
        constants = tf.data.Dataset.from_tensor_slices(({"inputs": x, "teacher_logits": logits}, y))
        rezip = tf.data.Dataset.zip(
            tf.data.Dataset.from_tensor_slices((x, y)),
            tf.data.Dataset.range(n).map(lambda i: logits_variable[i]),
        ).map(lambda e, t: ({"inputs": e[0], "teacher_logits": t}, e[1]))
        for name, ds in (("from_tensor_slices_constants", constants), ("rezip_examples", rezip)):
            if shuffle:
                ds = ds.shuffle(n, seed=0, reshuffle_each_iteration=True)
            out[name] = ds.batch(bs).prefetch(tf.data.AUTOTUNE)
        return out

    rows = []
    for shuffle in (False, True):
        datasets = layouts(shuffle)
        times = {k: [] for k in datasets}
        for _ in range(args.repeats):
            for name, ds in datasets.items():
                start = time.perf_counter()
                for _ in ds:
                    pass
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["variables_gather"])
        rows += [{"layout": k, "shuffle": shuffle, "median_s": statistics.median(v),
                  "min_s": min(v), "max_s": max(v), "vs_variables": statistics.median(v) / base}
                 for k, v in times.items()]
    md = markdown_table(rows, [("layout", "layout", ""), ("shuffle", "shuffled", ""),
                               ("median_s", "s/epoch (median)", ".2f"), ("min_s", "min", ".2f"),
                               ("max_s", "max", ".2f"), ("vs_variables", "x variables_gather", ".2f")])
    md += f"\n{n} MNIST images, batch {bs}, pipeline only, {args.repeats} repeats.\n"
    write_outputs({"examples": n, "batch_size": bs, "repeats": args.repeats, "rows": rows},
                  args.out, md)


if __name__ == "__main__":
    main()
