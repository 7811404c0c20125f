"""Overhead of the env against a bare PyTorch loop doing the same student work.

Both sides train the same student (same builder, optimiser, data tensors, batch stream and dev
evaluations every ``eval_every`` iterations); the env is driven through ``gym.make`` by a keep-all
teacher, so it adds only what a teacher's view costs: the candidate features, the action check
and the Gymnasium wrappers. Blocks of iterations alternate between the two (interleaved, after a
warm-up) and the ratio of the medians is reported.

    python benchmarks/overhead.py --task digits --threads 1
    python benchmarks/overhead.py --task cifar10 --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import l2t_gym  # noqa: F401  (registers the envs)
from l2t_gym import ENV_IDS
from l2t_gym.data import load_dataset, make_folds
from l2t_gym.data.augment import random_crop_flip
from l2t_gym.models import build_student
from l2t_gym.student import build_optimizer

ID_OF_TASK = {task: env_id for env_id, task in ENV_IDS.items()}


class BareLoop:
    """The plain training loop a researcher would write: index gathers, one forward, backward,
    step, and a dev accuracy every ``eval_every`` iterations."""

    def __init__(self, env: l2t_gym.L2TEnv, seed: int) -> None:
        self.data = load_dataset(
            env._spec.dataset, env.data_root, env.download, env.device, arrays=env.data
        )
        fold = make_folds(self.data.y_train_host, env.dev_fraction)[env.fold]
        self.train_idx, self.m, self.eval_every = fold.train, env.batch_size, env.eval_every
        dev = torch.from_numpy(fold.dev).to(env.device)
        self.dev_x, self.dev_y = self.data.x_train[dev], self.data.y_train[dev]
        torch.manual_seed(seed)
        self.model = build_student(
            env.student,
            self.data.input_shape,
            self.data.num_classes,
            vocab_size=self.data.vocab_size,
        )
        self.model.to(env.device).train()
        self.opt = build_optimizer(
            env.optimizer,
            self.model.parameters(),
            env.lr,
            env.momentum,
            env.weight_decay,
        )
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=env.device).manual_seed(seed) if env.augment else None
        self.device, self.queue, self.pos, self.i = env.device, np.empty(0, np.int64), 0, 0

    def run(self, iters: int) -> None:
        for _ in range(iters):
            if len(self.queue) - self.pos < self.m:
                fresh = self.rng.permutation(self.train_idx)
                self.queue, self.pos = np.concatenate([self.queue[self.pos :], fresh]), 0
            idx = torch.from_numpy(self.queue[self.pos : self.pos + self.m]).to(self.device)
            self.pos += self.m
            x, y = self.data.x_train[idx], self.data.y_train[idx]
            if self.gen is not None:
                x = random_crop_flip(x, self.gen)
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.i += 1
            if self.i % self.eval_every == 0:
                self.model.eval()
                with torch.inference_mode():
                    correct = sum(
                        (
                            self.model(self.dev_x[s : s + 1024]).argmax(1)
                            == self.dev_y[s : s + 1024]
                        ).sum()
                        for s in range(0, len(self.dev_y), 1024)
                    )
                float(correct)  # the host reads the accuracy, as the env must to check tau
                self.model.train()


def run_env(env: gym.Env, iters: int) -> None:
    keep = np.ones(env.unwrapped.batch_size, dtype=bool)
    for _ in range(iters):
        env.step(keep)


def timed(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def measure(env: gym.Env, bare: BareLoop, iters: int, repeats: int, sync) -> tuple[list, list]:
    """Seconds per student iteration, env and bare loop, in alternating blocks after a warm-up."""
    run_env(env, iters)
    bare.run(iters)
    env_t, bare_t = [], []
    for _ in range(repeats):
        env_t.append(timed(lambda: run_env(env, iters), sync) / iters)
        bare_t.append(timed(lambda: bare.run(iters), sync) / iters)
    return env_t, bare_t


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", default="digits", choices=sorted(ID_OF_TASK))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    ap.add_argument("--iters", type=int, default=200, help="student iterations per block")
    ap.add_argument("--repeats", type=int, default=15, help="interleaved blocks per side")
    ap.add_argument("--student", default=None, help="student name (default: the task's)")
    ap.add_argument("--batch-size", type=int, default=None, help="M (default: the task's)")
    ap.add_argument("--eval-every", type=int, default=None, help="default: the task's")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="benchmarks/out/overhead.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # An unreachable tau and a far clock keep one episode going for the whole measurement.
    env = gym.make(
        ID_OF_TASK[args.task],
        device=args.device,
        tau=1.0,
        max_iters=10**9,
        data_root=args.data_root,
        download=False,
        student=args.student,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
    )
    env.reset(seed=0)
    bare = BareLoop(env.unwrapped, seed=0)

    env_t, bare_t = measure(env, bare, args.iters, args.repeats, sync)
    env_med, bare_med = statistics.median(env_t), statistics.median(bare_t)
    ratio = env_med / bare_med
    paired = statistics.median(te / tb for te, tb in zip(env_t, bare_t, strict=True))
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )

    e = env.unwrapped
    print(
        f"task={args.task} student={e.student} M={e.batch_size} eval_every={e.eval_every} "
        f"device={args.device} ({machine}) torch threads={torch.get_num_threads()}"
    )
    print(f"{'':10} {'us/iteration (median)':>22} {'min':>10} {'max':>10}")
    for name, ts in (("env", env_t), ("bare loop", bare_t)):
        med, lo, hi = (1e6 * f(ts) for f in (statistics.median, min, max))
        print(f"{name:10} {med:22.1f} {lo:10.1f} {hi:10.1f}")
    print(f"overhead ratio (median env / median bare): {ratio:.3f}x")
    print(f"median of the paired block ratios:          {paired:.3f}x")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "student", "M", "device", "threads", "repeat", "env_s", "bare_s"])
        for k, (te, tb) in enumerate(zip(env_t, bare_t, strict=True)):
            w.writerow(
                [
                    args.task,
                    e.student,
                    e.batch_size,
                    args.device,
                    torch.get_num_threads(),
                    k,
                    te,
                    tb,
                ]
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
