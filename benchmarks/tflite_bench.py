"""Size, latency and accuracy of TFLite files per quantization mode, teacher and student.

    python benchmarks/tflite_bench.py                      # trains a quick teacher/student
    python benchmarks/tflite_bench.py --teacher t.keras --student s.keras

Writes results/tflite_bench.json and .md. Latency is the median of batch-1 calls with the
LiteRT interpreter on this machine's CPU (1 thread and all threads).
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from common import DEFAULT_MNIST, load_mnist, markdown_table, write_outputs  # noqa: E402

import keras_kd as kd  # noqa: E402
from keras_kd import export, models  # noqa: E402


def quick_models(x_train, y_train, epochs):
    keras.utils.set_random_seed(0)
    teacher = models.build("mlp-teacher", (28, 28, 1), 10)
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=2)
    student = models.build("cnn-student", (28, 28, 1), 10)
    distiller = kd.Distiller(student, teacher)
    distiller.compile("adam", alpha=0.1, temperature=4.0)
    distiller.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=2)
    return teacher, student


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_MNIST)
    p.add_argument("--teacher", help=".keras teacher (default: train one quickly)")
    p.add_argument("--student", help=".keras student (default: distil one quickly)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the quick models")
    p.add_argument("--repeats", type=int, default=300, help="timed batch-1 calls")
    p.add_argument("--out", default="results/tflite_bench")
    args = p.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data)
    if args.teacher and args.student:
        teacher, student = (keras.saving.load_model(m) for m in (args.teacher, args.student))
    else:
        teacher, student = quick_models(x_train, y_train, args.epochs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for role, model in (("teacher", teacher), ("student", student)):
            for mode in export.QUANTIZATIONS:
                path = os.path.join(tmp, f"{role}_{mode}.tflite")
                export.to_tflite(model, path, quantization=mode, representative_data=x_train[:500])
                r = export.verify(model, path, (x_test, y_test), latency_repeats=args.repeats)
                threads = next(k for k in r if k.startswith("latency_ms_batch1_"))
                rows.append({"model": f"{role} ({model.count_params():,} params)", "mode": mode,
                             "size_kb": r["size_bytes"] / 1024, "keras_acc": 100 * r["keras_accuracy"],
                             "tflite_acc": 100 * r["tflite_accuracy"],
                             "agreement": 100 * r["top1_agreement"], "max_abs_diff": r["max_abs_diff"],
                             "ms_1thread": r["latency_ms_batch1"], "ms_all_threads": r[threads],
                             "flex_ops": r["flex_ops"]})
                print(rows[-1], flush=True)
    md = markdown_table(rows, [
        ("model", "model", ""), ("mode", "quantization", ""), ("size_kb", "size (KB)", ".1f"),
        ("keras_acc", "Keras acc %", ".2f"), ("tflite_acc", "TFLite acc %", ".2f"),
        ("agreement", "top-1 agreement %", ".2f"), ("max_abs_diff", "max abs diff", ".1e"),
        ("ms_1thread", "ms/sample (1 thread)", ".3f"), ("ms_all_threads", "ms/sample (all)", ".3f"),
    ])
    write_outputs({"rows": rows, "test_examples": len(x_test), "cpus": os.cpu_count()}, args.out, md)


if __name__ == "__main__":
    main()
