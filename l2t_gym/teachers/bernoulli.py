"""The paper's teacher: one small MLP that gives every instance a keep probability."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from l2t_gym.files import DamagedFileError, sha256_hex, write_bytes
from l2t_gym.teachers.base import Teacher
from l2t_gym.teachers.sampling import KeepSampler, keep_log_prob, keep_probabilities

FILE_FORMAT = "l2t-gym-teacher"
#: 2: the metadata holds a SHA-256 of the weights and the other metadata (1 had none).
#: 3: the metadata may name the ``inputs``, a subset of the columns; a teacher that reads every
#: column is still written as version 2, so older readers load it.
FILE_VERSION = 3
_ALL_INPUTS_VERSION = 2
_DIGEST_KEY = "sha256"
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

    Decisions come from the one keep-sampler (:mod:`l2t_gym.teachers.sampling`), with the
    teacher's own generator.

    The teacher is tied to the env column layout it was built for: :meth:`reset` refuses an env
    whose ``feature_names`` differ, and :meth:`save` records them (with the task), so a saved
    teacher loaded for another layout fails with a clear error instead of silently misreading.

    ``inputs`` (beyond the paper, whose teacher reads every column) names the columns the MLP
    reads; the others are ignored. A teacher meant for another task or student can so be kept
    from columns whose scale is the training task's: the absolute ``loss`` and
    ``avg_train_loss`` (a task's losses fall to its own levels), the clock ``iteration`` (i/T'
    runs at the task's own pace) or ``best_dev_accuracy`` (the task's own tau), and read only
    scale-free ones such as ``margin``, ``loss_rank``, ``loss_vs_mean`` and ``loss_change``.

    :param feature_names: the env's observation columns (``env.unwrapped.feature_names``);
        d = their number.
    :param inputs: the columns the MLP reads, a non-empty subset of ``feature_names`` (read in
        the observation's order, whatever order they are given in); None: all of them (the
        paper).
    :param hidden: width of the hidden layer (the paper: 12).
    :param init_keep: keep probability of the untrained teacher, in (0, 1).
    :param deterministic: keep p > 0.5 instead of sampling.
    :param seed: seeds the weight initialisation and the sampling generator;
        ``reset(seed=...)`` reseeds the sampling.
    :raises ValueError: for empty or duplicate feature names, ``inputs`` that are empty,
        repeated or not among them, a ``hidden`` that is not a positive integer, or
        ``init_keep`` outside (0, 1).
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        hidden: int = 12,
        init_keep: float = 0.9,
        deterministic: bool = False,
        seed: int | None = None,
        inputs: Sequence[str] | None = None,
    ) -> None:
        names = tuple(str(n) for n in feature_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"feature_names must be non-empty and unique, got {names}")
        columns = _input_columns(names, inputs)
        if int(hidden) != hidden or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden}")
        init_keep = float(init_keep)
        if not 0.0 < init_keep < 1.0:
            raise ValueError(f"init_keep must lie strictly between 0 and 1, got {init_keep}")
        super().__init__(seed)
        self.layout = names
        self.inputs = tuple(names[i] for i in columns)
        # None when every column is read: the paper's teacher indexes nothing.
        self._columns = None if len(columns) == len(names) else torch.as_tensor(columns)
        self.hidden, self.init_keep = int(hidden), init_keep
        self.deterministic = bool(deterministic)
        self.task: str | None = None
        self._sampler = KeepSampler(type(self).__name__)
        init_seed = int(self.rng.integers(2**62))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.policy = nn.Sequential(
                nn.Linear(len(columns), self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1)
            )
            with torch.no_grad():
                nn.init.normal_(self.policy[2].weight, std=0.01)
                self.policy[2].bias.fill_(math.log(init_keep / (1.0 - init_keep)))

    # -- the Teacher interface ----------------------------------------------------------------
    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        """Start an episode; see :meth:`Teacher.reset`.

        :raises ValueError: if ``feature_names`` differ from the layout the teacher was built for.
        """
        names = tuple(str(n) for n in feature_names)
        if names != self.layout:
            raise ValueError(
                "this teacher was built for a different observation layout; "
                f"teacher: {list(self.layout)}; env: {list(names)}"
            )
        super().reset(names, seed=seed)
        self._sampler = KeepSampler(type(self).__name__)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Keep each candidate with its probability p_m (or p_m > 0.5 when deterministic).

        :param obs: one observation, float32 (M, d).
        :return: bool keep mask, shape (M,).
        """
        return self._sampler(self.keep_probabilities(self.rows(obs)), self.rng, self.deterministic)

    def act_slots(
        self, obs: np.ndarray, slots: Sequence[Teacher], active: np.ndarray
    ) -> np.ndarray:
        """Keep masks for N students: one forward pass scores every candidate of every student,
        then each student's teacher (a :meth:`spawn` of this one) decides with its own generator.

        :param obs: float32 (N, M, d).
        :param slots: N BernoulliTeachers sharing this one's policy, each reset for its episode.
        :param active: bool (N,): the students whose episodes count; the others keep nothing.
        :return: bool keep masks, shape (N, M).
        """
        self._names()  # raises before reset, as act does
        with torch.no_grad():
            p = keep_probabilities(self.logits(obs))
        keep = np.zeros(p.shape, dtype=bool)
        for i in np.flatnonzero(active):
            slot: BernoulliTeacher = slots[i]  # type: ignore[assignment]
            keep[i] = slot._sampler(p[i], slot.rng, slot.deterministic)
        return keep

    # -- the policy ---------------------------------------------------------------------------
    def logits(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Pre-sigmoid keep scores z = MLP(g(s)), one per candidate row, from the ``inputs``
        columns.

        NaN features read as 0 and the rest are clipped to +-1e6, so a diverged student's
        observation still gives finite scores.

        :param obs: observations (..., M, d), e.g. (M, d), (N, M, d) or an episode's (T, M, d).
        :return: a tensor of shape ``obs.shape[:-1]``, differentiable in ``self.policy``.
        :raises ValueError: if ``obs`` is not at least 2-D with one column per feature.
        """
        x = torch.as_tensor(obs, dtype=torch.float32)
        if x.ndim < 2 or x.shape[-1] != len(self.layout):
            raise ValueError(
                f"expected observations of shape (..., M, {len(self.layout)}), got {tuple(x.shape)}"
            )
        if self._columns is not None:
            x = x.index_select(-1, self._columns.to(x.device))  # no copy where it already is
        x = x.nan_to_num().clamp(-_FEATURE_CLIP, _FEATURE_CLIP)
        return self.policy(x).squeeze(-1)

    def keep_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """p_m = sigmoid(z_m) for each row of one observation.

        :param obs: one observation, float32 (M, d).
        :return: float32 array (M,).
        :raises ValueError: if ``obs`` is not one (M, d) observation.
        """
        x = np.asarray(obs)
        if x.ndim != 2:
            raise ValueError(f"expected one observation (M, {len(self.layout)}), got {x.shape}")
        with torch.no_grad():
            return keep_probabilities(self.logits(x))

    def log_prob(
        self, obs_batch: torch.Tensor | np.ndarray, actions: torch.Tensor | np.ndarray
    ) -> torch.Tensor:
        """log pi(a | s) per step: the sum over instances of log p (kept) or log(1 - p) (dropped).

        See :func:`l2t_gym.teachers.sampling.keep_log_prob`.

        :param obs_batch: observations (T, M, d).
        :param actions: 0/1 keep decisions (T, M).
        :return: a (T,) tensor, differentiable in ``self.policy``.
        :raises ValueError: if the shapes disagree or ``actions`` holds values other than 0/1.
        """
        return keep_log_prob(self.logits(obs_batch), actions)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, task: str | None = None) -> None:
        """Write the policy to a safetensors file, with the task, the feature layout (and the
        ``inputs``, where they are not all of it) and a SHA-256 of all that (see
        :func:`file_digest`), atomically (a temporary file renamed over
        ``path``, so an interrupted save leaves the old file whole).

        :param path: the file to write (conventionally ``*.safetensors``); its folder must exist.
        :param task: the task it was trained on (e.g. ``"digits"``), kept in the file's metadata;
            None keeps the one the teacher already has.
        """
        if task is not None:
            self.task = str(task)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.policy.state_dict().items()}
        subset = self._columns is not None
        metadata = {
            "format": FILE_FORMAT,
            "format_version": str(FILE_VERSION if subset else _ALL_INPUTS_VERSION),
            "feature_names": json.dumps(list(self.layout)),
            "hidden": str(self.hidden),
            "init_keep": repr(self.init_keep),
        }
        if subset:
            metadata["inputs"] = json.dumps(list(self.inputs))
        if self.task is not None:
            metadata["task"] = self.task
        metadata[_DIGEST_KEY] = file_digest(metadata, tensors)
        write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        expected_feature_names: Sequence[str] | None = None,
        *,
        deterministic: bool = False,
        seed: int | None = None,
    ) -> BernoulliTeacher:
        """Read a teacher written by :meth:`save`, after checking its SHA-256.

        A version 1 file (l2t-gym before teacher files carried a checksum) still loads, with a
        warning that its contents are unchecked; saving it again adds the checksum.

        :param path: the file.
        :param expected_feature_names: the env's observation columns, to check the file against.
        :param deterministic: as in the constructor.
        :param seed: as in the constructor.
        :return: the teacher, its ``task`` read from the file.
        :raises FileNotFoundError: if there is no file at ``path``.
        :raises DamagedFileError: (a ``ValueError``) when the file is damaged or not an l2t-gym
            teacher: not safetensors, other metadata, a checksum that does not match, missing
            or misshapen weights.
        :raises ValueError: for a newer format version or, given ``expected_feature_names``,
            when the file's layout differs from them.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no teacher file at {path!r}")

        def damaged(reason: str) -> DamagedFileError:
            return DamagedFileError(path, reason, "teacher file")

        try:
            with safe_open(path, framework="pt") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise damaged(f"unreadable as safetensors ({err})") from err
        if metadata.get("format") != FILE_FORMAT:
            raise damaged(f"metadata format {metadata.get('format')!r}")
        digest = metadata.get(_DIGEST_KEY)
        # Checked before anything else is read: a damaged version number or layout must not be
        # believed. Any file that has a digest is held to it, whatever version it claims.
        if digest is not None and digest != file_digest(metadata, tensors):
            raise damaged("its weights or metadata do not match their SHA-256 checksum")
        try:
            version = int(metadata["format_version"])
            names = json.loads(metadata["feature_names"])
            hidden = int(metadata["hidden"])
            init_keep = float(metadata["init_keep"])
            inputs = json.loads(metadata["inputs"]) if "inputs" in metadata else None
        except (KeyError, ValueError, TypeError) as err:
            raise damaged(f"bad or missing metadata: {err}") from err
        for key, value in (("feature_names", names), ("inputs", inputs)):
            if value is not None and not (
                isinstance(value, list) and value and all(isinstance(n, str) for n in value)
            ):
                raise damaged(f"{key} metadata is not a list of names")
        if version > FILE_VERSION:
            raise ValueError(
                f"{path!r} is a version {version} teacher file; this l2t-gym reads up to "
                f"version {FILE_VERSION}"
            )
        if digest is None:
            if version >= 2:
                raise damaged("its SHA-256 checksum is missing")
            warnings.warn(
                f"{path!r} is a version {version} teacher file, written before teacher files "
                "carried a checksum: its weights are loaded unchecked. Save it again "
                "(BernoulliTeacher.load(path).save(path)) to add one.",
                stacklevel=2,
            )
        missing = [k for k in _TENSOR_KEYS if k not in tensors]
        if missing:
            raise damaged(f"missing weights {missing}")
        if expected_feature_names is not None:
            expected = [str(n) for n in expected_feature_names]
            if expected != names:
                raise ValueError(
                    f"the teacher in {path!r} was trained on a different observation layout; "
                    f"file: {names}; expected: {expected}"
                )
        try:
            teacher = cls(
                names, hidden, init_keep, deterministic=deterministic, seed=seed, inputs=inputs
            )
            teacher.policy.load_state_dict({k: tensors[k] for k in _TENSOR_KEYS})
        except (RuntimeError, ValueError) as err:
            raise damaged(f"weights do not fit its metadata: {err}") from err
        teacher.task = metadata.get("task")
        return teacher


def _input_columns(names: tuple[str, ...], inputs: Sequence[str] | None) -> list[int]:
    """The positions in ``names`` of the columns ``inputs`` names, in the observation's order
    (all of them for None)."""
    if inputs is None:
        return list(range(len(names)))
    if isinstance(inputs, str):
        raise ValueError(f"inputs must be a sequence of column names, got the string {inputs!r}")
    wanted = [str(n) for n in inputs]
    unknown = [n for n in wanted if n not in names]
    if not wanted or len(set(wanted)) != len(wanted) or unknown:
        raise ValueError(
            f"inputs must be distinct names of observation columns, at least one; got {wanted}"
            + (
                f" ({unknown} are not columns; the columns: {list(names)}; the optional ones "
                "come from the env's extra_features)"
                if unknown
                else ""
            )
        )
    return sorted(names.index(n) for n in wanted)


def file_digest(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    """The SHA-256 a teacher file keeps in its metadata: over every other metadata entry and
    every tensor's name, dtype, shape and bytes, in a fixed order, so that any change to the
    weights or the metadata changes it.

    :param metadata: the file's metadata; its digest entry, if any, is left out.
    :param tensors: the file's tensors.
    :return: 64 lowercase hex digits.
    """
    rest = {k: v for k, v in metadata.items() if k != _DIGEST_KEY}
    chunks = [json.dumps(rest, sort_keys=True).encode()]
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        chunks.append(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        # Bytes as stored, whatever the dtype (numpy has no bfloat16).
        chunks.append(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha256_hex(chunks)
