"""The paper's teacher: one small MLP that gives every instance a keep probability."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from l2t_gym.teachers.base import Teacher

FILE_FORMAT = "l2t-gym-teacher"
FILE_VERSION = 1
_TENSOR_KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")
# Features are unbounded above (a diverged student reports the largest float32 loss); clipping
# keeps the first layer's sums finite, far beyond any value a healthy run produces.
_FEATURE_CLIP = 1e6


class BernoulliTeacher(Teacher):
    """Fan et al.'s (2018) teacher: a_m ~ Bernoulli(p_m), p_m = sigmoid(MLP(g(s)_m)).

    Rule: one MLP d -> ``hidden`` -> 1 (tanh hidden layer, sigmoid output) scores each row of the
    observation independently, so permuting the candidates permutes the probabilities; the
    instance is kept with that probability. The output bias starts at logit(``init_keep``) and the
    last layer's weights near zero, so an untrained teacher keeps about ``init_keep`` of the data
    and REINFORCE starts from plain training. The network is ``self.policy`` (an ``nn.Module``),
    for an optimiser to train; :meth:`log_prob` is the policy's log-likelihood for REINFORCE.

    ``deterministic=True`` keeps exactly the instances with p > 0.5. A trained teacher often
    learns probabilities below 0.5 everywhere (it keeps a minority of instances by sampling), and
    then this mode drops every candidate: the student never trains and, on the paper's clock, the
    episode stalls until truncation. The teacher warns, once per episode, when that happens;
    sampling (the default) is the policy it was trained as.

    The teacher is tied to the env column layout it was built for: :meth:`reset` refuses an env
    whose ``feature_names`` differ, and :meth:`save` records them (with the task), so a saved
    teacher loaded for another layout fails with a clear error instead of silently misreading.

    Parameters
    ----------
    feature_names:
        The env's observation columns (``env.unwrapped.feature_names``); d = their number.
    hidden:
        Width of the hidden layer (the paper: 12).
    init_keep:
        Keep probability of the untrained teacher, in (0, 1).
    deterministic:
        Keep p > 0.5 instead of sampling.
    seed:
        Seeds the weight initialisation and the sampling generator; ``reset(seed=...)`` reseeds
        the sampling.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        hidden: int = 12,
        init_keep: float = 0.9,
        deterministic: bool = False,
        seed: int | None = None,
    ) -> None:
        names = tuple(str(n) for n in feature_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"feature_names must be non-empty and unique, got {names}")
        if int(hidden) != hidden or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden}")
        init_keep = float(init_keep)
        if not 0.0 < init_keep < 1.0:
            raise ValueError(f"init_keep must lie strictly between 0 and 1, got {init_keep}")
        super().__init__(seed)
        self.layout = names
        self.hidden, self.init_keep = int(hidden), init_keep
        self.deterministic = bool(deterministic)
        self.task: str | None = None
        self._warned = False
        init_seed = int(self.rng.integers(2**62))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.policy = nn.Sequential(
                nn.Linear(len(names), self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1)
            )
            with torch.no_grad():
                nn.init.normal_(self.policy[2].weight, std=0.01)
                self.policy[2].bias.fill_(math.log(init_keep / (1.0 - init_keep)))

    # -- the Teacher interface ----------------------------------------------------------------
    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        names = tuple(str(n) for n in feature_names)
        if names != self.layout:
            raise ValueError(
                "this teacher was built for a different observation layout; "
                f"teacher: {list(self.layout)}; env: {list(names)}"
            )
        super().reset(names, seed=seed)
        self._warned = False

    def act(self, obs: np.ndarray) -> np.ndarray:
        p = self.keep_probabilities(self.rows(obs))
        if not self.deterministic:
            return self.rng.random(len(p)) < p
        keep = p > 0.5
        if not keep.any() and not self._warned:
            self._warned = True
            warnings.warn(
                f"deterministic BernoulliTeacher drops every candidate (max keep probability "
                f"{p.max():.3f} <= 0.5): the student will not train on this batch and the episode "
                "may stall until truncation; sample instead (deterministic=False)",
                stacklevel=2,
            )
        return keep

    # -- the policy ---------------------------------------------------------------------------
    def logits(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Pre-sigmoid scores z, shape ``obs.shape[:-1]``; differentiable in ``self.policy``."""
        x = torch.as_tensor(obs, dtype=torch.float32)
        if x.ndim < 2 or x.shape[-1] != len(self.layout):
            raise ValueError(
                f"expected observations of shape (..., M, {len(self.layout)}), got {tuple(x.shape)}"
            )
        x = x.nan_to_num().clamp(-_FEATURE_CLIP, _FEATURE_CLIP)
        return self.policy(x).squeeze(-1)

    def keep_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """p_m for each row of one observation (M, d), as a float32 array (M,)."""
        x = np.asarray(obs)
        if x.ndim != 2:
            raise ValueError(f"expected one observation (M, {len(self.layout)}), got {x.shape}")
        with torch.no_grad():
            return torch.sigmoid(self.logits(x)).numpy()

    def log_prob(
        self, obs_batch: torch.Tensor | np.ndarray, actions: torch.Tensor | np.ndarray
    ) -> torch.Tensor:
        """log pi(a | s) per step: sum over instances of log p (kept) or log(1 - p) (dropped).

        ``obs_batch`` (T, M, d) and ``actions`` (T, M) of 0/1 give a (T,) tensor, differentiable
        in ``self.policy``. Computed as logsigmoid(z) and logsigmoid(-z), which stay finite where
        p rounds to 0 or 1.
        """
        z = self.logits(obs_batch)
        a = torch.as_tensor(actions).to(dtype=z.dtype)
        if a.shape != z.shape:
            raise ValueError(
                f"actions must have shape {tuple(z.shape)} to match the observations, "
                f"got {tuple(a.shape)}"
            )
        if not bool(((a == 0) | (a == 1)).all()):
            raise ValueError("actions must be 0/1 keep decisions")
        log_keep, log_drop = nn.functional.logsigmoid(z), nn.functional.logsigmoid(-z)
        return (a * log_keep + (1.0 - a) * log_drop).sum(dim=-1)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, task: str | None = None) -> None:
        """Write the policy to a safetensors file, with the task and the feature layout."""
        if task is not None:
            self.task = str(task)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.policy.state_dict().items()}
        metadata = {
            "format": FILE_FORMAT,
            "format_version": str(FILE_VERSION),
            "feature_names": json.dumps(list(self.layout)),
            "hidden": str(self.hidden),
            "init_keep": repr(self.init_keep),
        }
        if self.task is not None:
            metadata["task"] = self.task
        save_file(tensors, os.fspath(path), metadata=metadata)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        expected_feature_names: Sequence[str] | None = None,
        *,
        deterministic: bool = False,
        seed: int | None = None,
    ) -> BernoulliTeacher:
        """Read a teacher written by :meth:`save`.

        Raises ValueError when the file is not an l2t-gym teacher (not safetensors, other
        metadata, missing or misshapen weights) or, given ``expected_feature_names``, when its
        layout differs from them. ``deterministic`` and ``seed`` are as in the constructor.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no teacher file at {path!r}")
        not_teacher = f"{path!r} is not an l2t-gym teacher file"
        try:
            with safe_open(path, framework="pt") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{not_teacher} (unreadable as safetensors: {err})") from err
        if metadata.get("format") != FILE_FORMAT:
            raise ValueError(f"{not_teacher} (metadata format {metadata.get('format')!r})")
        try:
            version = int(metadata["format_version"])
            names = json.loads(metadata["feature_names"])
            hidden = int(metadata["hidden"])
            init_keep = float(metadata["init_keep"])
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{not_teacher} (bad or missing metadata: {err})") from err
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{not_teacher} (feature_names metadata is not a list of names)")
        if version > FILE_VERSION:
            raise ValueError(
                f"{path!r} is a version {version} teacher file; this l2t-gym reads up to "
                f"version {FILE_VERSION}"
            )
        missing = [k for k in _TENSOR_KEYS if k not in tensors]
        if missing:
            raise ValueError(f"{not_teacher} (missing weights {missing})")
        if expected_feature_names is not None:
            expected = [str(n) for n in expected_feature_names]
            if expected != names:
                raise ValueError(
                    f"the teacher in {path!r} was trained on a different observation layout; "
                    f"file: {names}; expected: {expected}"
                )
        teacher = cls(names, hidden, init_keep, deterministic=deterministic, seed=seed)
        try:
            teacher.policy.load_state_dict({k: tensors[k] for k in _TENSOR_KEYS})
        except RuntimeError as err:
            raise ValueError(f"{not_teacher} (weights do not fit its metadata: {err})") from err
        teacher.task = metadata.get("task")
        return teacher
