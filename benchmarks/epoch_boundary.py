"""What tf.data's autotuning thread costs at epoch boundaries, and what `data.prefetched` saves.

    python benchmarks/epoch_boundary.py                      # MLP pair, 60,000 MNIST images
    python benchmarks/epoch_boundary.py --repeats 1 --epochs 3 --train-size 6400   # smoke test
    python benchmarks/epoch_boundary.py --input numpy     # numpy arrays given to `fit`

With autotuning on (tf.data's default), destroying an iterator sometimes blocks until the
autotuner's next wake-up, which comes 10 ms x 2^k after the iterator was made (2.56, 5.12,
10.24, 20.48 s ...). Keras' `fit` makes a new iterator each epoch and the old one is destroyed
early in the next epoch, so the wait lands inside an epoch. Two measurements, each with the
same pipeline (`kd.data.pipeline` over real MNIST: cache, reshuffle, batch, prefetch) with the
autotuner on (`autotune.enabled=True` set back on it) and off (keras_kd's default,
`data.prefetched`), alternating:

- `fit`: `Distiller.fit(epochs=E)` on the MLP pair (teacher 2x1200, student 2x800, live
  teacher, Keras' CPU defaults); per-epoch times (`on_epoch_begin` to `on_epoch_end`) and the
  whole call. The first epoch (tracing) is reported apart.
- `teardown`: one epoch of the same arithmetic in a compiled loop reading a fresh iterator,
  then `del iterator`, each timed: the wait itself, outside Keras.

`--input numpy` gives `fit` the numpy arrays instead (`fit(x, y, batch_size=...)`, shuffled):
"on" is Keras' own array adapter (`keras.Model.fit` called on the Distiller, as
`Distiller.fit` read arrays before `keras_kd.fit_arrays`), "off" is `Distiller.fit` itself,
which reads them through `kd.data.array_batches`; the bare loops read the same two
pipelines.

Prints and writes JSON and Markdown (`--out`). Absolute times on shared machines are noise;
compare the two settings within the run.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from common import DEFAULT_MNIST, load_mnist, markdown_table, write_outputs  # noqa: E402
from train_throughput import (FitEpoch, dataset_loop, fresh_pair,  # noqa: E402
                              keras_array_adapter, keras_array_dataset,
                              keras_kd_distiller)

from keras_kd import data  # noqa: E402

SETTINGS = ("autotune_on", "autotune_off")
WAIT_S = 0.5  # a teardown longer than this is a wait (without one it takes about 1 ms)


def training_pipeline(x, y, batch_size, setting, kind="pipeline"):
    """The training dataset of `setting`: `kd.data.pipeline` (autotuner set back on, or
    off); for `kind="numpy"`, Keras' own array adapter (its autotuner on) or
    `kd.data.array_batches` (off)."""
    if kind == "numpy":
        if setting == "autotune_on":
            return keras_array_dataset(x, y, batch_size)
        return data.array_batches(x, y, batch_size=batch_size)
    ds = data.pipeline(tf.data.Dataset.from_tensor_slices((x, y)), batch_size, training=True,
                       seed=0, size=len(x))
    if setting == "autotune_on":
        options = tf.data.Options()
        options.autotune.enabled = True
        ds = ds.with_options(options)
    return ds


def fit_epochs(x, y, batch_size, epochs, setting, kind="pipeline"):
    distiller = keras_kd_distiller(*fresh_pair("mlp"))
    if kind == "numpy":
        model = keras_array_adapter(distiller) if setting == "autotune_on" else distiller
        run = FitEpoch(model, x, y, batch_size=batch_size, epochs=epochs)
    else:
        run = FitEpoch(distiller, training_pipeline(x, y, batch_size, setting), epochs=epochs)
    run()
    return run.timer.times, run.call_seconds[0]


def teardown_rounds(x, y, batch_size, repeats, kind="pipeline"):
    times = {s: {"loop": [], "teardown": []} for s in SETTINGS}
    steps = -(-len(x) // batch_size)  # Keras' array adapter does not know its cardinality
    loops = {s: dataset_loop(*fresh_pair("mlp"), training_pipeline(x, y, batch_size, s, kind),
                             None, True, False, steps=steps, teardowns=times[s]["teardown"])
             for s in SETTINGS}
    for run in loops.values():  # warm-up: tracing, and the pipeline's cache
        run()
    for t in times.values():
        t["teardown"].clear()
    for _ in range(repeats):
        for setting, run in loops.items():
            times[setting]["loop"].append(run())
    return times


def summarize(fits, teardowns):
    rows = []
    for setting in SETTINGS:
        later = [t for times, _ in fits[setting] for t in times[1:]]
        waits = [t for t in teardowns[setting]["teardown"] if t > WAIT_S]
        rows.append({
            "setting": setting,
            "epochs": len(later),
            "epoch_median_s": statistics.median(later),
            "epoch_max_s": max(later),
            "epochs_over_1_25x_median": sum(t > 1.25 * statistics.median(later) for t in later),
            "fit_calls_s": sum(call for _, call in fits[setting]),
            "loops": len(teardowns[setting]["teardown"]),
            "teardown_waits": len(waits),
            "teardown_max_s": max(teardowns[setting]["teardown"]),
            "loop_plus_teardown_when_waiting_s": [
                round(l + t, 3) for l, t in zip(teardowns[setting]["loop"],
                                                teardowns[setting]["teardown"]) if t > WAIT_S],
        })
    on, off = rows
    ratios = {
        "fit_calls_on_vs_off": on["fit_calls_s"] / off["fit_calls_s"],
        "fit_calls_on_vs_off_paired": statistics.median(
            a[1] / b[1] for a, b in zip(fits["autotune_on"], fits["autotune_off"])),
        "epoch_median_on_vs_off": on["epoch_median_s"] / off["epoch_median_s"],
    }
    return rows, ratios


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_MNIST)
    p.add_argument("--train-size", type=int, default=60000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6, help="epochs per fit call")
    p.add_argument("--repeats", type=int, default=3,
                   help="fit calls per setting; teardown rounds are 3x this")
    p.add_argument("--input", choices=("pipeline", "numpy"), default="pipeline",
                   help="what fit is given: a kd.data.pipeline dataset, or numpy arrays")
    p.add_argument("--out", default="results/epoch_boundary")
    args = p.parse_args(argv)
    for name in ("train_size", "batch_size", "epochs", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: {getattr(args, name)}; expected an integer >= 1")
    if args.epochs < 2:
        p.error(f"--epochs: {args.epochs}; expected >= 2 (the first epoch traces)")

    (x, y), _ = load_mnist(args.data)
    x, y = x[:args.train_size], y[:args.train_size]
    fits = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        for setting in SETTINGS:
            fits[setting].append(fit_epochs(x, y, args.batch_size, args.epochs, setting,
                                            args.input))
    teardowns = teardown_rounds(x, y, args.batch_size, 3 * args.repeats, args.input)
    rows, ratios = summarize(fits, teardowns)

    results = {"input": args.input, "examples_per_epoch": len(x), "batch_size": args.batch_size,
               "epochs": args.epochs, "repeats": args.repeats, "cpus": os.cpu_count(),
               "tensorflow": tf.__version__, "rows": rows, "ratios": ratios,
               "fit_epoch_seconds": {s: [t for t, _ in fits[s]] for s in SETTINGS},
               "fit_call_seconds": {s: [c for _, c in fits[s]] for s in SETTINGS},
               "teardown_seconds": teardowns}
    columns = [("setting", "tf.data autotuner", "s"),
               ("epochs", "fit epochs after the first", "d"),
               ("epoch_median_s", "median s", ".2f"), ("epoch_max_s", "max s", ".2f"),
               ("epochs_over_1_25x_median", "epochs > 1.25x median", "d"),
               ("fit_calls_s", "all fit calls, s", ".1f"),
               ("loops", "bare-loop epochs", "d"),
               ("teardown_waits", f"iterator teardowns > {WAIT_S} s", "d"),
               ("teardown_max_s", "longest teardown, s", ".2f")]
    markdown = (markdown_table(rows, columns) + "\n"
                + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()) + "\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_outputs(results, args.out, markdown)


if __name__ == "__main__":
    main()
