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

The authors' public code (fyabc/RL4Data, Theano) has a few details the paper does not state; each
is an option whose default leaves the run as it was, so whether it matters can be measured:

- Its policy's output bias starts near 88% keep: ``BernoulliTeacher(init_keep=0.88)``.
- Its baseline is b <- 0.2 * b + 0.8 * R: ``baseline_momentum=0.2``. It starts at b = 0 and
  moves once per episode (one student per policy update there); here b starts at the first
  update's mean reward and moves once per update, by the update's mean reward, so the two agree
  exactly only with ``students_per_update=1`` after the first update.
- It halves the policy's learning rate every K episodes: ``lr_halve_every=K`` (a
  ``torch.optim.lr_scheduler.StepLR``). There the halving happens at the start of episode K - 1
  (0-based), so that episode already learns at half rate; here episodes K, 2K, ... are the first
  at 1/2, 1/4, ... of ``lr``.
- It adds c * sum(theta ** 2) to the loss: ``weight_decay=2 * c`` (Adam's ``weight_decay`` adds
  ``weight_decay * theta`` to the gradient, which is that term's gradient).

It also takes one optimiser step per student minibatch of an episode, each with the episode's
R - b; here an episode's terms are summed into one step, as the paper's update is written.
"""

from __future__ import annotations

import copy
import io
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from l2t_gym.files import DamagedFileError, newest_intact, numbered_files, seal, unseal, write_bytes
from l2t_gym.teachers.bernoulli import BernoulliTeacher
from l2t_gym.teachers.executors import MAIN, EpisodeJob, EpisodeOutcome, Executor, as_executor
from l2t_gym.teachers.rollout import EpisodeResult

#: The first line of a checkpoint file; 2: sealed with a SHA-256 (1 was a bare torch.save).
CHECKPOINT_KIND = "l2t-gym checkpoint 2"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)\.pt")
# Every torch.save file is a zip archive: what a checkpoint before checksums starts with.
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings of a REINFORCE run.

    :param episodes: student runs in all (the budget).
    :param students_per_update: runs per gradient step.
    :param lr: Adam's learning rate.
    :param baseline_momentum: m in b <- m * b + (1 - m) * mean R of the update (b starts at the
        first update's mean reward), in [0, 1). 0.2 is the authors' code's rule (see the module
        docstring for how its baseline differs otherwise).
    :param patience: stop early once the baseline has not risen by ``min_delta`` for this many
        updates (None: never).
    :param min_delta: the rise in the baseline that counts as progress.
    :param checkpoint_every: episodes between checkpoints (0: none).
    :param seed: the run's seed; every env and sampling seed derives from it.
    :param baseline: "moving" (the paper) or "seed" (leave-one-out over the runs of the same
        student, see the module docstring).
    :param repeats: runs per student seed within an update (``baseline="seed"`` needs at least
        2); it must divide ``students_per_update``.
    :param lr_halve_every: halve Adam's learning rate after every this many episodes (the
        authors' code; a multiple of ``students_per_update``, since the rate changes between
        updates), by a ``StepLR`` saved in checkpoints. None: a constant rate.
    :param weight_decay: Adam's ``weight_decay`` on the teacher's weights, an L2 penalty
        (weight_decay / 2) * sum(theta ** 2) added to the loss; >= 0.
    :raises ValueError: for values outside those ranges.
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
    lr_halve_every: int | None = None
    weight_decay: float = 0.0

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
        every = self.lr_halve_every
        if every is not None and (
            isinstance(every, bool)
            or int(every) != every
            or every < 1
            or every % self.students_per_update
        ):
            raise ValueError(
                f"lr_halve_every must be None or a positive multiple of students_per_update "
                f"({self.students_per_update}) episodes, got {every}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")

    @property
    def updates_per_halving(self) -> int | None:
        """Policy updates between two halvings of the learning rate (None: never)."""
        if self.lr_halve_every is None:
            return None
        return int(self.lr_halve_every) // self.students_per_update


def reinforce_loss(
    log_probs: torch.Tensor, rewards: torch.Tensor, baseline: float | torch.Tensor
) -> torch.Tensor:
    """Loss whose gradient is minus the REINFORCE estimate, averaged over the students.

    :param log_probs: (S,) each student's summed log pi(a_tm | s_tm) over its whole episode.
    :param rewards: (S,) their terminal rewards.
    :param baseline: one number, or one per student (S,).
    :return: the scalar loss.
    """
    return -((rewards - baseline) * log_probs).mean()


def reinforce_gradient(
    log_prob_grads: torch.Tensor, rewards: torch.Tensor, baseline: float | torch.Tensor
) -> torch.Tensor:
    """The gradient of :func:`reinforce_loss` from each student's gradient piece: minus the
    mean over students of (R_s - b_s) * grad log pi_s. Pieces come from wherever the episodes
    ran (:mod:`l2t_gym.teachers.executors`), so the update needs no observations.

    :param log_prob_grads: (S, n) each student's gradient of its summed log pi(a | s).
    :param rewards: (S,) their terminal rewards.
    :param baseline: one number, or one per student (S,).
    :return: (n,) the loss's gradient in the teacher's flat parameters.
    """
    advantages = (rewards - baseline).to(log_prob_grads.dtype)
    return -(advantages[:, None] * log_prob_grads).mean(dim=0)


def seed_baseline(rewards: torch.Tensor, env_seeds: list[int], fallback: float) -> torch.Tensor:
    """The leave-one-out baseline: per run, the mean reward of the *other* runs of its student.

    :param rewards: (S,) the update's rewards.
    :param env_seeds: the S runs' student (env) seeds.
    :param fallback: the baseline of a run whose seed has no other run (a short last update).
    :return: (S,) one baseline per run.
    """
    out = torch.full_like(rewards, float(fallback))
    for s in set(env_seeds):
        idx = [i for i, e in enumerate(env_seeds) if e == s]
        if len(idx) > 1:
            group = rewards[idx]
            out[idx] = (group.sum() - group) / (len(idx) - 1)
    return out


def episode_seed(seed: int, episode: int) -> int:
    """The sampling (teacher) seed of an episode; also its env seed when ``repeats`` is 1.

    :param seed: the run's seed.
    :param episode: the episode's index in the run.
    :return: a seed in [0, 2**31).
    """
    return (seed * 1_000_003 + episode) % 2**31


def env_seed(seed: int, episode: int, repeats: int = 1) -> int:
    """The student (env) seed of an episode: runs come in groups of ``repeats`` consecutive
    episodes that share their group's first episode's seed.

    :param seed: the run's seed.
    :param episode: the episode's index in the run.
    :param repeats: runs per student seed.
    :return: a seed in [0, 2**31).
    """
    return episode_seed(seed, episode - episode % repeats)


class ReinforceTrainer:
    """Trains a :class:`BernoulliTeacher` by REINFORCE on an env (its teacher fold).

    The episodes are run by an executor (:mod:`l2t_gym.teachers.executors`: in process, side by
    side in a vector env, or on Ray workers), which sends back each episode's reward and the
    gradient of its log-probability; this class owns only the update. In a vector env the
    students of an update train side by side, each with the seed and sampling stream it would
    have had alone, so the run equals the sequential one to float tolerance; on CPU, in process
    and on any number of single-env Ray workers it is the same run, bit for bit.

    Checkpoints hold the policy, the optimiser (and its learning-rate schedule, with
    ``lr_halve_every``), the baseline and the history as plain tensors and numbers, sealed with
    a SHA-256 and read back with ``torch.load(weights_only=True)`` (see :func:`read_checkpoint`).

    :param env: one env, a vector env (``gym.make_vec``, the native
        :class:`~l2t_gym.vector.L2TVectorEnv`) whose ``num_envs`` equals
        ``students_per_update``, or an :class:`~l2t_gym.teachers.executors.Executor` (in
        process or on Ray) whose env ``env_name`` the students train in.
    :param teacher: the teacher to train; its ``policy`` is updated in place.
    :param config: the run's settings.
    :param checkpoint_dir: where :meth:`save_checkpoint` writes and :meth:`resume` looks
        (always on this machine, the driver).
    :param env_name: the executor's env the episodes run in (with an executor).
    :raises ValueError: if a vector env's size differs from ``students_per_update``, or
        ``checkpoint_every`` is set without a ``checkpoint_dir``.
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv | Executor,
        teacher: BernoulliTeacher,
        config: ReinforceConfig = ReinforceConfig(),
        checkpoint_dir: str | os.PathLike | None = None,
        *,
        env_name: str = MAIN,
    ) -> None:
        self.env, self.teacher, self.config = env, teacher, config
        self.executor, self.env_name = as_executor(env), env_name
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.num_envs = None if isinstance(env, Executor) else getattr(env, "num_envs", None)
        if self.num_envs is not None and self.num_envs != config.students_per_update:
            raise ValueError(
                f"a vector env of {self.num_envs} students needs students_per_update="
                f"{self.num_envs}, got {config.students_per_update}"
            )
        if config.checkpoint_every and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir")
        self.optimizer = torch.optim.Adam(
            teacher.policy.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        #: Halves the learning rate every ``lr_halve_every`` episodes; None without it.
        self.scheduler: torch.optim.lr_scheduler.StepLR | None = None
        step_size = config.updates_per_halving
        if step_size is not None:
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=step_size, gamma=0.5
            )
        self.baseline: float | None = None
        self.history: list[dict[str, Any]] = []
        self._best = -math.inf
        self._stale = 0

    @property
    def episodes_done(self) -> int:
        """Episodes run and learnt from so far."""
        return len(self.history)

    def run_episode(self, episode: int) -> tuple[EpisodeOutcome, dict[str, Any]]:
        """One student run with the current policy.

        :param episode: the episode's index in the run; it fixes the env and sampling seeds
            (:func:`env_seed`, :func:`episode_seed`).
        :return: the episode's outcome (its summed log pi(a | s) over all its steps and that
            sum's gradient in the policy's parameters) and its history record.
        """
        outcomes, records = self.run_episodes(episode, 1)
        return outcomes[0], records[0]

    def run_episodes(self, first: int, n: int) -> tuple[list[EpisodeOutcome], list[dict]]:
        """Episodes first .. first+n-1 as one job of the executor (one after the other, side by
        side in a vector env, or on Ray workers).

        :param first: the first episode's index.
        :param n: how many.
        :return: per episode, as :meth:`run_episode`.
        """
        cfg = self.config
        episodes = range(first, first + n)
        job = EpisodeJob(
            self.teacher,
            [env_seed(cfg.seed, e, cfg.repeats) for e in episodes],
            [episode_seed(cfg.seed, e) for e in episodes],
            env=self.env_name,
            log_prob_grad=True,
        )
        (outcomes,) = self.executor.run([job])
        records = [_record(e, o.result) for e, o in zip(episodes, outcomes, strict=True)]
        return outcomes, records

    def train(self, callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Run until the episode budget is spent or the reward plateaus.

        The update: with g_s the gradient of student s's summed log pi(a | s) (computed where
        the episode ran) and b_s its baseline, Adam steps along the mean of (R_s - b_s) g_s,
        the gradient of minus :func:`reinforce_loss`.

        :param callback: called after every episode with its record (episode, reward,
            iterations, teacher_steps, reached_tau, keep_ratio, baseline).
        :return: the history, one record per episode (also ``self.history``).
        """
        cfg = self.config
        while self.episodes_done < cfg.episodes and not self.stopped_early:
            n = min(cfg.students_per_update, cfg.episodes - self.episodes_done)
            outcomes, records = self.run_episodes(self.episodes_done, n)
            rewards = torch.tensor([r["reward"] for r in records])
            if self.baseline is None:
                self.baseline = float(rewards.mean())
            baseline: float | torch.Tensor = self.baseline
            if cfg.baseline == "seed":
                first = self.episodes_done
                seeds = [env_seed(cfg.seed, first + k, cfg.repeats) for k in range(n)]
                baseline = seed_baseline(rewards, seeds, self.baseline)
            grads = torch.as_tensor(np.stack([o.log_prob_grad for o in outcomes]))
            self._step(reinforce_gradient(grads, rewards, baseline))
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

    def _step(self, gradient: torch.Tensor) -> None:
        """One optimiser step along ``gradient`` (flat, in ``policy.parameters()`` order)."""
        params = [p for p in self.teacher.policy.parameters() if p.requires_grad]
        offset = 0
        for p in params:
            p.grad = gradient[offset : offset + p.numel()].view_as(p).to(p.dtype).clone()
            offset += p.numel()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.scheduler is not None:
            self.scheduler.step()

    @property
    def stopped_early(self) -> bool:
        """Whether the baseline has plateaued for ``patience`` updates."""
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
        """Everything a resumed run needs, as plain tensors and numbers (``scheduler`` only
        with ``lr_halve_every``)."""
        state = {
            "config": asdict(self.config),
            "policy": self.teacher.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "best": self._best,
            "stale": self._stale,
            "history": self.history,
            "feature_names": list(self.teacher.layout),
            "inputs": list(self.teacher.inputs),
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`. Nothing changes unless all of it fits.

        :param state: made by :meth:`state_dict`, for this teacher layout and seed.
        :raises ValueError: if it is not a :meth:`state_dict` (see :func:`state_problem`), or
            was made for another observation layout, teacher size, run seed or learning-rate
            schedule (with ``lr_halve_every`` or without).
        """
        problem = state_problem(state)
        if problem is not None:
            raise ValueError(f"not a REINFORCE state: {problem}")
        if list(state["feature_names"]) != list(self.teacher.layout):
            raise ValueError("checkpoint was made for a different observation layout")
        # Checkpoints written before teachers had inputs read every column.
        inputs = list(state.get("inputs", state["feature_names"]))
        if inputs != list(self.teacher.inputs):
            raise ValueError(
                f"checkpoint was made for a teacher reading the columns {inputs}; this one "
                f"reads {list(self.teacher.inputs)}"
            )
        if state["config"]["seed"] != self.config.seed:
            raise ValueError(
                f"checkpoint was made with seed {state['config']['seed']}, this run has "
                f"{self.config.seed}: resuming would not continue the same run"
            )
        saved_every = state["config"].get("lr_halve_every")
        if ("scheduler" in state) != (self.scheduler is not None) or (
            saved_every != self.config.lr_halve_every
        ):
            raise ValueError(
                f"checkpoint was made with lr_halve_every={saved_every}, this run has "
                f"{self.config.lr_halve_every}: resuming would not continue the same run"
            )
        policy = self.teacher.policy
        shapes = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state["policy"].items()} != shapes:
            raise ValueError(f"checkpoint holds another teacher network; this one's is {shapes}")
        self._check_optimizer_state(state["optimizer"])
        scheduler = self.scheduler
        before = copy.deepcopy(
            (
                policy.state_dict(),
                self.optimizer.state_dict(),
                scheduler.state_dict() if scheduler is not None else None,
            )
        )
        try:
            policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            policy.load_state_dict(before[0])
            self.optimizer.load_state_dict(before[1])
            if scheduler is not None:
                scheduler.load_state_dict(before[2])
            raise ValueError(f"checkpoint's optimiser state does not fit: {err}") from err
        self.baseline, self._best, self._stale = state["baseline"], state["best"], state["stale"]
        self.history = [dict(r) for r in state["history"]]

    def _check_optimizer_state(self, saved: dict[str, Any]) -> None:
        # torch matches saved parameters to ours by position and never compares shapes (a
        # wrong one would surface at the next step, or broadcast silently), so compare here.
        ours = [p for g in self.optimizer.param_groups for p in g["params"]]
        ids = [i for g in saved["param_groups"] for i in g["params"]]
        if len(ids) != len(ours):
            raise ValueError(f"checkpoint's optimiser has {len(ids)} parameters, not {len(ours)}")
        shape_of = dict(zip(ids, (tuple(p.shape) for p in ours), strict=True))
        for i, entries in saved["state"].items():
            for name, value in entries.items():
                if i not in shape_of or (
                    isinstance(value, torch.Tensor)
                    and value.ndim > 0
                    and tuple(value.shape) != shape_of[i]
                ):
                    raise ValueError(f"checkpoint's optimiser state {i}.{name} does not fit")

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint-<episodes done>.pt`` into ``checkpoint_dir``, sealed with its
        SHA-256 (see :func:`read_checkpoint`) and atomically: an interrupted save leaves no
        half-written checkpoint.

        :return: the file's path.
        """
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"checkpoint-{self.episodes_done:06d}.pt"
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        write_bytes(path, seal(CHECKPOINT_KIND, buffer.getvalue()))
        return path

    def resume(self, path: str | os.PathLike | None = None) -> Path | None:
        """Continue from a checkpoint.

        Without ``path`` it takes the newest intact checkpoint in ``checkpoint_dir``: damaged
        ones (an empty file left by a full disk, a flipped byte) are skipped with a warning that
        names them.

        :param path: the checkpoint; None takes the newest intact one in ``checkpoint_dir``.
        :return: the file loaded, or None if ``checkpoint_dir`` holds none (the run starts
            from its first episode).
        :raises DamagedFileError: (a ``ValueError``) if ``path`` is damaged, or every
            checkpoint in ``checkpoint_dir`` is.
        :raises ValueError: if the checkpoint loaded belongs to another run.
        """
        if path is not None:
            self._load_from(Path(path), read_checkpoint(path))
            return Path(path)
        found = checkpoint_files(self.checkpoint_dir) if self.checkpoint_dir else []
        newest = newest_intact(found, read_checkpoint, self.checkpoint_dir)
        if newest is None:
            return None
        self._load_from(*newest)
        return newest[0]

    def _load_from(self, path: Path, state: dict[str, Any]) -> None:
        try:
            self.load_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{os.fspath(path)!r}: {err}") from err


def _record(episode: int, result: EpisodeResult) -> dict[str, Any]:
    """An episode's history record (the baseline joins it after the update)."""
    return {
        "episode": episode,
        # The return; the paper's reward comes only at the end, so it is the final reward.
        "reward": result.reward,
        "iterations": result.iterations,
        "teacher_steps": result.teacher_steps,
        "reached_tau": result.reached_tau,
        "keep_ratio": result.keep_ratio,
    }


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints :meth:`ReinforceTrainer.save_checkpoint` wrote in ``folder``, newest first.

    :param folder: a checkpoint folder (missing: none).
    :return: their paths, the most episodes first.
    """
    return numbered_files(folder, _CHECKPOINT_NAME)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint after checking its SHA-256 and its structure.

    The file is the header of :func:`l2t_gym.files.seal` and the ``torch.save`` of a
    :meth:`ReinforceTrainer.state_dict`, read back with ``torch.load(weights_only=True)``
    (plain tensors and numbers, never code). A checkpoint of l2t-gym before checksums (a bare
    ``torch.save`` file) is read unchecked, with a warning.

    :param path: the file.
    :return: the state, for :meth:`ReinforceTrainer.load_state_dict`.
    :raises FileNotFoundError: if there is no file at ``path``.
    :raises DamagedFileError: (a ``ValueError``) for an empty, damaged or foreign file, or a
        state of the wrong structure.
    """
    data = Path(path).read_bytes()
    if data.startswith(_ZIP_MAGIC):
        warnings.warn(
            f"{os.fspath(path)!r} was written before checkpoints carried a checksum: it is "
            "read unchecked",
            stacklevel=2,
        )
        payload = data
    else:
        payload = unseal(data, CHECKPOINT_KIND, path, "checkpoint")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable payload gets the same clear error
        raise DamagedFileError(path, f"torch.load cannot read it ({err})", "checkpoint") from err
    problem = state_problem(state)
    if problem is not None:
        raise DamagedFileError(path, problem, "checkpoint")
    return state


