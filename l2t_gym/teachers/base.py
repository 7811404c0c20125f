"""The teacher interface: what every agent that keeps or drops candidate instances implements.

A teacher maps an observation (M, d) to a keep mask (M,), seeing observations and info only,
like any Gymnasium agent. :class:`Teacher` is the one small interface this package's teachers
share, made for a plain Gymnasium loop::

    obs, info = env.reset(seed=s)
    teacher.reset(env.unwrapped.feature_names, seed=s)
    while not done:
        obs, reward, terminated, truncated, info = env.step(teacher.act(obs))

:mod:`l2t_gym.teachers.rollout` runs that loop, on one env or on a vector env with one teacher
per student (:meth:`Teacher.spawn`, :meth:`Teacher.act_slots`).
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence

import numpy as np

# Mixed into every teacher seed. Gymnasium seeds an env's np_random with the very same generator
# that np.random.default_rng(seed) builds, so without it a teacher reset with the env's seed would
# draw the bit stream the env draws its student from, and its "random" choices would be
# correlated with the data it is shown.
_TEACHER_STREAM = 0x7EAC4E5


def teacher_generator(seed: int | None) -> np.random.Generator:
    """A NumPy generator for a teacher, independent of an env's ``np_random`` for the same seed.

    :param seed: a non-negative integer, or None for fresh OS entropy.
    :return: a new generator.
    :raises ValueError: if ``seed`` is negative.
    """
    if seed is None:
        return np.random.default_rng()
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed}")
    return np.random.default_rng([int(seed), _TEACHER_STREAM])


class Teacher(abc.ABC):
    """Keeps or drops each instance of a candidate minibatch.

    Call :meth:`reset` at the start of every episode with the env's ``feature_names`` (for a
    ``gym.make`` env, ``env.unwrapped.feature_names``); teachers find the columns they need there,
    by name (:meth:`column`), so they work for any column layout. Then call :meth:`act` on each
    observation.

    Per-episode state (the generator's stream, a warning already given, running statistics) is
    set in :meth:`reset`. What outlives episodes (a policy network) is shared with the copies
    :meth:`spawn` makes for the other students of a vector env.

    :param seed: seeds the teacher's own NumPy generator (``self.rng``, see
        :func:`teacher_generator`); ``reset(seed=...)`` reseeds it. Teachers that draw no random
        numbers ignore it.
    """

    #: Observation columns beyond the paper's that this teacher reads, by name. Experiment code
    #: builds the teacher's env with them (``extra_features=...``); :meth:`reset` of a teacher
    #: that lists any refuses an env without them.
    required_features: tuple[str, ...] = ()

    def __init__(self, seed: int | None = None) -> None:
        self.rng = teacher_generator(seed)
        self.feature_names: tuple[str, ...] | None = None

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        """Start an episode on an env with these observation columns.

        Subclasses that need columns look them up here with :meth:`column`, after calling
        ``super().reset``, and (re)create their per-episode state here.

        :param feature_names: the env's observation columns, in order.
        :param seed: reseeds ``self.rng``; None keeps its stream going, as Gymnasium's
            ``reset(seed=None)`` does.
        :raises ValueError: if ``feature_names`` is empty or has duplicates.
        """
        names = tuple(str(n) for n in feature_names)
        if not names:
            raise ValueError("feature_names is empty; expected the env's observation columns")
        if len(set(names)) != len(names):
            raise ValueError(f"feature_names has duplicates: {names}")
        self.feature_names = names
        if seed is not None:
            self.rng = teacher_generator(seed)

    @abc.abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The keep mask for one candidate batch.

        :param obs: the observation, float32 (M, d).
        :return: a keep mask of shape (M,): bool, or 0/1 numbers.
        """

    # -- one teacher per student of a vector env ----------------------------------------------
    def spawn(self) -> Teacher:
        """A teacher for another student of a vector env: this one's rule and parameters, with
        per-episode state of its own once :meth:`reset`.

        The copy is shallow: it shares everything this teacher holds (a policy network is not
        copied), except its generator, a child of this one's (:meth:`numpy.random.Generator.spawn`).
        Teachers keep per-episode state apart by assigning it anew in :meth:`reset`, never by
        changing a shared object in place; a teacher that cannot must override this method.

        :return: the new teacher.
        """
        twin = copy.copy(self)
        twin.rng = self.rng.spawn(1)[0]
        return twin

    def act_slots(
        self, obs: np.ndarray, slots: Sequence[Teacher], active: np.ndarray
    ) -> np.ndarray:
        """Keep masks for the N students of a vector env, each decided by its own teacher.

        Called on ``slots[0]`` (the teacher that :meth:`spawn` made the others from). This
        default asks each active slot's :meth:`act`; teachers with a network override it to score
        every student's candidates in one forward pass.

        :param obs: the vector env's observation, float32 (N, M, d).
        :param slots: N teachers, one per student, each reset for its student's episode.
        :param active: bool (N,): the students whose episodes count; the others keep nothing.
        :return: bool keep masks, shape (N, M).
        """
        keep = np.zeros(obs.shape[:2], dtype=bool)
        for i in np.flatnonzero(active):
            keep[i] = slots[i].act(obs[i])
        return keep

    # -- helpers for subclasses ---------------------------------------------------------------
    def column(self, name: str) -> int:
        """The index of a named observation column, for rules that read features by name.

        :param name: a feature name, e.g. ``"loss"``.
        :return: its index in the columns given to :meth:`reset`.
        :raises ValueError: naming the feature, if the env lacks it.
        :raises RuntimeError: before :meth:`reset`.
        """
        names = self._names()
        if name not in names:
            raise ValueError(
                f"{type(self).__name__} needs the feature {name!r}, which this env's "
                f"feature_names lack: {list(names)}"
            )
        return names.index(name)

    def rows(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` as an (M, d) array, checked against the columns given to :meth:`reset`.

        :param obs: one observation, (M, d).
        :return: ``obs`` as a NumPy array (not copied).
        :raises ValueError: if it is not 2-D with M >= 1 rows and one column per feature.
        :raises RuntimeError: before :meth:`reset`.
        """
        names = self._names()
        x = np.asarray(obs)
        if x.ndim != 2 or x.shape[1] != len(names) or x.shape[0] == 0:
            raise ValueError(
                f"expected an observation of shape (M, {len(names)}) with M >= 1, got {x.shape}"
            )
        return x

    def _names(self) -> tuple[str, ...]:
        if self.feature_names is None:
            raise RuntimeError(
                f"call {type(self).__name__}.reset(feature_names) at the start of the episode, "
                "before act()"
            )
        return self.feature_names
