"""The ``l2t`` command: ``l2t demo``, ``l2t train ENV_ID``, ``l2t evaluate ENV_ID``.

Each command reads its options into an :class:`~l2t_gym.experiment.ExperimentConfig` and runs
recipes of :mod:`l2t_gym.experiment`; what they print and write is decided here.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from l2t_gym.evaluation import budgets, cheapest, compare_costs, evaluate, summarise
from l2t_gym.experiment import (
    ExperimentConfig,
    TrainedTeacher,
    add_arguments,
    add_teacher_arguments,
    available_baselines,
    best_settings,
    checkpoint_folder,
    compare_teachers,
    config_from_arguments,
    describe_selection,
    env_factory,
    episodes_done,
    feature_names,
    feature_overrides,
    heuristics_at,
    make_env,
    make_executor,
    parse_key_value,
    teacher_file,
    train_teacher,
)
from l2t_gym.report import NOTEACH, format_table, plot_curves, write_csv
from l2t_gym.teachers import TEACHER_LABELS, EpisodeResult, Teacher, make_teacher
from l2t_gym.teachers import es as es_files
from l2t_gym.teachers import ppo as ppo_files
from l2t_gym.teachers import reinforce as reinforce_files

__all__ = ["main", "parse_key_value"]  # parse_key_value lived here once

TEACHER_FILE = "teacher.safetensors"
#: The REINFORCE options of ``demo`` and ``train`` (fields of ExperimentConfig).
TRAINING = (
    "episodes",
    "students_per_update",
    "lr",
    "baseline_momentum",
    "lr_halve_every",
    "weight_decay",
    "init_keep",
    "baseline",
    "repeats",
    "vector",
    "patience",
    "teacher_hidden",
    "teacher_inputs",
    "tensorboard",
)
#: The teacher-training algorithm and CMA-ES's and PPO's options of ``train`` (fields of
#: ExperimentConfig).
RAY_OPTIONS = ("ray_address", "workers", "gpus_per_worker")
ES_OPTIONS = (
    "algo",
    "es_popsize",
    "es_sigma",
    "es_students",
    "es_select_last",
    "es_select_students",
    "ppo_n_steps",
    "ppo_batch_size",
)
# The command's own defaults where they differ from the benchmarks' (ExperimentConfig's).
_DEFAULTS = {
    # The best recipe of RESULTS.md that fits in 3 minutes on 2 CPU cores ("Digits, scale-free
    # inputs"): CMA-ES on a narrow teacher (4 hidden units) that sees the loss history columns
    # but reads only the scale-free ones (margin, loss rank, loss against the running mean, loss
    # change), paid for each of Digits' three accuracy thresholds (reward="thresholds"; the
    # episode still ends at tau, so effective instances to tau mean what they mean under the
    # paper's reward). At this budget, three training seeds: -42.9% against NoTeach, wins
    # Selective-Backprop in 3 and InfoBatch in 2 (the loss-rank recipe it replaces: -39.1%,
    # InfoBatch once).
    "demo": {
        "task": "digits",
        "algo": "es",
        "episodes": 3200,
        "es_popsize": 10,
        "es_students": 4,
        "teacher_hidden": 4,
        "teacher_inputs": ("margin", "loss_rank", "loss_vs_mean", "loss_change"),
        "init_keep": 0.5,
        "vector": True,
        # One worker process per core of the 2-core machine it is sized for: a candidate's
        # students run side by side in one, the next candidate's in the other.
        "workers": 2,
        "env_args": {
            "extra_features": ("loss_rank", "loss_vs_mean", "loss_change"),
            "reward": "thresholds",
        },
        "ratios": (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7),
        "students_per_update": 4,
        "lr": 0.03,
    },
    "train": {"episodes": 200, "students_per_update": 4, "lr": 0.03, "checkpoint_every": 20},
    "evaluate": {},
}
_OUT = {"demo": "runs/demo", "train": "runs/train", "evaluate": "runs/evaluate"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``l2t`` command.

    Warnings (a damaged checkpoint skipped on resume, an unchecked old file) are printed as
    ``l2t COMMAND: warning: ...`` lines on stderr.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    :return: the exit status: 0, or 2 for a usage error, a missing or damaged file, or a file
        that cannot be read or written.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Small students run several times faster on one thread; the library never sets this.
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command)
        try:
            if getattr(args, "out", None):
                _check_writable(Path(args.out))  # before the work, not after it
            return args.func(args)
        # DamagedFileError is a ValueError; the envs raise TypeError for a wrongly typed
        # argument (--env-arg max_iters=abc), which on the command line is a usage error too.
        except (ValueError, TypeError, OSError) as err:
            print(f"l2t {args.command}: error: {err}", file=sys.stderr)
            return 2


def _check_writable(folder: Path) -> None:
    """Make ``folder`` and write and remove a file in it, or raise the OSError that says why
    not (a command's results go there at its end)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def _show_warning(command: str, message: Warning | str, *_: Any, **__: Any) -> None:
    # A user of the command wants the sentence, not the library's file and line.
    print(f"l2t {command}: warning: {message}", file=sys.stderr, flush=True)


# -- commands ----------------------------------------------------------------------------------
def demo(args: argparse.Namespace) -> int:
    """Train a teacher on Digits' teacher fold, choose every baseline's best setting there, then
    teach fresh students on the student fold with every teacher."""
    cfg = _config(args, train_seed=args.seed, first_seed=args.seed + 1000)
    trained = _train(cfg, resume=False, quiet=args.quiet)
    print(f"trained teacher saved to {Path(cfg.out) / teacher_file(cfg)}")
    learned = {TEACHER_LABELS["l2t"]: trained.teacher}
    baselines = available_baselines(cfg)
    with make_executor(cfg, warm_up=True) as executor:
        with _bar(1 + len(baselines), args.quiet, "best settings, teacher fold", "baseline") as bar:
            best, _ = best_settings(cfg, baselines, lambda _: bar.update(1), executor)
        # The probe run of the learned teacher, the heuristics, then the learned teacher again.
        total = cfg.students * (1 + len(heuristics_at(1.0, best=best, baselines=baselines)) + 1)
        with _bar(total, args.quiet) as bar:
            results = compare_teachers(
                cfg,
                learned,
                best=best,
                baselines=baselines,
                report_test=True,
                progress=lambda *_: bar.update(1),
                executor=executor,
            )
    _report(cfg, results, against=TEACHER_LABELS["l2t"])
    return 0


def train(args: argparse.Namespace) -> int:
    """Train a Bernoulli teacher by REINFORCE (or CMA-ES: --algo es) on a task's teacher fold,
    or an SB3 PPO teacher (--algo ppo, saved as teacher.zip)."""
    cfg = _config(args, task=args.env_id, train_seed=args.seed)
    _train(cfg, resume=args.resume, quiet=args.quiet)
    print(f"teacher saved to {Path(cfg.out) / teacher_file(cfg)}")
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    """Teach fresh students on a task's student fold with the given teachers."""
    cfg = _config(args, task=args.env_id, first_seed=args.seed)
    names = feature_names(cfg)
    teachers: dict[str, Teacher] = {}
    for spec, given in zip(args.teachers, args.teacher_args, strict=True):
        kwargs = _teacher_kwargs(spec, given, args.keep_prob, names)
        name = _teacher_name(spec, given, kwargs)
        while name in teachers:  # the same teacher twice: both kept, told apart
            name += "'"
        teachers[name] = make_teacher(spec, **kwargs)
    make = env_factory(cfg, "student", report_test=True)
    own_envs = {
        name: env_factory(cfg, "student", report_test=True, **feature_overrides(t))
        for name, t in teachers.items()
        if t.required_features
    }
    bar = _bar(cfg.students * len(teachers), args.quiet)
    with make_executor(cfg, warm_up=True) as executor, bar:
        results = evaluate(
            make, teachers, cfg.student_seeds, lambda *_: bar.update(1), own_envs, executor
        )
    _report(cfg, results)
    return 0


#: Named teachers whose keep ratio --keep-prob sets, unless --teacher-arg does.
_KEEP_PROB = {"rand": "keep_prob", "lossrank": "keep_ratio", "rholoss": "keep_ratio"}


def _teacher_kwargs(
    spec: str, given: Mapping[str, Any], keep_prob: float, names: Sequence[str]
) -> dict[str, Any]:
    kwargs = dict(given)
    if spec.lower() in _KEEP_PROB:
        kwargs.setdefault(_KEEP_PROB[spec.lower()], keep_prob)
    elif Path(spec).is_file():
        kwargs.setdefault("expected_feature_names", tuple(names))
    return kwargs


def _teacher_name(spec: str, given: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str:
    # The papers' names for named teachers, a file's stem, a class's name; then the settings.
    if spec.lower() in TEACHER_LABELS:
        name = TEACHER_LABELS[spec.lower()]
        if spec.lower() in _KEEP_PROB and _KEEP_PROB[spec.lower()] not in given:
            name += f" {kwargs[_KEEP_PROB[spec.lower()]]:.2f}"
    elif Path(spec).is_file():
        name = Path(spec).stem
    else:
        name = spec.rpartition(":")[2]
    return " ".join([name, *(f"{k}={v}" for k, v in given.items())])


# -- what the commands print and write ---------------------------------------------------------
def _train(cfg: ExperimentConfig, resume: bool, quiet: bool) -> TrainedTeacher:
    folder = checkpoint_folder(cfg)
    files = {"es": es_files, "ppo": ppo_files}.get(cfg.algo, reinforce_files).checkpoint_files
    if resume and not files(folder):
        print(f"--resume: no checkpoint in {folder} yet; starting the run from episode 0")
    bar = tqdm(
        total=cfg.episodes,
        desc=f"training on {cfg.env_id}",
        disable=True if quiet else None,  # None: off when not a terminal
        unit="ep",
    )

    def on_episode(r: dict[str, Any]) -> None:
        bar.update(episodes_done(r) - bar.n)  # a resumed run starts past 0
        bar.set_postfix(
            reward=f"{r['reward']:.3f}",
            i_tau=r["iterations"] if r["reached_tau"] else "-",
            keep=f"{r['keep_ratio']:.2f}",
            **({"baseline": f"{r['baseline']:.3f}"} if "baseline" in r else {}),
        )

    def on_generation(r: dict[str, Any]) -> None:
        bar.update(episodes_done(r) - bar.n)
        bar.set_postfix(
            generation=r["generation"],
            fitness=f"{r['mean_fitness']:.3f}",
            best=f"{r['best_fitness']:.3f}",
            keep=f"{r['keep_ratio']:.2f}",
            sigma=f"{r['sigma']:.3f}",
        )

    es = cfg.algo == "es"
    trained = train_teacher(cfg, on_generation if es else on_episode, resume=resume)
    bar.close()
    if trained.resumed_from is not None:
        print(f"resumed from {trained.resumed_from} ({trained.resumed_episodes} episodes done)")
    out = Path(cfg.out)
    trained.save(out / teacher_file(cfg), out / "training.json")
    n = len(trained.history)
    done = trained.episodes - trained.resumed_episodes
    resumed = f" ({done} in this run)" if trained.resumed_from is not None else ""
    if es:
        selection = trained.selection
        n -= selection is not None
        last = trained.history[n - 1] if n else None
        print(
            f"trained {n} generations ({trained.episodes} episodes{resumed}) by CMA-ES in "
            f"{trained.seconds:.1f}s"
            + (
                f"; last generation: mean reward {last['mean_fitness']:.3f}, keep ratio "
                f"{last['keep_ratio']:.2f}, sigma {last['sigma']:.3f}"
                if last
                else ""
            )
            + (f"; {describe_selection(selection, cfg.es_select_students)}" if selection else "")
        )
        return trained
    reward, keep = trained.tail(20)
    print(
        f"trained {n} episodes{resumed} in {trained.seconds:.1f}s"
        + (" by PPO" if cfg.algo == "ppo" else "")
        + (" (stopped early: reward plateau)" if trained.stopped_early else "")
        + (f"; last {min(n, 20)}: mean reward {reward:.3f}, keep ratio {keep:.2f}" if n else "")
    )
    return trained


def _report(
    cfg: ExperimentConfig,
    results: Mapping[str, Sequence[EpisodeResult]],
    against: str | None = None,
) -> None:
    # against: a teacher whose paired t-test against every other row the table adds.
    env = make_env(cfg, "student").unwrapped
    seeds = cfg.student_seeds
    print(
        f"\n{cfg.env_id}, student fold, tau={env.tau}, T'={env.max_iters}, M={env.batch_size}, "
        f"{cfg.students} students (seeds {seeds[0]}-{seeds[-1]}, the same for every teacher)"
    )
    tests = {}
    budget = budgets(env.max_iters, env.batch_size)["effective_instances"]
    if against is not None:
        for name in results:
            if name != against:
                (tests[name],) = compare_costs(results, name, teachers=[against], budget=budget)
    print(format_table((summarise(name, runs) for name, runs in results.items()), tests))
    out = Path(cfg.out)
    write_csv(results, seeds, out / "runs.csv")
    title = f"{cfg.env_id}: dev accuracy of fresh students"
    shown = results
    if against is not None:
        # Every student's curve of a dozen teachers is a tangle: the plot tells the story of
        # plain training, the cheapest heuristic and the learned teacher (runs.csv has all).
        others = [n for n in results if n != against]
        best = cheapest(results, others, budget=budget)
        shown = {n: results[n] for n in dict.fromkeys([NOTEACH, best, against]) if n in results}
        title += f"\n{', '.join(shown)} (every teacher in runs.csv)"
    plot_curves(shown, out / "curves.png", title, tau=env.tau)
    print(f"wrote {out / 'runs.csv'} and {out / 'curves.png'}")


def _bar(
    total: int, quiet: bool, desc: str = "teaching fresh students", unit: str = "student"
) -> tqdm:
    return tqdm(
        total=total,
        disable=True if quiet else None,  # None: off when not a terminal
        desc=desc,
        unit=unit,
    )


def _config(args: argparse.Namespace, **fixed: Any) -> ExperimentConfig:
    defaults = ExperimentConfig(**{**_DEFAULTS[args.command], **fixed})
    return config_from_arguments(args, defaults)


# -- arguments ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="l2t", description="Learning to Teach (Fan et al. 2018).")
    sub = p.add_subparsers(dest="command")

    def command(name: str, func: Any, help_: str, fields: Sequence[str]) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=func.__doc__)
        if name != "demo":
            sp.add_argument("env_id", help="e.g. L2T-Digits-v0")
        defaults = ExperimentConfig(**_DEFAULTS[name], out=_OUT[name])
        add_arguments(sp, defaults, ["out", "device", "threads", *fields])
        seed_help = "first student seed" if name == "evaluate" else "teacher training seed"
        sp.add_argument("--seed", type=int, default=0, help=seed_help + " (default: %(default)s)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.set_defaults(func=func)
        return sp

    command(
        "demo",
        demo,
        "the main job on Digits, offline: train, then compare teachers",
        [*TRAINING, "students", "env_args", "sweep_students", "ratios", *ES_OPTIONS, "workers"],
    )
    t = command(
        "train",
        train,
        "train a teacher on a task's teacher fold: REINFORCE, CMA-ES (--algo es) or PPO (--algo "
        "ppo)",
        [*TRAINING, "checkpoint_every", "env_args", *ES_OPTIONS, *RAY_OPTIONS],
    )
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    e = command(
        "evaluate",
        evaluate_cmd,
        "teach fresh students on a task's student fold",
        ["students", "env_args", *RAY_OPTIONS],
    )
    add_teacher_arguments(
        e,
        "--teacher",
        "teachers",  # not ExperimentConfig.teacher, which is one file
        "teacher_args",
        "a teacher (repeatable): a name (noteach, rand, spl, lossrank, rholoss, infobatch, "
        "selectivebackprop), a saved teacher (.safetensors, or a Stable-Baselines3 .zip whose "
        "policy is l2t_gym.sb3.InstancePolicy: zips are unpickled, which can run code, so only "
        "from a trusted source) or package.module:Class (a Teacher subclass), with the "
        "--teacher-arg items after it as its keyword arguments",
        required=True,
    )
    e.add_argument(
        "--keep-prob",
        type=float,
        default=0.5,
        help="keep ratio of rand, lossrank and rholoss unless a --teacher-arg sets it "
        "(default: %(default)s)",
    )
    return p


if __name__ == "__main__":
    sys.exit(main())
