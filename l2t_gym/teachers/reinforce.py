"""REINFORCE for the Bernoulli teacher (Fan et al. 2018, section 4.3), on the teacher fold.

Each episode is one full student run. With R the episode's terminal reward and b a moving-average
baseline, the gradient ascended is

    sum_t sum_m grad log pi(a_tm | s_tm) * (R - b),

where log pi is log p_tm for a kept instance and log(1 - p_tm) for a dropped one (two public
re-implementations leave the dropped term out, which stops the teacher from learning to drop).
Several students per update average their terms. Everything random in a run (env seeds,
sampling) derives from ``seed`` and the episode index, so a run resumed from a checkpoint
continues exactly as if it had never stopped.

Baselines. The paper's is the moving average (``baseline="moving"``, the default). How fast a
student reaches tau depends as much on its initialisation and data order as on its teacher (on
Digits keep-all students take 28 to 56 iterations), and that spread drowns the teacher's effect in
R - b. ``baseline="seed"`` removes it: each update teaches every student seed ``repeats`` times
(the teacher sampling differently each time) and compares each run with the mean of the other
runs of the same student, a leave-one-out baseline (the RLOO estimator). It does not depend on
the run's own actions, so the gradient stays unbiased.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from l2t_gym.teachers.base import teacher_generator
from l2t_gym.teachers.bernoulli import BernoulliTeacher
from l2t_gym.teachers.sampling import keep_probabilities, sample_keep


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings of a REINFORCE run.

    episodes: student runs in all (the budget); students_per_update: runs per gradient step;
    lr: Adam's learning rate; baseline_momentum: b <- m * b + (1 - m) * mean R of the update
    (b starts at the first update's mean reward); patience / min_delta: stop early once the
    baseline has not risen by ``min_delta`` for ``patience`` updates (None: never);
    checkpoint_every: episodes between checkpoints (0: none); seed: the run's seed;
    baseline: "moving" (the paper) or "seed" (leave-one-out over the runs of the same student,
    see the module docstring); repeats: runs per student seed within an update (``baseline=
    "seed"`` needs at least 2; it must divide students_per_update).
    """

    episodes: int = 100
    students_per_update: int = 1
    lr: float = 1e-3
    baseline_momentum: float = 0.9
    patience: int | None = None
    min_delta: float = 0.01
    checkpoint_every: int = 0
    seed: int = 0
    baseline: Literal["moving", "seed"] = "moving"
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.students_per_update < 1:
            raise ValueError("episodes and students_per_update must be positive")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must lie in [0, 1), got {self.baseline_momentum}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be positive or None, got {self.patience}")
        if self.baseline not in ("moving", "seed"):
            raise ValueError(f"baseline must be 'moving' or 'seed', got {self.baseline!r}")
        if self.repeats < 1 or self.students_per_update % self.repeats:
            raise ValueError(
                f"repeats must be a positive divisor of students_per_update "
                f"({self.students_per_update}), got {self.repeats}"
            )
        if self.baseline == "seed" and self.repeats < 2:
            raise ValueError("baseline='seed' needs repeats >= 2 runs of each student seed")


def reinforce_loss(
    log_probs: torch.Tensor, rewards: torch.Tensor, baseline: float | torch.Tensor
) -> torch.Tensor:
    """Loss whose gradient is minus the REINFORCE estimate, averaged over the students.

    ``log_probs`` (S,): each student's summed log pi(a_tm | s_tm) over its whole episode;
    ``rewards`` (S,): their terminal rewards; ``baseline``: one number, or one per student (S,).
    """
    return -((rewards - baseline) * log_probs).mean()


def seed_baseline(rewards: torch.Tensor, env_seeds: list[int], fallback: float) -> torch.Tensor:
    """Per run, the mean reward of the *other* runs with the same student seed; ``fallback``
    for a run whose seed has no other run (a short last update)."""
    out = torch.full_like(rewards, float(fallback))
    for s in set(env_seeds):
        idx = [i for i, e in enumerate(env_seeds) if e == s]
        if len(idx) > 1:
            group = rewards[idx]
            out[idx] = (group.sum() - group) / (len(idx) - 1)
    return out


