"""What examples/cifar10_summary.py and examples/methods_cifar10.py --summarize share: rows of
(student, method, seed, accuracy) grouped per student and method, and their Markdown table
(mean, standard deviation, every seed's figure, and the gain over the scratch twin seed by
seed: the paired comparison docs/results.md reports)."""

import statistics


def score_key(rows):
    """The one `*_accuracy` key of the rows (`teacher_accuracy` aside): what they score."""
    keys = {k for r in rows for k in r if k.endswith("_accuracy") and k != "teacher_accuracy"}
    if len(keys) != 1:
        raise ValueError(f"Invalid rows: expected one kind of score, found {sorted(keys)}")
    return keys.pop()


def groups(rows, score=None):
    """`({(student, method): {seed: accuracy}}, {student: params}, score)`; `score` is the
    rows' key to read (default: `score_key(rows)`)."""
    key = score or score_key(rows)
    table, params = {}, {}
    for r in rows:
        table.setdefault((r["student"], r["method"]), {})[r["seed"]] = r[key]
        params[r["student"]] = r["params"]
    return table, params, key


def markdown(rows, score=None, method_order=("scratch",)):
    """The Markdown table of the rows, one line per (student, method), students in name order
    and methods in `method_order` (others after, in the rows' order); `score` as in `groups`."""
    table, params, key = groups(rows, score)

    def rank(group):
        student, method = group
        return student, method_order.index(method) if method in method_order else len(method_order)

    lines = [f"| student | params | method | seeds | mean {key.split('_')[0]} accuracy | std | "
             "per seed | gain over scratch per seed |", "|---|---|---|---|---|---|---|---|"]
    for student, method in sorted(table, key=rank):
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
