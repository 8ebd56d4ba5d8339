"""The statistics of benchmarks/: paired ratios, their intervals within a run and over runs,
the verdict on a bound, and the order of variants in a round."""

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402
import train_throughput  # noqa: E402


def rounds(ratio, n=12, base=3.0):
    """`n` rounds of a limit drifting by up to 90 % from round to round, and a variant
    `ratio` times it, within +-0.5 % (five levels, median 0)."""
    limit = [base * (1 + 0.3 * (i % 4)) for i in range(n)]
    variant = [t * ratio * (1 + 0.0025 * ((i * 7) % 5 - 2)) for i, t in enumerate(limit)]
    return variant, limit


def test_paired_ratio_cancels_drift_between_rounds():
    variant, limit = rounds(1.04)
    assert common.paired_ratio(variant, limit) == pytest.approx(1.04)
    low, high = common.paired_interval(variant, limit)
    assert 1.04 * 0.995 <= low < 1.04 < high <= 1.04 * 1.005


def test_pooled_interval_of_identical_runs_lies_within_the_run_interval():
    """Runs that agree: the pooled ratio is the run's, and its interval (more rounds) is no
    wider than one run's."""
    variant, limit = rounds(1.04)
    ratio, low, high = common.pooled_interval([variant] * 3, [limit] * 3)
    assert ratio == pytest.approx(common.paired_ratio(variant, limit))
    run_low, run_high = common.paired_interval(variant, limit)
    assert run_low <= low <= ratio <= high <= run_high


def test_pooled_interval_holds_the_disagreement_between_runs():
    """Two runs whose rounds agree within each run but not with each other (a process's own
    state): each run's interval excludes the other run's ratio; the pooled one spans both."""
    a, b = rounds(1.00), rounds(1.10)
    assert common.paired_interval(*a)[1] < 1.01 and common.paired_interval(*b)[0] > 1.09
    ratio, low, high = common.pooled_interval([a[0], b[0]], [a[1], b[1]])
    assert low < 1.01 and high > 1.09
    # the pooled ratio is the median of all 24 rounds' ratios, by hand
    pooled = sorted([x / y for x, y in zip(*a)] + [x / y for x, y in zip(*b)])
    assert ratio == pytest.approx((pooled[11] + pooled[12]) / 2)


def test_pooled_interval_rejects_unmatched_runs():
    with pytest.raises(ValueError, match=r"runs_a and runs_b.*received 2 and 1"):
        common.pooled_interval([[1.0], [1.0]], [[1.0]])


@pytest.mark.parametrize("low, high, expected", [
    (1.00, 1.04, "holds"), (1.06, 1.09, "fails"), (1.03, 1.07, "cannot tell")])
def test_verdict_on_a_bound(low, high, expected):
    assert common.verdict(low, high, 1.05) == expected


def test_round_order_is_a_seeded_permutation_per_round():
    names = [f"v{i}" for i in range(6)]
    orders = [train_throughput.round_order(names, r) for r in range(4)]
    assert all(sorted(o) == names for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # the order changes between rounds
    assert orders == [train_throughput.round_order(names, r) for r in range(4)]  # seeded
    assert train_throughput.round_order(names, 3, seed=None) == names


def test_pool_reads_saved_runs_and_gives_the_verdicts(tmp_path):
    paths = []
    for k, ratio in enumerate((1.02, 1.03, 1.08)):
        live, limit = rounds(ratio)
        run = {"pairs": {"mlp": {"seconds": {"keras_kd_live": live,
                                             "limit_teacher_student_xla_off": limit}}}}
        paths.append(str(tmp_path / f"run{k}.json"))
        with open(paths[-1], "w") as f:
            json.dump(run, f)
    train_throughput.pool(paths[:2], str(tmp_path / "two"))
    train_throughput.pool(paths, str(tmp_path / "three"))
    two = json.loads((tmp_path / "two.json").read_text())["rows"]
    three = json.loads((tmp_path / "three.json").read_text())["rows"]
    assert [r["ratio"] for r in two] == ["keras_kd_live_vs_limit_xla_off"]
    assert two[0]["runs"] == "1.020, 1.030" and two[0]["verdict"] == "holds"
    assert three[0]["verdict"] == "cannot tell"  # the third run is over the bound of 1.05
    assert "cannot tell" in (tmp_path / "three.md").read_text()
