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
    kept (`pooled_interval` of this one run). A bound on a ratio holds in a run when `high` is
    under it, and fails when `low` is over it; in between, the run cannot tell on this
    machine."""
    return pooled_interval([a], [b], level, resamples, seed)[1:]


def pooled_interval(runs_a, runs_b, level=0.9, resamples=2000, seed=0):
    """`(ratio, low, high)` of `a / b` over several runs of one command, each in a process of
    its own: `runs_a[k]` and `runs_b[k]` are the times of run `k`, round by round. `ratio` is
    the median of every round's ratio, all runs pooled. The interval is a two-level
    bootstrap: the runs are drawn with replacement, then the rounds within each drawn run.

    A process has a state of its own that holds for all its rounds (where its memory and
    threads landed, what else the machine ran that half hour); `paired_interval` sees only
    the rounds of one run, so on this project's VMs runs of the same command disagreed by
    more than their intervals (session 18: 1.006-1.041 and 1.037-1.087 for one ratio). Drawing
    the runs too puts that spread into the interval: with 3 runs it is wide, as it should be."""
    import random
    import statistics as stats

    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(f"runs_a and runs_b: expected as many runs (at least one); received "
                         f"{len(runs_a)} and {len(runs_b)}")
    runs = [[x / y for x, y in zip(a, b)] for a, b in zip(runs_a, runs_b)]
    rng = random.Random(seed)
    medians = []
    for _ in range(resamples):
        pooled = []  # one run is all there is to draw: its rounds alone (`paired_interval`)
        for run in rng.choices(runs, k=len(runs)) if len(runs) > 1 else runs:
            pooled += rng.choices(run, k=len(run))
        medians.append(stats.median(pooled))
    medians.sort()
    tail = int(round(resamples * (1 - level) / 2))
    return (stats.median(r for run in runs for r in run), medians[tail],
            medians[resamples - 1 - tail])


def verdict(low, high, bound):
    """What an interval `[low, high]` of a ratio says of an upper `bound`: "holds" (`high`
    under it), "fails" (`low` over it), or "cannot tell"."""
    if high < bound:
        return "holds"
    return "fails" if low > bound else "cannot tell"


def read_runs(paths):
    """The saved results JSON of each path."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def pooled_rows(pair, seconds, ratios, bounds):
    """One row per ratio of `ratios` (name: (numerator, denominator) variants) timed in all
    runs: `seconds[k]` is run k's raw times by variant. Each run's paired ratio, the pooled
    ratio and interval (`pooled_interval`), and the verdict on the ratio's bound in `bounds`
    (if any)."""
    rows = []
    for name, (a, b) in ratios.items():
        if not all(a in t and b in t for t in seconds):
            continue
        ratio, low, high = pooled_interval([t[a] for t in seconds], [t[b] for t in seconds])
        bound = bounds.get(name)
        rows.append({
            "pair": pair, "ratio": name, "bound": bound,
            "runs": ", ".join(f"{paired_ratio(t[a], t[b]):.3f}" for t in seconds),
            "pooled": f"{ratio:.3f} [{low:.3f}, {high:.3f}]",
            "verdict": verdict(low, high, bound) if bound else None,
            "ratio_value": ratio, "low": low, "high": high})
    return rows


def write_pooled(rows, paths, out):
    """`pooled_rows` of the runs saved at `paths`, as `OUT.json` and `OUT.md`."""
    md = markdown_table(rows, [("pair", "pair", ""), ("ratio", "paired ratio", ""),
                               ("bound", "bound", ".2f"), ("runs", "each run", ""),
                               ("pooled", "pooled [90 % interval]", ""),
                               ("verdict", "verdict", "")])
    md += (f"\n{len(paths)} runs ({', '.join(paths)}): each run's paired ratio, and all their "
           "rounds pooled, with a two-level bootstrap interval (runs, then rounds: "
           "`common.pooled_interval`).\n")
    write_outputs({"runs": list(paths), "rows": rows}, out, md)


def add_pool_argument(parser):
    """`--pool`, shared by the throughput benchmarks."""
    parser.add_argument("--pool", nargs="+", metavar="JSON",
                        help="pool the paired ratios of these saved runs of one command (a "
                             "process each) into --out, with issue 14's verdicts; train nothing")


def add_summary_arguments(parser):
    """`--statistic` and `--summarize`, shared by the throughput benchmarks."""
    parser.add_argument("--statistic", default="min", choices=STATISTICS,
                        help="per-variant time from the repeats, for the ratios (epoch_times)")
    parser.add_argument("--summarize", metavar="JSON",
                        help="recompute the tables and ratios of a saved run (its raw `seconds`) "
                             "with --statistic, write them to --out, and train nothing")


def saved_run(args):
    """The results JSON named by `--summarize`, or None."""
    return read_runs([args.summarize])[0] if args.summarize else None


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
