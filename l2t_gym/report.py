"""Tables, CSV and plots of teacher comparisons (the numbers come from :mod:`l2t_gym.evaluation`).

:func:`write_comparison` writes the paper-style report of a comparison in one call: a markdown
summary with significance tests, a CSV of every run and checkpoint, and four PNGs. The pieces
are public for other layouts: :func:`format_table` (plain text), :func:`markdown_summary`,
:func:`markdown_comparisons`, :func:`write_csv`, :func:`plot_curves`, :func:`plot_cost_box`,
:func:`plot_keep_ratio`. Every file is written atomically (see
:mod:`l2t_gym.files`): an interrupted report leaves each file whole, old or new.

Names: *candidate batches* are teacher steps; *instances seen* are candidate instances
(candidate batches x M); *effective instances* were kept and trained on.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from l2t_gym.evaluation import (
    COSTS,
    Comparison,
    Summary,
    budgets,
    cheapest,
    compare_costs,
    summarise,
)
from l2t_gym.files import atomic_open, save_figure, write_text
from l2t_gym.teachers import TEACHER_LABELS, EpisodeResult

#: The reference every comparison report holds: plain training, by its paper name.
NOTEACH = TEACHER_LABELS["noteach"]

#: Curve x-axes: the :class:`~l2t_gym.teachers.CurvePoint` field, and its axis label.
CURVE_AXES = {
    "effective_instances": "effective training instances",
    "instances_seen": "instances seen (candidate instances: forward passes)",
    "iteration": "student iterations",
    "seconds": "wall-clock seconds",
}
#: Columns of :func:`write_csv`: the run's outcome, then where it stood at the checkpoint.
CSV_COLUMNS = (
    "teacher",
    "seed",
    "reached_tau",
    "iterations_total",
    "keep_ratio",
    "test_accuracy",
    "effective_instances",
    "iteration",
    "candidate_batches",
    "dev_accuracy",
    "seconds",
    "instances_seen",
    "kept_instances",
    "keep_ratio_so_far",
    "checkpoint_test_accuracy",
)


# -- tables ----------------------------------------------------------------------------------------
def format_table(
    summaries: Iterable[Summary], against: Mapping[str, Comparison] | None = None
) -> str:
    """A plain-text table, one row per teacher, costs to tau as mean ± std over the students
    that reached tau.

    :param summaries: from :func:`~l2t_gym.evaluation.summarise`, in row order.
    :param against: row name -> one teacher's comparison with that row (its ``teacher`` the
        same in all, the row its ``reference``), e.g. the learned teacher's paired t-test on
        effective instances against each heuristic: adds its relative difference and paired p.
    :return: the table, a header and a footnote, lines joined by newlines.
    """
    summaries = list(summaries)
    against = dict(against or {})
    who = next(iter(against.values())).teacher if against else ""
    width = max([14, *(len(s.name) for s in summaries)])
    head = (
        f"{'teacher':{width}} {'reached':>8} {'iterations':>14} {'effective inst.':>16} "
        f"{'cand. batches':>14} {'seconds':>12} {'test acc.':>14} {'keep':>6}"
    )
    if against:
        head += f" {who + ' vs row':>16} {'paired p':>9}"
    lines = [head, "-" * len(head)]
    for s in summaries:
        line = (
            f"{s.name:{width}} {s.reached:>4}/{s.students:<3} {_pm(s.iterations, 0):>14} "
            f"{_pm(s.effective_instances, 0):>16} {_pm(s.candidate_batches, 0):>14} "
            f"{_pm(s.seconds, 2):>12} {_pm(s.test_accuracy, 3):>14} {s.keep_ratio:>6.2f}"
        )
        if s.name in against:
            c = against[s.name]
            line += f" {c.relative:>+16.1%} {_p(c.paired.p):>9}"
        lines.append(line)
    lines.append(
        "(to tau: mean ± std over the students that reached it; cand. batches = teacher steps"
        + (
            f"; {who} vs row: its effective instances to tau relative to the row's, paired "
            "t-test over the same students, a run that never reached tau counted at the budget)"
            if against
            else ")"
        )
    )
    return "\n".join(lines)


def markdown_summary(summaries: Iterable[Summary]) -> str:
    """A markdown table: costs to tau as mean ± std (median) over the students that reached it.

    :param summaries: from :func:`~l2t_gym.evaluation.summarise`, in row order.
    """
    lines = [
        "| teacher | reached tau | iterations | effective instances | candidate batches "
        "| seconds | final test acc. | keep |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.name} | {s.reached}/{s.students} | {_pmm(s.iterations, 0)} "
            f"| {_pmm(s.effective_instances, 0)} | {_pmm(s.candidate_batches, 0)} "
            f"| {_pmm(s.seconds, 2)} | {_pm(s.test_accuracy, 3)} | {s.keep_ratio:.2f} |"
        )
    return "\n".join(lines)


def markdown_comparisons(comparisons: Iterable[Comparison]) -> str:
    """A markdown table of comparisons (negative differences: cheaper than the reference).

    :param comparisons: from :func:`~l2t_gym.evaluation.compare_costs`, in row order.
    """
    lines = [
        "| teacher | vs | cost | mean | reference mean | difference (95% CI) | relative "
        "| paired p | Welch p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        digits = 2 if c.cost == "seconds" else 0
        lines.append(
            f"| {c.teacher} | {c.reference} | {COSTS[c.cost]} | {c.teacher_mean:.{digits}f} "
            f"| {c.reference_mean:.{digits}f} | {c.paired.diff:+.{digits}f} "
            f"({c.paired.low:+.{digits}f}, {c.paired.high:+.{digits}f}) | {c.relative:+.1%} "
            f"| {_p(c.paired.p)} | {_p(c.welch.p)} |"
        )
    return "\n".join(lines)


def _pm(ms: tuple[float, ...], digits: int) -> str:
    mean, std = ms[:2]
    return "-" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _pmm(ms: tuple[float, ...], digits: int) -> str:
    return "-" if math.isnan(ms[0]) else f"{_pm(ms, digits)} ({ms[2]:.{digits}f})"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


# -- CSV -------------------------------------------------------------------------------------------
def write_csv(
    results: Mapping[str, Sequence[EpisodeResult]], seeds: Sequence[int], path: Path
) -> None:
    """Write one row per run and checkpoint (dev evaluation); columns :data:`CSV_COLUMNS`.

    ``keep_ratio_so_far`` is the teacher's keep ratio up to the checkpoint;
    ``checkpoint_test_accuracy`` is empty unless the env measured it there
    (``report_test="eval"``); ``candidate_batches`` and ``instances_seen`` count what the
    teacher had been shown by then.

    :param results: teacher name -> results, one per seed.
    :param seeds: the student seed of each run, in order.
    :param path: the CSV file (its folder is made).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for name, runs in results.items():
            for seed, r in zip(seeds, runs, strict=True):
                for p in r.curve:
                    so_far = (
                        f"{p.kept_instances / p.instances_seen:.4f}" if p.instances_seen else ""
                    )
                    test = "" if math.isnan(p.test_accuracy) else f"{p.test_accuracy:.4f}"
                    w.writerow(
                        [
                            name,
                            seed,
                            r.reached_tau,
                            r.iterations,
                            f"{r.keep_ratio:.4f}",
                            r.test_accuracy,
                            p.effective_instances,
                            p.iteration,
                            p.teacher_step,
                            f"{p.dev_accuracy:.4f}",
                            f"{p.seconds:.4f}",
                            p.instances_seen,
                            p.kept_instances,
                            so_far,
                            test,
                        ]
                    )


