"""Teach fresh students with several teachers and report as the paper does: a table of what it
took to reach tau, significance tests between teachers, a CSV of every run and checkpoint, and
accuracy against effective training instances (and candidates seen, iterations, wall-clock).

Cost to tau. Every episode stops when its student first reaches tau, so a run's totals at its end
(iterations, effective instances, candidates, seconds) *are* its cost to tau when it got there.
A run that never did has no cost to tau; the tables count such runs explicitly and leave them out
of the means. The significance tests need a number for every run (dropping failures would
favour the teacher that fails), so :func:`censored_costs` gives a failed run what it spent or
the budget, whichever is larger: a teacher that drops everything is truncated after spending
almost no iterations, and must not look cheap for it. The budget of iterations is T', of
effective instances T' x M; candidates and seconds count what was spent.
"""

from __future__ import annotations

import csv
import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from l2t_gym.stats import TTest, paired_ttest, welch_ttest
from l2t_gym.teachers import EpisodeResult, Teacher, run_episode

# Cost measures of a run: the EpisodeResult attribute, and how the reports name it.
COSTS = {
    "iterations": "iterations",
    "effective_instances": "effective instances",
    "instances_seen": "candidates seen",
    "seconds": "seconds",
}
# Curve x-axes: the CurvePoint field, and its axis label.
CURVE_AXES = {
    "effective_instances": "effective training instances",
    "instances_seen": "candidate instances seen (forward passes)",
    "iteration": "student iterations",
    "seconds": "wall-clock seconds",
}


@dataclass(frozen=True)
class Summary:
    """One teacher over its students: (mean, std, median) of each cost to tau over the students
    that reached it, of the final test accuracy over all, and the mean keep ratio.
    ``candidates_seen`` counts candidate batches (teacher steps)."""

    name: str
    students: int
    reached: int
    iterations: tuple[float, float, float]
    effective_instances: tuple[float, float, float]
    candidates_seen: tuple[float, float, float]
    seconds: tuple[float, float, float]
    test_accuracy: tuple[float, float, float]
    keep_ratio: float


def evaluate(
    make_env: Callable[[], gym.Env],
    teachers: Mapping[str, Teacher],
    seeds: Sequence[int],
    progress: Callable[[str, int, EpisodeResult], None] | None = None,
) -> dict[str, list[EpisodeResult]]:
    """Every teacher teaches one fresh student per seed; the same seeds for every teacher, so
    runs are paired (same initialisation and data order until the teachers' choices differ).

    Seed by seed, every teacher in turn: the machine's speed drifts (other jobs, clocks), and
    interleaving spreads that drift over the teachers instead of charging it to one of them.
    """
    env = make_env()
    results: dict[str, list[EpisodeResult]] = {name: [] for name in teachers}
    for seed in seeds:
        for name, teacher in teachers.items():
            result = run_episode(env, teacher, seed=seed)
            results[name].append(result)
            if progress is not None:
                progress(name, seed, result)
    return results


def summarise(name: str, runs: Sequence[EpisodeResult]) -> Summary:
    hit = [r for r in runs if r.reached_tau]
    tests = [r.test_accuracy for r in runs if r.test_accuracy is not None]
    return Summary(
        name=name,
        students=len(runs),
        reached=len(hit),
        iterations=_mean_std_median(r.iterations for r in hit),
        effective_instances=_mean_std_median(r.effective_instances for r in hit),
        candidates_seen=_mean_std_median(r.teacher_steps for r in hit),
        seconds=_mean_std_median(r.seconds for r in hit),
        test_accuracy=_mean_std_median(tests),
        keep_ratio=statistics.fmean(r.keep_ratio for r in runs) if runs else math.nan,
    )


