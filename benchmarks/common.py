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


STATISTICS = ("min", "median")


def epoch_times(times, statistic):
    """One time per variant from its repeats. `min` (default): a stall only ever adds time, so
    the fastest repeat is the best estimate of the undisturbed epoch; `median` for machines
    without stalls. The stalls of exactly 2.55, 5.11, 10.23 or 20.47 s seen until session 15
    were tf.data's autotuner delaying an iterator's destruction to its next wake-up
    (benchmarks/epoch_boundary.py); the limits' loops now drop their iterator outside the
    timing, and keras_kd's pipelines run without the autotuner."""
    import statistics as stats

    pick = min if statistic == "min" else stats.median
    return {k: pick(v) for k, v in times.items()}


def paired_ratio(a, b):
    """Median over rounds of `a[i] / b[i]`: each round times every variant once, one after the
    other, so a ratio within a round sees the same state of a shared machine; drift between
    rounds cancels (session 11's VM: the limits themselves varied by 35-54 % across rounds)."""
    import statistics as stats

    return stats.median(x / y for x, y in zip(a, b))


def paired_interval(a, b, level=0.9, resamples=2000, seed=0):
    """`(low, high)`: a bootstrap interval of `paired_ratio(a, b)`. The rounds are drawn with
    replacement `resamples` times (seeded), and the central `level` share of the medians is
    kept. A bound on a ratio holds in a run when `high` is under it, and fails when `low` is
    over it; in between, the run cannot tell on this machine."""
    import random
    import statistics as stats

    ratios = [x / y for x, y in zip(a, b)]
    rng = random.Random(seed)
    medians = sorted(stats.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = int(round(resamples * (1 - level) / 2))
    return medians[tail], medians[resamples - 1 - tail]


def add_summary_arguments(parser):
    """`--statistic` and `--summarize`, shared by the throughput benchmarks."""
    parser.add_argument("--statistic", default="min", choices=STATISTICS,
                        help="per-variant time from the repeats, for the ratios (epoch_times)")
    parser.add_argument("--summarize", metavar="JSON",
                        help="recompute the tables and ratios of a saved run (its raw `seconds`) "
                             "with --statistic, write them to --out, and train nothing")


def saved_run(args):
    """The results JSON named by `--summarize`, or None."""
    if not args.summarize:
        return None
    with open(args.summarize) as f:
        return json.load(f)


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
