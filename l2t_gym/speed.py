"""Measuring the env's speed: a bare PyTorch loop doing the same student work, interleaved timing.

The benchmarks (``benchmarks/overhead.py``, ``throughput.py``, ``gpu_check.py``) compare an env
driven by a keep-all teacher with :class:`BareLoop`: the plain training loop a researcher would
write, on the same settings, data tensors, batch size and dev evaluations. The ratio of the two
is what the env adds (GUIDE section 4: measure as a ratio, in one run, interleaved, medians).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from l2t_gym.data.augment import random_crop_flip
from l2t_gym.settings import Settings

Sync = Callable[[], None]


class BareLoop:
    """The plain training loop of an env's student: index gathers from a seeded permutation, one
    forward, backward, an optimiser step, and the dev accuracy every ``eval_every`` iterations,
    read on the host as the env must read it to check tau.

    It uses the settings' default path (fp32, default memory format, eager): the reference the
    speed options are measured against.

    :param settings: the env's settings (``env.unwrapped.settings``).
    :param seed: seeds the student's weights, data order and augmentation.
    """

    def __init__(self, settings: Settings, seed: int) -> None:
        self.data = data = settings.load_data()
        fold = settings.fold_of(data)
        self.train_idx, self.m, self.eval_every = (
            fold.train,
            settings.batch_size,
            settings.eval_every,
        )
        dev = torch.from_numpy(fold.dev).to(settings.device)
        self.dev_x, self.dev_y = data.x_train[dev], data.y_train[dev]
        self.model = settings.build_student(data, seed).train()
        self.opt = settings.build_optimizer(self.model.parameters())
        self.rng = np.random.default_rng(seed)
        self.gen = None
        if settings.augment:
            self.gen = torch.Generator(device=settings.device).manual_seed(seed)
        self.device, self.queue, self.pos, self.i = settings.device, np.empty(0, np.int64), 0, 0

    def run(self, iters: int) -> None:
        """Train for ``iters`` iterations."""
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


def keep_all_steps(env: gym.Env | gym.vector.VectorEnv, steps: int) -> None:
    """Step ``env`` ``steps`` times with every candidate kept."""
    keep = np.ones(env.action_space.shape, dtype=bool)
    for _ in range(steps):
        env.step(keep)


def timed(fn: Callable[[], object], sync: Sync) -> float:
    """Seconds ``fn()`` takes, the device synchronised before and after."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(env: gym.Env, bare: BareLoop, iters: int, repeats: int, sync: Sync):
    """Seconds per student iteration of a keep-all ``env`` and of ``bare``, in ``repeats``
    alternating blocks of ``iters`` after one warm-up block each.

    :return: two lists of ``repeats`` values (env, bare loop).
    """
    keep_all_steps(env, iters)
    bare.run(iters)
    env_t, bare_t = [], []
    for _ in range(repeats):
        env_t.append(timed(lambda: keep_all_steps(env, iters), sync) / iters)
        bare_t.append(timed(lambda: bare.run(iters), sync) / iters)
    return env_t, bare_t


def steps_per_second(
    env: gym.Env | gym.vector.VectorEnv, steps: int, sync: Sync, keep: float = 1.0
) -> float:
    """Teacher steps per second (of the whole vector, for a vector env), after a warm-up of a
    tenth as many, with every candidate kept, or (``keep`` < 1) each kept with probability
    ``keep`` (masks drawn before the clock starts, seeded): then a student trains only once
    its pool holds M kept instances, and in a vector env only some students train at a step.

    :raises ValueError: if ``keep`` is not in (0, 1].
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    warmup = max(3, steps // 10)
    if keep == 1.0:
        keep_all_steps(env, warmup)
        return steps / timed(lambda: keep_all_steps(env, steps), sync)
    rng = np.random.default_rng(0)
    masks = rng.random((warmup + steps, *env.action_space.shape)) < keep

    def play(some: np.ndarray) -> None:
        for mask in some:
            env.step(mask)

    play(masks[:warmup])
    return steps / timed(lambda: play(masks[warmup:]), sync)


def synchronizer(device: str | torch.device) -> Sync:
    """What waits for ``device``'s queued work: ``torch.cuda.synchronize`` on CUDA, else
    nothing."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
