"""`keras-kd report`: Markdown and PNG plots from a results JSON (the demo's, or any with the
same layout: `{"models": {name: {params, test_accuracy, history}}, "tflite": {...}}`)."""

import json
import os

from keras_kd.atomic import atomic_path
from keras_kd.atomic import write_text


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")


def write(results_path, output_dir=None):
    """Writes `report.md`, `curves.png` and `tradeoffs.png`; returns the Markdown path.

    Raises:
        ValueError: if the file has no `models` section.
        ImportError: if matplotlib is missing (pip install 'keras-kd[plots]').
    """
    with open(results_path) as f:
        results = json.load(f)
    if "models" not in results:
        raise ValueError(
            f"Invalid results file {results_path!r}: expected a 'models' section (as written by "
            f"`keras-kd demo`). Found keys: {sorted(results)}"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("keras-kd report needs matplotlib: pip install 'keras-kd[plots]'") from e
    output_dir = output_dir or os.path.dirname(os.path.abspath(results_path))
    os.makedirs(output_dir, exist_ok=True)
    models = results["models"]
    latency = results.get("tflite_float32", {})

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, m in models.items():
        history = m.get("history", {})
        for key, ax in (("loss", axes[0]), ("val_accuracy", axes[1])):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], label=name)
    axes[0].set(title="training loss (distilled: alpha*hard + (1-alpha)*soft)", xlabel="epoch")
    axes[1].set(title="validation accuracy (held out from the training data)", xlabel="epoch")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    _save(fig, os.path.join(output_dir, "curves.png"))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, m in models.items():
        acc = 100 * m["test_accuracy"]
        axes[0].scatter(m["params"], acc)
        axes[0].annotate(name, (m["params"], acc))
        if name in latency:
            ms = latency[name]["latency_ms_batch1"]
            axes[1].scatter(ms, acc)
            axes[1].annotate(name, (ms, acc))
    axes[0].set(xscale="log", xlabel="parameters", ylabel="test accuracy %",
                title="accuracy vs size")
    axes[1].set(xscale="log", xlabel="TFLite float32 latency, ms/sample (batch 1, 1 thread)",
                ylabel="test accuracy %", title="accuracy vs latency")
    for ax in axes:
        ax.grid(alpha=0.3)
    _save(fig, os.path.join(output_dir, "tradeoffs.png"))
    plt.close(fig)

    lines = [f"# keras_kd report: {results.get('data', '')}", "",
             "| model | params | test accuracy | TFLite float32 KB | ms/sample |", "|---|---|---|---|---|"]
    for name, m in models.items():
        lat = latency.get(name, {})
        kb = f"{lat['size_bytes'] / 1024:.1f}" if lat else ""
        ms = f"{lat['latency_ms_batch1']:.4f}" if lat else ""
        lines.append(f"| {name} | {m['params']:,} | {100 * m['test_accuracy']:.2f} % | {kb} | {ms} |")
    lines += ["", "![training curves](curves.png)", "", "![accuracy vs size and latency](tradeoffs.png)", ""]
    return write_text(os.path.join(output_dir, "report.md"), "\n".join(lines))
