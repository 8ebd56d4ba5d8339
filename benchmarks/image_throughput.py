"""Seconds per epoch of CIFAR-10 distillation (ResNet teacher, small CNN student) on every
keras_kd path, against the compiled-loop limits of the same arithmetic, in one run.

    python benchmarks/image_throughput.py                           # 45,000 images, 3 repeats
    python benchmarks/image_throughput.py --limit 1024 --repeats 1  # smoke test
    python benchmarks/image_throughput.py --teacher runs/cifar10/teacher.keras
    python benchmarks/image_throughput.py --pool a.json b.json --out pooled  # saved runs

The images come from the JPEG folder through `keras_kd.data.load` (decoded once, cached as
uint8, shuffled and batched each epoch) and are augmented (random translation + flip, Keras
layers with stateless seeds): every variant below pays that pipeline.

- `limit_teacher_student_xla_{on,off}`: augmentation, teacher forward, student forward and
  backward, Adam, in one `tf.function` looping over the pipeline: no Keras `fit` overhead.
  XLA, when on, compiles the models' step only: `RandomTranslation` has no XLA kernel on
  CPU (Keras then marks it `supports_jit=False`, so `fit(jit_compile="auto")` of a model
  holding it runs without XLA at all).
- `limit_student_xla_{on,off}`: the student alone, same augmentation (the limit of any path
  that does not run the teacher); `limit_student_noaug_*` without augmentation.
- `teacher_inference`: augmentation and the teacher's forward pass only.
- `keras_kd_live`: `Distiller(augment=...).fit(pipeline)`; `keras_kd_live_numpy`: the same
  fed numpy arrays (`fit(x, y, batch_size=...)`), as a new user would;
  `keras_kd_live_bf16_teacher`: `teacher_dtype="bfloat16"`.
- `keras_kd_cached`: `cache_logits` (no augmentation: cached logits belong to fixed inputs),
  against `limit_student_noaug`.
- `keras_kd_views`: replayed views (`keras_kd.views.cache_views`, `--view-epochs` stored
  epochs) and `Distiller.fit(views.dataset())`: the teacher does not run; against
  `limit_student`. The teacher's cost of the views (paid once for every student trained on
  them) is timed separately.

Every variant is built and run once first (tracing, compilation); then `--repeats` rounds
time one epoch of each variant in turn, in an order drawn per round (a `fit` epoch from
`on_epoch_begin` to `on_epoch_end`, the whole call reported beside it); the ratios use the
fastest repeat (`--statistic min`, see `common.epoch_times`), and paired (the median over the
rounds of the ratio within a round) with a 90 % bootstrap interval (`common.paired_interval`);
`--pool` pools several saved runs (`common.pooled_interval`) with issue 14's verdicts.
Absolute times on shared machines are noise; the ratios measured in the same run are the
result. Untrained teacher weights are fine for timing (same arithmetic).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import (REPO, add_pool_argument, add_summary_arguments,  # noqa: E402
                    epoch_times, markdown_table, paired_interval, paired_ratio,
                    pooled_rows, read_runs, saved_run, write_outputs, write_pooled)
from train_throughput import (ALPHA, T, dataset_loop, fit_epoch, fit_numpy_epoch,  # noqa: E402
                              plot, time_round_robin)

import keras_kd as kd  # noqa: E402
from keras_kd import views as views_lib  # noqa: E402

DEFAULT_CIFAR10 = os.environ.get("KERAS_KD_CIFAR10", str(REPO.parent / "shared" / "data" / "cifar10"))
TEACHER, STUDENT = "resnet-teacher", "cnn-small"


def augmentation():
    return kd.augment.Augmentation([
        keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect"),
        keras.layers.RandomFlip("horizontal")])


def pipeline(examples, n, batch_size, shuffle=True):
    """The training pipeline of `keras_kd.data.from_directory` on the first `n` examples."""
    return kd.data.pipeline(examples.take(n), batch_size, training=shuffle, seed=0, size=n,
                            cast=tf.float32)


class Models:
    """Fresh copies of the same teacher and initial student for every variant."""

    def __init__(self, teacher_path, input_shape, num_classes):
        keras.utils.set_random_seed(0)
        self.teacher = (keras.saving.load_model(teacher_path) if teacher_path
                        else kd.models.build(TEACHER, input_shape, num_classes))
        self.student = kd.models.build(STUDENT, input_shape, num_classes)

    def pair(self):
        teacher = keras.models.clone_model(self.teacher)
        teacher.set_weights(self.teacher.get_weights())
        student = keras.models.clone_model(self.student)
        student.set_weights(self.student.get_weights())
        return teacher, student


def distiller(teacher, student, **kwargs):
    d = kd.Distiller(student=student, teacher=teacher, augment_seed=0, **kwargs)
    d.compile(optimizer="adam", alpha=ALPHA, temperature=T)
    return d


def build_variants(models, examples, n, batch_size, view_epochs):
    ds = pipeline(examples, n, batch_size)
    plain = pipeline(examples, n, batch_size, shuffle=False)
    list(ds)  # decode once, fill the cache: every variant reads the same cached images
    x_np, y_np = (np.concatenate(a) for a in zip(*plain.as_numpy_iterator()))
    aug = augmentation()
    aug.num_classes = int(models.teacher.outputs[0].shape[-1])
    variants = {}
    for jit in (False, True):
        tag = "on" if jit else "off"
        variants[f"limit_teacher_student_xla_{tag}"] = dataset_loop(*models.pair(), ds, aug, True, jit)
        variants[f"limit_student_xla_{tag}"] = dataset_loop(*models.pair(), ds, aug, False, jit)
        variants[f"limit_student_noaug_xla_{tag}"] = dataset_loop(*models.pair(), ds, None, False, jit)
    variants["teacher_inference"] = dataset_loop(*models.pair(), ds, aug, True, False, train=False)
    variants["keras_kd_live"] = fit_epoch(distiller(*models.pair(), augment=augmentation()), ds)
    variants["keras_kd_live_numpy"] = fit_numpy_epoch(
        distiller(*models.pair(), augment=augmentation()), x_np, y_np, batch_size)
    variants["keras_kd_live_bf16_teacher"] = fit_epoch(
        distiller(*models.pair(), augment=augmentation(), teacher_dtype="bfloat16"), ds)
    teacher, student = models.pair()
    variants["keras_kd_cached"] = fit_epoch(distiller(teacher, student), kd.teachers.cache_logits(
        teacher, plain, shuffle_buffer=n, seed=0))
    teacher, student = models.pair()
    start = time.perf_counter()
    views = views_lib.cache_views(teacher, examples.take(n), augmentation(), epochs=view_epochs,
                                  batch_size=batch_size, seed=0)
    views_seconds = time.perf_counter() - start
    variants["keras_kd_views"] = fit_epoch(
        distiller(teacher, student, augment=views.augment), views.dataset(),
        steps_per_epoch=views.steps_per_epoch)
    return variants, views_seconds


def summarize(times, steps, statistic="min", calls=None):
    med = epoch_times(times, statistic)
    calls = calls or {}  # runs saved before the epoch timer have no separate call times

    def limit(name):  # the faster XLA setting of a limit, by `statistic`
        return min((f"{name}_xla_on", f"{name}_xla_off"), key=med.__getitem__)

    limit_ts, limit_s, limit_s_noaug = (limit("limit_teacher_student"), limit("limit_student"),
                                        limit("limit_student_noaug"))
    ratio_of = {
        "keras_kd_live_vs_limit": ("keras_kd_live", limit_ts),
        "keras_kd_live_numpy_vs_limit": ("keras_kd_live_numpy", limit_ts),
        "keras_kd_live_vs_limit_xla_off": ("keras_kd_live", "limit_teacher_student_xla_off"),
        "keras_kd_live_bf16_teacher_vs_live": ("keras_kd_live_bf16_teacher", "keras_kd_live"),
        "keras_kd_cached_vs_student_noaug_limit": ("keras_kd_cached", limit_s_noaug),
        "keras_kd_views_vs_student_limit": ("keras_kd_views", limit_s),
        "limit_teacher_student_vs_student_limit": (limit_ts, limit_s),
        "teacher_inference_share_of_limit": ("teacher_inference", limit_ts),
    }
    ratios = {name: med[a] / med[b] for name, (a, b) in ratio_of.items()}
    # the same ratios round by round (`common.paired_ratio`), with their bootstrap intervals
    ratios.update({f"{name}_paired": paired_ratio(times[a], times[b])
                   for name, (a, b) in ratio_of.items()})
    intervals = {f"{name}_paired": paired_interval(times[a], times[b])
                 for name, (a, b) in ratio_of.items()}
    rows = [{"pair": "cifar10", "variant": k, "median_s": statistics.median(v), "min_s": min(v),
             "max_s": max(v), "ms_per_step": 1000 * med[k] / steps,
             "vs_limit": med[k] / med[limit_ts],
             "fit_call_min_s": min(calls[k]) if calls.get(k) else None}
            for k, v in times.items()]
    return rows, ratios, intervals


# the paired ratios pooled over runs (`--pool`), against the XLA-off limits (Keras' CPU
# default, and the faster limits of this pair here), with issue 14's bounds
POOLED = {
    "keras_kd_live_vs_limit_xla_off": ("keras_kd_live", "limit_teacher_student_xla_off"),
    "keras_kd_live_numpy_vs_limit_xla_off": ("keras_kd_live_numpy",
                                             "limit_teacher_student_xla_off"),
    "keras_kd_cached_vs_student_noaug_limit_xla_off": ("keras_kd_cached",
                                                       "limit_student_noaug_xla_off"),
    "keras_kd_views_vs_student_limit_xla_off": ("keras_kd_views", "limit_student_xla_off"),
    "keras_kd_live_bf16_teacher_vs_live": ("keras_kd_live_bf16_teacher", "keras_kd_live"),
}
BOUNDS = {"keras_kd_live_vs_limit_xla_off": 1.05, "keras_kd_live_numpy_vs_limit_xla_off": 1.05,
          "keras_kd_cached_vs_student_noaug_limit_xla_off": 1.10,
          "keras_kd_views_vs_student_limit_xla_off": 1.15}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_CIFAR10, help="CIFAR-10 folder of JPEG class folders")
    p.add_argument("--teacher", help=".keras teacher (default: untrained resnet-teacher)")
    p.add_argument("--limit", type=int, help="first N training images (default: all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--view-epochs", type=int, default=2, help="epochs of replayed views stored")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    p.add_argument("--out", default="results/image_throughput")
    add_pool_argument(p)
    add_summary_arguments(p)
    args = p.parse_args(argv)
    if args.pool:
        return write_pooled(pooled_rows("cifar10", [r["seconds"] for r in read_runs(args.pool)],
                                        POOLED, BOUNDS), args.pool, args.out)
    saved = saved_run(args)
    if saved is not None:
        return report(saved, args.statistic, args.out)

    splits = kd.data.load(args.data, batch_size=args.batch_size, seed=0)
    n = min(args.limit or splits.train_size, splits.train_size)
    n -= n % args.batch_size  # whole batches: every variant runs the same steps
    models = Models(args.teacher, splits.input_shape, splits.num_classes)
    variants, views_seconds = build_variants(models, splits.train_examples, n, args.batch_size,
                                             args.view_epochs)
    times, calls = time_round_robin(variants, args.repeats, log=True)
    views_per_epoch = views_seconds / args.view_epochs
    results = {
        "examples_per_epoch": n, "batch_size": args.batch_size, "repeats": args.repeats,
        "teacher": args.teacher or f"{TEACHER} (untrained)", "student": STUDENT,
        "cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "seconds": times, "fit_call_seconds": calls,
        "views": {"stored_epochs": args.view_epochs, "cache_views_seconds": views_seconds,
                  "cache_views_seconds_per_epoch": views_per_epoch},
    }
    report(results, args.statistic, args.out)


def report(results, statistic, out):
    """Tables, ratios and plot of a run's raw `seconds` (also of a saved run)."""
    times, n, views = results["seconds"], results["examples_per_epoch"], results["views"]
    rows, ratios, intervals = summarize(times, n // results["batch_size"], statistic,
                                        results.get("fit_call_seconds"))
    views["vs_student_epoch_from_views"] = (
        views["cache_views_seconds_per_epoch"] / epoch_times(times, statistic)["keras_kd_views"])
    results.update(statistic=statistic, ratios=ratios, paired_intervals=intervals, rows=rows)
    md = markdown_table(rows, [
        ("variant", "variant", ""), ("median_s", "s/epoch (median)", ".2f"), ("min_s", "min", ".2f"),
        ("max_s", "max", ".2f"), ("ms_per_step", "ms/step", ".1f"),
        ("vs_limit", f"x limit (teacher+student, {statistic})", ".2f"),
        ("fit_call_min_s", "whole `fit` call (min)", ".2f")])
    md += (f"\n{n} images per epoch, batch {results['batch_size']}, {results['repeats']} repeats; "
           f"ratios of the {statistic} epoch times.\n")
    md += "\n" + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()) + "\n"
    md += ("\nPaired ratios with a 90 % bootstrap interval over the rounds "
           "(`common.paired_interval`): " + ", ".join(
               f"{k} = {ratios[k]:.3f} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in intervals.items())
           + "\n")
    md += (f"\nReplayed views: the teacher's pass over {views['stored_epochs']} epochs of views "
           f"took {views['cache_views_seconds']:.1f} s ({views['cache_views_seconds_per_epoch']:.1f} s "
           f"per stored epoch, {views['vs_student_epoch_from_views']:.2f}x a student epoch from "
           "the views), paid once for every student, seed and method trained on them.\n")
    write_outputs(results, out, md)
    plot(rows, f"{out}.png")

if __name__ == "__main__":
    main()