# -- plots -----------------------------------------------------------------------------------------
def plot_curves(
    results: Mapping[str, Sequence[EpisodeResult]],
    path: Path,
    title: str,
    axes: Sequence[str] = ("effective_instances",),
    accuracies: Sequence[str] = ("dev_accuracy",),
    tau: float | None = None,
) -> None:
    """Accuracy against each of ``axes``, as the paper's figures: every student's curve as a
    thin line that ends where its episode ended (at tau, or out of clock: a dot marks the end;
    nothing is drawn after it), and each teacher's mean over its students as a bold line up to
    where its first student ended (beyond that a mean would be over the slower students only).

    :param axes: the columns, keys of :data:`CURVE_AXES`.
    :param accuracies: the rows, "dev_accuracy" and/or "test_accuracy".
    :param tau: the target dev accuracy, drawn as a dashed line on the dev-accuracy rows.
    :raises ValueError: for an unknown axis.
    """
    plt = _pyplot()
    for axis in axes:
        if axis not in CURVE_AXES:
            raise ValueError(f"unknown curve axis {axis!r}; expected one of {list(CURVE_AXES)}")
    rows, cols = len(accuracies), len(axes)
    # 2.5 inches more on the right for the legend, 0.5 above for a two-line title.
    size = (5.5 * cols + 2.5, 3.8 * rows + 0.5)
    fig, grid_axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(results) > len(colors):  # one colour per teacher, never two teachers alike
        colors = [plt.get_cmap("tab20")(k % 20) for k in range(len(results))]
    for i, acc in enumerate(accuracies):
        for j, axis in enumerate(axes):
            ax = grid_axes[i][j]
            for k, (name, runs) in enumerate(results.items()):
                color = colors[k % len(colors)]
                alpha = max(0.08, min(0.5, 3.0 / max(len(runs), 1)))
                for run in runs:
                    xs, ys = _curve(run, axis, acc)
                    ax.plot(xs, ys, color=color, lw=0.6, alpha=alpha)
                    ax.plot(xs[-1:], ys[-1:], "o", color=color, ms=2, alpha=alpha)
                first_end = min(_curve(r, axis, acc)[0][-1] for r in runs)
                grid = np.linspace(0, first_end, 100)
                with warnings.catch_warnings():  # a checkpoint no student read: NaN, drawn as a gap
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean([_step_interp(r, grid, axis, acc) for r in runs], axis=0)
                ax.plot(grid, mean, color=color, lw=2, label=name)
            if tau is not None and acc == "dev_accuracy":
                ax.axhline(tau, color="k", ls="--", lw=0.8, label=f"tau = {tau:g}")
            ax.set_xlabel(CURVE_AXES[axis])
            ax.set_ylabel(acc.replace("_", " "))
            ax.grid(alpha=0.3)
    # Outside the plots, top right: with a dozen teachers a legend inside hides the curves.
    grid_axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title)
    _save(fig, path)


