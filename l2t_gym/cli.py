"""The ``l2t`` command: ``l2t demo``, ``l2t train ENV_ID``, ``l2t evaluate ENV_ID``."""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from tqdm.auto import tqdm

import l2t_gym  # noqa: F401  (registers the envs)
from l2t_gym.evaluation import evaluate, format_table, plot_curves, summarise, write_csv
from l2t_gym.teachers import BernoulliTeacher, LossRank, NoTeach, RandTeach, SelfPaced, Teacher
from l2t_gym.teachers import make_teacher as _make_teacher
from l2t_gym.teachers.reinforce import ReinforceConfig, ReinforceTrainer

TEACHER_FILE = "teacher.safetensors"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Small students run several times faster on one thread; the library never sets this.
    torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"l2t {args.command}: error: {err}", file=sys.stderr)
        return 2


# -- commands ----------------------------------------------------------------------------------
def demo(args: argparse.Namespace) -> int:
    """Train a teacher on Digits' teacher fold, then teach fresh students on the student fold."""
    out = Path(args.out)
    env_kwargs = {"device": args.device}
    teacher, _ = _train(
        "L2T-Digits-v0",
        env_kwargs,
        out,
        _config(args),
        False,
        args.quiet,
        args.vector,
        args.init_keep,
    )
    print(f"trained teacher saved to {out / TEACHER_FILE}")
    _compare(
        "L2T-Digits-v0",
        env_kwargs,
        {"l2t": teacher},
        args.students,
        args.seed + 1000,
        out,
        baselines=True,
        quiet=args.quiet,
    )
    return 0


def train(args: argparse.Namespace) -> int:
    _train(
        args.env_id,
        _env_kwargs(args),
        Path(args.out),
        _config(args),
        args.resume,
        args.quiet,
        args.vector,
        args.init_keep,
    )
    print(f"teacher saved to {Path(args.out) / TEACHER_FILE}")
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    env_kwargs = _env_kwargs(args)
    names = gym.make(args.env_id, **env_kwargs).unwrapped.feature_names
    teachers: dict[str, Teacher] = {}
    for spec in args.teacher:
        kwargs: dict[str, Any] = {}
        if spec == "rand":
            kwargs["keep_prob"] = args.keep_prob
        elif spec == "lossrank":
            kwargs["keep_ratio"] = args.keep_prob
        elif Path(spec).is_file():
            kwargs["expected_feature_names"] = names
        teachers[Path(spec).stem if Path(spec).is_file() else spec] = _make_teacher(spec, **kwargs)
    _compare(
        args.env_id,
        env_kwargs,
        teachers,
        args.students,
        args.seed,
        Path(args.out),
        baselines=False,
        quiet=args.quiet,
    )
    return 0


# -- the work ------------------------------------------------------------------------------------
def _train(
    env_id,
    env_kwargs,
    out: Path,
    config: ReinforceConfig,
    resume: bool,
    quiet: bool,
    vector: bool = False,
    init_keep: float = 0.9,
):
    if vector:
        # The students of one update train side by side in one native vector env.
        env = gym.make_vec(
            env_id, num_envs=config.students_per_update, fold="teacher", **env_kwargs
        )
        task = env.settings.task
    else:
        env = gym.make(env_id, fold="teacher", **env_kwargs)
        task = env.unwrapped.task
    teacher = BernoulliTeacher(env.unwrapped.feature_names, init_keep=init_keep, seed=config.seed)
    trainer = ReinforceTrainer(
        env,
        teacher,
        config,
        checkpoint_dir=out / "checkpoints" if config.checkpoint_every else None,
    )
    if resume:
        found = trainer.resume()
        if found is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        print(f"resumed from {found} ({trainer.episodes_done} episodes done)")
    bar = tqdm(
        total=config.episodes,
        initial=trainer.episodes_done,
        desc=f"training on {env_id}",
        disable=True if quiet else None,  # None: off when not a terminal
        unit="ep",
    )

    def on_episode(r: dict) -> None:
        bar.update(1)
        bar.set_postfix(
            reward=f"{r['reward']:.3f}",
            i_tau=r["iterations"] if r["reached_tau"] else "-",
            keep=f"{r['keep_ratio']:.2f}",
            baseline=f"{r['baseline']:.3f}",
        )

    start = time.perf_counter()
    history = trainer.train(callback=on_episode)
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    teacher.save(out / TEACHER_FILE, task=task)
    (out / "training.json").write_text(json.dumps(history, indent=1))
    last = history[-min(len(history), 20) :]
    print(
        f"trained {len(history)} episodes in {time.perf_counter() - start:.1f}s"
        + (" (stopped early: reward plateau)" if trainer.stopped_early else "")
        + f"; last {len(last)}: mean reward {sum(r['reward'] for r in last) / len(last):.3f}, "
        f"keep ratio {sum(r['keep_ratio'] for r in last) / len(last):.2f}"
    )
    return teacher, trainer