def format_table(summaries: Iterable[Summary]) -> str:
    """A plain-text table, mean ± std over the students that reached tau."""
    head = (
        f"{'teacher':14} {'reached':>8} {'iterations':>14} {'effective inst.':>16} "
        f"{'candidates':>14} {'seconds':>12} {'test acc.':>14} {'keep':>6}"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        lines.append(
            f"{s.name:14} {s.reached:>4}/{s.students:<3} {_pm(s.iterations, 0):>14} "
            f"{_pm(s.effective_instances, 0):>16} {_pm(s.candidates_seen, 0):>14} "
            f"{_pm(s.seconds, 2):>12} {_pm(s.test_accuracy, 3):>14} {s.keep_ratio:>6.2f}"
        )
    lines.append(
        "(to tau: mean ± std over the students that reached it; candidates = batches shown)"
    )
    return "\n".join(lines)


def write_csv(results: Mapping[str, Sequence[EpisodeResult]], seeds: Sequence[int], path: Path):
    """One row per run and checkpoint (dev evaluation): the run's outcome, then where it stood
    at that checkpoint. ``keep_ratio_so_far`` is the teacher's keep ratio up to the checkpoint;
    ``test_accuracy`` is empty unless the env measured it there (``report_test="eval"``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "teacher",
                "seed",
                "reached_tau",
                "iterations_total",
                "keep_ratio",
                "test_accuracy",
                "effective_instances",
                "iteration",
                "teacher_step",
                "dev_accuracy",
                "seconds",
                "instances_seen",
                "kept_instances",
                "keep_ratio_so_far",
                "checkpoint_test_accuracy",
            ]
        )
        for name, runs in results.items():
            for seed, r in zip(seeds, runs, strict=True):
                for p in r.curve:
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
                            f"{p.kept_instances / p.instances_seen:.4f}"
                            if p.instances_seen
                            else "",
                            "" if math.isnan(p.test_accuracy) else f"{p.test_accuracy:.4f}",
                        ]
                    )


def plot_curves(
    results: Mapping[str, Sequence[EpisodeResult]],
    path: Path,
    title: str,
    axes: Sequence[str] = ("effective_instances",),
    accuracies: Sequence[str] = ("dev_accuracy",),
) -> None:
    """Accuracy (rows: ``accuracies``, "dev_accuracy" and/or "test_accuracy") against each of
    ``axes`` (columns: keys of :data:`CURVE_AXES`), as the paper's figures: the mean over
    students with a band of one std. A run that has ended keeps its last value."""
    plt = _pyplot()
    for axis in axes:
        if axis not in CURVE_AXES:
            raise ValueError(f"unknown curve axis {axis!r}; expected one of {list(CURVE_AXES)}")
    rows, cols = len(accuracies), len(axes)
    fig, grid_axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for i, acc in enumerate(accuracies):
        for j, axis in enumerate(axes):
            ax = grid_axes[i][j]
            end = max(getattr(p, axis) for runs in results.values() for r in runs for p in r.curve)
            grid = np.linspace(0, end if end > 0 else 1, 200)
            for name, runs in results.items():
                curves = np.stack([_step_interp(r, grid, axis, acc) for r in runs])
                mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
                ax.plot(grid, mean, label=name)
                ax.fill_between(grid, mean - std, mean + std, alpha=0.15)
            ax.set_xlabel(CURVE_AXES[axis])
            ax.set_ylabel(acc.replace("_", " "))
            ax.grid(alpha=0.3)
    grid_axes[0][0].legend(fontsize="small")
    fig.suptitle(title)
    _save(fig, path)


def plot_cost_box(
    results: Mapping[str, Sequence[EpisodeResult]],
    path: Path,
    title: str,
    cost: str = "effective_instances",
) -> None:
    """A box plot of each teacher's cost to tau over its students; runs that never reached tau
    are drawn as red crosses at what they spent and left out of the box."""
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
    """Each teacher's keep ratio over training (between consecutive checkpoints) against the
    student's iteration, the mean over students with a band of one std."""
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


def _step_interp(
    run: EpisodeResult, grid: np.ndarray, axis: str = "effective_instances", acc="dev_accuracy"
) -> np.ndarray:
    xs = np.array([getattr(p, axis) for p in run.curve])
    ys = np.array([getattr(p, acc) for p in run.curve])
    idx = np.searchsorted(xs, grid, side="right") - 1
    return ys[np.clip(idx, 0, len(ys) - 1)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def _mean_std_median(values: Iterable[float]) -> tuple[float, float, float]:
    v = list(values)
    if not v:
        return (math.nan, math.nan, math.nan)
    return (
        statistics.fmean(v),
        statistics.stdev(v) if len(v) > 1 else 0.0,
        statistics.median(v),
    )


def _pm(ms: tuple[float, ...], digits: int) -> str:
    mean, std = ms[:2]
    return "-" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


# -- significance --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """``teacher`` against ``reference`` on one cost (see the module docstring for how runs
    that never reached tau enter): ``paired`` is the test to read, since both taught the same
    student seeds; ``welch`` ignores the pairing, for comparison."""

    teacher: str
    reference: str
    cost: str
    teacher_mean: float
    reference_mean: float
    paired: TTest
    welch: TTest

    @property
    def relative(self) -> float:
        """The mean difference as a fraction of the reference's mean (-0.3: 30% less)."""
        return self.paired.diff / self.reference_mean if self.reference_mean else math.nan


def censored_costs(
    runs: Sequence[EpisodeResult], cost: str, budget: float | None = None
) -> list[float]:
    """Each run's total of ``cost`` at its end; for a run that never reached tau, at least
    ``budget`` (see the module docstring)."""
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; expected one of {list(COSTS)}")
    values = [float(getattr(r, cost)) for r in runs]
    if budget is None:
        return values
    return [v if r.reached_tau else max(v, budget) for v, r in zip(values, runs, strict=True)]


def budgets(max_iters: int, batch_size: int) -> dict[str, float | None]:
    """The budget of each cost for :func:`censored_costs`, from the env's T' and M."""
    return {
        "iterations": max_iters,
        "effective_instances": max_iters * batch_size,
        "instances_seen": None,
        "seconds": None,
    }


def compare_costs(
    results: Mapping[str, Sequence[EpisodeResult]],
    reference: str,
    cost: str = "effective_instances",
    teachers: Sequence[str] | None = None,
    budget: float | None = None,
) -> list[Comparison]:
    """Every teacher in ``teachers`` (default: all but the reference) against ``reference``,
    on the per-run :func:`censored_costs` of ``cost`` (a key of :data:`COSTS`)."""
    if reference not in results:
        raise ValueError(f"no runs of the reference {reference!r}; have {list(results)}")
    ref = censored_costs(results[reference], cost, budget)
    out = []
    for name in teachers if teachers is not None else [n for n in results if n != reference]:
        if name == reference:
            continue
        x = censored_costs(results[name], cost, budget)
        out.append(
            Comparison(
                name,
                reference,
                cost,
                statistics.fmean(x),
                statistics.fmean(ref),
                paired_ttest(x, ref),
                welch_ttest(x, ref),
            )
        )
    return out


def cheapest(
    results: Mapping[str, Sequence[EpisodeResult]],
    teachers: Iterable[str],
    cost: str = "effective_instances",
    budget: float | None = None,
) -> str:
    """The teacher among ``teachers`` with the lowest mean :func:`censored_costs` of ``cost``."""
    names = list(teachers)
    if not names:
        raise ValueError("no teachers to choose from")
    return min(names, key=lambda n: statistics.fmean(censored_costs(results[n], cost, budget)))


def markdown_summary(summaries: Iterable[Summary]) -> str:
    """A markdown table: costs to tau as mean ± std (median) over the students that reached it."""
    lines = [
        "| teacher | reached tau | iterations | effective instances | candidate batches "
        "| seconds | final test acc. | keep |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.name} | {s.reached}/{s.students} | {_pmm(s.iterations, 0)} "
            f"| {_pmm(s.effective_instances, 0)} | {_pmm(s.candidates_seen, 0)} "
            f"| {_pmm(s.seconds, 2)} | {_pm(s.test_accuracy, 3)} | {s.keep_ratio:.2f} |"
        )
    return "\n".join(lines)


def markdown_comparisons(comparisons: Iterable[Comparison]) -> str:
    """A markdown table of :func:`compare_costs` results (negative differences: cheaper)."""
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


def _pmm(ms: tuple[float, ...], digits: int) -> str:
    return "-" if math.isnan(ms[0]) else f"{_pm(ms, digits)} ({ms[2]:.{digits}f})"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "<0.001"
