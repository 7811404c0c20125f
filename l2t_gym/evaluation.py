"""Run teachers on fresh students and compare what it took them to reach tau.

Tables, CSV and plots of the results are in :mod:`l2t_gym.report`.

Cost to tau. Every episode stops when its student first reaches tau, so a run's totals at its end
(iterations, effective instances, instances seen, seconds) *are* its cost to tau when it got
there. A run that never did has no cost to tau; the tables count such runs explicitly and leave
them out of the means. The significance tests need a number for every run (dropping failures
would favour the teacher that fails), so :func:`censored_costs` gives a failed run what it spent
or the budget, whichever is larger: a teacher that drops everything is truncated after spending
almost no iterations, and must not look cheap for it. The budget of iterations is T', of
effective instances T' x M; instances seen and seconds count what was spent.

Two counts of what a teacher was shown, each with one name: *candidate batches* are the teacher
steps (one (M, d) observation each); *instances seen* are the candidate instances, candidate
batches x M, each of which cost the student a forward pass.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from l2t_gym.stats import TTest, paired_ttest, welch_ttest
from l2t_gym.teachers import EpisodeResult, Teacher
from l2t_gym.teachers.executors import EpisodeJob, EpisodeOutcome, Executor, InProcessExecutor

#: Cost measures of a run: the :class:`EpisodeResult` attribute, and how reports name it.
COSTS = {
    "iterations": "iterations",
    "effective_instances": "effective instances",
    "instances_seen": "instances seen",
    "seconds": "seconds",
}


@dataclass(frozen=True)
class Summary:
    """One teacher over its students.

    Each cost is (mean, std, median) over the students that reached tau; ``test_accuracy`` is
    over every student that reported one; ``keep_ratio`` is the mean over every student.
    ``candidate_batches`` are teacher steps (observations shown), ``seconds`` wall-clock.
    """

    name: str
    students: int
    reached: int
    iterations: tuple[float, float, float]
    effective_instances: tuple[float, float, float]
    candidate_batches: tuple[float, float, float]
    seconds: tuple[float, float, float]
    test_accuracy: tuple[float, float, float]
    keep_ratio: float


def evaluate(
    make_env: Callable[[], gym.Env],
    teachers: Mapping[str, Teacher],
    seeds: Sequence[int],
    progress: Callable[[str, int, EpisodeResult], None] | None = None,
    own_envs: Mapping[str, Callable[[], gym.Env]] | None = None,
    executor: Executor | None = None,
) -> dict[str, list[EpisodeResult]]:
    """Let every teacher teach one fresh student per seed, the same seeds for every teacher.

    Runs are paired: the same seed gives the same initialisation and data order until the
    teachers' choices differ. Seed by seed, every teacher in turn: the machine's speed drifts
    (other jobs, clocks), and interleaving spreads that drift over the teachers instead of
    charging it to one of them.

    :param make_env: builds the env the students train in (called once per process that runs
        episodes; picklable for a Ray executor, e.g. :class:`l2t_gym.experiment.EnvSpec`).
    :param teachers: name -> teacher, in the order of the results.
    :param seeds: one student seed per run.
    :param progress: called after every run with (teacher name, seed, result).
    :param own_envs: teacher name -> the builder of its own env, for teachers that need other
        observation columns (e.g. ``extra_features``) on the same students; each built once.
    :param executor: where the episodes run (:mod:`l2t_gym.teachers.executors`; a
        :class:`~l2t_gym.teachers.ray_executor.RayExecutor` fans them out over its workers and
        gathers them in this order); None: in this process. Its envs get the names
        ``"evaluate"`` and ``"evaluate:<teacher name>"``.
    :return: teacher name -> its results, one per seed, in the order of ``seeds``.

    Every env first runs a few untimed keep-all steps, so that one-time costs (loading the
    data, fitting the irreducible losses, first kernel calls) are not charged to the seconds of
    whichever teacher comes first (a Ray executor warms its workers' envs when it was built
    with ``warm_up=True``, as :func:`l2t_gym.experiment.make_executor` does). The seeded resets
    that follow make the runs the same as without it.
    """
    if executor is None:
        executor = InProcessExecutor({}, warm_up=True)
    executor.envs[_EVALUATE] = make_env
    own = {name: f"{_EVALUATE}:{name}" for name in own_envs or {}}
    executor.envs.update({own[name]: build for name, build in (own_envs or {}).items()})
    pairs = [(name, seed) for seed in seeds for name in teachers]
    jobs = [
        EpisodeJob(teachers[name], [seed], [seed], env=own.get(name, _EVALUATE), curves=True)
        for name, seed in pairs
    ]

    def done(i: int, outcomes: list[EpisodeOutcome]) -> None:
        if progress is not None:
            progress(*pairs[i], outcomes[0].result)

    ran = executor.run(jobs, done)
    results: dict[str, list[EpisodeResult]] = {name: [] for name in teachers}
    for (name, _), outcomes in zip(pairs, ran, strict=True):
        results[name].append(outcomes[0].result)
    return results


#: The executor's name of the env :func:`evaluate` teaches in.
_EVALUATE = "evaluate"


def keep_ratio(runs: Sequence[EpisodeResult]) -> float:
    """The mean keep ratio (kept / seen instances) of ``runs``.

    :raises ValueError: when ``runs`` is empty.
    """
    if not runs:
        raise ValueError("keep_ratio needs at least one run")
    return statistics.fmean(r.keep_ratio for r in runs)


def summarise(name: str, runs: Sequence[EpisodeResult]) -> Summary:
    """Summarise one teacher's runs (see :class:`Summary`).

    :param name: the teacher's name in tables.
    :param runs: its results, one per student.
    :return: the summary; NaN costs when no student reached tau.
    """
    hit = [r for r in runs if r.reached_tau]
    tests = [r.test_accuracy for r in runs if r.test_accuracy is not None]
    return Summary(
        name=name,
        students=len(runs),
        reached=len(hit),
        iterations=_mean_std_median(r.iterations for r in hit),
        effective_instances=_mean_std_median(r.effective_instances for r in hit),
        candidate_batches=_mean_std_median(r.teacher_steps for r in hit),
        seconds=_mean_std_median(r.seconds for r in hit),
        test_accuracy=_mean_std_median(tests),
        keep_ratio=statistics.fmean(r.keep_ratio for r in runs) if runs else math.nan,
    )


def _mean_std_median(values: Iterable[float]) -> tuple[float, float, float]:
    v = list(values)
    if not v:
        return (math.nan, math.nan, math.nan)
    return (
        statistics.fmean(v),
        statistics.stdev(v) if len(v) > 1 else 0.0,
        statistics.median(v),
    )


# -- significance --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """``teacher`` against ``reference`` on one cost (a key of :data:`COSTS`).

    See the module docstring for how runs that never reached tau enter. ``paired`` is the test
    to read, since both taught the same student seeds; ``welch`` ignores the pairing, for
    comparison. Means are over every run, in the cost's unit.
    """

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
    ``budget`` (see the module docstring).

    :param runs: one teacher's results.
    :param cost: a key of :data:`COSTS`.
    :param budget: the floor of a failed run's cost (None: none), in the cost's unit.
    :return: one value per run, in order.
    :raises ValueError: when ``cost`` is not a key of :data:`COSTS`.
    """
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; expected one of {list(COSTS)}")
    values = [float(getattr(r, cost)) for r in runs]
    if budget is None:
        return values
    return [v if r.reached_tau else max(v, budget) for v, r in zip(values, runs, strict=True)]


