"""Shared by the benchmarks: MNIST loading, JSON/Markdown output."""

import json
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MNIST = os.environ.get("KERAS_KD_MNIST", str(REPO.parent / "shared" / "data" / "mnist.npz"))


def load_mnist(path=DEFAULT_MNIST):
    """Real MNIST as float32 (N, 28, 28, 1) in [0, 1] and int64 labels."""
    from keras_kd.data import load_npz_arrays

    return load_npz_arrays(path)


def write_outputs(results, out_prefix, markdown):
    """Writes `OUT.json` and `OUT.md` atomically and prints the Markdown."""
    from keras_kd import atomic

    atomic.write_json(f"{out_prefix}.json", results)
    atomic.write_text(f"{out_prefix}.md", markdown)
    print(markdown)
    print(json.dumps(results))


def markdown_table(rows, columns):
    """`columns`: (key, header, format) triples."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(
            format(row[k], f) if row.get(k) is not None else "" for k, _, f in columns) + " |")
    return "\n".join(lines) + "\n"
