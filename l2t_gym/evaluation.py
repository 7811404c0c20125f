"""Teach fresh students with several teachers and report as the paper does: a table of what it
took to reach tau, a CSV of every run, and dev accuracy against effective training instances."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from l2t_gym.teachers import EpisodeResult, Teacher, run_episode


@dataclass(frozen=True)
class Summary:
    """One teacher over its students. Means and stds are over the students that reached tau."""

    name: str
    students: int
    reached: int
    iterations: tuple[float, float]
    effective_instances: tuple[float, float]
    candidates_seen: tuple[float, float]
    seconds: tuple[float, float]
    test_accuracy: tuple[float, float]
    keep_ratio: float


def evaluate(
    make_env: Callable[[], gym.Env],
    teachers: Mapping[str, Teacher],
    seeds: Sequence[int],
    progress: Callable[[str, int, EpisodeResult], None] | None = None,
) -> dict[str, list[EpisodeResult]]:
    """Every teacher teaches one fresh student per seed; the same seeds for every teacher, so
    runs are paired (same initialisation and data order until the teachers' choices differ)."""
    env = make_env()
    results: dict[str, list[EpisodeResult]] = {}
    for name, teacher in teachers.items():
        results[name] = []
        for seed in seeds:
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
        iterations=_mean_std(r.iterations for r in hit),
        effective_instances=_mean_std(r.effective_instances for r in hit),
        candidates_seen=_mean_std(r.teacher_steps for r in hit),
        seconds=_mean_std(r.seconds for r in hit),
        test_accuracy=_mean_std(tests),
        keep_ratio=statistics.fmean(r.kept_ratio for r in runs) if runs else math.nan,
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
    """One row per run and dev evaluation."""
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
                            f"{r.kept_ratio:.4f}",
                            r.test_accuracy,
                            p.effective_instances,
                            p.iteration,
                            p.teacher_step,
                            f"{p.dev_accuracy:.4f}",
                            f"{p.seconds:.4f}",
                        ]
                    )


def plot_curves(results: Mapping[str, Sequence[EpisodeResult]], path: Path, title: str) -> None:
    """Dev accuracy against effective training instances, the mean over students with a band of
    one std; a run that has ended keeps its last accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    end = max(p.effective_instances for runs in results.values() for r in runs for p in r.curve)
    grid = np.linspace(0, max(end, 1), 200)
    for name, runs in results.items():
        curves = np.stack([_step_interp(r, grid) for r in runs])
        mean, std = curves.mean(0), curves.std(0)
        ax.plot(grid, mean, label=name)
        ax.fill_between(grid, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("effective training instances")
    ax.set_ylabel("dev accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _step_interp(run: EpisodeResult, grid: np.ndarray) -> np.ndarray:
    xs = np.array([p.effective_instances for p in run.curve])
    ys = np.array([p.dev_accuracy for p in run.curve])
    idx = np.searchsorted(xs, grid, side="right") - 1
    return ys[np.clip(idx, 0, len(ys) - 1)]


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    v = list(values)
    if not v:
        return (math.nan, math.nan)
    return (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)


def _pm(ms: tuple[float, float], digits: int) -> str:
    mean, std = ms
    return "-" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"