def budgets(max_iters: int, batch_size: int) -> dict[str, float | None]:
    """The budget of each cost for :func:`censored_costs`.

    :param max_iters: the env's T' (student iterations).
    :param batch_size: the env's M (instances per iteration).
    :return: cost -> budget; None for the costs that have none (instances seen, seconds).
    """
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
    """Every teacher in ``teachers`` against ``reference`` on the per-run :func:`censored_costs`.

    :param results: teacher name -> results on the same seeds (as :func:`evaluate` gives).
    :param reference: the teacher compared against.
    :param cost: a key of :data:`COSTS`.
    :param teachers: the teachers to compare (default: all but the reference).
    :param budget: see :func:`censored_costs`.
    :return: one :class:`Comparison` per teacher, in order.
    :raises ValueError: when the reference has no runs or the cost is unknown.
    """
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
    """The teacher among ``teachers`` with the lowest mean :func:`censored_costs` of ``cost``.

    :raises ValueError: when ``teachers`` is empty.
    """
    names = list(teachers)
    if not names:
        raise ValueError("no teachers to choose from")
    return min(names, key=lambda n: statistics.fmean(censored_costs(results[n], cost, budget)))


# Tables, CSV and plots used to live here; old imports keep working for a while.
_MOVED_TO_REPORT = (
    "CURVE_AXES",
    "format_table",
    "markdown_comparisons",
    "markdown_summary",
    "plot_cost_box",
    "plot_curves",
    "plot_keep_ratio",
    "write_csv",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_REPORT:
        from l2t_gym import report

        warnings.warn(
            f"l2t_gym.evaluation.{name} moved to l2t_gym.report.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
