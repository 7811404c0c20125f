"""Teachers: agents that keep or drop each candidate instance, seeing only observations and info.

``NoTeach``, ``RandTeach``, ``SelfPaced`` and ``LossRank`` are the baselines; ``BernoulliTeacher``
is the paper's learned policy. All follow :class:`Teacher`: ``reset(feature_names, seed=...)`` at
the start of an episode, then ``act(obs)`` -> keep mask.

The rooms: ``base`` (the interface), ``sampling`` (the one keep-sampler: logits to decisions and
log-probabilities), ``heuristics`` and ``bernoulli`` (the teachers), ``rollout`` (the one loop:
:func:`run_episodes` runs episodes on one env or a vector env, :func:`run_episode` one episode) and
``reinforce`` (training the Bernoulli teacher).
"""

from __future__ import annotations

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

__all__ = [
    "BernoulliTeacher",
    "CurvePoint",
    "EpisodeResult",
    "LossRank",
    "NoTeach",
    "RandTeach",
    "SelfPaced",
    "TEACHER_NAMES",
    "Teacher",
    "Trajectory",
    "make_teacher",
    "run_episode",
    "run_episodes",
    "teacher_generator",
]

#: Names :func:`make_teacher` understands besides a path to a saved teacher.
TEACHER_NAMES = {"noteach": NoTeach, "rand": RandTeach, "spl": SelfPaced, "lossrank": LossRank}


def make_teacher(spec: str | os.PathLike, **kwargs: Any) -> Teacher:
    """A teacher from a name or a saved teacher's path.

    :param spec: "noteach", "rand", "spl", "lossrank" (any case), or the path of a file written
        by :meth:`BernoulliTeacher.save`.
    :param kwargs: for the teacher's constructor, or for :meth:`BernoulliTeacher.load` given a
        file (``expected_feature_names``, ``deterministic``, ``seed``). "rand" needs
        ``keep_prob``.
    :return: the teacher.
    :raises ValueError: for an unknown name that is no file, or "rand" without ``keep_prob``.
    """
    name = os.fspath(spec)
    if name.lower() in TEACHER_NAMES:
        if name.lower() == "rand" and "keep_prob" not in kwargs:
            raise ValueError(
                "the 'rand' teacher needs keep_prob=... (e.g. a trained teacher's keep ratio)"
            )
        return TEACHER_NAMES[name.lower()](**kwargs)
    if os.path.isfile(name):
        return BernoulliTeacher.load(name, **kwargs)
    raise ValueError(
        f"unknown teacher {name!r}: expected one of {sorted(TEACHER_NAMES)} or the path of a "
        "saved teacher file (no such file)"
    )
