"""Compare teacher policies as the paper does: a learned (L2T) teacher against plain training,
random filtering and loss ranking at its keep ratio, loss ranking at its best ratio and
self-paced learning, each teaching the same fresh students.

    python benchmarks/compare_teachers.py --task digits --students 10 --out benchmarks/out/cmp
    python benchmarks/compare_teachers.py --task digits --candidate-cost 0.25   # filtering costs

Protocol (every choice is an argument):

1. The L2T teacher is trained by REINFORCE on the task's *teacher* fold (or loaded, --teacher).
2. LossRank's best keep ratio is chosen on the teacher fold too (mean reward over --sweep-students
   students per ratio), never on the students it is then compared on.
3. Every teacher teaches one fresh student per seed on the *student* fold, the same seeds for all
   teachers (paired). The L2T teacher goes first; RandTeach and LossRank then run at its mean
   keep ratio on those students.
4. Reported: costs to tau (iterations, effective instances, candidate batches, wall-clock) with
   runs that never reach tau counted, final test accuracy, keep ratio; paired t-tests (and Welch's)
   of every teacher against NoTeach and against the cheapest heuristic; a CSV (one row per run
   and checkpoint, with dev and test accuracy), PNGs and a markdown summary.

``--candidate-cost c`` charges c clock units per candidate batch shown, in training and in the
comparison (the reward and T' read that clock), so a teacher pays for the forward passes it
filters away. Wall-clock includes the teacher's own time and excludes test-set evaluations.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import l2t_gym  # noqa: F401  (registers the envs)
from l2t_gym.cli import parse_key_value
from l2t_gym.evaluation import (
    budgets,
    cheapest,
    compare_costs,
    evaluate,
    markdown_comparisons,
    markdown_summary,
    plot_cost_box,
    plot_curves,
    plot_keep_ratio,
    summarise,
    write_csv,
)
from l2t_gym.teachers import (
    BernoulliTeacher,
    EpisodeResult,
    LossRank,
    NoTeach,
    RandTeach,
    SelfPaced,
    Teacher,
    run_episode,
)
from l2t_gym.teachers.reinforce import ReinforceConfig, ReinforceTrainer

HEURISTICS = ("noteach", "rand", "lossrank", "lossrank best", "spl")


@dataclass
class Config:
    """Everything a comparison depends on; written next to its results as config.json."""

    task: str = "digits"
    env_args: dict[str, Any] = field(default_factory=dict)
    offline_mnist: str | None = None  # MNIST test files: run on mnist_offline's real subset
    students: int = 10
    first_seed: int = 1000
    candidate_cost: float = 0.0
    teacher: str | None = None  # a saved BernoulliTeacher to load instead of training one
    init_teacher: str | None = None  # a saved BernoulliTeacher to start training from
    extra: list[str] = field(default_factory=list)  # NAME=PATH (.safetensors or SB3 .zip)
    sb3_algo: str = "PPO"
    episodes: int = 300
    students_per_update: int = 8
    lr: float = 0.01
    baseline_momentum: float = 0.9
    baseline: str = "moving"  # or "seed": leave-one-out over repeats of a student seed
    repeats: int = 1
    init_keep: float = 0.9
    train_seed: int = 0
    vector: bool = False
    ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7)
    sweep_students: int = 5
    threads: int = 1
    out: str = "benchmarks/out/compare"

    def env_id(self) -> str:
        ids = {"digits": "Digits", "mnist": "MNIST", "cifar10": "CIFAR10", "imdb": "IMDB"}
        if self.task not in ids:
            raise ValueError(f"unknown task {self.task!r}; expected one of {sorted(ids)}")
        return f"L2T-{ids[self.task]}-v0"


def env_kwargs(cfg: Config, fold: str, **extra: Any) -> dict[str, Any]:
    """The env keyword arguments of ``cfg`` for one fold."""
    kwargs = {"candidate_cost": cfg.candidate_cost, **cfg.env_args, "fold": fold, **extra}
    if cfg.offline_mnist:
        if cfg.task != "mnist":
            raise ValueError(f"offline_mnist is MNIST data; the task is {cfg.task!r}")
        kwargs["data"] = offline_data(cfg.offline_mnist)
    return kwargs


def env_factory(cfg: Config, fold: str, **extra: Any) -> Callable[[], gym.Env]:
    kwargs = env_kwargs(cfg, fold, **extra)
    return lambda: gym.make(cfg.env_id(), **kwargs)


@functools.cache
def offline_data(folder: str):
    """Real MNIST without a network (see mnist_offline.py), built once per process."""
    from mnist_offline import offline_mnist

    return offline_mnist(Path(folder))


# -- the L2T teacher -----------------------------------------------------------------------------
def train_teacher(cfg: Config, make_env: Callable[[], gym.Env]) -> tuple[BernoulliTeacher, list]:
    """REINFORCE on the teacher fold, as ``l2t train`` does."""
    config = ReinforceConfig(
        episodes=cfg.episodes,
        students_per_update=cfg.students_per_update,
        lr=cfg.lr,
        baseline_momentum=cfg.baseline_momentum,
        baseline=cfg.baseline,
        repeats=cfg.repeats,
        seed=cfg.train_seed,
    )
    env = make_env()
    names = env.unwrapped.feature_names
    if cfg.vector:  # the students of an update side by side, on the same fold
        fold = env.unwrapped.fold
        env = gym.make_vec(cfg.env_id(), num_envs=cfg.students_per_update, **env_kwargs(cfg, fold))
    if cfg.init_teacher:  # warm start, e.g. from a teacher trained on another task
        teacher = BernoulliTeacher.load(
            cfg.init_teacher, expected_feature_names=names, seed=cfg.train_seed
        )
    else:
        teacher = BernoulliTeacher(names, init_keep=cfg.init_keep, seed=cfg.train_seed)
    every = 10 * cfg.students_per_update

    def progress(record: dict) -> None:
        done = record["episode"] + 1
        if done % every == 0 or done == cfg.episodes:
            print(
                f"  episode {done}/{cfg.episodes}: reward {record['reward']:.3f}, baseline "
                f"{record['baseline']:.3f}, keep {record['keep_ratio']:.2f}",
                file=sys.stderr,
                flush=True,
            )

    history = ReinforceTrainer(env, teacher, config).train(callback=progress)
    return teacher, history


def load_extra(spec: str, names: tuple[str, ...], algo: str) -> tuple[str, Teacher]:
    """NAME=PATH: a saved BernoulliTeacher (.safetensors) or an SB3 model (.zip) whose policy is
    ``l2t_gym.sb3.InstancePolicy``."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--extra expects NAME=PATH, got {spec!r}")
    if path.endswith(".zip"):
        import stable_baselines3

        from l2t_gym.sb3 import InstanceTeacher

        model = getattr(stable_baselines3, algo).load(path, device="cpu")
        return name, InstanceTeacher(model)
    return name, BernoulliTeacher.load(path, expected_feature_names=names)


