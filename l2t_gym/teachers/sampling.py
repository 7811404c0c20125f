"""The one place where keep scores become keep decisions and their log-probabilities.

A teacher's policy (Fan et al. 2018, section 4.2) keeps candidate m with probability
p_m = sigmoid(z_m), independently of the others: pi(a | s) = prod_m p_m^a_m (1 - p_m)^(1 - a_m).
Stable-Baselines3's ``BernoulliDistribution`` plays this part for its algorithms; here the draws
come from a teacher's own NumPy generator instead of torch's global one, so reruns repeat without
touching global state, and a rollout can give every student of a vector env its own stream.

* :func:`keep_probabilities`: logits z -> p, as a NumPy array.
* :func:`sample_keep`: a ~ Bernoulli(p) with a given generator.
* :class:`KeepSampler`: one episode's decisions, sampled or the mode (p > 0.5), warning once when
  the mode drops every candidate.
* :func:`keep_log_prob`: log pi(a | s), differentiable in the logits (REINFORCE's term).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["KeepSampler", "keep_log_prob", "keep_probabilities", "sample_keep"]


def keep_probabilities(logits: torch.Tensor) -> np.ndarray:
    """Keep probabilities p = sigmoid(z), off the autograd graph and on the host.

    :param logits: keep logits z, any shape (..., M).
    :return: a float array of the same shape and dtype as ``logits`` (float32 for the package's
        policies).
    """
    # Callers score under no_grad already; a second no_grad context costs more than the sigmoid.
    z = logits.detach() if logits.requires_grad else logits
    return torch.sigmoid(z).cpu().numpy()


def sample_keep(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent keep decisions a_m ~ Bernoulli(p_m), drawn from ``rng``.

    One uniform draw per candidate, kept when it falls below p_m: reruns with a generator in the
    same state give the same decisions.

    :param p: keep probabilities, shape (M,).
    :param rng: the generator to draw from (a teacher's ``rng``); it advances by M draws.
    :return: bool keep mask, shape (M,).
    """
    return rng.random(len(p)) < p


class KeepSampler:
    """One episode's keep decisions: sampled from p, or the mode, p > 0.5.

    A trained teacher often learns probabilities below 0.5 everywhere (it keeps a minority of
    instances by sampling), and then the mode drops every candidate: the student never trains
    and, on the paper's clock, the episode stalls until truncation. The sampler warns once when
    that happens, so a teacher makes a new sampler at every ``reset`` to warn once per episode.

    :param owner: the teacher's name, for the warning.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.warned = False

    def __call__(self, p: np.ndarray, rng: np.random.Generator, deterministic: bool) -> np.ndarray:
        """A teacher's decision: the mode if ``deterministic``, else a sample.

        :param p: keep probabilities, shape (M,).
        :param rng: the generator to sample from (:func:`sample_keep`); unused for the mode.
        :param deterministic: take the mode (:meth:`mode`) instead of sampling.
        :return: bool keep mask, shape (M,).
        """
        # The warning points at whoever called the teacher's act (two frames up).
        return self._mode(p, stacklevel=4) if deterministic else sample_keep(p, rng)

    def mode(self, p: np.ndarray) -> np.ndarray:
        """Keep exactly the candidates with p > 0.5; warns (once) when that keeps none.

        :param p: keep probabilities, shape (M,).
        :return: bool keep mask, shape (M,).
        """
        return self._mode(p, stacklevel=3)

    def _mode(self, p: np.ndarray, stacklevel: int) -> np.ndarray:
        keep = p > 0.5
        if not keep.any() and not self.warned:
            self.warned = True
            warnings.warn(
                f"deterministic {self.owner} drops every candidate (max keep probability "
                f"{float(np.max(p)):.3f} <= 0.5): the student will not train on this batch and "
                "the episode may stall until truncation; sample instead (deterministic=False)",
                stacklevel=stacklevel,
            )
        return keep


def keep_log_prob(logits: torch.Tensor, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
    """log pi(a | s) per observation: the sum over candidates of log p (kept), log(1 - p) (dropped).

    Computed as logsigmoid(z) and logsigmoid(-z), which stay finite where p rounds to 0 or 1.
    Dropped instances count as much as kept ones: leaving their term out (as two public
    re-implementations of the paper do) stops a teacher from learning to drop.

    :param logits: keep logits z, shape (..., M), e.g. (T, M) for an episode of T steps.
    :param actions: 0/1 keep decisions of the same shape (bool, int or float).
    :return: a tensor of shape ``logits.shape[:-1]``, differentiable in ``logits``.
    :raises ValueError: if ``actions`` has another shape, or values other than 0 and 1.
    """
    a = torch.as_tensor(actions).to(dtype=logits.dtype)
    if a.shape != logits.shape:
        raise ValueError(
            f"actions must have shape {tuple(logits.shape)} to match the observations, "
            f"got {tuple(a.shape)}"
        )
    if not bool(((a == 0) | (a == 1)).all()):
        raise ValueError("actions must be 0/1 keep decisions")
    return (a * F.logsigmoid(logits) + (1.0 - a) * F.logsigmoid(-logits)).sum(dim=-1)