def _compare(env_id, env_kwargs, teachers, students, seed, out: Path, baselines: bool, quiet: bool):
    seeds = list(range(seed, seed + students))

    def make_env():
        return gym.make(env_id, fold="student", report_test=True, **env_kwargs)

    bar = tqdm(
        total=students * (len(teachers) + (4 if baselines else 0)),
        disable=True if quiet else None,  # None: off when not a terminal
        desc="teaching fresh students",
        unit="student",
    )
    step = lambda name, s, r: bar.update(1)  # noqa: E731
    results = evaluate(make_env, teachers, seeds, step)
    if baselines:
        # The paper's comparison: random and loss-ranked filtering at the learned keep ratio.
        ratio = sum(r.keep_ratio for runs in results.values() for r in runs) / (
            students * len(teachers)
        )
        ratio = min(max(ratio, 0.01), 1.0)
        others = {
            "noteach": NoTeach(),
            f"rand {ratio:.2f}": RandTeach(ratio),
            "spl": SelfPaced(),
            f"lossrank {ratio:.2f}": LossRank(ratio),
        }
        results = {**evaluate(make_env, others, seeds, step), **results}
    bar.close()
    summaries = [summarise(name, runs) for name, runs in results.items()]
    env = make_env().unwrapped
    print(
        f"\n{env_id}, student fold, tau={env.tau}, T'={env.max_iters}, M={env.batch_size}, "
        f"{students} students (seeds {seeds[0]}-{seeds[-1]}, the same for every teacher)"
    )
    print(format_table(summaries))
    write_csv(results, seeds, out / "runs.csv")
    plot_curves(results, out / "curves.png", f"{env_id}: dev accuracy of fresh students")
    print(f"wrote {out / 'runs.csv'} and {out / 'curves.png'}")


# -- arguments -----------------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> ReinforceConfig:
    return ReinforceConfig(
        episodes=args.episodes,
        students_per_update=args.students_per_update,
        lr=args.lr,
        baseline_momentum=args.baseline_momentum,
        baseline=args.baseline,
        repeats=args.repeats,
        patience=args.patience,
        checkpoint_every=getattr(args, "checkpoint_every", 0),
        seed=args.seed,
    )


def parse_key_value(item: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> (key, value), the value read as a Python literal (``tau=0.9``,
    ``student="mlp-256"``) or kept as a bare word (``fold=student``); ValueError otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--env-arg expects KEY=VALUE, got {item!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"device": args.device, **dict(parse_key_value(item) for item in args.env_arg)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="l2t", description="Learning to Teach (Fan et al. 2018).")
    sub = p.add_subparsers(dest="command")

    def common(sp: argparse.ArgumentParser, out: str) -> None:
        sp.add_argument("--out", default=out, help="output folder (default: %(default)s)")
        sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    def training(sp: argparse.ArgumentParser, episodes: int) -> None:
        sp.add_argument("--episodes", type=int, default=episodes, help="student runs in all")
        sp.add_argument("--students-per-update", type=int, default=4)
        sp.add_argument("--lr", type=float, default=0.03, help="Adam's learning rate")
        sp.add_argument("--baseline-momentum", type=float, default=0.9)
        sp.add_argument(
            "--init-keep",
            type=float,
            default=0.9,
            help="keep probability of the untrained teacher (default: %(default)s)",
        )
        sp.add_argument(
            "--baseline",
            choices=("moving", "seed"),
            default="moving",
            help="moving average (the paper) or leave-one-out over repeats of a student seed",
        )
        sp.add_argument(
            "--repeats", type=int, default=1, help="runs of each student seed per update"
        )
        sp.add_argument(
            "--vector",
            action="store_true",
            help="train the students of an update side by side in one native vector env",
        )
        sp.add_argument(
            "--patience",
            type=int,
            default=None,
            help="stop after this many updates without reward gain",
        )

    d = sub.add_parser(
        "demo",
        help="the main job on Digits, offline: train, then compare teachers",
        description=demo.__doc__,
    )
    common(d, "runs/demo")
    training(d, 160)
    d.add_argument("--students", type=int, default=10, help="fresh students per teacher")
    d.set_defaults(func=demo)

    t = sub.add_parser(
        "train", help="train a Bernoulli teacher by REINFORCE on a task's teacher fold"
    )
    t.add_argument("env_id", help="e.g. L2T-Digits-v0")
    common(t, "runs/train")
    training(t, 200)
    t.add_argument("--checkpoint-every", type=int, default=20, help="episodes (0: never)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    t.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an env keyword argument, e.g. tau=0.9 (repeatable)",
    )
    t.set_defaults(func=train)

    e = sub.add_parser("evaluate", help="teach fresh students on a task's student fold")
    e.add_argument("env_id")
    e.add_argument(
        "--teacher",
        action="append",
        required=True,
        help="a saved teacher file, noteach, rand, spl or lossrank (repeatable)",
    )
    e.add_argument(
        "--keep-prob",
        type=float,
        default=0.5,
        help="keep ratio of rand and lossrank (default: %(default)s)",
    )
    e.add_argument("--students", type=int, default=10)
    e.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    common(e, "runs/evaluate")
    e.set_defaults(func=evaluate_cmd)
    return p


if __name__ == "__main__":
    sys.exit(main())
