"""Teachers: agents that keep or drop each candidate instance, seeing only observations and info.

``NoTeach``, ``RandTeach``, ``SelfPaced`` and ``LossRank`` are the paper's baselines; ``RhoLoss``,
``InfoBatch`` and ``SelectiveBackprop`` today's data-selection methods; ``BernoulliTeacher``
is the paper's learned policy. All follow :class:`Teacher`: ``reset(feature_names, seed=...)`` at
the start of an episode, then ``act(obs)`` -> keep mask.

The rooms: ``base`` (the interface), ``sampling`` (the one keep-sampler: logits to decisions and
log-probabilities), ``heuristics``, ``selection`` and ``bernoulli`` (the teachers), ``rollout``
(the one loop: :func:`run_episodes` runs episodes on one env or a vector env, :func:`run_episode`
one episode), ``executors`` (where the algorithms' and comparisons' episodes run: in process, or
on Ray workers with ``ray_executor``, which needs the optional ``ray``), ``reinforce``, ``es``
and ``ppo`` (training a teacher by policy gradient, CMA-ES or SB3's PPO).
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from l2t_gym.teachers.base import Teacher, teacher_generator
from l2t_gym.teachers.bernoulli import BernoulliTeacher
from l2t_gym.teachers.heuristics import LossRank, NoTeach, RandTeach, SelfPaced
from l2t_gym.teachers.rollout import (
    CurvePoint,
    EpisodeResult,
    Trajectory,
    run_episode,
    run_episodes,
)
from l2t_gym.teachers.selection import InfoBatch, RhoLoss, SelectiveBackprop

__all__ = [
    "BernoulliTeacher",
    "CurvePoint",
    "EpisodeResult",
    "InfoBatch",
    "LossRank",
    "NoTeach",
    "RandTeach",
    "RhoLoss",
    "SelectiveBackprop",
    "SelfPaced",
    "TEACHER_LABELS",
    "TEACHER_NAMES",
    "Teacher",
    "Trajectory",
    "make_teacher",
    "run_episode",
    "run_episodes",
    "teacher_generator",
]

#: Names :func:`make_teacher` understands besides a saved teacher's path and ``module:Class``.
TEACHER_NAMES: dict[str, type[Teacher]] = {
    "noteach": NoTeach,
    "rand": RandTeach,
    "spl": SelfPaced,
    "lossrank": LossRank,
    "rholoss": RhoLoss,
    "infobatch": InfoBatch,
    "selectivebackprop": SelectiveBackprop,
}
#: How tables and plots name teachers: the paper's names (NoTeach, RandTeach, SPL, LossRank and
#: L2T, its learned teacher) and the newer methods' own. Keys: :data:`TEACHER_NAMES` and "l2t".
TEACHER_LABELS = {
    "noteach": "NoTeach",
    "rand": "RandTeach",
    "spl": "SPL",
    "lossrank": "LossRank",
    "rholoss": "RHO-LOSS",
    "infobatch": "InfoBatch",
    "selectivebackprop": "Selective-Backprop",
    "l2t": "L2T",
}


def make_teacher(spec: str | os.PathLike, **kwargs: Any) -> Teacher:
    """A teacher from a name, a saved teacher's path, or ``module:Class``; the one place where
    every command reads a teacher given on its command line.

    :param spec: one of

        * a name of :data:`TEACHER_NAMES` (any case): the class, given ``kwargs``;
        * a file: a ``.zip`` Stable-Baselines3 model whose policy is
          :class:`l2t_gym.sb3.InstancePolicy`, loaded as an :class:`l2t_gym.sb3.InstanceTeacher`
          (kwargs: ``algo``, the SB3 algorithm's name, default "PPO"; ``deterministic``;
          ``expected_feature_names``, checked against the model's row width). SB3 zips are
          unpickled on loading, which can run code: load only files from a trusted source.
          Any other file is a :meth:`BernoulliTeacher.save` file (kwargs of
          :meth:`BernoulliTeacher.load`: ``expected_feature_names``, ``deterministic``,
          ``seed``);
        * ``package.module:Class``: the module imported, the class (a :class:`Teacher`
          subclass) constructed with ``kwargs``.

    :param kwargs: keyword arguments, as above; "rand" needs ``keep_prob``.
    :return: the teacher.
    :raises ValueError: naming the spec: an unknown name that is no file and no
        ``module:Class``, a module that does not import, a missing class, a class that is not a
        Teacher, keyword arguments its constructor does not take or values it refuses, "rand"
        without ``keep_prob``.
    :raises TypeError: if ``spec`` is neither a string nor a path.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(
            f"teacher spec must be a name, a path or package.module:Class, got "
            f"{type(spec).__name__}"
        )
    name = os.fspath(spec)
    if not isinstance(name, str):
        name = os.fsdecode(name)
    if name.lower() in TEACHER_NAMES:
        if name.lower() == "rand" and "keep_prob" not in kwargs:
            raise ValueError(
                "the 'rand' teacher needs keep_prob=... (e.g. a trained teacher's keep ratio)"
            )
        return _construct(name, TEACHER_NAMES[name.lower()], kwargs)
    if os.path.isfile(name):
        if name.endswith(".zip"):
            return _load_sb3(name, **kwargs)
        _check_kwargs(name, BernoulliTeacher.load, kwargs, name)
        return BernoulliTeacher.load(name, **kwargs)
    module, sep, attr = name.rpartition(":")
    if sep and module and attr:
        return _construct(name, _import_class(name, module, attr), kwargs)
    raise ValueError(
        f"unknown teacher {name!r}: expected one of {sorted(TEACHER_NAMES)}, the path of a "
        "saved teacher (.safetensors, or an SB3 .zip) or package.module:Class (no such file)"
    )


def _import_class(spec: str, module: str, attr: str) -> type[Teacher]:
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(
            f"teacher {spec!r}: cannot import module {module!r} ({err}); expected "
            "package.module:Class with the module importable"
        ) from err
    cls = getattr(mod, attr, None)
    if cls is None:
        raise ValueError(f"teacher {spec!r}: module {module!r} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Teacher)):
        raise ValueError(
            f"teacher {spec!r}: {module}.{attr} is not a subclass of l2t_gym.teachers.Teacher"
        )
    if inspect.isabstract(cls):
        raise ValueError(f"teacher {spec!r}: {module}.{attr} is abstract (no act method?)")
    return cls


def _check_kwargs(spec: str, func: Any, kwargs: dict[str, Any], *args: Any) -> None:
    # Checked before the call, so that a TypeError raised inside a constructor is not
    # mistaken for a wrong keyword.
    try:
        inspect.signature(func).bind(*args, **kwargs)
    except TypeError as err:
        params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
        raise ValueError(
            f"teacher {spec!r}: bad keyword arguments {sorted(kwargs)} ({err}); it takes {params}"
        ) from err


def _construct(spec: str, cls: type[Teacher], kwargs: dict[str, Any]) -> Teacher:
    _check_kwargs(spec, cls, kwargs)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a value its constructor refuses: say whose
        raise ValueError(f"teacher {spec!r}: {err} (given {kwargs})") from err


def _load_sb3(
    path: str,
    algo: str = "PPO",
    deterministic: bool = False,
    expected_feature_names: Any = None,
) -> Teacher:
    # Stable-Baselines3 is imported here only: the teachers work without it.
    import stable_baselines3

    from l2t_gym.sb3 import InstanceTeacher

    algorithm = getattr(stable_baselines3, str(algo), None)
    if algorithm is None:
        raise ValueError(f"teacher {path!r}: algo {algo!r} is not a Stable-Baselines3 algorithm")
    model = algorithm.load(path, device="cpu")
    width = model.observation_space.shape[-1]
    if expected_feature_names is not None and width != len(expected_feature_names):
        raise ValueError(
            f"teacher {path!r}: the model reads rows of {width} features, the env has "
            f"{len(expected_feature_names)}"
        )
    return InstanceTeacher(model, deterministic=deterministic)
