"""A permutation-equivariant per-instance policy for Stable-Baselines3.

The L2T observation is a matrix with one row of features per candidate instance and the action is
one keep bit per row. SB3's default ``MlpPolicy`` flattens that matrix, so it learns a separate
rule for every row position and only fits one batch size M. ``InstancePolicy`` instead reads every
row with the same small network, as the paper's teacher does, so it is blind to the order of the
candidates and works for any M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import BernoulliDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from l2t_gym.teachers.base import Teacher
from l2t_gym.teachers.sampling import KeepSampler, keep_probabilities

__all__ = ["InstancePolicy", "InstanceRows", "InstanceNets"]

Pooling = Literal["mean", "max", "meanmax"]


class InstanceRows(BaseFeaturesExtractor):
    """Features extractor that hands the (batch, M, d) observation on unchanged.

    SB3's default extractor flattens the observation to (batch, M * d), which would tie the
    networks to M and to the row order; ``features_dim`` is the per-row width d.
    """

    def __init__(self, observation_space: spaces.Box) -> None:
        super().__init__(observation_space, features_dim=int(observation_space.shape[-1]))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return observations


def _mlp(in_dim: int, hidden: Sequence[int], activation_fn: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation_fn()]
        in_dim = width
    return nn.Sequential(*layers)


class InstanceNets(nn.Module):
    """The actor and critic bodies; stands where SB3 puts its ``MlpExtractor``.

    ``forward_actor`` maps (batch, M, d) to per-row latents (batch, M, latent_dim_pi).
    ``forward_critic`` maps (batch, M, d) through a per-row MLP, pools over the M rows and applies
    ``value_head``, giving (batch, latent_dim_vf).
    """

    def __init__(
        self,
        feature_dim: int,
        pi: Sequence[int],
        vf: Sequence[int],
        value_head: Sequence[int],
        pooling: Pooling,
        activation_fn: type[nn.Module],
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.policy_net = _mlp(feature_dim, pi, activation_fn)
        self.value_net = _mlp(feature_dim, vf, activation_fn)
        row_dim = vf[-1] if vf else feature_dim
        pooled_dim = 2 * row_dim if pooling == "meanmax" else row_dim
        self.value_head = _mlp(pooled_dim, value_head, activation_fn)
        self.latent_dim_pi = pi[-1] if pi else feature_dim
        self.latent_dim_vf = value_head[-1] if value_head else pooled_dim

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        rows = self.value_net(features)
        if self.pooling == "mean":
            pooled = rows.mean(dim=-2)
        elif self.pooling == "max":
            pooled = rows.amax(dim=-2)
        else:
            pooled = th.cat([rows.mean(dim=-2), rows.amax(dim=-2)], dim=-1)
        return self.value_head(pooled)


class _RowLogit(nn.Module):
    """One linear unit applied to every row: (batch, M, h) -> (batch, M) keep logits."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_dim, 1)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        return self.linear(latent).squeeze(-1)


