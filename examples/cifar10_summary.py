"""The CIFAR-10 comparison's table and plot, from the rows `examples/cifar10.py` wrote.

    python examples/cifar10_summary.py runs/cifar10/compare.json

Writes `compare.md` (mean, standard deviation and per-seed accuracy of every student and method,
with the gain over the scratch twin seed by seed) and `compare.png` (accuracy against
parameters, and against batch-1 TFLite latency for the students `examples/cifar10_edge.py`
exported) beside the JSON file.
"""

import argparse
import glob
import json
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seed_table import groups, markdown  # noqa: E402

from keras_kd import atomic  # noqa: E402

METHOD_ORDER = ("scratch", "keras_kd", "keras_distillation")


def _latencies(folder):
    """{student_method_sSEED: (latency ms, accuracy)} of the int8 files cifar10_edge.py wrote."""
    found = {}
    for path in glob.glob(os.path.join(folder, "*.json")):
        with open(path) as f:
            report = json.load(f)
        if "int8" in report:
            name = os.path.splitext(os.path.basename(path))[0]
            found[name] = (report["int8"]["latency_ms_batch1"], report["int8"]["tflite_accuracy"])
    return found


def plot(rows, path, tflite_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, params, key = groups(rows)
    latencies = _latencies(tflite_dir) if os.path.isdir(tflite_dir) else {}
    fig, axes = plt.subplots(1, 2 if latencies else 1, figsize=(11 if latencies else 6, 4.2),
                             squeeze=False)
    ax = axes[0][0]
    markers = {"scratch": "o", "keras_kd": "*", "keras_distillation": "s"}
    for (student, method), scores in sorted(table.items()):
        values = [100 * v for v in scores.values()]
        ax.errorbar(params[student], statistics.mean(values),
                    yerr=statistics.stdev(values) if len(values) > 1 else 0,
                    marker=markers.get(method, "x"), capsize=3, linestyle="none",
                    label=f"{student} {method} ({len(values)} seeds)")
    ax.set_xlabel("student parameters")
    ax.set_ylabel(f"{key.split('_')[0]} accuracy (%)")
    ax.set_title("CIFAR-10 students: mean +- std over seeds")
    ax.legend(fontsize=7)
    if latencies:
        ax = axes[0][1]
        for name, (ms, acc) in sorted(latencies.items()):
            ax.scatter(ms, 100 * acc)
            ax.annotate(name, (ms, 100 * acc), fontsize=7)
        ax.set_xlabel("int8 .tflite latency, batch 1, 1 thread (ms)")
        ax.set_ylabel("int8 .tflite test accuracy (%)")
        ax.set_title("exported students")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="the JSON file examples/cifar10.py wrote")
    p.add_argument("--tflite-dir", default="runs/cifar10/tflite",
                   help="where examples/cifar10_edge.py wrote its reports")
    args = p.parse_args()
    with open(args.results) as f:
        rows = json.load(f)["rows"]
    base = os.path.splitext(args.results)[0]
    text = markdown(rows, method_order=METHOD_ORDER)
    atomic.write_text(base + ".md", text)
    plot(rows, base + ".png", args.tflite_dir)
    print(text)
    print(f"wrote {base}.md and {base}.png")


if __name__ == "__main__":
    main()
