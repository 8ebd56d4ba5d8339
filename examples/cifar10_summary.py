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

from keras_kd import atomic  # noqa: E402

METHOD_ORDER = ("scratch", "keras_kd", "keras_distillation")


def _score_key(rows):
    keys = {k for r in rows for k in r if k.endswith("_accuracy") and k != "teacher_accuracy"}
    if len(keys) != 1:
        raise ValueError(f"Invalid rows: expected one kind of score, found {sorted(keys)}")
    return keys.pop()


def groups(rows):
    """{(student, method): {seed: accuracy}} and the params of each student."""
    key = _score_key(rows)
    table, params = {}, {}
    for r in rows:
        table.setdefault((r["student"], r["method"]), {})[r["seed"]] = r[key]
        params[r["student"]] = r["params"]
    return table, params, key


def markdown(rows):
    table, params, key = groups(rows)
    lines = [f"| student | params | method | seeds | mean {key.split('_')[0]} accuracy | std | "
             "per seed | gain over scratch per seed |", "|---|---|---|---|---|---|---|---|"]
    order = sorted(table, key=lambda k: (k[0], METHOD_ORDER.index(k[1])
                                         if k[1] in METHOD_ORDER else 99))
    for student, method in order:
        scores = table[student, method]
        seeds = sorted(scores)
        values = [scores[s] for s in seeds]
        std = f"{100 * statistics.stdev(values):.2f}" if len(values) > 1 else "-"
        scratch = table.get((student, "scratch"), {})
        gains = ("" if method == "scratch" else ", ".join(
            f"{100 * (scores[s] - scratch[s]):+.2f}" for s in seeds if s in scratch))
        lines.append(
            f"| {student} | {params[student]:,} | {method} | {','.join(map(str, seeds))} | "
            f"{100 * statistics.mean(values):.2f} % | {std} | "
            f"{', '.join(f'{100 * v:.2f}' for v in values)} | {gains} |")
    return "\n".join(lines) + "\n"


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
    text = markdown(rows)
    atomic.write_text(base + ".md", text)
    plot(rows, base + ".png", args.tflite_dir)
    print(text)
    print(f"wrote {base}.md and {base}.png")


if __name__ == "__main__":
    main()
