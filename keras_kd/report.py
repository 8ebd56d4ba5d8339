"""`keras-kd report`: Markdown and PNG plots from a results JSON (the demo's, or any with the
same layout: `{"models": {name: {params, test_accuracy, history}}, "tflite": {...}}`; a
single model's results, as `keras-kd distill` writes them, are reported as one model).

A `dark_knowledge` section (`keras_kd.dark_knowledge`: the teacher's class-similarity matrix
and per-class agreement) adds two plots; files without one report as before."""

import json
import os

from keras_kd.atomic import atomic_path
from keras_kd.atomic import write_text


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")


def write(results_path, output_dir=None):
    """Writes `report.md`, `curves.png` and `tradeoffs.png` (and, for results with a
    `dark_knowledge` section, `dark_knowledge_similarity.png` and
    `dark_knowledge_per_class.png`); returns the Markdown path.

    Raises:
        ValueError: if the file has neither a `models` section nor one model's `params` and
            `test_accuracy`.
        ImportError: if matplotlib is missing (pip install 'keras-kd[plots]').
    """
    with open(results_path) as f:
        results = json.load(f)
    if "models" in results:
        models = results["models"]
    elif {"params", "test_accuracy"} <= set(results):
        models = {results.get("name", "model"): results}
    else:
        raise ValueError(
            f"Invalid results file {results_path!r}: expected a 'models' section (as written by "
            f"`keras-kd demo`) or one model's `params` and `test_accuracy` (as written by "
            f"`keras-kd distill`). Found keys: {sorted(results)}"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("keras-kd report needs matplotlib: pip install 'keras-kd[plots]'") from e
    output_dir = output_dir or os.path.dirname(os.path.abspath(results_path))
    os.makedirs(output_dir, exist_ok=True)
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
    if "dark_knowledge" in results:
        lines += _dark_knowledge(plt, results["dark_knowledge"], output_dir)
    return write_text(os.path.join(output_dir, "report.md"), "\n".join(lines))


def _dark_knowledge(plt, summary, output_dir):
    """Writes the two plots of a `keras_kd.dark_knowledge` summary; returns Markdown lines."""
    import numpy as np

    names, temperature = summary["class_names"], summary["temperature"]
    n = len(names)
    similarity = np.array([row if row is not None else [np.nan] * n
                           for row in summary["similarity"]], dtype=float)
    off_diagonal = np.where(np.eye(n, dtype=bool), np.nan, similarity)
    off_max = np.nanmax(off_diagonal) if np.isfinite(off_diagonal).any() else 0.0
    # grey: the masked diagonal, and rows of classes without test examples
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    side = min(20.0, max(5.0, 0.45 * n + 2))
    fontsize = 10 if n <= 20 else 7
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 2, side), layout="constrained")
    panels = ((similarity, 1.0, "with the diagonal (scale 0 to 1)"),
              (off_diagonal, off_max or 1.0, f"diagonal masked (scale 0 to {off_max:.3g})"))
    for ax, (matrix, vmax, title) in zip(axes, panels):
        image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), names, fontsize=fontsize)
        ax.set(xlabel="class the teacher gives probability to", ylabel="true class", title=title)
        fig.colorbar(image, ax=ax, shrink=0.8)
    if n <= 12:  # the off-diagonal values, readable
        for (i, j), value in np.ndenumerate(off_diagonal):
            if np.isfinite(value):
                axes[1].text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                             color="white" if value < 0.6 * off_max else "black")
    fig.suptitle(f"teacher: mean softmax(logits / T) over the test examples of each true class, "
                 f"T = {temperature:g}")
    _save(fig, os.path.join(output_dir, "dark_knowledge_similarity.png"))
    plt.close(fig)

    per_class = summary["per_class"]
    fig, ax = plt.subplots(figsize=(min(30.0, max(8.0, 0.6 * n + 2)), 4))
    bars = (("teacher_accuracy", "teacher accuracy"), ("student_accuracy", "student accuracy"),
            ("agreement", "agreement (student top-1 = teacher top-1)"))
    width = 0.8 / len(bars)
    for k, (key, label) in enumerate(bars):
        values = [np.nan if v is None else 100 * v for v in per_class[key]]
        ax.bar(np.arange(n) + (k - 1) * width, values, width, label=label)
    long_names = n > 10 or max(map(len, names)) > 5
    ax.set_xticks(range(n), names, rotation=45 if long_names else 0,
                  ha="right" if long_names else "center", fontsize=fontsize)
    ax.set(ylim=(0, 105), ylabel="% of the test examples of the class", xlabel="true class",
           title="per class: teacher and student accuracy, and their agreement")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, axis="y")
    _save(fig, os.path.join(output_dir, "dark_knowledge_per_class.png"))
    plt.close(fig)

    examples = sum(per_class["examples"])
    return [
        f"![teacher's class similarity at T = {temperature:g}](dark_knowledge_similarity.png)", "",
        f"Row c: the teacher's mean softmax(logits / T), T = {temperature:g}, over the test "
        f"examples of true class c ({examples:,} in all; rows sum to 1). Left, the whole matrix "
        "on a 0-1 scale; right, the diagonal masked and the colours scaled to the largest "
        "off-diagonal value, so that the classes the teacher finds alike (its dark knowledge) "
        "show.", "",
        "![per-class accuracy and agreement](dark_knowledge_per_class.png)", "",
        "Per true class: the teacher's and the student's test accuracy, and their agreement "
        "(the fraction of the class's test examples where the student's top-1 class is the "
        "teacher's).", "",
    ]
