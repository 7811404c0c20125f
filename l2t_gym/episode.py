"""The MDP of "Learning to Teach" (Fan et al., ICLR 2018, section 4), written once over N
students: the spaces, the keep-mask check, the clock, the reward, the episode's end and the info.

:class:`Episodes` runs N episodes side by side on one :class:`~l2t_gym.student.StudentRun`.
:class:`l2t_gym.L2TEnv` is N = 1 of it and :class:`l2t_gym.vector.L2TVectorEnv` adds Gymnasium's
autoreset; neither states a rule of its own.

* **Clock.** c = student iterations + ``candidate_cost`` x candidate batches shown; the paper's
  clock is the iterations alone (``candidate_cost=0``).
* **Reward.** 0 on every step but the last. Reaching ``tau`` at clock c_tau gives
  :func:`paper_reward` = -log(c_tau / T'); running out of clock gives 0 = -log(T'/T').
* **End.** Terminated when a dev evaluation (every ``eval_every`` iterations) reaches ``tau``,
  when the clock reaches T', or when the student diverges; truncated (reward 0) when the teacher
  has taken ``max_teacher_steps`` steps without any of these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from l2t_gym.features import feature_bounds, observe
from l2t_gym.settings import Settings
from l2t_gym.student import StudentRun


def paper_reward(clock: float, max_iters: int) -> float:
    """-log(c_tau / T'): the reward for reaching tau at clock value ``clock`` (Fan et al. 2018,
    section 4.3), 0 at T' and growing as the student gets there sooner."""
    return -math.log(clock / max_iters)


def observation_space(settings: Settings) -> spaces.Box:
    """One env's observations: float32 (M, d), the columns of ``settings.feature_names``."""
    low, high = feature_bounds(settings.num_classes, len(settings.spec.extra_names))
    m = settings.batch_size
    return spaces.Box(
        np.broadcast_to(low, (m, len(low))),
        np.broadcast_to(high, (m, len(high))),
        dtype=np.float32,
    )


def action_space(settings: Settings) -> spaces.MultiBinary:
    """One env's actions: a keep bit for each of the M candidates."""
    return spaces.MultiBinary(settings.batch_size)


