"""The MDP of "Learning to Teach" (Fan et al., ICLR 2018, section 4), written once over N
students: the spaces, the keep-mask check, the clock, the reward, the episode's end and the info.

:class:`Episodes` runs N episodes side by side on one :class:`~l2t_gym.student.StudentRun`.
:class:`l2t_gym.L2TEnv` is N = 1 of it and :class:`l2t_gym.vector.L2TVectorEnv` adds Gymnasium's
autoreset; neither states a rule of its own.

* **Clock.** c = student iterations + ``candidate_cost`` x candidate batches shown; the paper's
  clock is the iterations alone (``candidate_cost=0``).
* **Reward.** 0 on every step but the last. Reaching ``tau`` at clock c_tau gives
  :func:`paper_reward` = -log(c_tau / T'); running out of clock gives 0 = -log(T'/T').
  ``reward="thresholds"`` pays :func:`thresholds_reward` instead, also once, at the end: the sum
  over ``taus`` of w_k * -log(c_k / T'), c_k the clock at which dev accuracy first reached tau_k
  (a term of 0 for a threshold never reached), whichever way the episode ended. The paper's
  reward is its case of one threshold, ``tau``, of weight 1.
* **End.** Terminated when a dev evaluation (every ``eval_every`` iterations) reaches ``tau``
  (under ``reward="thresholds"`` the highest of ``taus``), when the clock reaches T', or when
  the student diverges; truncated when the teacher has taken ``max_teacher_steps`` steps without
  any of these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from l2t_gym.data.irreducible import irreducible_losses
from l2t_gym.features import ExtraInputs, append_extra_columns, feature_bounds, observe
from l2t_gym.settings import Settings
from l2t_gym.student import StudentRun


def paper_reward(clock: float, max_iters: int) -> float:
    """-log(c_tau / T'): the reward for reaching tau at clock value ``clock`` (Fan et al. 2018,
    section 4.3), 0 at T' and growing as the student gets there sooner."""
    return -math.log(clock / max_iters)


def thresholds_reward(clocks: Sequence[float], weights: Sequence[float], max_iters: int) -> float:
    """sum_k w_k * -log(c_k / T'): the reward of ``reward="thresholds"``, and with one threshold
    of weight 1 :func:`paper_reward`'s value, bit for bit.

    :param clocks: (K,) the clock values c_k at which dev accuracy first reached each threshold;
        T' for one never reached, whose term is 0 = -log(T'/T').
    :param weights: (K,) the weights w_k, >= 0.
    :param max_iters: T', the clock's budget.
    :return: the reward, a Python float (0.0 when no threshold was reached).
    """
    return math.fsum(
        w * paper_reward(c, max_iters)
        for w, c in zip(weights, clocks, strict=True)
        if c != max_iters  # exactly 0, left out so that no -0.0 comes back
    )