def best_lossrank_ratio(cfg: Config, make_env: Callable[[], gym.Env]) -> tuple[float, dict]:
    """The keep ratio whose LossRank earns the most mean reward on the teacher fold."""
    env = make_env()
    seeds = range(cfg.train_seed + 10_000, cfg.train_seed + 10_000 + cfg.sweep_students)
    rewards = {
        r: statistics.fmean(run_episode(env, LossRank(r), seed=s).reward for s in seeds)
        for r in cfg.ratios
    }
    return max(rewards, key=rewards.get), rewards


# -- the comparison ------------------------------------------------------------------------------
def compare(
    cfg: Config,
    learned: dict[str, Teacher],
    make_env: Callable[[], gym.Env],
    best_ratio: float,
) -> dict[str, list[EpisodeResult]]:
    """The heuristics at the first learned teacher's mean keep ratio, and the learned teachers.

    The first learned teacher runs once alone to measure its keep ratio, then again with the
    others, interleaved seed by seed (see ``evaluate``): the same episodes, but wall-clock
    measured under the same conditions for every teacher.
    """
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.students))
    first = next(iter(learned))
    probe = evaluate(make_env, {first: learned[first]}, seeds)[first]
    ratio = min(max(statistics.fmean(r.keep_ratio for r in probe), 0.01), 1.0)
    heuristics = {
        "noteach": NoTeach(),
        f"rand {ratio:.2f}": RandTeach(ratio),
        f"lossrank {ratio:.2f}": LossRank(ratio),
        f"lossrank {best_ratio:.2f} (best)": LossRank(best_ratio),
        "spl": SelfPaced(),
    }
    return evaluate(make_env, {**heuristics, **learned}, seeds)


