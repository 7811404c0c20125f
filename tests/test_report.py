"""Tables, CSV and plots of a teacher comparison, on made-up runs with known costs."""

from __future__ import annotations

import csv

import pytest
from fake_runs import fake_run, three_teachers

from l2t_gym import report
from l2t_gym.evaluation import compare_costs, summarise
from l2t_gym.report import (
    CSV_COLUMNS,
    format_table,
    markdown_comparisons,
    markdown_summary,
    plot_cost_box,
    plot_curves,
    plot_keep_ratio,
    write_comparison,
    write_csv,
)


@pytest.fixture
def results():
    return three_teachers()


def test_tables_name_candidate_batches_and_report_costs_over_runs_that_reached_tau(results):
    summaries = [summarise(n, runs) for n, runs in results.items()]
    table = markdown_summary(summaries)
    assert "| candidate batches |" in table.splitlines()[0]
    # l2t: 3 of 4 reached tau in 30, 35, 50 iterations (sd 10.4), at keep 0.5: twice as many
    # batches as iterations, 32 instances per iteration.
    assert "| L2T | 3/4 | 38 ± 10 (35) | 1227 ± 333 (1120) | 77 ± 21 (70) |" in table
    text = format_table(summaries)
    head, rule, *rows, note = text.splitlines()
    assert "cand. batches" in head and set(rule) == {"-"} and "teacher steps" in note
    assert [r.split()[0] for r in rows] == ["NoTeach", "LossRank", "L2T"]
    assert rows[2].split()[1] == "3/4" and rows[2].split()[-1] == "0.50"


def test_comparison_table_names_the_cost_measures(results):
    rows = compare_costs(results, "NoTeach", "effective_instances")
    rows += compare_costs(results, "NoTeach", "instances_seen", ["LossRank"])
    table = markdown_comparisons(rows)
    assert table.count("\n") == 4
    assert "| LossRank | NoTeach | effective instances |" in table
    assert "| LossRank | NoTeach | instances seen |" in table and "candidates" not in table


def test_csv_has_a_row_per_run_and_checkpoint(results, tmp_path):
    path = tmp_path / "runs.csv"
    write_csv(results, [1, 2, 3, 4], path)
    with path.open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == sum(len(r.curve) for runs in results.values() for r in runs)
    last = [r for r in rows if r["teacher"] == "LossRank" and r["seed"] == "4"][-1]
    assert last["iteration"] == "48" and last["keep_ratio_so_far"] == "0.2500"
    assert last["candidate_batches"] == "192" and last["instances_seen"] == str(32 * 192)
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


def test_each_students_curve_ends_where_its_episode_ended(results, tmp_path, monkeypatch):
    # The paper's figures, without a flat line after tau: every run's line stops at its last
    # checkpoint, and each teacher's bold mean stops where its first student ended.
    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig))
    plot_curves(results, tmp_path / "c.png", "t")
    lines = figures[0].axes[0].get_lines()
    thin = [ln for ln in lines if ln.get_linewidth() < 1]
    ends = sorted(float(ln.get_xdata()[-1]) for ln in thin)
    expected = sorted(float(r.effective_instances) for runs in results.values() for r in runs)
    assert ends == expected
    for ln in lines:
        if ln.get_linewidth() >= 2:  # a teacher's mean
            runs = results[ln.get_label()]
            assert ln.get_xdata()[-1] == min(r.effective_instances for r in runs)


def test_tau_is_marked_on_the_dev_accuracy_rows_only(results, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig))
    plot_curves(
        results, tmp_path / "c.png", "t", accuracies=("dev_accuracy", "test_accuracy"), tau=0.9
    )
    dev, test = figures[0].axes[:2]  # one column: the dev row, then the test row
    marked = [ln for ln in dev.get_lines() if ln.get_label() == "tau = 0.9"]
    assert len(marked) == 1 and list(marked[0].get_ydata()) == [0.9, 0.9]
    assert not [ln for ln in test.get_lines() if ln.get_label().startswith("tau")]


def test_write_comparison_writes_every_file_and_every_table(results, tmp_path):
    results["SPL"] = [fake_run(i, keep=0.8) for i in (60, 70, 65, 80)]
    learned = ["L2T"]
    summary = write_comparison(
        results, learned, [1, 2, 3, 4], 100, 32, tmp_path, "Title", ["a note"]
    )
    assert summary.startswith("## Title\n\na note\n")
    assert (tmp_path / "summary.md").read_text() == summary + "\n"
    for name in ("runs.csv", "curves.png", "to_tau_box.png", "keep_ratio.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    # lossrank is the cheapest heuristic: compared on every cost, and against NoTeach.
    assert "the cheapest heuristic by effective instances is **LossRank**" in summary
    assert "Other costs against NoTeach:" in summary and "Other costs against LossRank:" in summary
    assert "Heuristics against NoTeach:" in summary
    assert "| L2T | SPL | effective instances |" in summary
    assert "Learned teachers against each other" not in summary
    # The run that never reached tau counts with the budget T' x M = 3200 instances.
    l2t = compare_costs(results, "NoTeach", "effective_instances", ["L2T"], 3200)[0]
    assert f"| L2T | NoTeach | effective instances | {l2t.teacher_mean:.0f} |" in summary