def observation_space(settings: Settings) -> spaces.Box:
    """One env's observations: float32 (M, d), the columns of ``settings.feature_names``."""
    low, high = feature_bounds(
        settings.num_classes,
        len(settings.spec.extra_names),
        settings.divergence_loss,
        settings.extra_features,
    )
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
    """``action`` as a bool keep mask of ``shape`` ((M,) for one env, (N, M) for N): the one
    action check of both envs.

    Accepts NumPy arrays, (nested) lists and tuples, and torch tensors (on any device, with or
    without a gradient) of bools, integers or floats that are all 0 or 1 (Stable-Baselines3 sends
    floats).

    :raises TypeError: for None, strings and bytes-like objects (``bytes``, ``bytearray``,
        ``memoryview``: bytes are not keep decisions), masked arrays with masked entries (a
        masked entry decides nothing) and arrays of other kinds.
    :raises ValueError: for a ragged sequence, another shape, or values other than 0 and 1
        (NaN included).
    """
    if type(action) is np.ndarray and action.dtype == np.bool_ and action.shape == shape:
        return action  # the usual case, checked before any message is built
    what = "a keep mask" if len(shape) == 1 else "keep masks"
    expected = f"{what} of shape {shape} with values 0/1 (bool, int or float)"
    if action is None or isinstance(action, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"expected {expected}, got {type(action).__name__}")
    if isinstance(action, np.ma.MaskedArray):
        if np.ma.is_masked(action):
            raise TypeError(f"expected {expected}, got a masked array with masked entries")
        action = action.data
    if isinstance(action, torch.Tensor):
        action = action.detach().cpu().numpy()
    try:
        a = np.asarray(action)
    except ValueError as err:  # NumPy refuses ragged nesting
        raise ValueError(f"expected {expected}, got a ragged sequence") from err
    except Exception as err:  # noqa: BLE001 - whatever else np.asarray rejects is a bad action
        raise TypeError(f"expected {expected}, got {type(action).__name__}") from err
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

    Per-student values (``teacher_step[i]``, ...) are Python lists, as in the run; the step's
    results are lists of N, which the single env reads at 0 and the vector env turns into arrays.

    :param settings: the env's settings (tau, T', eval_every, clock cost, truncation, report_test).
    :param run: the students' run, N = ``run.n``.
    """

    def __init__(self, settings: Settings, run: StudentRun) -> None:
        self.settings, self.run, self.n = settings, run, run.n
        #: Teacher steps (candidate batches shown), instances seen and kept so far, and the
        #: clock (iterations + ``candidate_cost`` x candidate batches shown), per student.
        self.teacher_step = [0] * self.n
        self.instances_seen = [0] * self.n
        self.kept_instances = [0] * self.n
        self.clocks = [0.0] * self.n
        self.reached_tau = [False] * self.n
        self.diverged = [False] * self.n
        #: The reward's thresholds and weights: ``taus`` and ``tau_weights`` under
        #: ``reward="thresholds"``, (tau,) and (1,) under the paper's; and per student the clock
        #: at which dev accuracy first reached each threshold (K floats, T' until then: the value
        #: whose term is 0; NaN would make equal episodes compare unequal) and how many it has
        #: reached (the thresholds increase, so they are reached in order: a prefix).
        self.taus = settings.taus or (settings.tau,)
        self.tau_weights = settings.tau_weights or (1.0,)
        self.tau_clocks = [[float(settings.max_iters)] * len(self.taus) for _ in range(self.n)]
        self.taus_reached = [0] * self.n
        #: The optional columns' per-instance table, built once per dataset and fold.
        extra = settings.extra_features
        self._irreducible = (
            irreducible_losses(run.data, run.fold) if "irreducible_loss" in extra else None
        )
        #: The loss history of the columns ``loss_vs_mean`` and ``loss_change``, kept only when
        #: one of them is asked for: per student the sum and count of the candidate losses of
        #: its teacher steps this episode, each instance's loss at its last such step (N x the
        #: task's whole training set; NaN: not yet a candidate), and the losses (N, M) of the
        #: batches last shown (their indices are the run's ``candidate.indices``).
        self._history = bool({"loss_vs_mean", "loss_change"} & set(extra))
        self._shown_loss_sum = np.zeros(self.n)
        self._shown_losses = np.zeros(self.n, dtype=np.int64)
        self._last_visit = (
            np.full((self.n, len(run.data.y_train_host)), np.nan, dtype=np.float32)
            if "loss_change" in extra
            else None
        )
        self._shown_loss: np.ndarray | None = None
        self._students = np.arange(self.n)[:, None]  # row index of a gather from the table

    def start(self, i: int, rng: np.random.Generator) -> None:
        """A new episode in slot ``i``: a fresh student, all of it seeded from ``rng``, evaluated
        once on the dev set (and the test set with ``report_test="eval"``)."""
        init_seed, order_seed, augment_seed = (int(s) for s in rng.integers(2**62, size=3))
        self.run.start(i, init_seed, order_seed, augment_seed)
        self.teacher_step[i] = self.instances_seen[i] = self.kept_instances[i] = 0
        self.clocks[i] = 0.0
        self.reached_tau[i] = self.diverged[i] = False
        self.tau_clocks[i] = [float(self.settings.max_iters)] * len(self.taus)
        self.taus_reached[i] = 0
        self._shown_loss_sum[i], self._shown_losses[i] = 0.0, 0
        if self._last_visit is not None:
            self._last_visit[i] = np.nan
        self.run.evaluate("dev", [i])
        if self.settings.report_test == "eval":
            self.run.evaluate("test", [i])

    def observe(self, keep_graph: bool = True) -> np.ndarray:
        """Propose every student's next candidate batch: the (N, M, d) observations."""
        candidate = self.run.propose(keep_graph)
        for i, bad in enumerate(candidate.diverged):
            if bad:
                self.diverged[i] = True
        s, run = self.settings, self.run
        progress = [min(clock / s.max_iters, 1.0) for clock in self.clocks]
        obs = observe(candidate, progress, run.best_dev_accuracy, s.divergence_loss)
        if not s.extra_features:
            return obs
        loss, idx = obs[:, :, -2], candidate.indices
        mean_shown = last_visit = None
        if self._history:
            # A view: ``obs`` is this step's own array, and the columns below go into a new one.
            self._shown_loss = loss
            counts = self._shown_losses  # 0 before a student's first step: its mean stays NaN
            mean_shown = np.divide(
                self._shown_loss_sum, counts, out=np.full(self.n, np.nan), where=counts > 0
            )
            if self._last_visit is not None:
                last_visit = self._last_visit[self._students, idx]
        inputs = ExtraInputs(
            loss=loss,
            margin=obs[:, :, -1],
            kept_instances=self.kept_instances,
            instance_budget=s.max_iters * s.batch_size,
            dev_accuracy_sum=run.dev_accuracy_sum,
            dev_evaluations=[len(h) for h in run.dev_history],
            indices=candidate.indices,
            irreducible_loss=self._irreducible,
            loss_cap=s.divergence_loss,
            mean_shown_loss=mean_shown,
            last_visit_loss=last_visit,
        )
        return append_extra_columns(obs, s.extra_features, inputs)

    def step(
        self, keep: np.ndarray, students: Sequence[int] | None = None
    ) -> tuple[np.ndarray, list[float], list[bool], list[bool]]:
        """Apply keep masks (N, M) bool; only the ``students`` listed (all when None) take a
        step, the others sit it out. Returns the next observations (N, M, d) and, per student,
        the reward, terminated and truncated.

        The reward is paid once, on the step that ends the episode (terminated or truncated),
        as the sum of the terms of the thresholds reached by then; every other reward is 0.
        REINFORCE, the paper's algorithm, reads only the return, and under the paper's reward
        an episode that ends without reaching tau earns 0. A threshold reached counts however
        the episode ends (tau, T', divergence or truncation): the reward depends only on which
        thresholds were reached and when."""
        s, run, n = self.settings, self.run, self.n
        slots = range(n) if students is None else students
        n_kept = keep.sum(axis=1, dtype=np.intp).tolist()
        m = s.batch_size
        for i in slots:
            self.teacher_step[i] += 1
            self.instances_seen[i] += m
            self.kept_instances[i] += n_kept[i]
        if self._history:  # the loss history of the optional columns
            self._record_shown(slots)
        trained = run.offer(keep, students, n_kept)
        due = [i for i in trained if run.iteration[i] % s.eval_every == 0]
        if due:
            run.evaluate("dev", due)
            if s.report_test == "eval":
                run.evaluate("test", due)
        evaluated = set(due)
        rewards, terminated, truncated = [0.0] * n, [False] * n, [False] * n
        iteration, cost = run.iteration, s.candidate_cost
        for i in slots:
            self.clocks[i] = clock = iteration[i] + cost * self.teacher_step[i]
            if i in evaluated:
                k, taus = self.taus_reached[i], self.taus
                while k < len(taus) and run.dev_accuracy[i] >= taus[k]:
                    self.tau_clocks[i][k] = clock
                    k += 1
                self.taus_reached[i] = k
            # tau is the highest threshold (the only one under the paper's reward), so the
            # count says whether it was reached; only a dev evaluation raises it.
            if self.taus_reached[i] == len(self.taus):
                self.reached_tau[i] = terminated[i] = True
            elif clock >= s.max_iters:
                terminated[i] = True
            truncated[i] = self.teacher_step[i] >= s.max_teacher_steps
        # No graph is worth keeping for a student whose episode ends here.
        obs = self.observe(keep_graph=not (any(terminated) or any(truncated)))
        for i in slots:
            terminated[i] = terminated[i] or self.diverged[i]
            truncated[i] = truncated[i] and not terminated[i]
            if terminated[i] or truncated[i]:
                rewards[i] = thresholds_reward(self.tau_clocks[i], self.tau_weights, s.max_iters)
        return obs, rewards, terminated, truncated

    def _record_shown(self, slots: Sequence[int] | range) -> None:
        """Add the losses of the batches the ``slots`` students' teachers just acted on to
        their loss history (the optional columns ``loss_vs_mean`` and ``loss_change``). An
        instance twice in one batch (at a pass boundary) has the same loss in both rows, but
        under augmentation; then NumPy's assignment order picks one (the later row today)."""
        idx, loss = self.run.candidate.indices, self._shown_loss
        if slots == range(self.n):  # every student stepped (the usual case)
            rows, at = slice(None), self._students
        else:
            rows = np.asarray(slots, dtype=np.intp)
            at = rows[:, None]
        self._shown_loss_sum[rows] += loss[rows].sum(axis=1, dtype=np.float64)
        self._shown_losses[rows] += loss.shape[1]
        if self._last_visit is not None:
            self._last_visit[at, idx[rows]] = loss[rows]

    # -- info ---------------------------------------------------------------------------------
    def info(self, i: int | None = None) -> dict[str, Any]:
        """The step info: of student ``i`` as Python numbers, or of all as arrays (N,)."""
        run, s = self.run, self.settings
        columns: dict[str, list] = {
            "iteration": run.iteration,
            "teacher_step": self.teacher_step,
            "clock": self.clocks,
            "effective_instances": run.effective_instances,
            "instances_seen": self.instances_seen,
            "kept_instances": self.kept_instances,
            "pool_size": run.pool_size,
            "dev_accuracy": run.dev_accuracy,
            "best_dev_accuracy": run.best_dev_accuracy,
            "reached_tau": self.reached_tau,
            "diverged": self.diverged,
        }
        if s.report_test == "eval":
            columns["test_accuracy"] = run.test_accuracy
            columns["test_seconds"] = run.test_seconds
        if s.reward == "thresholds":
            columns["taus_reached"] = self.taus_reached
        if i is None:
            info = {k: np.array(v) for k, v in columns.items()}
        else:
            info = {k: v[i] for k, v in columns.items()}
        if s.reward == "thresholds":  # (K,) per student: an array, (N, K) for all
            info["tau_clocks"] = np.array(self.tau_clocks if i is None else self.tau_clocks[i])
        return info

    def final_info(self, ended: Sequence[int]) -> dict[str, list[float]]:
        """What the info adds at the end of the episodes of the ``ended`` students, as lists of
        N (NaN for the others): ``final_dev_accuracy`` (measured now if the last dev evaluation
        was not at the student's last iteration) and, with ``report_test``, ``test_accuracy``
        (and ``test_seconds`` with ``report_test="eval"``)."""
        run, report, n = self.run, self.settings.report_test, self.n
        stale = [i for i in ended if run.dev_iteration[i] != run.iteration[i]]
        if stale:
            run.evaluate("dev", stale)
            if report == "eval":  # the final evaluation is off the eval grid: test it too
                run.evaluate("test", stale)
        if report and report != "eval":
            run.evaluate("test", ended)

        def at_end(values: list[float]) -> list[float]:
            return [values[i] if i in ended else math.nan for i in range(n)]

        info = {"final_dev_accuracy": at_end(run.dev_accuracy)}
        if report:
            info["test_accuracy"] = at_end(run.test_accuracy)
        if report == "eval":
            info["test_seconds"] = at_end(run.test_seconds)
        return info
