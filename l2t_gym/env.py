"""L2TEnv: a student network's training run as a Gymnasium environment."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from l2t_gym.episode import Episodes, action_space, check_keep_masks, observation_space
from l2t_gym.settings import Settings, SettingsAttributes
from l2t_gym.student import StudentCompiler, StudentRun


def autograd_on(method):
    """Run ``method`` with autograd on, whatever mode the caller is in: the student trains inside
    ``step()`` and ``reset()``, and an agent may well collect its rollouts under
    ``torch.no_grad()`` or ``torch.inference_mode()``."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return method(*args, **kwargs)  # the usual case: no context to enter
        with torch.inference_mode(False), torch.enable_grad():
            return method(*args, **kwargs)

    return wrapper


class L2TEnv(SettingsAttributes, gym.Env[np.ndarray, np.ndarray]):
    """
    ## Description

    "Learning to Teach" (Fan, Tian, Qin, Li and Liu, ICLR 2018) as an environment: each episode is
    one student network trained from scratch, and the agent is the *teacher*, which decides for
    every instance of every candidate minibatch whether the student trains on it. The episode ends
    when the student's dev accuracy first reaches ``tau``; the sooner, the higher the reward.

    ## Action Space

    ``MultiBinary(M)``, M = ``batch_size``: 1 keeps the candidate instance, 0 drops it. Arrays,
    lists or torch tensors of bools, ints or floats that are all 0 or 1 are accepted
    (Stable-Baselines3 sends floats); anything else raises a TypeError or ValueError saying what
    was expected (``l2t_gym.episode.check_keep_masks``), and the env stays usable.

    ## Observation Space

    ``Box`` of float32, shape (M, d): one row of state features g(s) per candidate instance, in
    the column order of ``feature_names`` (d = 25 for 10 classes): the label one-hot; task extras;
    ``iteration`` (clock / T'), ``avg_train_loss``, ``best_dev_accuracy``; the predicted class
    probabilities; the instance's ``loss`` (-log p_y) and ``margin`` (p_y - max other p). Every
    column lies in [0, 1] (``margin`` in [-1, 1]) but the two losses, in [0, ``divergence_loss``]
    (instance losses are clipped there); a diverged student shows a uniform guess. The space's
    bounds are these ranges: every observation is finite and inside them. Optional columns
    (``extra_features``) follow the paper's, in the order given.

    ## Rewards

    0.0 on every step but the last. Reaching ``tau`` at clock value c_tau gives -log(c_tau / T'),
    T' = ``max_iters``; running out of clock gives 0 = -log(T'/T'). The clock is the number of
    student iterations i (the paper) plus ``candidate_cost`` times the candidate batches shown.

    ``reward="thresholds"`` (off by default) rewards getting to several dev accuracies
    ``taus`` = (tau_1 < ... < tau_K) early: sum_k w_k * -log(c_k / T'), w = ``tau_weights``, c_k
    the clock at the first dev evaluation that reached tau_k. It too is paid once, on the step
    that ends the episode (the return is what REINFORCE reads): a threshold never reached
    adds 0, and the thresholds reached count however the episode ends (the highest threshold,
    T', divergence or truncation). On every step ``info["tau_clocks"]`` (float64 array (K,))
    holds the c_k, T' for a threshold not reached yet (the value whose term is 0), and
    ``info["taus_reached"]`` how many thresholds were reached (they are reached in order); with
    the paper's reward the info has neither.

    ## Starting State

    A freshly initialised student, evaluated once on the dev set, and its first candidate batch.
    Initialisation, data order and augmentation all derive from ``reset(seed=...)``.

    ## Episode End

    Terminated when a dev evaluation (every ``eval_every`` iterations, from iteration 1 on)
    reaches ``tau`` (with ``reward="thresholds"``, the highest of ``taus``), when the clock
    reaches T', or when the student diverges (``info["diverged"]``): its logits or its average
    training loss stop being finite, or that average passes ``divergence_loss`` (a student can
    explode and stay finite). Truncated when the teacher has taken ``max_teacher_steps`` steps
    (a teacher that drops nearly everything). Divergence and truncation pay 0 under the paper's
    reward, and the terms of the thresholds reached so far under ``reward="thresholds"``.

    ## Arguments

    ``task`` ("digits", "mnist", "cifar10", "imdb") picks the dataset and the defaults every other
    argument falls back to when None (see ``l2t_gym.tasks.TASKS``). Every argument is checked
    for its type and range when the env is built (``l2t_gym.settings.Settings.resolve``): a
    TypeError or ValueError names it and says what was expected; numbers are never truncated
    (``batch_size=2.5`` is refused) and flags take only True or False.

    * ``tau``, ``max_iters`` (T'), ``batch_size`` (M), ``eval_every``: the episode;
    * ``fold``: "teacher" (teachers learn on this fold) or "student" (fresh students);
      ``split`` is its old name, accepted with a DeprecationWarning;
    * ``mode``: "paper" (kept instances pooled until M form one update; default) or "mask"
      (one update per teacher step on the kept part of the batch);
    * ``student``: a model name (see ``l2t_gym.models``) or a zero-argument callable returning an
      ``nn.Module``; it is built under a seeded RNG at every reset;
    * ``optimizer`` ("sgd", "adam" or a callable taking the parameters), ``lr``, ``momentum``,
      ``weight_decay``; ``augment`` (random crop + flip, on the device);
    * ``max_teacher_steps``: the truncation cap (default 10 x ``max_iters``);
    * ``candidate_cost``: clock units charged per candidate batch shown (default 0, the paper);
    * ``reward``: "paper" (default, -log(c_tau / T')) or "thresholds" (see Rewards), with
      ``taus`` (increasing, in (0, 1]) and ``tau_weights`` (one per threshold, finite, >= 0, not
      all 0), tuples or lists that default to the task's ``thresholds`` and
      ``threshold_weights``. The highest threshold ends the episode and is ``tau``: passing
      ``tau`` with the thresholds is refused unless it equals ``taus[-1]``, and ``taus`` or
      ``tau_weights`` with the paper's reward are refused (a ValueError naming them);
    * ``divergence_loss``: the average training loss past which the student counts as diverged
      (default 100 ln C, ``l2t_gym.settings.DIVERGENCE_LOSS``; ``math.inf`` keeps only the
      non-finite rule), and the cap of the loss columns;
    * ``device``: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...;
    * ``data_root``, ``download``: where the dataset lives and whether to fetch it if missing;
      ``data``: your own arrays instead (``l2t_gym.data.RawData.from_arrays``), e.g. MNIST
      images you already have in memory;
    * ``dev_fraction``: share of each fold held out as its dev set;
    * ``precision``: "fp32" (default) or "bf16": the student's forward passes (candidate,
      training, evaluation) under bfloat16 autocast; parameters, optimiser state, losses and
      observations stay float32;
    * ``channels_last``: store the student's convolution weights and its input batches
      channels-last (4-D image inputs only; same results to float tolerance);
    * ``compile``: run the student's forward passes through ``torch.compile``; if compiling
      fails the env warns once (RuntimeWarning) and runs eagerly, with the same results;
    * ``extra_features``: a tuple of optional observation columns appended after the paper's,
      in this order (default ``()``: the paper's columns only): ``loss_rank``, ``margin_rank``,
      ``kept_fraction``, ``mean_dev_accuracy``, ``irreducible_loss``, ``loss_vs_mean``,
      ``loss_change`` (definitions, sources and bounds in
      ``l2t_gym.features.EXTRA_FEATURES``);
    * ``report_test``: also report the official test accuracy (``info["test_accuracy"]``): at the
      end of each episode (True or "end"), or at the start and at every dev evaluation too
      ("eval", for accuracy curves; ``info["test_seconds"]`` then holds the time spent on it, so
      benchmarks can take it off the wall-clock). The reward never reads it.

    ## Version History

    * v0: initial release. Later in v0 (no change for a healthy student): the loss columns are
      capped at ``divergence_loss`` and a student whose average loss passes it counts as
      diverged (it used to run on, finite and exploding, to T'); a diverged student's row reads
      ``avg_train_loss`` = ``divergence_loss`` instead of the largest float32. Later still,
      the opt-in ``reward="thresholds"`` (the default reward, episode and info are unchanged).
      The ``extra_features`` argument (default: none, the observation unchanged); later its
      ``loss_vs_mean`` and ``loss_change`` columns, and with ``divergence_loss=inf`` an
      instance loss past float32's range reads float32's largest value (it read inf, outside
      the observation space).
    """

    metadata = {"render_modes": []}

    def __init__(
        self, task: str = "digits", *, render_mode: str | None = None, **kwargs: Any
    ) -> None:
        self.settings = Settings.resolve(task, **kwargs)
        if render_mode is not None:
            raise ValueError(
                f"L2TEnv renders nothing; render_mode must be None, got {render_mode!r}"
            )
        self.render_mode = None
        self.feature_names = self.settings.feature_names
        self.observation_space = observation_space(self.settings)
        self.action_space = action_space(self.settings)
        # One compiler for every student of this env: a failure warns once and sticks.
        self._compiler = StudentCompiler() if self.settings.compile else None
        self._episodes: Episodes | None = None
        self._done = True

    # -- Gymnasium API ------------------------------------------------------------------------
    @autograd_on
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self._episodes is None:
            run = StudentRun(self.settings, n=1, compiler=self._compiler)
            self._episodes = Episodes(self.settings, run)
        episodes = self._episodes
        episodes.start(0, self.np_random)
        obs = episodes.observe()
        self._done = False
        return obs[0], episodes.info(0)

    @autograd_on
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        episodes = self._episodes
        if episodes is None or self._done:
            raise gym.error.ResetNeeded(
                "call reset() before step(): the episode is over or has not begun"
            )
        keep = check_keep_masks(action, (self.settings.batch_size,))
        obs, rewards, terminated, truncated = episodes.step(keep[None])
        self._done = terminated[0] or truncated[0]
        info = episodes.info(0)
        if self._done:
            info.update({k: v[0] for k, v in episodes.final_info([0]).items()})
        return obs[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    # -- public state -------------------------------------------------------------------------
    @property
    def run(self) -> StudentRun | None:
        """The student's run (its model, histories, data), None before the first reset."""
        return None if self._episodes is None else self._episodes.run

    @property
    def clock(self) -> float:
        """The episode's clock: student iterations + candidate_cost x candidate batches shown."""
        if self._episodes is None:
            raise gym.error.ResetNeeded("the clock starts at reset()")
        return self._episodes.clocks[0]

    @property
    def num_features(self) -> int:
        return len(self.feature_names)