def state_problem(state: Any) -> str | None:
    """What makes ``state`` something other than a :meth:`ReinforceTrainer.state_dict`: a
    missing entry or one of the wrong type, an optimiser state that is no ``state_dict``, or
    a history whose records are not episodes 0, 1, 2, ... with (at least) their fields.
    Whether it fits a given trainer (layout, seed, shapes) is
    :meth:`ReinforceTrainer.load_state_dict`'s to check.

    :param state: what ``torch.load`` returned.
    :return: the first problem found, in words, or None when the structure is right.
    """
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a dict"
    missing = sorted(set(_STATE_TYPES) - set(state))
    if missing:
        return f"entries {missing} are missing"
    for key, kind in _STATE_TYPES.items():
        if not kind(state[key]):
            return f"entry {key!r} has the wrong type ({type(state[key]).__name__})"
    if not _is_int(state["config"].get("seed")):
        return "its config has no integer seed"
    if not (state["feature_names"] and all(isinstance(n, str) for n in state["feature_names"])):
        return "feature_names is not a list of names"
    policy = state["policy"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in policy.items()):
        return "policy is not a state dict of named tensors"
    optimizer = state["optimizer"]
    groups, per_param = optimizer.get("param_groups"), optimizer.get("state")
    if not (isinstance(groups, list) and isinstance(per_param, dict)):
        return "optimizer is not an optimiser's state_dict"
    if not all(
        isinstance(g, dict)
        and isinstance(g.get("params"), list)
        and all(_is_int(i) for i in g["params"])
        for g in groups
    ):
        return "optimizer's param_groups do not list their parameters"
    if not all(isinstance(v, dict) for v in per_param.values()):
        return "optimizer's per-parameter state is not a dict of dicts"
    scheduler = state.get("scheduler")
    if "scheduler" in state and not (
        isinstance(scheduler, dict) and _is_int(scheduler.get("last_epoch"))
    ):
        return "scheduler is not a learning-rate scheduler's state_dict"
    history = state["history"]
    for i, record in enumerate(history):
        # Extra fields are allowed: a training callback may annotate the records it is given.
        if not isinstance(record, dict) or not set(_RECORD_TYPES) <= set(record):
            return f"history record {i} does not hold the fields {sorted(_RECORD_TYPES)}"
        wrong = [k for k, kind in _RECORD_TYPES.items() if not kind(record[k])]
        if wrong or record["episode"] != i:
            return f"history record {i} is not episode {i} with its fields' types ({wrong})"
    if (state["baseline"] is None) != (not history):
        return "baseline and history disagree (a baseline exists once an update has run)"
    return None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


#: What a state_dict holds, and the test each entry must pass.
_STATE_TYPES: dict[str, Callable[[Any], bool]] = {
    "config": lambda x: isinstance(x, dict),
    "policy": lambda x: isinstance(x, dict),
    "optimizer": lambda x: isinstance(x, dict),
    "baseline": lambda x: x is None or _is_number(x),
    "best": _is_number,
    "stale": lambda x: _is_int(x) and x >= 0,
    "history": lambda x: isinstance(x, list),
    "feature_names": lambda x: isinstance(x, list),
}
#: The fields of a history record (see :meth:`ReinforceTrainer.train`).
_RECORD_TYPES: dict[str, Callable[[Any], bool]] = {
    "episode": _is_int,
    "reward": _is_number,
    "iterations": _is_int,
    "teacher_steps": _is_int,
    "reached_tau": lambda x: isinstance(x, bool),
    "keep_ratio": _is_number,
    "baseline": _is_number,
}