class InstancePolicy(ActorCriticPolicy):
    """Actor-critic policy for (M, d) observations and MultiBinary(M) keep masks, any M.

    **Actor**: one MLP d -> ``net_arch["pi"]`` -> 1, shared by all rows, gives each instance's
    Bernoulli logit of being kept (SB3's ``BernoulliDistribution``). Permuting the candidate rows
    permutes the keep probabilities the same way. With ``net_arch=dict(pi=[12], ...)`` and the
    default tanh this is the paper's teacher.

    **Critic**: a per-row MLP d -> ``net_arch["vf"]``, pooled over rows (``pooling``), then
    ``value_head`` -> 1. The value does not depend on the row order.

    No parameter depends on M, so a state dict trained with one batch size loads into a policy
    built for another (``policy.load_state_dict(other.state_dict())``), and the networks accept
    any number of rows. SB3's ``predict`` and the algorithms still check observations against the
    space the policy was built with, so build one model per M and move the weights across.

    The policy does not normalise observations. The L2T features are roughly unit-scaled, except
    ``avg_train_loss`` and ``loss`` early on; wrap the env in ``VecNormalize`` when that matters.
    ``VecNormalize`` keeps statistics per (row, column) cell: rows are exchangeable, so these
    agree in the limit, but equivariance then only holds approximately.

    Example::

        import gymnasium as gym
        from stable_baselines3 import PPO

        import l2t_gym
        from l2t_gym.sb3 import InstancePolicy

        env = gym.make("L2T-Digits-v0")
        model = PPO(InstancePolicy, env, policy_kwargs=dict(init_keep=0.9), seed=0)
        model.learn(20_000)
        keep, _ = model.predict(env.reset(seed=1)[0])

    :param observation_space: a ``Box`` of shape (M, d).
    :param action_space: ``MultiBinary(M)``, the same M.
    :param lr_schedule: learning-rate schedule, supplied by the algorithm.
    :param net_arch: per-row hidden widths, ``dict(pi=[...], vf=[...])`` for the actor and the
        critic's row MLP, or one list for both. Default ``dict(pi=[64, 64], vf=[64, 64])``.
    :param value_head: hidden widths of the critic after pooling. Default ``[64]``.
    :param pooling: how the critic pools its rows: "mean", "max" or "meanmax" (both,
        concatenated; default). Mean sees the batch's make-up, max its extremes.
    :param activation_fn: activation between layers; tanh by default, like the paper's teacher.
    :param init_keep: initial keep probability of every instance, in (0, 1): the actor's output
        bias is logit(init_keep) and its output weights start near zero, so the untrained teacher
        keeps most data (default 0.9) rather than dropping half of it at random.
    :param ortho_init: SB3's orthogonal initialisation of the hidden layers (default True).
    :param features_extractor_class: must keep the row axis; the default ``InstanceRows`` passes
        the observation through unchanged.
    :param kwargs: everything else ``ActorCriticPolicy`` accepts (optimizer, ...). gSDE does not
        apply to binary actions.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        *,
        value_head: Sequence[int] = (64,),
        pooling: Pooling = "meanmax",
        init_keep: float = 0.9,
        ortho_init: bool = True,
        features_extractor_class: type[BaseFeaturesExtractor] = InstanceRows,
        **kwargs: Any,
    ) -> None:
        _check_spaces(observation_space, action_space)
        if not 0.0 < init_keep < 1.0:
            raise ValueError(f"init_keep must lie strictly between 0 and 1, got {init_keep}")
        if pooling not in ("mean", "max", "meanmax"):
            raise ValueError(f"pooling must be 'mean', 'max' or 'meanmax', got {pooling!r}")
        if kwargs.get("use_sde"):
            raise ValueError("use_sde does not apply to MultiBinary actions")
        # Set before super().__init__, which calls _build.
        self.value_head = [int(w) for w in value_head]
        self.pooling = pooling
        self.init_keep = float(init_keep)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=dict(pi=[64, 64], vf=[64, 64]) if net_arch is None else net_arch,
            activation_fn=activation_fn,
            ortho_init=ortho_init,
            features_extractor_class=features_extractor_class,
            **kwargs,
        )

    def _build_mlp_extractor(self) -> None:
        arch = self.net_arch
        pi, vf = (
            (arch.get("pi", []), arch.get("vf", [])) if isinstance(arch, dict) else (arch, arch)
        )
        self.mlp_extractor = InstanceNets(
            self.features_dim, pi, vf, self.value_head, self.pooling, self.activation_fn
        ).to(self.device)

    def _build(self, lr_schedule: Schedule) -> None:
        # Replaces ActorCriticPolicy._build only to swap the action layer: SB3's
        # BernoulliDistribution.proba_distribution_net is Linear(latent, M), which would mix the
        # rows and tie the weights to M. Forward, evaluate_actions, get_distribution and
        # predict_values are SB3's own; they work because the latents keep the row axis.
        assert isinstance(self.action_dist, BernoulliDistribution)
        self._build_mlp_extractor()
        self.action_net = _RowLogit(self.mlp_extractor.latent_dim_pi)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            # SB3's gains (from openai/baselines).
            self.mlp_extractor.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.value_net.apply(partial(self.init_weights, gain=1.0))
        # Small output weights whatever ortho_init says: every instance then starts at init_keep
        # instead of at a random keep probability per feature vector.
        self.action_net.apply(partial(self.init_weights, gain=0.01))
        with th.no_grad():
            self.action_net.linear.bias.fill_(math.log(self.init_keep / (1.0 - self.init_keep)))
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # model.save / PPO.load rebuild the policy from these.
        data = super()._get_constructor_parameters()
        data.update(value_head=self.value_head, pooling=self.pooling, init_keep=self.init_keep)
        return data

    def keep_logits(self, obs: th.Tensor) -> th.Tensor:
        """Keep logits (batch, M) for observations (batch, M, d), any M."""
        return self.get_distribution(obs).distribution.logits


class InstanceTeacher(Teacher):
    """A trained ``InstancePolicy`` model (PPO, A2C, ...) as an l2t-gym :class:`Teacher`, so it
    runs wherever the package's teachers run (``run_episode``, ``l2t_gym.evaluation``).

    Keep decisions are drawn from the policy's Bernoulli probabilities by the package's one
    keep-sampler (:mod:`l2t_gym.teachers.sampling`), with the teacher's own generator, seeded by
    ``reset(seed=...)``: reruns repeat without touching torch's global RNG (which SB3's own
    ``predict`` samples from). ``deterministic=True`` keeps p > 0.5 and warns, once per episode,
    when that drops every candidate.

    :param model: an SB3 model whose policy is an :class:`InstancePolicy`.
    :param deterministic: keep p > 0.5 instead of sampling.
    :raises ValueError: if the model's policy is not an :class:`InstancePolicy`.
    """

    def __init__(self, model: BaseAlgorithm, deterministic: bool = False) -> None:
        if not isinstance(model.policy, InstancePolicy):
            raise ValueError(f"expected a model with an InstancePolicy, got {type(model.policy)}")
        super().__init__()
        self.model, self.deterministic = model, bool(deterministic)
        self._sampler = KeepSampler(type(self).__name__)

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        """Start an episode; see :meth:`Teacher.reset`."""
        super().reset(feature_names, seed=seed)
        self._sampler = KeepSampler(type(self).__name__)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Keep each candidate with the policy's probability (or p > 0.5 when deterministic).

        :param obs: one observation, float32 (M, d).
        :return: bool keep mask, shape (M,).
        """
        rows = self.rows(obs)
        policy = self.model.policy
        with th.no_grad():
            x = th.as_tensor(rows, dtype=th.float32, device=policy.device)[None]
            p = keep_probabilities(policy.keep_logits(x)[0])
        return self._sampler(p, self.rng, self.deterministic)


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 2):
        raise ValueError(
            "InstancePolicy needs a Box observation of shape (M, d), one row per instance; "
            f"got {observation_space}"
        )
    m = observation_space.shape[0]
    if not (isinstance(action_space, spaces.MultiBinary) and tuple(action_space.shape) == (m,)):
        raise ValueError(
            f"InstancePolicy needs a MultiBinary({m}) action, one bit per observation row; "
            f"got {action_space}"
        )
