"""Reports of a teacher comparison: costs to tau, significance, CSV and plots."""

from __future__ import annotations

import csv
import math
import statistics

import numpy as np
import pytest

from l2t_gym import L2TEnv
from l2t_gym.evaluation import (
    budgets,
    censored_costs,
    cheapest,
    compare_costs,
    markdown_comparisons,
    markdown_summary,
    plot_cost_box,
    plot_curves,
    plot_keep_ratio,
    summarise,
    write_csv,
)
from l2t_gym.stats import paired_ttest
from l2t_gym.teachers import CurvePoint, EpisodeResult, LossRank, run_episode


def fake_run(iterations: int, reached: bool = True, keep: float = 1.0) -> EpisodeResult:
    curve = [
        CurvePoint(
            effective_instances=32 * i,
            iteration=i,
            teacher_step=round(i / keep),
            dev_accuracy=min(0.1 + 0.02 * i, 0.95),
            seconds=0.001 * i,
            kept_instances=32 * i,
            instances_seen=32 * round(i / keep),
            test_accuracy=min(0.1 + 0.02 * i, 0.95) - 0.01,
        )
        for i in range(iterations + 1)
    ]
    end = curve[-1]
    return EpisodeResult(
        reached_tau=reached,
        truncated=False,
        iterations=iterations,
        teacher_steps=end.teacher_step,
        effective_instances=end.effective_instances,
        instances_seen=end.instances_seen,
        kept_instances=end.kept_instances,
        keep_ratio=keep,
        reward=-math.log(iterations / 100) if reached else 0.0,
        final_dev_accuracy=end.dev_accuracy,
        test_accuracy=end.test_accuracy,
        seconds=end.seconds,
        curve=curve,
    )


@pytest.fixture
def results():
    return {
        "noteach": [fake_run(i) for i in (40, 50, 45, 60)],
        "lossrank": [fake_run(i, keep=0.25) for i in (30, 41, 33, 48)],
        "l2t": [fake_run(30, keep=0.5), fake_run(100, reached=False, keep=0.5)]
        + [fake_run(i, keep=0.5) for i in (35, 50)],
    }


def test_summary_costs_over_students_that_reached_tau(results):
    s = summarise("l2t", results["l2t"])
    assert (s.students, s.reached) == (4, 3)
    assert s.iterations == pytest.approx(
        (statistics.fmean([30, 35, 50]), statistics.stdev([30, 35, 50]), 35)
    )
    assert s.effective_instances[2] == 32 * 35 and s.keep_ratio == 0.5
    table = markdown_summary([s])
    assert "| l2t | 3/4 | 38 ± 10 (35) |" in table


def test_compare_costs_counts_every_run_with_its_totals(results):
    rows = compare_costs(results, "noteach", "effective_instances")
    assert [c.teacher for c in rows] == ["lossrank", "l2t"]
    l2t = rows[1]
    # The run that never reached tau enters with the 100 iterations it spent.
    expected = paired_ttest([32 * i for i in (30, 100, 35, 50)], [32 * i for i in (40, 50, 45, 60)])
    assert l2t.paired == expected
    assert l2t.teacher_mean == 32 * statistics.fmean([30, 100, 35, 50])
    assert l2t.relative == pytest.approx(expected.diff / (32 * 48.75))
    assert rows[0].paired.diff < 0 and rows[0].paired.p < 0.05  # lossrank is cheaper
    seen = compare_costs(results, "noteach", "instances_seen", ["lossrank"])[0]
    assert seen.paired.diff > 0  # ...in iterations, not in forward passes
    table = markdown_comparisons(rows)
    assert table.count("\n") == 3 and "| lossrank | noteach | effective instances |" in table


def test_failed_runs_count_at_least_the_budget(results):
    # A teacher that drops everything is truncated after 3 iterations: it must not look cheap.
    results = {**results, "dropall": [fake_run(3, reached=False, keep=0.01)] * 4}
    raw = compare_costs(results, "noteach", "iterations", ["dropall"])[0]
    assert raw.teacher_mean == 3 and raw.paired.diff < 0
    fair = compare_costs(results, "noteach", "iterations", ["dropall"], budget=100)[0]
    assert fair.teacher_mean == 100 and fair.paired.diff > 0
    # Runs that reached tau keep their own totals; failed ones above the budget keep theirs.
    assert censored_costs(results["l2t"], "iterations", budget=80) == [30, 100, 35, 50]
    assert censored_costs(results["l2t"], "iterations", budget=120) == [30, 120, 35, 50]
    assert budgets(100, 32)["effective_instances"] == 3200
    assert cheapest(results, ["noteach", "dropall"], "iterations", budget=100) == "noteach"


def test_compare_costs_bad_arguments(results):
    with pytest.raises(ValueError, match="unknown cost"):
        compare_costs(results, "noteach", "reward")
    with pytest.raises(ValueError, match="reference"):
        compare_costs(results, "spl")


def test_cheapest(results):
    assert cheapest(results, ["noteach", "lossrank"]) == "lossrank"
    assert cheapest(results, ["noteach", "l2t"]) == "noteach"  # the failed run weighs in
    with pytest.raises(ValueError):
        cheapest(results, [])


def test_csv_has_a_row_per_run_and_checkpoint(results, tmp_path):
    path = tmp_path / "runs.csv"
    write_csv(results, [1, 2, 3, 4], path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == sum(len(r.curve) for runs in results.values() for r in runs)
    last = [r for r in rows if r["teacher"] == "lossrank" and r["seed"] == "4"][-1]
    assert last["iteration"] == "48" and last["keep_ratio_so_far"] == "0.2500"
    assert float(last["checkpoint_test_accuracy"]) == pytest.approx(0.94)


def test_plots_are_written(results, tmp_path):
    plot_curves(
        results,
        tmp_path / "c.png",
        "t",
        axes=("effective_instances", "instances_seen", "iteration", "seconds"),
        accuracies=("dev_accuracy", "test_accuracy"),
    )
    plot_cost_box(results, tmp_path / "b.png", "t")
    plot_keep_ratio(results, tmp_path / "k.png", "t")
    for name in ("c.png", "b.png", "k.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="curve axis"):
        plot_curves(results, tmp_path / "x.png", "t", axes=("epochs",))


def test_run_episode_records_test_accuracy_and_keep_counts():
    env = L2TEnv("digits", device="cpu", max_iters=12, eval_every=4, report_test="eval")
    result = run_episode(env, LossRank(0.5), seed=3)
    curve = result.curve
    assert [p.iteration for p in curve] == [0, 4, 8, 12]
    assert all(0.0 <= p.test_accuracy <= 1.0 for p in curve)
    assert curve[-1].test_accuracy == result.test_accuracy
    assert [p.instances_seen for p in curve] == [32 * p.teacher_step for p in curve]
    assert all(p.kept_instances == p.instances_seen // 2 for p in curve)
    assert np.all(np.diff([p.seconds for p in curve]) > 0) and curve[-1].seconds <= result.seconds
    plain = run_episode(
        L2TEnv("digits", device="cpu", max_iters=12, eval_every=4), LossRank(0.5), 3
    )
    assert all(math.isnan(p.test_accuracy) for p in plain.curve)
    assert [p.dev_accuracy for p in plain.curve] == [p.dev_accuracy for p in curve]