def check_keep_masks(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``action`` as a bool keep mask of ``shape`` ((M,) for one env, (N, M) for N).

    Accepts bool, integer or float arrays of 0/1 (Stable-Baselines3 sends floats).

    :raises TypeError: for None, strings and arrays of other kinds.
    :raises ValueError: for another shape or values other than 0 and 1 (NaN included).
    """
    what = "a keep mask" if len(shape) == 1 else "keep masks"
    expected = f"{what} of shape {shape} with values 0/1 (bool, int or float)"
    if action is None or isinstance(action, (str, bytes)):
        raise TypeError(f"expected {expected}, got {type(action).__name__}")
    try:
        a = np.asarray(action)
    except Exception as err:  # noqa: BLE001 - whatever np.asarray rejects is a bad action
        raise TypeError(f"expected {expected}, got {type(action).__name__}") from err
    if a.dtype == np.bool_ and a.shape == shape:
        return a
    if a.dtype.kind not in "biuf":
        raise TypeError(f"expected {expected}, got an array of dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"expected {expected}, got shape {a.shape}")
    valid = (a == 0) | (a == 1)
    if not valid.all():
        raise ValueError(f"expected {expected}, got values {np.unique(a[~valid])[:5]}")
    return a != 0


class Episodes:
    """N episodes of the L2T MDP side by side, one per student of ``run``.

    :param settings: the env's settings (tau, T', eval_every, clock cost, truncation, report_test).
    :param run: the students' run, N = ``run.n``.
    """

    def __init__(self, settings: Settings, run: StudentRun) -> None:
        self.settings, self.run, self.n = settings, run, run.n
        #: (N,) teacher steps (candidate batches shown) and instances kept so far.
        self.teacher_step = np.zeros(self.n, dtype=np.int64)
        self.kept_instances = np.zeros(self.n, dtype=np.int64)
        self.reached_tau = np.zeros(self.n, dtype=bool)
        self.diverged = np.zeros(self.n, dtype=bool)

    def clock(self) -> np.ndarray:
        """(N,) float: student iterations + ``candidate_cost`` x candidate batches shown."""
        return self.run.iteration + self.settings.candidate_cost * self.teacher_step

    def start(self, i: int, rng: np.random.Generator) -> None:
        """A new episode in slot ``i``: a fresh student, all of it seeded from ``rng``, evaluated
        once on the dev set (and the test set with ``report_test="eval"``)."""
        init_seed, order_seed, augment_seed = (int(s) for s in rng.integers(2**62, size=3))
        self.run.start(i, init_seed, order_seed, augment_seed)
        self.teacher_step[i] = self.kept_instances[i] = 0
        self.reached_tau[i] = self.diverged[i] = False
        only = np.arange(self.n) == i
        self.run.evaluate("dev", only)
        if self.settings.report_test == "eval":
            self.run.evaluate("test", only)

    def observe(self, keep_graph: bool = True) -> np.ndarray:
        """Propose every student's next candidate batch: the (N, M, d) observations."""
        candidate = self.run.propose(keep_graph)
        self.diverged |= candidate.diverged
        progress = np.minimum(self.clock() / self.settings.max_iters, 1.0)
        return observe(candidate, progress, self.run.best_dev_accuracy)

    def step(
        self, keep: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply keep masks (N, M) bool; students not in ``active`` (bool (N,); all when None)
        sit this step out. Returns the next observations (N, M, d) and, per student, the
        reward, terminated and truncated."""
        s, run, n = self.settings, self.run, self.n
        n_kept = np.count_nonzero(keep, axis=1)
        if active is None:
            live = run.everyone
            self.teacher_step += 1
            self.kept_instances += n_kept
        else:
            live = active
            self.teacher_step[live] += 1
            self.kept_instances[live] += n_kept[live]
        trained = run.offer(keep, active, n_kept)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        due = trained & (run.iteration % s.eval_every == 0)
        if due.any():
            rows = None if due.all() else due
            run.evaluate("dev", rows)
            if s.report_test == "eval":
                run.evaluate("test", rows)
            reached = due & (run.dev_accuracy >= s.tau)
            if reached.any():
                self.reached_tau |= reached
                terminated |= reached
                clock = self.clock()
                for i in np.flatnonzero(reached):
                    rewards[i] = paper_reward(float(clock[i]), s.max_iters)
        terminated |= live & (self.clock() >= s.max_iters)
        truncating = live & ~terminated & (self.teacher_step >= s.max_teacher_steps)
        # No graph is worth keeping for a student whose episode ends here.
        obs = self.observe(keep_graph=not (terminated | truncating).any())
        terminated |= live & self.diverged
        truncated = live & ~terminated & (self.teacher_step >= s.max_teacher_steps)
        return obs, rewards, terminated, truncated

    # -- info ---------------------------------------------------------------------------------
    def info(self, i: int | None = None) -> dict[str, Any]:
        """The step info: of student ``i`` as Python numbers, or of all as arrays (N,)."""
        run, s = self.run, self.settings
        values: dict[str, np.ndarray] = {
            "iteration": run.iteration,
            "teacher_step": self.teacher_step,
            "clock": self.clock(),
            "effective_instances": run.effective_instances,
            "instances_seen": self.teacher_step * s.batch_size,
            "kept_instances": self.kept_instances,
            "pool_size": run.pool_size,
            "dev_accuracy": run.dev_accuracy,
            "best_dev_accuracy": run.best_dev_accuracy,
            "reached_tau": self.reached_tau,
            "diverged": self.diverged,
        }
        if s.report_test == "eval":
            values["test_accuracy"] = run.test_accuracy
            values["test_seconds"] = run.test_seconds
        if i is None:
            return {k: np.array(v) for k, v in values.items()}
        return {k: v[i].item() for k, v in values.items()}

    def final_info(self, ended: np.ndarray) -> dict[str, np.ndarray]:
        """What the info adds at an episode's end, for the students in ``ended`` (bool (N,); NaN
        for the others): ``final_dev_accuracy`` (measured now if the last dev evaluation was
        not at the student's last iteration) and, with ``report_test``, ``test_accuracy``."""
        run, report = self.run, self.settings.report_test
        stale = ended & (run.dev_iteration != run.iteration)
        if stale.any():
            run.evaluate("dev", stale)
            if report == "eval":  # the final evaluation is off the eval grid: test it too
                run.evaluate("test", stale)
        info = {"final_dev_accuracy": np.where(ended, run.dev_accuracy, np.nan)}
        if report == "eval":
            info["test_accuracy"] = np.where(ended, run.test_accuracy, np.nan)
            info["test_seconds"] = np.where(ended, run.test_seconds, np.nan)
        elif report:
            run.evaluate("test", ended)
            info["test_accuracy"] = np.where(ended, run.test_accuracy, np.nan)
        return info