def _curve(run: EpisodeResult, axis: str, acc: str) -> tuple[np.ndarray, np.ndarray]:
    # The run's checkpoints with a reading of ``acc`` (test accuracy may be read at the end only).
    points = [p for p in run.curve if not math.isnan(getattr(p, acc))]
    xs = np.array([getattr(p, axis) for p in points], dtype=float)
    ys = np.array([getattr(p, acc) for p in points], dtype=float)
    if len(xs) == 0:
        return np.zeros(1), np.full(1, np.nan)
    return xs, ys


def plot_cost_box(
    results: Mapping[str, Sequence[EpisodeResult]],
    path: Path,
    title: str,
    cost: str = "effective_instances",
) -> None:
    """A box plot of each teacher's ``cost`` to tau over its students; runs that never reached
    tau are drawn as red crosses at what they spent and left out of the box.

    :param cost: a key of :data:`~l2t_gym.evaluation.COSTS`.
    """
    plt = _pyplot()
    names = list(results)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names)), 4.5))
    reached = [[getattr(r, cost) for r in results[n] if r.reached_tau] for n in names]
    ax.boxplot([v if v else [math.nan] for v in reached], showmeans=True)
    for i, n in enumerate(names, start=1):
        missed = [getattr(r, cost) for r in results[n] if not r.reached_tau]
        if missed:
            ax.scatter([i] * len(missed), missed, marker="x", color="red", zorder=3)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set_ylabel(f"{COSTS[cost]} to tau\n(x: never reached tau, what it spent)")
    ax.set_title(title, fontsize="medium", wrap=True)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def plot_keep_ratio(results: Mapping[str, Sequence[EpisodeResult]], path: Path, title: str) -> None:
    """Each teacher's keep ratio between consecutive checkpoints against the student's
    iteration: the mean over students with a band of one std."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    end = max(p.iteration for runs in results.values() for r in runs for p in r.curve)
    grid = np.linspace(0, end if end > 0 else 1, 100)
    for name, runs in results.items():
        curves = np.stack([_keep_curve(r, grid) for r in runs])
        with warnings.catch_warnings():
            # Past the end of every run a grid column is all NaN: nothing to average, on purpose.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        ax.plot(grid, mean, label=name)
        ax.fill_between(grid, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("student iterations")
    ax.set_ylabel("keep ratio since the last checkpoint")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)


def _keep_curve(run: EpisodeResult, grid: np.ndarray) -> np.ndarray:
    pts = run.curve
    xs = np.array([p.iteration for p in pts[1:]])
    kept = np.diff([p.kept_instances for p in pts])
    seen = np.diff([p.instances_seen for p in pts])
    ratio = np.where(seen > 0, kept / np.maximum(seen, 1), np.nan)
    if len(xs) == 0:
        return np.full(len(grid), np.nan)
    idx = np.clip(np.searchsorted(xs, grid, side="left"), 0, len(xs) - 1)
    return np.where(grid <= xs[-1], ratio[idx], np.nan)


def _step_interp(run: EpisodeResult, grid: np.ndarray, axis: str, acc: str) -> np.ndarray:
    xs = np.array([getattr(p, axis) for p in run.curve])
    ys = np.array([getattr(p, acc) for p in run.curve])
    idx = np.searchsorted(xs, grid, side="right") - 1
    return ys[np.clip(idx, 0, len(ys) - 1)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    _pyplot().close(fig)


# -- the comparison's report -----------------------------------------------------------------------
def write_comparison(
    results: Mapping[str, Sequence[EpisodeResult]],
    learned: Sequence[str],
    seeds: Sequence[int],
    max_iters: int,
    batch_size: int,
    out: Path,
    title: str,
    notes: Sequence[str] = (),
    tau: float | None = None,
) -> str:
    """Write summary.md, runs.csv, curves.png, to_tau_box.png and keep_ratio.png to ``out``.

    The summary holds the costs to tau of every teacher, then paired and Welch t-tests: every
    learned teacher against every heuristic on effective instances, the learned teachers
    against each other, the other costs against NoTeach and the cheapest heuristic, and the
    heuristics against NoTeach.

    :param results: teacher name -> results on ``seeds``; it must hold a :data:`NOTEACH`
        ("NoTeach") entry. Names are the tables' and plots' labels (see
        :data:`l2t_gym.teachers.TEACHER_LABELS`).
    :param learned: the names of the learned teachers (the rest are heuristics).
    :param seeds: the student seeds, in order.
    :param max_iters: the student fold's T', for the budgets of runs that never reached tau.
    :param batch_size: its M.
    :param out: the folder (made if missing).
    :param title: heads the summary and the plots.
    :param notes: lines under the title.
    :param tau: the target dev accuracy, marked on the curves.
    :return: the summary's markdown.
    """
    out.mkdir(parents=True, exist_ok=True)
    learned = list(learned)
    heuristics = [n for n in results if n not in learned]
    budget = budgets(max_iters, batch_size)
    best = cheapest(results, heuristics, budget=budget["effective_instances"])
    costs = ["effective_instances", "iterations", "instances_seen", "seconds"]
    lines = [f"## {title}", "", *notes, ""]
    lines += [markdown_summary(summarise(n, runs) for n, runs in results.items()), ""]
    lines += [
        "Costs to tau are mean ± std (median) over the students that reached tau. The tests "
        "use every run: one that never reached tau counts with what it spent or the budget "
        f"(T' iterations, T'·M instances), whichever is larger; the cheapest heuristic by "
        f"effective instances is **{best}**.",
        "",
    ]

    def against(ref: str, cost: str, teachers: list[str]) -> list[Comparison]:
        return compare_costs(results, ref, cost, teachers, budget[cost])

    rows = [c for ref in heuristics for c in against(ref, costs[0], learned)]
    lines += ["Effective instances against every heuristic:", "", markdown_comparisons(rows), ""]
    if len(learned) > 1:
        rows = [c for ref in learned[1:] for c in against(ref, costs[0], learned[:1])]
        lines += ["Learned teachers against each other:", "", markdown_comparisons(rows), ""]
    for ref in dict.fromkeys([NOTEACH, best]):
        rows = [c for cost in costs[1:] for c in against(ref, cost, learned)]
        lines += [f"Other costs against {ref}:", "", markdown_comparisons(rows), ""]
    if best != NOTEACH:
        rows = against(NOTEACH, costs[0], heuristics)
        lines += ["Heuristics against NoTeach:", "", markdown_comparisons(rows), ""]
    summary = "\n".join(lines)
    write_text(out / "summary.md", summary + "\n")
    write_csv(results, seeds, out / "runs.csv")
    plot_curves(
        results,
        out / "curves.png",
        title,
        axes=("effective_instances", "instances_seen", "iteration", "seconds"),
        accuracies=("dev_accuracy", "test_accuracy"),
        tau=tau,
    )
    plot_cost_box(results, out / "to_tau_box.png", title)
    plot_keep_ratio(results, out / "keep_ratio.png", title)
    return summary
