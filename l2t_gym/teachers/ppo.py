"""PPO for an instance-wise teacher: Stable-Baselines3's PPO with
:class:`l2t_gym.sb3.InstancePolicy`, with the episode budget, checkpoints and exact resume of
the other trainers (:mod:`l2t_gym.teachers.reinforce`, :mod:`l2t_gym.teachers.es`).

PPO (Schulman et al. 2017) learns from every teacher step with a value baseline, where REINFORCE
waits for the episode's end; with the paper's reward (paid once, at the end) the value function
must learn to predict it from the state. One student at a time, in process.

Budget. SB3 counts timesteps; the budget here is student runs: learning stops in the step on
which the ``episodes``-th episode ends (SB3's ``DummyVecEnv`` hands over that episode's last
info before it resets).

Checkpoints and exact resume. A checkpoint is taken at the start of a rollout (after the
previous rollout's update, before the next step), once ``checkpoint_every`` more episodes have
ended. It holds the SB3 model (policy and optimiser, SB3's own zip), the env *in the middle of
its episode* (pickled: the student's weights, optimiser and data order, see README "Errors and
guarantees"), SB3's last observation and episode starts, its counters, the random states of
torch, NumPy and ``random`` (SB3 samples actions from torch's and shuffles minibatches with
NumPy's global generator) and the history. A resumed run continues exactly as if it had never
stopped. Like ES checkpoints they are pickles sealed with a SHA-256: the checksum catches
damage, not malice, so resume only from checkpoints of a trusted source.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from l2t_gym.files import newest_intact, numbered_files, seal, unpickle_sealed, write_bytes

#: The first line of a PPO checkpoint file.
CHECKPOINT_KIND = "l2t-gym ppo checkpoint 1"
_CHECKPOINT_NAME = re.compile(r"ppo-checkpoint-(\d+)\.pkl")
_STATE_KEYS = ("config", "model", "env", "last_obs", "episode_starts", "counters", "rng", "history")
# SB3 counts timesteps; the budget in episodes stops learning long before this.
_NO_STEP_LIMIT = 2**62


@dataclass(frozen=True)
class PPOConfig:
    """Settings of a PPO run (the rest are SB3's defaults).

    :param episodes: student runs in all (the budget).
    :param lr: Adam's learning rate.
    :param n_steps: teacher steps (candidate batches) per rollout, one update each (>= 2).
    :param batch_size: minibatch size of the updates (>= 2; at most ``n_steps`` is used).
    :param init_keep: keep probability of the untrained policy, in (0, 1).
    :param seed: SB3's seed (policy initialisation, action sampling, minibatch order).
    :param checkpoint_every: episodes between checkpoints (0: none).
    :raises ValueError: naming the field, for values outside those ranges.
    """

    episodes: int = 200
    lr: float = 3e-4
    n_steps: int = 256
    batch_size: int = 64
    init_keep: float = 0.9
    seed: int = 0
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"episodes must be >= 0, got {self.episodes}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be positive, got {self.lr}")
        for name in ("n_steps", "batch_size"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if not 0.0 < self.init_keep < 1.0:
            raise ValueError(f"init_keep must lie strictly between 0 and 1, got {self.init_keep}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


class PPOTrainer:
    """Train an :class:`~l2t_gym.sb3.InstancePolicy` by SB3's PPO on one env, ``episodes``
    student runs in all (see the module docstring).

    ``history`` holds one record per ended episode: episode, reward (its return: the paper's
    only reward), iterations, teacher_steps, reached_tau, keep_ratio.

    :param env: one L2T env (not a vector env).
    :param config: the run's settings.
    :param checkpoint_dir: where :meth:`save_checkpoint` writes and :meth:`resume` looks.
    :param tensorboard_log: SB3's TensorBoard folder for its own losses (None: none); this
        run's, not the checkpoint's, after a resume.
    :raises ValueError: if ``checkpoint_every`` is set without a ``checkpoint_dir``.
    """

    def __init__(
        self,
        env: gym.Env,
        config: PPOConfig = PPOConfig(),
        checkpoint_dir: str | os.PathLike | None = None,
        tensorboard_log: str | os.PathLike | None = None,
    ) -> None:
        from stable_baselines3 import PPO  # heavy: imported when a PPO run is built

        from l2t_gym.sb3 import InstancePolicy

        self.config = config
        self.tensorboard_log = os.fspath(tensorboard_log) if tensorboard_log is not None else None
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if config.checkpoint_every and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir")
        self.model = PPO(
            InstancePolicy,
            env,
            learning_rate=config.lr,
            n_steps=config.n_steps,
            batch_size=min(config.batch_size, config.n_steps),
            policy_kwargs={"init_keep": config.init_keep},
            seed=config.seed,
            device="cpu",  # the policy is tiny; the students use their env's device
            tensorboard_log=self.tensorboard_log,
        )
        self.feature_names = tuple(env.unwrapped.feature_names)
        self.history: list[dict[str, Any]] = []
        self._checkpointed = 0  # episodes done at the last checkpoint written or loaded
        self._resumed = False

    @property
    def episodes_done(self) -> int:
        """Student runs ended so far."""
        return len(self.history)

    def teacher(self) -> Any:
        """The policy as a :class:`~l2t_gym.teachers.Teacher` (an
        :class:`l2t_gym.sb3.InstanceTeacher`)."""
        from l2t_gym.sb3 import InstanceTeacher

        return InstanceTeacher(self.model)

    def train(self, callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Learn until ``episodes`` student runs have ended (from where a resume left off).

        :param callback: called after every ended episode with its record.
        :return: the history (also ``self.history``).
        """
        from stable_baselines3.common.callbacks import BaseCallback

        trainer = self

        class Hooks(BaseCallback):
            def _on_rollout_start(self) -> None:
                every = trainer.config.checkpoint_every
                if every and trainer.episodes_done // every > trainer._checkpointed // every:
                    trainer.save_checkpoint()

            def _on_step(self) -> bool:
                for done, info, reward in zip(
                    self.locals["dones"], self.locals["infos"], self.locals["rewards"], strict=True
                ):
                    if done and trainer.episodes_done < trainer.config.episodes:
                        trainer._record(info, float(reward), callback)
                return trainer.episodes_done < trainer.config.episodes

        if self.episodes_done < self.config.episodes:
            self.model.learn(
                total_timesteps=_NO_STEP_LIMIT,
                callback=Hooks(),
                reset_num_timesteps=not self._resumed,
            )
        return self.history

    def _record(
        self, info: dict[str, Any], reward: float, callback: Callable[[dict], None] | None
    ) -> None:
        seen = info["instances_seen"]
        record = {
            "episode": self.episodes_done,
            "reward": reward,  # the only reward of the episode: its return
            "iterations": int(info["iteration"]),
            "teacher_steps": int(info["teacher_step"]),
            "reached_tau": bool(info["reached_tau"]),
            "keep_ratio": float(info["kept_instances"] / seen) if seen else math.nan,
        }
        self.history.append(record)
        if callback is not None:
            callback(record)

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``ppo-checkpoint-<episodes done>.pkl`` into ``checkpoint_dir`` (see the module
        docstring for what it holds), sealed with a SHA-256, atomically.

        :return: the file's path.
        """
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"ppo-checkpoint-{self.episodes_done:06d}.pkl"
        zipped = io.BytesIO()
        self.model.save(zipped)
        m = self.model
        state = {
            "config": asdict(self.config),
            "feature_names": list(self.feature_names),
            "model": zipped.getvalue(),
            "env": m.get_env(),
            "last_obs": m._last_obs,
            "episode_starts": m._last_episode_starts,
            "counters": {"num_timesteps": m.num_timesteps, "n_updates": m._n_updates},
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),  # noqa: NPY002 - SB3 shuffles with the global one
                "random": random.getstate(),
            },
            "history": self.history,
        }
        write_bytes(path, seal(CHECKPOINT_KIND, pickle.dumps(state, protocol=4)))
        self._checkpointed = self.episodes_done
        return path

    def resume(self, path: str | os.PathLike | None = None) -> Path | None:
        """Continue from a checkpoint (unpickled: trusted files only).

        :param path: the checkpoint; None takes the newest intact one in ``checkpoint_dir``,
            skipping damaged ones with a warning that names them.
        :return: the file loaded, or None if there is none (the run starts from episode 0).
        :raises DamagedFileError: (a ``ValueError``) if ``path`` is damaged, or every
            checkpoint in ``checkpoint_dir`` is.
        :raises ValueError: if the checkpoint belongs to another run (seed, lr, n_steps,
            batch_size, init_keep or layout differ).
        """
        if path is not None:
            found: tuple[Path, dict[str, Any]] | None = (Path(path), read_checkpoint(path))
        else:
            files = checkpoint_files(self.checkpoint_dir) if self.checkpoint_dir else []
            found = newest_intact(files, read_checkpoint, self.checkpoint_dir)
        if found is None:
            return None
        self._load_state(*found)
        return found[0]

    def _load_state(self, path: Path, state: dict[str, Any]) -> None:
        from stable_baselines3 import PPO

        saved = state["config"]
        for key in ("seed", "lr", "n_steps", "batch_size", "init_keep"):
            if saved.get(key) != getattr(self.config, key):
                raise ValueError(
                    f"{os.fspath(path)!r}: checkpoint was made with {key}={saved.get(key)}, this "
                    f"run has {getattr(self.config, key)}: resuming would not continue the same run"
                )
        if tuple(state["feature_names"]) != self.feature_names:
            raise ValueError(f"{os.fspath(path)!r}: made for a different observation layout")
        env = state["env"]
        model = PPO.load(io.BytesIO(state["model"]), env=env, device="cpu", force_reset=False)
        model.tensorboard_log = self.tensorboard_log
        model._last_obs = state["last_obs"]
        model._last_episode_starts = state["episode_starts"]
        model.num_timesteps = state["counters"]["num_timesteps"]
        model._n_updates = state["counters"]["n_updates"]
        # After PPO.load, which draws from torch's generator to build the policy it overwrites.
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])  # noqa: NPY002 - SB3 shuffles with the global one
        random.setstate(state["rng"]["random"])
        self.model, self._resumed = model, True
        self.history = [dict(r) for r in state["history"]]
        self._checkpointed = self.episodes_done


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints :meth:`PPOTrainer.save_checkpoint` wrote in ``folder``, newest first."""
    return numbered_files(folder, _CHECKPOINT_NAME)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a PPO checkpoint after checking its SHA-256; the payload is unpickled, which can run
    code: read only checkpoints from a trusted source.

    :raises FileNotFoundError: if there is no file at ``path``.
    :raises DamagedFileError: (a ``ValueError``) for an empty, damaged or foreign file, or a
        state without its entries.
    """
    return unpickle_sealed(path, CHECKPOINT_KIND, "PPO checkpoint", _STATE_KEYS)
