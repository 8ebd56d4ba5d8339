"""Seconds per epoch of distillation: keras_kd against its limits and against keras.distillation.

    python benchmarks/train_throughput.py                    # MLP and CNN pairs on MNIST
    python benchmarks/train_throughput.py --pairs mlp --repeats 3
    python benchmarks/train_throughput.py --pairs mlp --variants keras_kd_live_numpy \
        keras_kd_live_numpy_later_epoch       # these (and the limits) only
    python benchmarks/train_throughput.py --pool runs/a.json runs/b.json runs/c.json \
        --out runs/pooled                     # several saved runs: each, pooled, verdicts

For each teacher/student pair, on identical models, data and batch size, in one run:
- `limit_*`: the same arithmetic (teacher forward, student forward/backward, Adam update) in
  one compiled `tf.function` looping over pre-batched tensors: no Keras `fit` overhead. With
  and without XLA; the faster counts as the limit.
- `teacher_inference`: the teacher's forward pass over the epoch (compiled loop).
- `scratch_fit`: the student trained on labels with plain `keras.Model.fit` (defaults).
- `keras_kd_*`: `keras_kd.Distiller.fit` with the live teacher (defaults; XLA forced on;
  `steps_per_execution=1`, Keras' default; `_numpy`: fed numpy arrays, `fit(x, y,
  batch_size=...)`, as a new user would, with defaults and with XLA on, read one execution
  at a time (`keras_kd.fit_arrays.ExecutionBlocks`, since session 17);
  `_array_batches`: the arrays through `kd.data.array_batches`, read step by step
  (`.take(-1)`: a tf.data element per step, what `fit(x, y)` read in session 16); `_numpy_keras_adapter`: through Keras' own array
  adapter (`keras.Model.fit` called on the Distiller), as before `keras_kd.fit_arrays`;
  `_later_epoch`: the second epoch of one `fit(..., epochs=2)`, without what `fit` pays
  once per call) and with cached teacher logits (defaults, read one execution at a time
  since session 17; `_per_step`: read step by step, as before; XLA on).
- `keras_distiller`: Keras' own `keras.distillation.Distiller` with `LogitsDistillation`.
- `limit_tfdata_*` / `limit_numpy_*`: the limit's loop fed by the input pipeline of the `fit`
  variants (the cached tf.data batches; `kd.data.array_batches` over the numpy arrays), one
  iterator per epoch, in one call: the input path's own cost, and the limit of "fed as users
  feed it" (as `image_throughput.py`'s limits read the image pipeline).
- `keras_kd_step_loop`: `Distiller.train_step` (metrics and logs included) in the limit's
  compiled loop over pre-batched tensors: keras_kd's step without `fit` or tf.data.

Every variant is built and run once first (tracing, compilation); then `--repeats` rounds
time one epoch of each variant in turn, in an order drawn per round (`round_order`), so that
drift of a shared machine hits all variants alike. A `fit` epoch is timed from
`on_epoch_begin` to `on_epoch_end` (`FitEpoch`); the whole `fit` call, with what it pays once
per call, is reported beside it. The table gives the median and the spread (min-max); the
ratios use the fastest repeat (`--statistic min`, see `common.epoch_times`: stalls only add
time). Absolute times on shared machines are noise; the
ratios measured in the same run are the result. The paired ratios (median over the rounds of
the ratio within a round) come with a 90 % bootstrap interval (`common.paired_interval`).
A process has a state of its own that holds for all its rounds, so runs of one command can
disagree by more than these intervals: `--pool` pools the rounds of several saved runs, with
an interval that draws the runs too (`common.pooled_interval`), and gives issue 14's
verdicts on the bounds (`BOUNDS`).
"""

import argparse
import functools
import os
import random
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import (DEFAULT_MNIST, add_pool_argument, add_summary_arguments,  # noqa: E402
                    epoch_times, load_mnist, markdown_table, paired_interval, paired_ratio,
                    pooled_rows, read_runs, saved_run, write_outputs, write_pooled)