def episode_seed(seed: int, episode: int) -> int:
    """The sampling seed of episode ``episode`` of a run seeded ``seed`` (and its env seed when
    every student seed is run once)."""
    return (seed * 1_000_003 + episode) % 2**31


def env_seed(seed: int, episode: int, repeats: int = 1) -> int:
    """The student (env) seed of episode ``episode``: runs come in groups of ``repeats``
    consecutive episodes that share their group's first episode's seed."""
    return episode_seed(seed, episode - episode % repeats)


class ReinforceTrainer:
    """Trains a :class:`BernoulliTeacher` by REINFORCE on an env (its teacher fold).

    ``env`` is one env, or a vector env (``gym.make_vec``, the native :class:`L2TVectorEnv`)
    whose ``num_envs`` equals ``students_per_update``: then the students of an update train
    side by side, each with the seed and sampling stream it would have had alone, so the run
    equals the sequential one to float tolerance.

    ``callback(record)`` is called after every episode with a dict of what happened (episode,
    reward, iterations, reached_tau, keep ratio, baseline). Checkpoints hold the policy, the
    optimiser, the baseline and the history as plain tensors and numbers, read back with
    ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        env: gym.Env,
        teacher: BernoulliTeacher,
        config: ReinforceConfig = ReinforceConfig(),
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        self.env, self.teacher, self.config = env, teacher, config
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.num_envs = getattr(env, "num_envs", None)
        if self.num_envs is not None and self.num_envs != config.students_per_update:
            raise ValueError(
                f"a vector env of {self.num_envs} students needs students_per_update="
                f"{self.num_envs}, got {config.students_per_update}"
            )
        if config.checkpoint_every and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir")
        self.optimizer = torch.optim.Adam(teacher.policy.parameters(), lr=config.lr)
        self.baseline: float | None = None
        self.history: list[dict[str, Any]] = []
        self._best = -math.inf
        self._stale = 0

    @property
    def episodes_done(self) -> int:
        return len(self.history)

    def run_episode(self, episode: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """One student run with the current policy: (its summed log-probability, its record)."""
        seed = episode_seed(self.config.seed, episode)
        names = self.env.unwrapped.feature_names
        self.teacher.reset(names, seed=seed)
        obs, info = self.env.reset(seed=env_seed(self.config.seed, episode, self.config.repeats))
        observations, actions = [], []
        reward, done = 0.0, False
        while not done:
            keep = self.teacher.act(obs)
            observations.append(obs)
            actions.append(keep)
            obs, reward, terminated, truncated, info = self.env.step(keep)
            done = terminated or truncated
        # One batched pass over the stored episode: the policy is not changed within it.
        log_prob = self.teacher.log_prob(np.stack(observations), np.stack(actions)).sum()
        kept = float(np.mean(actions))
        record = {
            "episode": episode,
            "reward": float(reward),
            "iterations": int(info["iteration"]),
            "teacher_steps": int(info["teacher_step"]),
            "reached_tau": bool(info["reached_tau"]),
            "keep_ratio": kept,
        }
        return log_prob, record

    def run_episodes(self, first: int, n: int) -> tuple[list[torch.Tensor], list[dict]]:
        """Episodes first .. first+n-1, one after the other or side by side in a vector env."""
        if self.num_envs is None:
            pairs = [self.run_episode(first + k) for k in range(n)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        return self._run_side_by_side(first, n)

    def _run_side_by_side(self, first: int, n: int) -> tuple[list[torch.Tensor], list[dict]]:
        env, teacher = self.env, self.teacher
        seeds = [episode_seed(self.config.seed, first + k) for k in range(self.num_envs)]
        teacher.reset(env.feature_names, seed=seeds[0])  # checks the layout
        rngs = [teacher_generator(s) for s in seeds]  # what teacher.reset(seed=s) would draw
        reps = self.config.repeats
        obs, _ = env.reset(
            seed=[env_seed(self.config.seed, first + k, reps) for k in range(len(seeds))]
        )
        running = np.zeros(self.num_envs, dtype=bool)
        running[:n] = True  # a short last update leaves the other students idle
        observations = [[] for _ in seeds]
        actions = [[] for _ in seeds]
        records: list[dict | None] = [None] * n
        while running.any():
            with torch.no_grad():
                p = keep_probabilities(teacher.logits(obs))
            keep = np.zeros(p.shape, dtype=bool)
            for i in np.flatnonzero(running):
                keep[i] = sample_keep(p[i], rngs[i])
                observations[i].append(obs[i])
                actions[i].append(keep[i])
            obs, reward, terminated, truncated, info = env.step(keep)
            for i in np.flatnonzero(running & (terminated | truncated)):
                running[i] = False
                records[i] = {
                    "episode": int(first + i),
                    "reward": float(reward[i]),
                    "iterations": int(info["iteration"][i]),
                    "teacher_steps": int(info["teacher_step"][i]),
                    "reached_tau": bool(info["reached_tau"][i]),
                    "keep_ratio": float(np.mean(actions[i])),
                }
        log_probs = [
            teacher.log_prob(np.stack(observations[i]), np.stack(actions[i])).sum()
            for i in range(n)
        ]
        return log_probs, records

    def train(self, callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Run until the episode budget is spent or the reward plateaus; returns the history."""
        cfg = self.config
        while self.episodes_done < cfg.episodes and not self.stopped_early:
            n = min(cfg.students_per_update, cfg.episodes - self.episodes_done)
            log_probs, records = self.run_episodes(self.episodes_done, n)
            rewards = torch.tensor([r["reward"] for r in records])
            if self.baseline is None:
                self.baseline = float(rewards.mean())
            baseline: float | torch.Tensor = self.baseline
            if cfg.baseline == "seed":
                first = self.episodes_done
                seeds = [env_seed(cfg.seed, first + k, cfg.repeats) for k in range(n)]
                baseline = seed_baseline(rewards, seeds, self.baseline)
            loss = reinforce_loss(torch.stack(log_probs), rewards, baseline)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            m = cfg.baseline_momentum
            self.baseline = m * self.baseline + (1 - m) * float(rewards.mean())
            self._track_plateau()
            before = self.episodes_done
            for record in records:
                record["baseline"] = self.baseline
                self.history.append(record)
                if callback is not None:
                    callback(record)
            every = cfg.checkpoint_every
            # Checkpoints fall between updates, so a resumed run never splits one.
            if every and self.episodes_done // every > before // every:
                self.save_checkpoint()
        return self.history

    @property
    def stopped_early(self) -> bool:
        patience = self.config.patience
        return patience is not None and self._stale >= patience

    def _track_plateau(self) -> None:
        assert self.baseline is not None
        if self.baseline > self._best + self.config.min_delta:
            self._best, self._stale = self.baseline, 0
        else:
            self._stale += 1

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "policy": self.teacher.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "best": self._best,
            "stale": self._stale,
            "history": self.history,
            "feature_names": list(self.teacher.layout),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["feature_names"]) != list(self.teacher.layout):
            raise ValueError("checkpoint was made for a different observation layout")
        if state["config"]["seed"] != self.config.seed:
            raise ValueError(
                f"checkpoint was made with seed {state['config']['seed']}, this run has "
                f"{self.config.seed}: resuming would not continue the same run"
            )
        self.teacher.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline, self._best, self._stale = state["baseline"], state["best"], state["stale"]
        self.history = [dict(r) for r in state["history"]]

    def save_checkpoint(self) -> Path:
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"checkpoint-{self.episodes_done:06d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)  # never leave a half-written checkpoint behind
        return path

    def resume(self, path: str | os.PathLike | None = None) -> Path | None:
        """Load ``path``, or the newest checkpoint in ``checkpoint_dir``; None if there is none."""
        if path is None:
            found = (
                sorted(self.checkpoint_dir.glob("checkpoint-*.pt")) if self.checkpoint_dir else []
            )
            if not found:
                return None
            path = found[-1]
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise ValueError(f"{path} is not a readable l2t-gym checkpoint: {err}") from err
        self.load_state_dict(state)
        return Path(path)
