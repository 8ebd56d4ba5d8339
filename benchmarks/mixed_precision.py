"""Distillation in float32 against mixed precision: final MNIST accuracy and epoch time.

    python benchmarks/mixed_precision.py                 # policy: keras_kd.precision.recommended_policy()
    python benchmarks/mixed_precision.py --policy mixed_float16 --seeds 0 1 2

The same teacher (trained once in float32), the same students (same seeds, same initial
weights), the same data and steps; only the students' compute dtype differs. Reports the
test accuracy of each run and the mean difference in points.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", default=None, help="default: recommended_policy()")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--student-epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", default="results/mixed_precision")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf
    from common import load_mnist, markdown_table, write_outputs

    import keras_kd as kd

    policy = args.policy or kd.precision.recommended_policy()
    (x, y), (x_test, y_test) = load_mnist()
    keras.utils.set_random_seed(0)
    teacher = kd.models.build("mlp-teacher", (28, 28, 1), 10)
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, batch_size=args.batch_size, epochs=args.teacher_epochs, verbose=2)
    plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(1024)
    cached = kd.teachers.cache_logits(teacher, plain, shuffle_buffer=len(x), seed=0)
    train = cached.unbatch().batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

    rows = []
    for seed in args.seeds:
        for name in ("float32", policy):
            kd.precision.enable("off" if name == "float32" else name)
            try:
                keras.utils.set_random_seed(seed)
                student = kd.models.build("mlp-student", (28, 28, 1), 10)
                distiller = kd.Distiller(student, teacher)
                distiller.compile("adam", alpha=0.1, temperature=4.0)
                start = time.perf_counter()
                distiller.fit(train, epochs=args.student_epochs, verbose=0)
                seconds = (time.perf_counter() - start) / args.student_epochs
                logits = student.predict(x_test, batch_size=1000, verbose=0)
                acc = 100 * float(np.mean(np.argmax(logits, -1) == y_test))
            finally:
                keras.mixed_precision.set_global_policy("float32")
            rows.append({"seed": seed, "policy": name, "test_accuracy": acc,
                         "seconds_per_epoch": seconds})
            print(rows[-1], flush=True)
    diffs = [b["test_accuracy"] - a["test_accuracy"] for a, b in zip(rows[::2], rows[1::2])]
    results = {"policy": policy, "rows": rows, "accuracy_diff_points": diffs,
               "mean_accuracy_diff_points": statistics.mean(diffs),
               "time_ratio": statistics.median(b["seconds_per_epoch"] / a["seconds_per_epoch"]
                                               for a, b in zip(rows[::2], rows[1::2]))}
    md = markdown_table(rows, [("seed", "seed", "d"), ("policy", "policy", ""),
                               ("test_accuracy", "test acc %", ".2f"),
                               ("seconds_per_epoch", "s/epoch", ".2f")])
    md += (f"\nmean accuracy difference ({policy} - float32): "
           f"{results['mean_accuracy_diff_points']:+.3f} points; epoch time ratio "
           f"{results['time_ratio']:.2f}\n")
    write_outputs(results, args.out, md)


if __name__ == "__main__":
    main()
