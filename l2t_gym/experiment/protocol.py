"""The comparison as one call, and its replication over training seeds (GUIDE §8).

:func:`run_comparison` is the paper's comparison of a learned teacher with every heuristic:
train (or load) the teacher on the teacher fold, choose each baseline's best setting there,
teach the same fresh students on the student fold with every teacher, write the report.
:func:`replicate` runs it once per training seed, each in its own folder, on the *same*
student seeds (never used in training or tuning: those use the teacher fold), and
:func:`write_protocol` tabulates, for every heuristic, the learned teacher's paired difference
in each training seed, their spread, and the student runs every part spent. A claim about a
learned teacher is one that holds in every training seed, not in their mean.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import platform
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from l2t_gym.evaluation import Comparison, budgets, compare_costs
from l2t_gym.experiment.config import ExperimentConfig
from l2t_gym.experiment.recipes import (
    available_baselines,
    best_settings,
    compare_teachers,
    describe_selection,
    feature_names,
    load_extra,
    make_env,
    make_executor,
    teacher_file,
    train_teacher,
    training_printer,
    write_report,
)
from l2t_gym.files import write_text
from l2t_gym.teachers import TEACHER_LABELS, EpisodeResult, Teacher, make_teacher

#: The learned teacher's name in every table.
LEARNED = TEACHER_LABELS["l2t"]
#: The level below which a paired difference counts as a win or a loss.
ALPHA = 0.05


@dataclass
class ComparisonRun:
    """One training seed's comparison: what :func:`run_comparison` returns."""

    cfg: ExperimentConfig
    results: dict[str, list[EpisodeResult]]
    """Teacher name -> one result per student seed (``cfg.student_seeds``)."""
    learned: list[str]
    """The learned teachers' names, :data:`LEARNED` first."""
    notes: list[str]
    training_runs: int
    """Student runs (episodes) the teacher's training spent on the teacher fold (0: loaded)."""
    tuning_runs: int
    """Student runs the baselines' sweeps spent on the teacher fold."""
    seconds: float

    @property
    def comparison_runs(self) -> int:
        """Student runs on the student fold: every teacher's, and the probe of the learned
        teacher's keep ratio."""
        return sum(len(r) for r in self.results.values()) + len(self.cfg.student_seeds)