import keras_kd as kd  # noqa: E402
from keras_kd import models  # noqa: E402

PAIRS = {"mlp": ("mlp-teacher", "mlp-student"), "cnn": ("cnn-teacher", "cnn-student")}
ALPHA, T = 0.1, 4.0


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def fresh_pair(pair, seed=0):
    keras.utils.set_random_seed(seed)
    teacher = models.build(PAIRS[pair][0], (28, 28, 1), 10)
    student = models.build(PAIRS[pair][1], (28, 28, 1), 10)
    return teacher, student


class FitEpoch:
    """A callable running `model.fit(*args, epochs=epochs, **kwargs)` and returning the time
    of its last epoch, from `on_epoch_begin` to `on_epoch_end` (the epoch's iterator, steps
    and metrics). The whole call's time, which adds what `fit` pays once per call (Keras'
    array adapter, callbacks, and a wait of up to about 10 s after `on_train_end` in some
    calls on this project's VMs, also with a plain Keras model), goes to `call_seconds`."""

    def __init__(self, model, *args, epochs=1, **kwargs):
        self.model, self.args, self.epochs, self.kwargs = model, args, epochs, kwargs
        self.timer, self.call_seconds = EpochTimer(), []

    def __call__(self):
        start = time.perf_counter()
        self.model.fit(*self.args, epochs=self.epochs, verbose=0, callbacks=[self.timer],
                       **self.kwargs)
        self.call_seconds.append(time.perf_counter() - start)
        return self.timer.times[-1]


def fit_epoch(model, data, **kwargs):
    """One `fit` epoch on a dataset (the first call traces and compiles)."""
    return FitEpoch(model, data, **kwargs)


def fit_numpy_epoch(model, x, y, batch_size):
    """One `fit(x, y, batch_size=...)` epoch on numpy arrays."""
    return FitEpoch(model, x, y, batch_size=batch_size)


def fit_numpy_later_epoch(model, x, y, batch_size):
    """The second epoch of one `fit(x, y, batch_size=..., epochs=2)` on numpy arrays: what
    each epoch after the first costs a user."""
    return FitEpoch(model, x, y, batch_size=batch_size, epochs=2)


def time_round_robin(variants, repeats, log=False, order_seed=0):
    """Runs every variant once (tracing, compilation), then `repeats` rounds of one run of
    each in turn, so that drift of a shared machine hits all variants alike. Each round runs
    the variants in its own order (`round_order`): a variant's ratio to a limit is then not
    tied to one place in the round (`order_seed=None`: the order of `variants` every round).
    Returns the epoch times and, for the `fit` variants, the whole calls' times (warm-up
    excluded)."""
    for name, run in variants.items():
        warm = run()
        if log:
            print(f"warm-up {name}: {warm:.2f} s", flush=True)
    times = {name: [] for name in variants}
    for k in range(repeats):
        for name in round_order(variants, k, order_seed):
            times[name].append(variants[name]())
    calls = {name: run.call_seconds[1:] for name, run in variants.items()
             if isinstance(run, FitEpoch)}
    return times, calls


def round_order(names, round_index, seed=0):
    """The order in which round `round_index` runs `names`: a permutation drawn from
    `(seed, round_index)`, or `names` as given when `seed` is None."""
    names = list(names)
    if seed is not None:
        random.Random(f"{seed}-{round_index}").shuffle(names)
    return names


def kd_loss(y, s_logits, t_logits):
    hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, s_logits))
    if t_logits is None:
        return hard
    log_p = tf.nn.log_softmax(t_logits / T)
    soft = T**2 * tf.reduce_mean(
        tf.reduce_sum(tf.exp(log_p) * (log_p - tf.nn.log_softmax(s_logits / T)), -1)
    )
    return ALPHA * hard + (1 - ALPHA) * soft


