"""The teacher in bfloat16/float16 while the student trains in float32: teacher speed, change
in the soft targets, and (optionally) the student's accuracy, on CIFAR-10.

    python benchmarks/teacher_precision.py --teacher runs/cifar10/teacher.keras
    python benchmarks/teacher_precision.py --limit 1024 --repeats 1          # smoke test
    python benchmarks/teacher_precision.py --teacher runs/cifar10/teacher.keras \\
        --student-epochs 30 --seeds 0 1 2                                     # + accuracy

- Speed: seconds of the teacher's forward pass over `--limit` training images (batch 128,
  compiled, with and without XLA) per dtype, timed round-robin; the ratio to float32.
- Soft targets: mean (and max) over the test images of KL(softmax(z32 / T) ||
  softmax(z_reduced / T)) at `--temperature`, and the top-1 agreement.
- Accuracy (with `--student-epochs`): `Distiller(..., teacher_dtype=...)` with consistent
  augmentation, same initial student and seeds for float32 and the reduced teacher; test
  accuracy per seed and the mean difference.

The teacher copies come from `keras_kd.precision.teacher_in`: Keras' global policy and the
student stay float32. Absolute times on shared machines are noise; ratios from the same run
are the result.
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
from common import markdown_table, write_outputs  # noqa: E402
from image_throughput import DEFAULT_CIFAR10, STUDENT, TEACHER, augmentation  # noqa: E402
from train_throughput import ALPHA  # noqa: E402

import keras_kd as kd  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")


def kl_stats(reference, other, temperature):
    log_p = tf.nn.log_softmax(np.asarray(reference, "float64") / temperature)
    log_q = tf.nn.log_softmax(np.asarray(other, "float64") / temperature)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), -1).numpy()
    return float(kl.mean()), float(kl.max())


def inference_timer(model, batches, jit):
    forward = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), jit_compile=jit)

    def run():
        start = time.perf_counter()
        for x in batches:
            forward(x).numpy()
        return time.perf_counter() - start
    return run


def student_accuracy(teacher, splits, dtype, seed, epochs):
    keras.utils.set_random_seed(seed)
    student = kd.models.build(STUDENT, splits.input_shape, splits.num_classes)
    distiller = kd.Distiller(student, teacher, augment=augmentation(), augment_seed=seed,
                             teacher_dtype=dtype)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=ALPHA, temperature=4.0)
    distiller.fit(splits.train, epochs=epochs, verbose=2)
    x_test, y_test = splits.test_arrays()
    logits = student.predict(x_test, batch_size=512, verbose=0)
    return 100 * float(np.mean(np.argmax(logits, -1) == y_test))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_CIFAR10)
    p.add_argument("--teacher", help=".keras teacher (default: untrained resnet-teacher)")
    p.add_argument("--limit", type=int, default=5120, help="training images timed")
    p.add_argument("--test-examples", type=int, default=10000, help="test images for the KL")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--student-epochs", type=int, default=0, help="0: no accuracy runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="results/teacher_precision")
    args = p.parse_args(argv)

    splits = kd.data.load(args.data, batch_size=128, seed=0)
    keras.utils.set_random_seed(0)
    teacher = (keras.saving.load_model(args.teacher) if args.teacher
               else kd.models.build(TEACHER, splits.input_shape, splits.num_classes))
    copies = {d: kd.precision.teacher_in(teacher, d) for d in DTYPES}
    images = splits.train_examples.take(args.limit).batch(128).map(
        lambda x, y: tf.cast(x, tf.float32)).cache()
    images = [x for x in images]
    timers = {(d, jit): inference_timer(copies[d], images, jit)
              for d in DTYPES for jit in (False, True)}
    for run in timers.values():
        run()  # tracing, compilation
    times = {k: [] for k in timers}
    for _ in range(args.repeats):
        for k, run in timers.items():
            times[k].append(run())
    med = {k: statistics.median(v) for k, v in times.items()}
    x_test, _ = splits.test_arrays(args.test_examples)
    reference = copies["float32"].predict(x_test, batch_size=256, verbose=0)
    rows = []
    for d in DTYPES:
        logits = copies[d].predict(x_test, batch_size=256, verbose=0).astype("float32")
        kl_mean, kl_max = kl_stats(reference, logits, args.temperature)
        best32 = min(med[("float32", False)], med[("float32", True)])
        rows.append({
            "dtype": d, "s_xla_off": med[(d, False)], "s_xla_on": med[(d, True)],
            "speedup_vs_float32": best32 / min(med[(d, False)], med[(d, True)]),
            "kl_mean": kl_mean, "kl_max": kl_max,
            "top1_agreement": 100 * float(np.mean(reference.argmax(-1) == logits.argmax(-1)))})
        print(rows[-1], flush=True)
    results = {"teacher": args.teacher or f"{TEACHER} (untrained)", "timed_images": args.limit,
               "test_examples": len(x_test), "temperature": args.temperature,
               "repeats": args.repeats, "rows": rows,
               "seconds": {f"{d}_xla_{'on' if j else 'off'}": v for (d, j), v in times.items()}}
    md = markdown_table(rows, [
        ("dtype", "teacher dtype", ""), ("s_xla_off", "s (XLA off)", ".2f"),
        ("s_xla_on", "s (XLA on)", ".2f"), ("speedup_vs_float32", "speed-up (best)", ".2f"),
        ("kl_mean", f"mean KL at T={args.temperature:g}", ".2e"), ("kl_max", "max KL", ".2e"),
        ("top1_agreement", "top-1 agreement %", ".2f")])
    md += (f"\nTeacher forward over {args.limit} training images (batch 128), median of "
           f"{args.repeats}; KL over {len(x_test)} test images. Teacher: {results['teacher']}.\n")
    if args.student_epochs:
        acc = []
        for seed in args.seeds:
            for d in ("float32", "bfloat16"):
                acc.append({"seed": seed, "dtype": d, "test_accuracy": student_accuracy(
                    teacher, splits, d, seed, args.student_epochs)})
                print(acc[-1], flush=True)
        diffs = [b["test_accuracy"] - a["test_accuracy"] for a, b in zip(acc[::2], acc[1::2])]
        results.update(accuracy=acc, accuracy_diff_points=diffs)
        md += "\n" + markdown_table(acc, [("seed", "seed", "d"), ("dtype", "teacher dtype", ""),
                                          ("test_accuracy", "student test acc %", ".2f")])
        md += (f"\nmean student accuracy difference (bfloat16 - float32 teacher): "
               f"{statistics.mean(diffs):+.2f} points over {len(diffs)} seeds\n")
    write_outputs(results, args.out, md)


if __name__ == "__main__":
    main()