def run_comparison(cfg: ExperimentConfig, verbose: bool = True) -> ComparisonRun:
    """Train (``cfg.teacher``: load) the learned teacher, choose every baseline's best setting
    on the teacher fold, compare them on ``cfg.student_seeds`` and write the report
    (summary.md, runs.csv, PNGs, the teacher and its training history) to ``cfg.out``.

    :param verbose: print training progress to stderr.
    :raises ValueError: for a saved teacher whose layout or task differs from the env's.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    names = feature_names(cfg)
    # One executor for training, sweeps and comparison: Ray workers keep their envs and data.
    with make_executor(cfg, warm_up=True) as executor:
        notes: list[str] = []
        start = time.perf_counter()
        training_runs = 0
        if cfg.teacher:
            teacher: Teacher = make_teacher(cfg.teacher, expected_feature_names=names)
            notes.append(f"{LEARNED} teacher loaded from `{cfg.teacher}`.")
        else:
            printer = training_printer(cfg) if verbose else None
            trained = train_teacher(cfg, printer, executor=executor)
            trained.save(out / teacher_file(cfg), out / "training.json")
            teacher = trained.teacher
            training_runs = trained.episodes
            records = len(trained.history) - (trained.selection is not None)
            last = min(records, 5 * cfg.students_per_update)
            reward, keep = trained.tail(last)
            selection = trained.selection
            notes.append(
                f"{LEARNED} teacher trained here by {cfg.algo}: {training_runs} episodes in "
                f"{time.perf_counter() - start:.0f} s; last {last} records: mean reward "
                f"{reward:.3f}, keep ratio {keep:.2f}"
                + (
                    f"; {describe_selection(selection, cfg.es_select_students)}."
                    if selection
                    else "."
                )
            )
        baselines = available_baselines(cfg)
        best, sweep_notes = best_settings(cfg, baselines, executor=executor)
        notes += sweep_notes
        learned: dict[str, Teacher] = {LEARNED: teacher}
        for spec, kwargs in zip(cfg.extra, cfg.extra_args, strict=True):
            name, extra = load_extra(spec, names, cfg.sb3_algo, kwargs)
            learned[name] = extra
        results = compare_teachers(cfg, learned, best=best, baselines=baselines, executor=executor)
    env = make_env(cfg, "student").unwrapped
    seeds = cfg.student_seeds
    notes.append(
        f"{cfg.env_id}, student fold: tau={env.tau}, T'={env.max_iters}, M={env.batch_size}, "
        f"eval_every={env.eval_every}, candidate_cost={env.candidate_cost}; {cfg.students} "
        f"students, seeds {seeds[0]}-{seeds[-1]} for every teacher; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), device {env.device}; "
        f"{time.perf_counter() - start:.0f} s in all."
    )
    title = f"{cfg.env_id} (candidate_cost={env.candidate_cost:g})"
    write_report(cfg, results, list(learned), title, notes)
    tuning = len(cfg.ratios) * cfg.sweep_students * len(best)
    seconds = time.perf_counter() - start
    return ComparisonRun(cfg, results, list(learned), notes, training_runs, tuning, seconds)


def replicate(
    cfg: ExperimentConfig,
    train_seeds: Sequence[int],
    run: Callable[[ExperimentConfig], ComparisonRun] = run_comparison,
) -> dict[int, ComparisonRun]:
    """:func:`run_comparison` once per training seed, into ``<cfg.out>/train_seed_<S>``, every
    one on the same student seeds.

    ``{train_seed}`` in ``cfg.teacher``, ``cfg.init_teacher`` or an item of ``cfg.extra``
    names one saved teacher per training seed (e.g.
    ``runs/digits/train_seed_{train_seed}/teacher.safetensors``: a transfer, or a warm start,
    replicated); without it, the same teacher serves every run.

    :param train_seeds: at least one, no repeats.
    :param run: the comparison of one training seed (a test may pass its own).
    :return: training seed -> its run, in the order given.
    :raises ValueError: for no seeds or a repeated one.
    """
    seeds = [int(s) for s in train_seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"train_seeds must be distinct and at least one, got {list(train_seeds)}")
    out = Path(cfg.out)
    runs = {}
    for s in seeds:
        teacher = cfg.teacher and cfg.teacher.replace("{train_seed}", str(s))
        init = cfg.init_teacher and cfg.init_teacher.replace("{train_seed}", str(s))
        extra = [spec.replace("{train_seed}", str(s)) for spec in cfg.extra]
        folder = str(out / f"train_seed_{s}")
        runs[s] = run(
            dataclasses.replace(
                cfg, train_seed=s, teacher=teacher, init_teacher=init, extra=extra, out=folder
            )
        )
    return runs


def heuristic_role(name: str) -> str:
    """A heuristic's row in the protocol's table, the same in every training seed: its label
    without the setting, which differs between seeds ("LossRank 0.27" -> "LossRank at L2T's
    ratio", "LossRank 0.50 (best)" -> "LossRank (best)", "InfoBatch prune_ratio=0.80 (best)" ->
    "InfoBatch (best)", "NoTeach" -> "NoTeach")."""
    bare = re.sub(r" (\w+=)?[0-9.]+", "", name)
    if bare != name and not bare.endswith(" (best)"):
        return f"{bare} at {LEARNED}'s ratio"
    return bare


@dataclass(frozen=True)
class ProtocolRow:
    """The learned teacher against one heuristic, in every training seed."""

    heuristic: str
    """Its :func:`heuristic_role`."""
    comparisons: dict[int, Comparison]
    """Training seed -> the learned teacher's paired comparison with that heuristic."""

    @property
    def wins(self) -> int:
        """Training seeds in which the learned teacher costs less, paired p < :data:`ALPHA`."""
        return sum(c.paired.diff < 0 and c.paired.p < ALPHA for c in self.comparisons.values())

    @property
    def losses(self) -> int:
        """Training seeds in which it costs more, paired p < :data:`ALPHA`."""
        return sum(c.paired.diff > 0 and c.paired.p < ALPHA for c in self.comparisons.values())

    @property
    def spread(self) -> tuple[float, float]:
        """(mean, std) over training seeds of the relative difference (-0.1: 10% cheaper)."""
        values = [c.relative for c in self.comparisons.values()]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std


def protocol_rows(
    runs: Mapping[int, ComparisonRun],
    cost: str = "effective_instances",
    teacher: str = LEARNED,
) -> list[ProtocolRow]:
    """A learned teacher against every other teacher of the runs (the heuristics, then any other
    learned one), per training seed, on ``cost`` (runs that never reached tau count with the
    budget, see :func:`l2t_gym.evaluation.censored_costs`).

    :param teacher: the learned teacher's name (default :data:`LEARNED`).
    :raises ValueError: when a run lacks ``teacher``, or the runs' other teachers differ.
    """
    table: dict[str, dict[int, Comparison]] = {}
    for seed, run in runs.items():
        if teacher not in run.results:
            raise ValueError(f"training seed {seed}: no {teacher!r} teacher in its results")
        env = make_env(run.cfg, "student").unwrapped
        budget = budgets(env.max_iters, env.batch_size)[cost]
        # A heuristic's row drops its setting (it differs between seeds); a learned teacher's
        # name is its own (an --extra named "mlp-256" keeps its number).
        rows = {heuristic_role(n): n for n in run.results if n not in run.learned}
        rows.update({n: n for n in run.learned if n != teacher})
        for role, name in rows.items():
            (comparison,) = compare_costs(run.results, name, cost, [teacher], budget)
            table.setdefault(role, {})[seed] = comparison
    rows = [ProtocolRow(role, by_seed) for role, by_seed in table.items()]
    missing = [r.heuristic for r in rows if len(r.comparisons) != len(runs)]
    if missing:
        raise ValueError(f"heuristics missing from some training seeds: {missing}")
    return rows