def bare_step(teacher, student, with_teacher, jit, train=True):
    """One compiled step of the limit loops: teacher forward (optional), student forward and
    backward, Adam update; `train=False` runs the teacher alone."""
    optimizer = keras.optimizers.Adam()
    variables = student.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=jit)
    def step(x, y):
        t_logits = teacher(x, training=False) if with_teacher else None
        if not train:
            return tf.reduce_sum(tf.cast(t_logits, tf.float32))
        with tf.GradientTape() as tape:
            loss = kd_loss(y, student(x, training=True), t_logits)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def seconds(call):
    """Wall-clock seconds of `call()`."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def compiled_loop(teacher, student, xb, yb, with_teacher, jit, train=True):
    """A callable timing one epoch of a bare loop: no Keras fit, no callbacks, no pipeline."""
    return tensor_loop(bare_step(teacher, student, with_teacher, jit, train), xb, yb)


def tensor_loop(step, xb, yb):
    """A callable timing one epoch of `step(x, y) -> loss` over pre-batched tensors, in one
    tf.function."""

    @tf.function
    def epoch():
        total = tf.constant(0.0)
        for i in tf.range(tf.shape(xb)[0]):
            total += step(xb[i], yb[i])
        return total

    return lambda: seconds(lambda: epoch().numpy())


def dataset_loop(teacher, student, ds, augment, with_teacher, jit, train=True, steps=None,
                 teardowns=None):
    """A callable timing one epoch of a bare loop reading `ds` (an iterator made per epoch)
    inside one tf.function: the limit fed by the same input pipeline as `fit`. `steps`:
    batches per epoch, for a dataset of unknown cardinality. `teardowns`: a list that gets the
    seconds each epoch's iterator took to destroy, after the timing."""
    step = bare_step(teacher, student, with_teacher, jit, train)

    steps = steps or int(ds.cardinality())

    @tf.function
    def epoch(iterator):
        # `next(iterator)` in a tf.range loop, not `for x, y in ds`: autograph turns the latter
        # into `ds.reduce`, whose body runs inside the tf.data runtime (about 2x slower in a
        # noisy --limit 1024 smoke run)
        total = tf.constant(0.0)
        for k in tf.range(steps):
            x, y = next(iterator)
            if augment is not None:  # outside XLA: ImageProjectiveTransformV3 has no XLA kernel
                x, y = augment(x, y, seed=tf.stack([tf.constant(0), k]))
            total += step(x, y)
        return total

    def timed_epoch():
        iterator = iter(ds)
        elapsed = seconds(lambda: epoch(iterator).numpy())
        # dropped after the timing, as the one-epoch `fit` calls timed here drop theirs after
        # `on_epoch_end`: with tf.data's autotuner on, the drop can wait for its next wake-up
        # (benchmarks/epoch_boundary.py), which made limits of exactly 2.55, 5.11, 10.23 and
        # 20.47 s before session 15
        start = time.perf_counter()
        del iterator
        if teardowns is not None:
            teardowns.append(time.perf_counter() - start)
        return elapsed

    return timed_epoch


def keras_array_dataset(x, y, batch_size):
    """The dataset Keras' `fit(x, y, batch_size=..., shuffle=True)` reads numpy arrays through
    (its array adapter: a new permutation per iteration, batches gathered in a parallel map,
    tf.data's autotuner on; its cardinality is unknown)."""
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    return ArrayDataAdapter(x, y, batch_size=batch_size, shuffle=True).get_tf_dataset()


def keras_array_adapter(model):
    """`model` whose `fit` is `keras.Model.fit` itself: arrays then go through Keras' own
    array adapter (a new permutation per iteration from an unseeded `tf.random.shuffle`,
    tf.data's autotuner on), as `Distiller.fit` read them before `keras_kd.fit_arrays`."""
    return types.SimpleNamespace(fit=functools.partial(keras.Model.fit, model))


