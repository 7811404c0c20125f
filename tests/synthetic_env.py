"""A tiny, fast stand-in for L2TEnv with a known best teacher, for testing teachers and agents.

Same interface as L2TEnv (observation (M, d) with the real ``feature_names``, MultiBinary(M),
the paper's pooled step and reward) but no network: an instance is *useful* iff its ``loss``
feature exceeds ``threshold``, and the synthetic student's dev accuracy is the fraction of
``target`` useful instances it has trained on. Keeping only useful instances reaches tau in the
fewest iterations, so the optimal teacher is "keep iff loss > threshold".
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from l2t_gym.features import feature_bounds, feature_names


class SyntheticTeachingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        batch_size: int = 8,
        max_iters: int = 40,
        target: int = 64,
        threshold: float = 1.5,
        max_teacher_steps: int = 400,
    ) -> None:
        self.batch_size, self.max_iters, self.target = batch_size, max_iters, target
        self.threshold, self.max_teacher_steps, self.tau = threshold, max_teacher_steps, 1.0
        self.num_classes = 2
        self.feature_names = feature_names(self.num_classes)
        low, high = feature_bounds(self.num_classes)
        m = batch_size
        self.observation_space = spaces.Box(
            np.broadcast_to(low, (m, len(low))),
            np.broadcast_to(high, (m, len(high))),
            dtype=np.float32,
        )
        self.action_space = spaces.MultiBinary(m)
        self._loss_col = self.feature_names.index("loss")

    def _draw(self) -> np.ndarray:
        m, c = self.batch_size, self.num_classes
        labels = self.np_random.integers(0, c, m)
        loss = self.np_random.uniform(0.0, 3.0, m)
        p_true = np.exp(-loss)
        obs = np.zeros((m, 2 * c + 5), dtype=np.float32)
        obs[np.arange(m), labels] = 1.0
        obs[:, c] = self.iteration / self.max_iters
        obs[:, c + 1] = 1.0
        obs[:, c + 2] = self.useful / self.target
        probs = obs[:, c + 3 : 2 * c + 3]
        probs[:] = ((1 - p_true) / (c - 1))[:, None]
        probs[np.arange(m), labels] = p_true
        obs[:, -2] = loss
        obs[:, -1] = p_true - (1 - p_true) / (c - 1)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.iteration = self.teacher_step = self.useful = 0
        self.pool: list[bool] = []
        self.obs = self._draw()
        return self.obs, self._info(False)

    def step(self, action):
        keep = np.asarray(action).astype(bool)
        assert keep.shape == (self.batch_size,)
        self.teacher_step += 1
        self.pool.extend(bool(u) for u in self.obs[keep, self._loss_col] > self.threshold)
        reward, terminated = 0.0, False
        if len(self.pool) >= self.batch_size:
            batch, self.pool = self.pool[: self.batch_size], self.pool[self.batch_size :]
            self.iteration += 1
            self.useful += sum(batch)
            if self.useful >= self.target:
                terminated, reward = True, -math.log(self.iteration / self.max_iters)
        terminated = terminated or self.iteration >= self.max_iters
        truncated = not terminated and self.teacher_step >= self.max_teacher_steps
        self.obs = self._draw()
        return self.obs, float(reward), bool(terminated), bool(truncated), self._info(terminated)

    def _info(self, reached):
        return {
            "iteration": self.iteration,
            "teacher_step": self.teacher_step,
            "effective_instances": self.iteration * self.batch_size,
            "reached_tau": bool(reached and self.useful >= self.target),
        }