def markdown_protocol(
    runs: Mapping[int, ComparisonRun], rows: Sequence[ProtocolRow], teacher: str = LEARNED
) -> str:
    """The protocol's tables: each heuristic's paired difference in every training seed and its
    spread, then per training seed the students that reached tau (``teacher``'s, and the fewest
    of any teacher: a comparison where runs rarely reach tau compares budgets, not speeds) and
    the student runs it spent."""
    seeds = list(runs)
    head = ["heuristic", *(f"train seed {s}" for s in seeds), "mean ± std", "wins / losses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.heuristic]
        for s in seeds:
            c = row.comparisons[s]
            cells.append(f"{c.relative:+.1%} (p {_p(c.paired.p)})")
        mean, std = row.spread
        cells += [f"{mean:+.1%} ± {std:.1%}", f"{row.wins} / {row.losses}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| training seed | {teacher} reached tau | fewest of any teacher | training runs "
        "| tuning runs | comparison runs | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, run in runs.items():
        reached = {n: sum(r.reached_tau for r in rs) for n, rs in run.results.items()}
        fewest = min(reached, key=reached.__getitem__)
        lines.append(
            f"| {s} | {reached[teacher]}/{len(run.results[teacher])} | {reached[fewest]} "
            f"({fewest}) | {run.training_runs} | {run.tuning_runs} | {run.comparison_runs} | "
            f"{run.seconds:.0f} |"
        )
    return "\n".join(lines)


def write_protocol(
    runs: Mapping[int, ComparisonRun], out: Path, costs: Sequence[str] = ("effective_instances",)
) -> str:
    """Write protocol.md and protocol.csv (one row per learned teacher, cost, other teacher and
    training seed) to ``out``, a table per learned teacher and cost; return the markdown.

    :param costs: keys of :data:`l2t_gym.evaluation.COSTS` to tabulate, each its own table.
    """
    first = next(iter(runs.values()))
    seeds = list(runs)
    loaded = first.cfg.teacher is not None  # one saved teacher per seed, trained elsewhere
    source = "saved teachers" if loaded else first.cfg.algo
    trained = "loaded its own saved teacher" if loaded else "trained its own teacher"
    lines = [
        f"## {first.cfg.env_id}: {LEARNED} ({source}) in {len(seeds)} training seeds",
        "",
        f"Each training seed ({', '.join(map(str, seeds))}) {trained} and chose "
        f"every baseline's best setting on the teacher fold; all taught the same "
        f"{first.cfg.students} student seeds ({first.cfg.student_seeds[0]}-"
        f"{first.cfg.student_seeds[-1]}) on the student fold. A cell is {LEARNED}'s mean "
        f"difference from the heuristic relative to the heuristic's mean (negative: {LEARNED} "
        f"costs less) and its paired t-test's p; *wins / losses* count the training seeds "
        f"where {LEARNED} costs significantly less / more (p < {ALPHA}).",
        "",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["learned", "cost", "heuristic", "train_seed", "learned_mean",
                     "heuristic_mean", "relative", "paired_p"])  # fmt: skip
    for name in first.learned:
        for cost in costs:
            rows = protocol_rows(runs, cost, name)
            head = f"### {name}: {cost.replace('_', ' ')} to tau"
            lines += [head, "", markdown_protocol(runs, rows, name), ""]
            for row in rows:
                for s, c in row.comparisons.items():
                    writer.writerow(
                        [
                            name,
                            cost,
                            row.heuristic,
                            s,
                            c.teacher_mean,
                            c.reference_mean,
                            c.relative,
                            c.paired.p,
                        ]  # fmt: skip
                    )
    text = "\n".join(lines)
    write_text(out / "protocol.md", text + "\n")
    write_text(out / "protocol.csv", buffer.getvalue())
    return text


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else ("nan" if math.isnan(p) else f"{p:.3f}")


__all__ = [
    "ALPHA",
    "LEARNED",
    "ComparisonRun",
    "ProtocolRow",
    "heuristic_role",
    "markdown_protocol",
    "protocol_rows",
    "replicate",
    "run_comparison",
    "write_protocol",
]