def distiller_step_loop(distiller, x, y, xb, yb):
    """A callable timing one epoch of `distiller.train_step` (metrics and logs included) in
    the compiled loop of the limits: keras_kd's step without `fit`, tf.data or executions."""
    distiller.fit(x[:2 * xb.shape[1]], y[:2 * xb.shape[1]], batch_size=int(xb.shape[1]),
                  verbose=0)  # builds the models, the metrics and the optimizer
    step = tf.function(distiller.train_step, jit_compile=distiller.jit_compile)
    return tensor_loop(lambda x_, y_: step((x_, y_))["loss"], xb, yb)


def keras_distiller(teacher, student):
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=T),
        student_loss_weight=ALPHA,
    )
    distiller.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return distiller


def keras_kd_distiller(teacher, student, **compile_kwargs):
    distiller = kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", alpha=ALPHA, temperature=T, **compile_kwargs)
    return distiller


def run_pair(pair, x, y, batch_size, repeats, only=None):
    """Builds every variant (or the limits and `only`), warms each up, then times `repeats`
    epochs round-robin."""
    n = (len(x) // batch_size) * batch_size
    x, y = x[:n], y[:n]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().prefetch(
        tf.data.AUTOTUNE)
    list(ds)  # fill the cache: every variant reads the same in-memory batches
    xb = tf.constant(x.reshape(-1, batch_size, *x.shape[1:]))
    yb = tf.constant(y.reshape(-1, batch_size))
    variants = {}
    for jit in (False, True):
        tag = "on" if jit else "off"
        variants[f"limit_teacher_student_xla_{tag}"] = compiled_loop(*fresh_pair(pair), xb, yb,
                                                                     True, jit)
        variants[f"limit_student_xla_{tag}"] = compiled_loop(*fresh_pair(pair), xb, yb, False, jit)
        # the same limits fed by the input pipelines of the `fit` variants below: the
        # cached tf.data batches and the pipeline `Distiller.fit` reads numpy arrays through
        variants[f"limit_tfdata_teacher_student_xla_{tag}"] = dataset_loop(
            *fresh_pair(pair), ds, None, True, jit)
        variants[f"limit_numpy_teacher_student_xla_{tag}"] = dataset_loop(
            *fresh_pair(pair), kd.data.array_batches(x, y, batch_size=batch_size), None, True,
            jit)
    variants["keras_kd_step_loop"] = distiller_step_loop(
        keras_kd_distiller(*fresh_pair(pair)), x, y, xb, yb)
    variants["teacher_inference"] = compiled_loop(*fresh_pair(pair), xb, yb, True, False,
                                                  train=False)
    _, student = fresh_pair(pair)
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    variants["scratch_fit"] = fit_epoch(student, ds)
    for name, kwargs in (("keras_kd_live", {}),
                         ("keras_kd_live_xla_on", {"jit_compile": True}),
                         ("keras_kd_live_steps_per_execution_1", {"steps_per_execution": 1})):
        variants[name] = fit_epoch(keras_kd_distiller(*fresh_pair(pair), **kwargs), ds)
    xla = {"jit_compile": True}
    for name, kwargs in (("keras_kd_live_numpy", {}), ("keras_kd_live_numpy_xla_on", xla)):
        variants[name] = fit_numpy_epoch(keras_kd_distiller(*fresh_pair(pair), **kwargs), x, y,
                                         batch_size)
        variants[f"{name}_later_epoch"] = fit_numpy_later_epoch(
            keras_kd_distiller(*fresh_pair(pair), **kwargs), x, y, batch_size)
    # the numpy path until session 17: `array_batches` as a dataset, one tf.data element
    # per step (`fit(x, y)` now reads the arrays one execution at a time)
    variants["keras_kd_live_array_batches"] = fit_epoch(  # derived: read step by step
        keras_kd_distiller(*fresh_pair(pair)),
        kd.data.array_batches(x, y, batch_size=batch_size).take(-1))
    variants["keras_kd_live_numpy_keras_adapter"] = fit_numpy_epoch(
        keras_array_adapter(keras_kd_distiller(*fresh_pair(pair))), x, y, batch_size)
    variants["keras_kd_live_numpy_keras_adapter_later_epoch"] = fit_numpy_later_epoch(
        keras_array_adapter(keras_kd_distiller(*fresh_pair(pair))), x, y, batch_size)
    for name, kwargs in (("keras_kd_cached", {}), ("keras_kd_cached_xla_on", xla)):
        teacher, student = fresh_pair(pair)
        variants[name] = fit_epoch(keras_kd_distiller(teacher, student, **kwargs),
                                   kd.teachers.cache_logits(teacher, ds))
    # the cache read step by step (before session 17): a dataset derived from the cache is
    # Keras' to read, one tf.data element per step (`data.held_batches`)
    teacher, student = fresh_pair(pair)
    variants["keras_kd_cached_per_step"] = fit_epoch(
        keras_kd_distiller(teacher, student), kd.teachers.cache_logits(teacher, ds).take(-1))
    variants["keras_distiller"] = fit_epoch(keras_distiller(*fresh_pair(pair)), ds)

    unknown = sorted(set(only or ()) - set(variants))
    if unknown:
        raise SystemExit(f"--variants: {', '.join(unknown)} is not one of {', '.join(variants)}")
    if only:  # the limits are always timed: every ratio needs them
        variants = {k: v for k, v in variants.items() if k.startswith("limit_") or k in only}
    return time_round_robin(variants, repeats)


# Each ratio's (numerator, denominator) variants: against the faster limit (`limit`,
# `student_limit`: the faster of XLA on and off), and each loop against the limit of its
# own XLA setting (Keras' CPU default is XLA off). Variants added later are absent from
# older saved runs, and `--variants` times a subset: a ratio is given where both of its
# times exist.
RATIOS = {
    "keras_kd_live_vs_keras_distiller": ("keras_kd_live", "keras_distiller"),
    "keras_kd_live_vs_limit": ("keras_kd_live", "limit"),
    "keras_kd_live_numpy_vs_limit": ("keras_kd_live_numpy", "limit"),
    "keras_kd_live_xla_on_vs_limit": ("keras_kd_live_xla_on", "limit"),
    "keras_kd_live_xla_on_vs_limit_xla_on": ("keras_kd_live_xla_on",
                                             "limit_teacher_student_xla_on"),
    "keras_kd_cached_vs_student_limit": ("keras_kd_cached", "student_limit"),
    "keras_kd_live_vs_limit_xla_off": ("keras_kd_live", "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_vs_limit_xla_off": ("keras_kd_live_numpy",
                                             "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_xla_on_vs_limit_xla_on": ("keras_kd_live_numpy_xla_on",
                                                   "limit_teacher_student_xla_on"),
    "keras_kd_live_array_batches_vs_limit_xla_off": ("keras_kd_live_array_batches",
                                                     "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_keras_adapter_vs_limit_xla_off": (
        "keras_kd_live_numpy_keras_adapter", "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_keras_adapter_later_epoch_vs_limit_xla_off": (
        "keras_kd_live_numpy_keras_adapter_later_epoch", "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_later_epoch_vs_limit_xla_off": (
        "keras_kd_live_numpy_later_epoch", "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_xla_on_later_epoch_vs_limit_xla_on": (
        "keras_kd_live_numpy_xla_on_later_epoch", "limit_teacher_student_xla_on"),
    "keras_kd_cached_vs_student_limit_xla_off": ("keras_kd_cached", "limit_student_xla_off"),
    "keras_kd_cached_per_step_vs_student_limit_xla_off": ("keras_kd_cached_per_step",
                                                          "limit_student_xla_off"),
    # decomposition: keras_kd's step alone, and the input pipelines alone, each against
    # the pre-batched limit; then each `fit` path against the limit fed the same pipeline
    "keras_kd_step_loop_vs_limit_xla_off": ("keras_kd_step_loop",
                                            "limit_teacher_student_xla_off"),
    "limit_tfdata_vs_limit_xla_off": ("limit_tfdata_teacher_student_xla_off",
                                      "limit_teacher_student_xla_off"),
    "limit_numpy_vs_limit_xla_off": ("limit_numpy_teacher_student_xla_off",
                                     "limit_teacher_student_xla_off"),
    "keras_kd_live_vs_tfdata_limit_xla_off": ("keras_kd_live",
                                              "limit_tfdata_teacher_student_xla_off"),
    "keras_kd_live_xla_on_vs_tfdata_limit_xla_on": ("keras_kd_live_xla_on",
                                                    "limit_tfdata_teacher_student_xla_on"),
    "keras_kd_live_numpy_vs_numpy_limit_xla_off": ("keras_kd_live_numpy",
                                                   "limit_numpy_teacher_student_xla_off"),
    "keras_kd_live_numpy_later_epoch_vs_numpy_limit_xla_off": (
        "keras_kd_live_numpy_later_epoch", "limit_numpy_teacher_student_xla_off"),
    "keras_kd_live_numpy_xla_on_vs_numpy_limit_xla_on": (
        "keras_kd_live_numpy_xla_on", "limit_numpy_teacher_student_xla_on"),
    "keras_kd_cached_xla_on_vs_student_limit_xla_on": ("keras_kd_cached_xla_on",
                                                       "limit_student_xla_on"),
}

# issue 14's bounds on the paired ratios, each `fit` path against the limit of its XLA
# setting: the pre-batched limit, and the limit fed the same input (the bound's reading for
# the image pair: "the image pipeline included on both sides of the comparison")
BOUNDS = {"keras_kd_live_vs_limit_xla_off": 1.05, "keras_kd_live_numpy_vs_limit_xla_off": 1.05,
          "keras_kd_live_numpy_later_epoch_vs_limit_xla_off": 1.05,
          "keras_kd_cached_vs_student_limit_xla_off": 1.10,
          "keras_kd_live_vs_tfdata_limit_xla_off": 1.05,
          "keras_kd_live_numpy_vs_numpy_limit_xla_off": 1.05,
          "keras_kd_live_numpy_later_epoch_vs_numpy_limit_xla_off": 1.05}


def summarize(pair, times, steps, statistic="min", calls=None):
    med = epoch_times(times, statistic)
    limit_ts = min(med["limit_teacher_student_xla_on"], med["limit_teacher_student_xla_off"])
    limit_s = min(med["limit_student_xla_on"], med["limit_student_xla_off"])
    med = {**med, "limit": limit_ts, "student_limit": limit_s}
    ratios = {name: med[a] / med[b] for name, (a, b) in RATIOS.items()
              if a in med and b in med}
    # the same ratios round by round (the two epochs timed close together), median over the
    # rounds: drift of a shared machine that spans rounds cancels; for single-variant pairs
    paired = {name: (a, b) for name, (a, b) in RATIOS.items() if a in times and b in times}
    ratios.update({f"{name}_paired": paired_ratio(times[a], times[b])
                   for name, (a, b) in paired.items()})
    intervals = {f"{name}_paired": paired_interval(times[a], times[b])
                 for name, (a, b) in paired.items()}
    calls = calls or {}  # runs saved before the epoch timer have no separate call times
    rows = [{"pair": pair, "variant": k, "median_s": statistics.median(v), "min_s": min(v),
             "max_s": max(v), "ms_per_step": 1000 * med[k] / steps, "vs_limit": med[k] / limit_ts,
             "fit_call_min_s": min(calls[k]) if calls.get(k) else None}
            for k, v in times.items()]
    return rows, ratios, intervals


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    pairs = sorted({r["pair"] for r in rows})
    fig, axes = plt.subplots(1, len(pairs), figsize=(7 * len(pairs), 5), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        sub = [r for r in rows if r["pair"] == pair]
        ax.barh([r["variant"] for r in sub], [r["median_s"] for r in sub],
                xerr=[[r["median_s"] - r["min_s"] for r in sub],
                      [r["max_s"] - r["median_s"] for r in sub]],
                color=["tab:green" if r["variant"].startswith("keras_kd") else
                       "tab:red" if r["variant"] == "keras_distiller" else "tab:gray" for r in sub])
        ax.set_xlabel("seconds per epoch (median, min-max)")
        ax.set_title(f"{pair} pair")
        ax.invert_yaxis()
    fig.tight_layout()
    from keras_kd.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_MNIST)
    p.add_argument("--pairs", nargs="+", default=["mlp", "cnn"], choices=sorted(PAIRS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-size", type=int, default=60000, help="examples per epoch (MLP)")
    p.add_argument("--cnn-train-size", type=int, default=10000, help="examples per epoch (CNN)")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per variant")
    p.add_argument("--variants", nargs="+", default=None,
                   help="time only these variants (and the limits); default: all")
    p.add_argument("--out", default="results/train_throughput")
    add_pool_argument(p)
    add_summary_arguments(p)
    args = p.parse_args(argv)
    if args.pool:
        return pool(args.pool, args.out)
    saved = saved_run(args)
    if saved is not None:
        return report(saved, args.statistic, args.out)

    (x, y), _ = load_mnist(args.data)
    results = {"batch_size": args.batch_size, "repeats": args.repeats, "cpus": os.cpu_count(),
               "tensorflow": tf.__version__, "keras": keras.__version__,
               "round_order": "drawn per round, round_order(seed=0)", "pairs": {}}
    for pair in args.pairs:
        size = args.train_size if pair == "mlp" else args.cnn_train_size
        times, calls = run_pair(pair, x[:size], y[:size], args.batch_size, args.repeats,
                                args.variants)
        results["pairs"][pair] = {"examples_per_epoch": size, "seconds": times,
                                  "fit_call_seconds": calls}
    report(results, args.statistic, args.out)


def pool(paths, out):
    """The paired ratios of several saved runs of one command (a process each), run by run
    and pooled (`common.pooled_rows`), with issue 14's verdicts (`BOUNDS`), to `OUT.json`
    and `OUT.md`."""
    runs = read_runs(paths)
    rows = []
    for pair in sorted(set.intersection(*(set(r["pairs"]) for r in runs))):
        rows += pooled_rows(pair, [r["pairs"][pair]["seconds"] for r in runs], RATIOS, BOUNDS)
    write_pooled(rows, paths, out)


def report(results, statistic, out):
    """Tables, ratios and plot of a run's raw `seconds` (also of a saved run)."""
    all_rows = []
    for pair, r in results["pairs"].items():
        rows, r["ratios"], r["paired_intervals"] = summarize(
            pair, r["seconds"], r["examples_per_epoch"] // results["batch_size"], statistic,
            r.get("fit_call_seconds"))
        all_rows += rows
        print(pair, {k: round(v, 3) for k, v in r["ratios"].items()}, flush=True)
    md = markdown_table(all_rows, [
        ("pair", "pair", ""), ("variant", "variant", ""), ("median_s", "s/epoch (median)", ".2f"),
        ("min_s", "min", ".2f"), ("max_s", "max", ".2f"), ("ms_per_step", "ms/step", ".2f"),
        ("vs_limit", f"x limit (teacher+student, {statistic})", ".2f"),
        ("fit_call_min_s", "whole `fit` call (min)", ".2f")])
    md += (f"\nRatios of the {statistic} epoch times over {results['repeats']} repeats; a `fit` "
           "epoch is timed from `on_epoch_begin` to `on_epoch_end`.\n")
    for pair, r in results["pairs"].items():
        md += f"\n{pair}: " + ", ".join(f"{k} = {v:.2f}" for k, v in r["ratios"].items()) + "\n"
        md += (f"\n{pair}, paired ratios with a 90 % bootstrap interval over the rounds "
               "(`common.paired_interval`): " + ", ".join(
                   f"{k} = {r['ratios'][k]:.3f} [{lo:.3f}, {hi:.3f}]"
                   for k, (lo, hi) in r["paired_intervals"].items()) + "\n")
    results.update(statistic=statistic, rows=all_rows)
    write_outputs(results, out, md)
    plot(all_rows, f"{out}.png")

if __name__ == "__main__":
    main()