def report(
    cfg: Config,
    results: dict[str, list[EpisodeResult]],
    learned: list[str],
    out: Path,
    title: str,
    notes: list[str],
) -> str:
    """Tables, significance tests, CSV and PNGs; returns the markdown summary."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.students))
    heuristics = [n for n in results if n not in learned]
    env = env_factory(cfg, "student")().unwrapped
    budget = budgets(env.max_iters, env.batch_size)
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

    def against(ref: str, cost: str, teachers: list[str]) -> list:
        return compare_costs(results, ref, cost, teachers, budget[cost])

    rows = [c for ref in heuristics for c in against(ref, costs[0], learned)]
    lines += ["Effective instances against every heuristic:", "", markdown_comparisons(rows), ""]
    if len(learned) > 1:
        rows = [c for ref in learned[1:] for c in against(ref, costs[0], learned[:1])]
        lines += ["Learned teachers against each other:", "", markdown_comparisons(rows), ""]
    for ref in dict.fromkeys(["noteach", best]):
        rows = [c for cost in costs[1:] for c in against(ref, cost, learned)]
        lines += [f"Other costs against {ref}:", "", markdown_comparisons(rows), ""]
    if best != "noteach":
        rows = against("noteach", costs[0], heuristics)
        lines += ["Heuristics against NoTeach:", "", markdown_comparisons(rows), ""]
    summary = "\n".join(lines)
    (out / "summary.md").write_text(summary + "\n")
    write_csv(results, seeds, out / "runs.csv")
    plot_curves(
        results,
        out / "curves.png",
        title,
        axes=("effective_instances", "instances_seen", "iteration", "seconds"),
        accuracies=("dev_accuracy", "test_accuracy"),
    )
    plot_cost_box(results, out / "to_tau_box.png", title)
    plot_keep_ratio(results, out / "keep_ratio.png", title)
    return summary


def main(argv: list[str] | None = None) -> dict[str, list[EpisodeResult]]:
    cfg = parse(argv)
    torch.set_num_threads(cfg.threads)  # small students run fastest on one thread
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher_env = env_factory(cfg, "teacher")
    student_env = env_factory(cfg, "student", report_test="eval")
    names = teacher_env().unwrapped.feature_names
    notes = []
    start = time.perf_counter()
    if cfg.teacher:
        teacher = BernoulliTeacher.load(cfg.teacher, expected_feature_names=names)
        notes.append(f"L2T teacher loaded from `{cfg.teacher}`.")
    else:
        teacher, history = train_teacher(cfg, teacher_env)
        teacher.save(out / "teacher.safetensors", task=cfg.task)
        (out / "training.json").write_text(json.dumps(history))
        last = history[-min(len(history), 5 * cfg.students_per_update) :]
        notes.append(
            f"L2T teacher trained here: {len(history)} episodes in "
            f"{time.perf_counter() - start:.0f} s; last {len(last)}: mean reward "
            f"{statistics.fmean(r['reward'] for r in last):.3f}, keep ratio "
            f"{statistics.fmean(r['keep_ratio'] for r in last):.2f}."
        )
    best_ratio, sweep = best_lossrank_ratio(cfg, teacher_env)
    notes.append(
        "LossRank sweep on the teacher fold (mean reward): "
        + ", ".join(f"{r:g}: {v:.3f}" for r, v in sweep.items())
        + f" -> best {best_ratio:g}."
    )
    learned: dict[str, Teacher] = {"l2t": teacher}
    for spec in cfg.extra:
        name, extra = load_extra(spec, names, cfg.sb3_algo)
        learned[name] = extra
    results = compare(cfg, learned, student_env, best_ratio)
    env = student_env().unwrapped
    notes.append(
        f"{cfg.env_id()}, student fold: tau={env.tau}, T'={env.max_iters}, M={env.batch_size}, "
        f"eval_every={env.eval_every}, candidate_cost={env.candidate_cost}; {cfg.students} "
        f"students, seeds {cfg.first_seed}-{cfg.first_seed + cfg.students - 1} for every "
        f"teacher; {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s), device {env.device}; "
        f"{time.perf_counter() - start:.0f} s in all."
    )
    title = f"{cfg.env_id()} (candidate_cost={cfg.candidate_cost:g})"
    summary = report(cfg, results, list(learned), out, title, notes)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    print(summary)
    print(f"\nwrote {out}/summary.md, runs.csv, curves.png, to_tau_box.png, keep_ratio.png")
    return results


def parse(argv: list[str] | None = None) -> Config:
    defaults = Config()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in Config.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if f.name == "env_args":
            ap.add_argument(
                "--env-arg", dest="env_args", action="append", default=[], metavar="KEY=VALUE"
            )
        elif f.name == "extra":
            ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH")
        elif f.name == "ratios":
            ap.add_argument(flag, type=float, nargs="+", default=list(value))
        elif isinstance(value, bool):
            ap.add_argument(flag, action="store_true")
        else:
            kind = type(value) if value is not None else str
            ap.add_argument(flag, type=kind, default=value)
    args = vars(ap.parse_args(argv))
    args["env_args"] = dict(key_value(item) for item in args["env_args"])
    args["ratios"] = tuple(args["ratios"])
    cfg = Config(**args)
    cfg.env_id()  # fails early on an unknown task
    if cfg.students < 2:
        raise SystemExit("--students must be at least 2 (the tests need pairs)")
    if not (math.isfinite(cfg.candidate_cost) and cfg.candidate_cost >= 0):
        raise SystemExit(f"--candidate-cost must be >= 0, got {cfg.candidate_cost}")
    return cfg


def key_value(item: str) -> tuple[str, Any]:
    try:
        return parse_key_value(item)
    except ValueError as err:
        raise SystemExit(str(err)) from err


if __name__ == "__main__":
    main(sys.argv[1:])
