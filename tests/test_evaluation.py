"""Running and comparing teachers: summaries, costs to tau, significance (tables, CSV and plots
are tests/test_report.py's)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from fake_runs import fake_run, three_teachers

from l2t_gym import L2TEnv
from l2t_gym.evaluation import (
    budgets,
    censored_costs,
    cheapest,
    compare_costs,
    evaluate,
    keep_ratio,
    summarise,
)
from l2t_gym.stats import paired_ttest
from l2t_gym.teachers import LossRank, run_episode


@pytest.fixture
def results():
    return three_teachers()


def test_summary_costs_over_students_that_reached_tau(results):
    s = summarise("L2T", results["L2T"])
    assert (s.students, s.reached) == (4, 3)
    assert s.iterations == pytest.approx(
        (statistics.fmean([30, 35, 50]), statistics.stdev([30, 35, 50]), 35)
    )
    assert s.effective_instances[2] == 32 * 35 and s.keep_ratio == 0.5
    # Candidate batches are teacher steps: here iteration / keep ratio.
    assert s.candidate_batches[2] == round(35 / 0.5)
    assert math.isnan(summarise("none", [fake_run(100, reached=False)]).iterations[0])


def test_compare_costs_counts_every_run_with_its_totals(results):
    rows = compare_costs(results, "NoTeach", "effective_instances")
    assert [c.teacher for c in rows] == ["LossRank", "L2T"]
    l2t = rows[1]
    # The run that never reached tau enters with the 100 iterations it spent.
    expected = paired_ttest([32 * i for i in (30, 100, 35, 50)], [32 * i for i in (40, 50, 45, 60)])
    assert l2t.paired == expected
    assert l2t.teacher_mean == 32 * statistics.fmean([30, 100, 35, 50])
    assert l2t.relative == pytest.approx(expected.diff / (32 * 48.75))
    assert rows[0].paired.diff < 0 and rows[0].paired.p < 0.05  # lossrank is cheaper
    seen = compare_costs(results, "NoTeach", "instances_seen", ["LossRank"])[0]
    assert seen.paired.diff > 0  # ...in iterations, not in forward passes


def test_failed_runs_count_at_least_the_budget(results):
    # A teacher that drops everything is truncated after 3 iterations: it must not look cheap.
    results = {**results, "dropall": [fake_run(3, reached=False, keep=0.01)] * 4}
    raw = compare_costs(results, "NoTeach", "iterations", ["dropall"])[0]
    assert raw.teacher_mean == 3 and raw.paired.diff < 0
    fair = compare_costs(results, "NoTeach", "iterations", ["dropall"], budget=100)[0]
    assert fair.teacher_mean == 100 and fair.paired.diff > 0
    # Runs that reached tau keep their own totals; failed ones above the budget keep theirs.
    assert censored_costs(results["L2T"], "iterations", budget=80) == [30, 100, 35, 50]
    assert censored_costs(results["L2T"], "iterations", budget=120) == [30, 120, 35, 50]
    assert budgets(100, 32)["effective_instances"] == 3200
    assert cheapest(results, ["NoTeach", "dropall"], "iterations", budget=100) == "NoTeach"


def test_compare_costs_bad_arguments(results):
    with pytest.raises(ValueError, match="unknown cost"):
        compare_costs(results, "NoTeach", "reward")
    with pytest.raises(ValueError, match="reference"):
        compare_costs(results, "SPL")


def test_cheapest(results):
    assert cheapest(results, ["NoTeach", "LossRank"]) == "LossRank"
    assert cheapest(results, ["NoTeach", "L2T"]) == "NoTeach"  # the failed run weighs in
    with pytest.raises(ValueError):
        cheapest(results, [])


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


def test_keep_ratio_is_the_mean_over_runs(results):
    assert keep_ratio(results["L2T"]) == 0.5
    assert keep_ratio([fake_run(10, keep=0.25), fake_run(10, keep=0.75)]) == 0.5
    with pytest.raises(ValueError, match="at least one run"):
        keep_ratio([])


def test_evaluate_interleaves_teachers_seed_by_seed_on_the_same_seeds():
    calls = []
    teachers = {"half": LossRank(0.5), "quarter": LossRank(0.25)}
    make_env = lambda: L2TEnv("digits", device="cpu", max_iters=6)  # noqa: E731
    results = evaluate(make_env, teachers, [3, 4], lambda n, s, r: calls.append((n, s)))
    assert calls == [("half", 3), ("quarter", 3), ("half", 4), ("quarter", 4)]
    alone = run_episode(make_env(), LossRank(0.25), seed=4)
    shown = [(p.iteration, p.teacher_step, p.dev_accuracy) for p in alone.curve]
    assert [(p.iteration, p.teacher_step, p.dev_accuracy) for p in results["quarter"][1].curve] == (
        shown
    )


def test_report_names_still_import_from_evaluation_with_a_warning():
    import l2t_gym.evaluation as evaluation
    from l2t_gym.report import write_csv

    with pytest.warns(DeprecationWarning, match="moved to l2t_gym.report.write_csv"):
        assert evaluation.write_csv is write_csv
    with pytest.raises(AttributeError):
        _ = evaluation.nonsense
