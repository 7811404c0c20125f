"""Evolution strategies for the Bernoulli teacher: CMA-ES with common random numbers.

A gradient-free alternative to REINFORCE (:mod:`l2t_gym.teachers.reinforce`): the teacher's
network is one flat parameter vector theta (for d = 25 and 12 hidden units, 325 numbers), and
CMA-ES (Hansen & Ostermeier 2001; Hansen, "The CMA Evolution Strategy: A Tutorial", 2016)
searches it with a population of candidates per generation. ES as a scalable alternative to
policy gradients in RL is Salimans et al. (2017), "Evolution Strategies as a Scalable
Alternative to Reinforcement Learning".

Fitness. A candidate's fitness is the mean episode reward, -log(i_tau / T'), over the K students
it teaches. cma minimises, so it is told minus the fitness.

Common random numbers. How fast a student reaches tau depends as much on its initialisation and
data order as on its teacher (on Digits keep-all students take 28 to 56 iterations). Every
candidate of a generation therefore teaches the *same* K student seeds (:func:`student_seed`,
from the run's seed, the generation and k), so candidates are ranked on the same students and
the students' spread cancels out of the ranking; the seeds change from one generation to the
next so the teacher does not fit a few students. Each candidate samples its keep decisions from
its own stream (:func:`sampling_seed`: run seed, generation, candidate, k).

Which parameters the teacher keeps. After every generation (and so after training) the teacher
holds the distribution's mean, cma's ``result.xfavorite``, not the best candidate evaluated: a
best candidate's fitness is the maximum of noisy K-student means, biased upwards by selection,
while the mean is what CMA-ES believes is best. Under a noisy fitness the mean keeps wandering,
so which of the last means is best is itself uncertain; with ``select_last`` > 0 (an option, not
the default) the means of the last ``select_last`` generations each teach the same
``select_students`` fresh students of the training fold (:func:`validation_seed`, a stream apart
from every generation's), and the teacher keeps the one with the best mean reward: model
selection on held-out students of the training fold, paid for out of the ``episodes`` budget.

Why CMA-ES and the ``cma`` package: it adapts the step size and the full covariance of the
search distribution itself (no learning rate to tune), and ``cma`` is Hansen's own reference
implementation, well kept and pure Python (numpy only). Alternatives such as evotorch pull in
Ray and more. It is an optional extra: ``pip install "l2t-gym[es]"``; it is imported only
when an :class:`ESTrainer` is built.

Reproducibility. cma draws its samples from NumPy's global generator by default, and pickles
that generator *by value* inside itself, so a resumed run would draw from a stale copy. The
trainer gives cma its own normal sampler instead (a seeded ``np.random.Generator``, pickled
with the cma object), and swaps a private state of the global generator in around every cma
call (cma draws a few uniforms from it) and back out, keeping that state in the checkpoint:
a run neither disturbs nor depends on other users of ``np.random``, and a resumed run
continues exactly as if it had never stopped.

Checkpoints are pickled (the cma object has no other serialisation) inside a file sealed with
its SHA-256 (:func:`l2t_gym.files.seal`): the checksum catches damage, not malice, and
unpickling can run code, so resume only from checkpoints of a trusted source.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from l2t_gym.files import newest_intact, numbered_files, seal, unpickle_sealed, write_bytes
from l2t_gym.teachers import rollout
from l2t_gym.teachers.bernoulli import BernoulliTeacher
from l2t_gym.teachers.executors import MAIN, EpisodeJob, Executor, as_executor

#: The first line of an ES checkpoint file.
CHECKPOINT_KIND = "l2t-gym es checkpoint 1"
_CHECKPOINT_NAME = re.compile(r"es-checkpoint-(\d+)\.pkl")
_INSTALL_HINT = 'ESTrainer needs the cma package: pip install "l2t-gym[es]" (or pip install cma)'
_STATE_KEYS = ("config", "es", "numpy_state", "policy", "history", "feature_names")


def _import_cma() -> Any:
    try:
        import cma
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return cma


@dataclass(frozen=True)
class ESConfig:
    """Settings of a CMA-ES run.

    :param episodes: student runs in all (the budget); the run does whole generations of
        ``popsize * students`` runs while the next one fits, so it needs at least one.
    :param popsize: candidates per generation (None: cma's default, 4 + floor(3 ln n) for n
        parameters, 21 for the paper's teacher on 25 features); at least 3.
    :param sigma0: the initial step size, in parameter units (> 0).
    :param students: K, the student seeds every candidate of a generation teaches (> 0).
    :param seed: the run's seed; every student, sampling and cma seed derives from it.
    :param checkpoint_every: episodes between checkpoints, written after the generation that
        crosses a multiple (0: none).
    :param select_last: after the last generation, the means of the last ``select_last``
        generations compete on fresh students and the teacher keeps the best (0: the last
        mean, the default); >= 0.
    :param select_students: the students each of those means teaches (> 0); the selection's
        ``select_last * select_students`` runs come out of ``episodes``.
    :raises ValueError: naming the field, for values outside those ranges.
    """

    episodes: int = 400
    popsize: int | None = None
    sigma0: float = 0.5
    students: int = 4
    seed: int = 0
    checkpoint_every: int = 0
    select_last: int = 0
    select_students: int = 32

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be positive, got {self.episodes}")
        # cma (4.5) fails at popsize 2 after its first generation of a teacher's size (its
        # two-point step-size adaptation injects more solutions than the population holds).
        if self.popsize is not None and self.popsize < 3:
            raise ValueError(f"popsize must be at least 3 or None, got {self.popsize}")
        if not (np.isfinite(self.sigma0) and self.sigma0 > 0):
            raise ValueError(f"sigma0 must be positive, got {self.sigma0}")
        if self.students < 1:
            raise ValueError(f"students must be positive, got {self.students}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.select_last < 0:
            raise ValueError(f"select_last must be >= 0, got {self.select_last}")
        if self.select_students < 1:
            raise ValueError(f"select_students must be positive, got {self.select_students}")

    @property
    def selection_episodes(self) -> int:
        """The student runs the final selection takes out of ``episodes`` (0 without one)."""
        return self.select_last * self.select_students


class _Normal:
    """cma's ``randn`` option: standard normal samples of a given shape from a private,
    picklable generator."""

    def __init__(self, seed: int) -> None:
        self.generator = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.generator.standard_normal(shape)


def _derived_seed(seed: int, *key: int) -> int:
    # SeedSequence mixes (seed, key) so that no two keys of a run share a stream.
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def student_seed(seed: int, generation: int, k: int) -> int:
    """The env seed of the k-th student of a generation, shared by all its candidates.

    :param seed: the run's seed.
    :param generation: the generation's index (0-based).
    :param k: the student's index in 0 .. K-1.
    :return: a seed in [0, 2**31).
    """
    return _derived_seed(seed, 0, generation, k)


def sampling_seed(seed: int, generation: int, candidate: int, k: int) -> int:
    """The teacher's sampling seed when candidate ``candidate`` teaches student k.

    :return: a seed in [0, 2**31).
    """
    return _derived_seed(seed, 1, generation, candidate, k)


def is_selection(record: Mapping[str, Any]) -> bool:
    """Whether a training record is the final selection's (``select_last``), not a
    generation's."""
    return "selected_generation" in record


def validation_seed(seed: int, k: int) -> int:
    """The env seed of the k-th student of the final selection (``select_last``), shared by
    every mean that competes in it and apart from every generation's students.

    :param seed: the run's seed.
    :param k: the student's index in 0 .. select_students-1.
    :return: a seed in [0, 2**31).
    """
    return _derived_seed(seed, 4, k)


class ESTrainer:
    """Trains a :class:`BernoulliTeacher` by CMA-ES (see the module docstring).

    A generation: cma proposes ``popsize`` parameter vectors (``ask``); each is written into a
    working copy of the teacher, which teaches the generation's K students
    (one job per candidate for the executor, :mod:`l2t_gym.teachers.executors`); cma is told
    minus each candidate's mean reward (``tell``); the teacher takes the new mean. In a vector
    env a candidate's K students train side by side (best with ``num_envs == students``;
    otherwise in waves), each with the seed and sampling stream it has alone, so the run equals
    the sequential one; on Ray workers the candidates of a generation run on whichever worker
    is free, and on CPU the run is the in-process one, bit for bit.

    :param env: one env, a vector env (``gym.make_vec``, :class:`~l2t_gym.vector.L2TVectorEnv`),
        or an :class:`~l2t_gym.teachers.executors.Executor` whose env ``env_name`` the
        students train in.
    :param teacher: the teacher to train; its current parameters are the start (so its
        ``init_keep`` sets where the search begins) and it ends holding the mean.
    :param config: the run's settings.
    :param checkpoint_dir: where :meth:`save_checkpoint` writes and :meth:`resume` looks
        (on this machine, the driver).
    :param env_name: the executor's env the episodes run in (with an executor).
    :raises ImportError: when ``cma`` is not installed, saying how to install it.
    :raises ValueError: if ``checkpoint_every`` is set without a ``checkpoint_dir``, or the
        budget, less the selection's runs, holds no whole generation or fewer than
        ``select_last`` (naming ``episodes``).
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv | Executor,
        teacher: BernoulliTeacher,
        config: ESConfig = ESConfig(),
        checkpoint_dir: str | os.PathLike | None = None,
        *,
        env_name: str = MAIN,
    ) -> None:
        cma = _import_cma()
        self.env, self.teacher, self.config = env, teacher, config
        self.executor, self.env_name = as_executor(env), env_name
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if config.checkpoint_every and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir")
        x0 = self.parameters().astype(np.float64)
        options: dict[str, Any] = {
            "randn": _Normal(_derived_seed(config.seed, 2)),
            "seed": np.nan,  # cma: leave the global generator's seed alone
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
        }
        if config.popsize is not None:
            options["popsize"] = config.popsize
        self._numpy_state = np.random.RandomState(_derived_seed(config.seed, 3)).get_state()
        with self._cma_numpy():
            self.es = cma.CMAEvolutionStrategy(x0, config.sigma0, options)
        self.popsize = int(self.es.popsize)
        self.episodes_per_generation = self.popsize * config.students
        searched = config.episodes - config.selection_episodes
        self.generations = max(searched, 0) // self.episodes_per_generation
        if self.generations < max(1, config.select_last):
            raise ValueError(
                f"episodes ({config.episodes}) must hold "
                f"{max(1, config.select_last)} generation(s) of popsize {self.popsize} x "
                f"students {config.students} = {self.episodes_per_generation} student runs"
                + (
                    f", after the selection's select_last {config.select_last} x "
                    f"select_students {config.select_students} = {config.selection_episodes}"
                    if config.select_last
                    else ""
                )
            )
        self._worker = copy.deepcopy(teacher)
        self.history: list[dict[str, Any]] = []
        #: The distribution's mean after each generation (only with ``select_last``: the
        #: candidates of the final selection).
        self.means: list[np.ndarray] = []

    @property
    def generations_done(self) -> int:
        """Generations run and told to cma so far."""
        return sum(not is_selection(r) for r in self.history)

    @property
    def selected(self) -> bool:
        """Whether the final selection (``select_last``) has run."""
        return bool(self.history) and is_selection(self.history[-1])

    @property
    def episodes_done(self) -> int:
        """Student runs so far (the selection's included)."""
        return int(self.history[-1]["episodes"]) if self.history else 0

    def parameters(self) -> np.ndarray:
        """The teacher's parameters as one flat float32 vector (n,), in ``policy.parameters()``
        order."""
        with torch.no_grad():
            return parameters_to_vector(self.teacher.policy.parameters()).cpu().numpy().copy()

    @staticmethod
    def _load(teacher: BernoulliTeacher, x: np.ndarray) -> None:
        with torch.no_grad():
            vector_to_parameters(
                torch.as_tensor(np.asarray(x), dtype=torch.float32), teacher.policy.parameters()
            )

    @contextmanager
    def _cma_numpy(self) -> Iterator[None]:
        """NumPy's global generator holds this run's state inside the block, the caller's
        outside it."""
        outside = np.random.get_state()  # noqa: NPY002 - cma draws from the global generator
        np.random.set_state(self._numpy_state)  # noqa: NPY002 - cma draws from the global generator
        try:
            yield
        finally:
            self._numpy_state = np.random.get_state()  # noqa: NPY002 - cma draws from the global generator
            np.random.set_state(outside)  # noqa: NPY002 - cma draws from the global generator

    def evaluate(
        self, generation: int, candidates: list[np.ndarray]
    ) -> list[list[rollout.EpisodeResult]]:
        """Each candidate teaches the generation's K students (common random numbers).

        :param generation: the generation's index; it fixes the student and sampling seeds.
        :param candidates: the parameter vectors, each (n,).
        :return: per candidate, its K episodes' results, in student order.
        """
        cfg = self.config
        env_seeds = [student_seed(cfg.seed, generation, k) for k in range(cfg.students)]
        return self._teach(
            candidates,
            env_seeds,
            lambda c, k: sampling_seed(cfg.seed, generation, c, k),
        )

    def _teach(
        self,
        candidates: list[np.ndarray],
        env_seeds: list[int],
        teacher_seed: Callable[[int, int], int],
    ) -> list[list[rollout.EpisodeResult]]:
        """Each candidate teaches the students ``env_seeds``, sampling its keep decisions for
        student k from ``teacher_seed(candidate, k)``."""
        jobs = []
        for c, x in enumerate(candidates):
            teacher = copy.deepcopy(self._worker)
            self._load(teacher, x)
            teacher_seeds = [teacher_seed(c, k) for k in range(len(env_seeds))]
            jobs.append(EpisodeJob(teacher, env_seeds, teacher_seeds, env=self.env_name))
        return [[o.result for o in outcomes] for outcomes in self.executor.run(jobs)]

    def train(self, callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Run the remaining generations of the budget.

        :param callback: called after every generation with its record: generation,
            episodes (student runs so far), mean_fitness and best_fitness (the mean and the
            largest of the candidates' mean rewards), fitness (each candidate's), keep_ratio
            (the mean keep ratio over the generation's runs), reached_tau (the fraction of
            them that reached tau) and sigma (cma's step size after the update); with
            ``select_last``, once more with the selection's record (see :meth:`select`).
        :return: the history, one record per generation and the selection's last (also
            ``self.history``).
        :raises ValueError: naming ``episodes``, when the run's selection has already run and
            the budget asks for more generations.
        """
        every = self.config.checkpoint_every
        if self.selected and self.generations_done < self.generations:
            raise ValueError(
                f"episodes ({self.config.episodes}): this run's selection already ran after "
                f"{self.generations_done} generations ({self.episodes_done} runs), so a larger "
                "budget cannot continue it; start a new run in another folder"
            )
        while self.generations_done < self.generations:
            generation = self.generations_done
            with self._cma_numpy():
                candidates = self.es.ask()
            results = self.evaluate(generation, candidates)
            runs = [r for per_candidate in results for r in per_candidate]
            fitness = [float(np.mean([r.reward for r in rs])) for rs in results]
            with self._cma_numpy():
                self.es.tell(candidates, [-f for f in fitness])
            self._load(self.teacher, self.es.result.xfavorite)
            if self.config.select_last:
                self.means.append(np.array(self.es.result.xfavorite, dtype=np.float64))
            before = self.episodes_done
            record = {
                "generation": generation,
                "episodes": before + self.episodes_per_generation,
                "mean_fitness": float(np.mean(fitness)),
                "best_fitness": max(fitness),
                "fitness": fitness,
                "keep_ratio": float(np.mean([r.keep_ratio for r in runs])),
                "reached_tau": float(np.mean([r.reached_tau for r in runs])),
                "sigma": float(self.es.sigma),
            }
            self.history.append(record)
            if callback is not None:
                callback(record)
            if every and self.episodes_done // every > before // every:
                self.save_checkpoint()
        if self.config.select_last and not self.selected:
            record = self.select()
            if callback is not None:
                callback(record)
            if every:
                self.save_checkpoint()
        return self.history

    def select(self) -> dict[str, Any]:
        """The final selection (``select_last`` > 0, after the last generation): the means of
        the last ``select_last`` generations each teach the same ``select_students`` fresh
        students (:func:`validation_seed`), and the teacher takes the one with the best mean
        reward (the later generation on a tie).

        :return: its record, appended to the history: generation (the next index), episodes,
            fitness (each mean's mean reward, oldest first), mean_fitness, best_fitness,
            keep_ratio, reached_tau and sigma as a generation's, and selected_generation.
        :raises RuntimeError: before the last generation, or without the means to choose from
            (a run resumed from a checkpoint written before ``select_last`` existed).
        """
        cfg, last = self.config, self.config.select_last
        if self.generations_done < self.generations or len(self.means) < last:
            raise RuntimeError(
                f"the selection needs the means of the last {last} of {self.generations} "
                f"generations; {self.generations_done} done, {len(self.means)} kept"
            )
        means = self.means[-last:]
        env_seeds = [validation_seed(cfg.seed, k) for k in range(cfg.select_students)]
        results = self._teach(means, env_seeds, lambda c, k: _derived_seed(cfg.seed, 5, c, k))
        fitness = [float(np.mean([r.reward for r in rs])) for rs in results]
        best = max(range(last), key=lambda j: (fitness[j], j))
        self._load(self.teacher, means[best])
        runs = [r for per_mean in results for r in per_mean]
        record = {
            "generation": len(self.history),
            "episodes": self.episodes_done + cfg.selection_episodes,
            "mean_fitness": float(np.mean(fitness)),
            "best_fitness": fitness[best],
            "fitness": fitness,
            "keep_ratio": float(np.mean([r.keep_ratio for r in runs])),
            "reached_tau": float(np.mean([r.reached_tau for r in runs])),
            "sigma": float(self.es.sigma),
            "selected_generation": self.generations_done - last + best,
        }
        self.history.append(record)
        return record

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``es-checkpoint-<episodes done>.pkl`` into ``checkpoint_dir``: the pickled cma
        object, NumPy state, history and teacher weights, sealed with a SHA-256, atomically.

        :return: the file's path.
        """
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"es-checkpoint-{self.episodes_done:06d}.pkl"
        state = {
            "config": asdict(self.config),
            "es": self.es,
            "numpy_state": self._numpy_state,
            "policy": {k: v.cpu().numpy() for k, v in self.teacher.policy.state_dict().items()},
            "history": self.history,
            "feature_names": list(self.teacher.layout),
            "inputs": list(self.teacher.inputs),
            "means": self.means,
        }
        write_bytes(path, seal(CHECKPOINT_KIND, pickle.dumps(state, protocol=4)))
        return path

    def resume(self, path: str | os.PathLike | None = None) -> Path | None:
        """Continue from a checkpoint (unpickled: trusted files only).

        :param path: the checkpoint; None takes the newest intact one in ``checkpoint_dir``,
            skipping damaged ones with a warning that names them.
        :return: the file loaded, or None if there is none (the run starts from generation 0).
        :raises DamagedFileError: (a ``ValueError``) if ``path`` is damaged, or every
            checkpoint in ``checkpoint_dir`` is.
        :raises ValueError: if the checkpoint belongs to another run (seed, students, sigma0,
            select_last, select_students, popsize, layout).
        """
        if path is not None:
            self._load_state(Path(path), read_checkpoint(path))
            return Path(path)
        found = checkpoint_files(self.checkpoint_dir) if self.checkpoint_dir else []
        newest = newest_intact(found, read_checkpoint, self.checkpoint_dir)
        if newest is None:
            return None
        self._load_state(*newest)
        return newest[0]

    def _load_state(self, path: Path, state: dict[str, Any]) -> None:
        saved = state["config"]
        for key in ("seed", "students", "sigma0", "select_last", "select_students"):
            # Checkpoints written before an option existed ran with its default.
            theirs = saved.get(key, ESConfig.__dataclass_fields__[key].default)
            if theirs != getattr(self.config, key):
                raise ValueError(
                    f"{os.fspath(path)!r}: checkpoint was made with {key}={theirs}, this "
                    f"run has {getattr(self.config, key)}: resuming would not continue the same run"
                )
        if list(state["feature_names"]) != list(self.teacher.layout):
            raise ValueError(f"{os.fspath(path)!r}: made for a different observation layout")
        # Checkpoints written before teachers had inputs read every column.
        inputs = list(state.get("inputs", state["feature_names"]))
        if inputs != list(self.teacher.inputs):
            raise ValueError(
                f"{os.fspath(path)!r}: made for a teacher reading the columns {inputs}; this "
                f"one reads {list(self.teacher.inputs)}"
            )
        es = state["es"]
        if int(getattr(es, "popsize", -1)) != self.popsize or len(es.mean) != self.es.N:
            raise ValueError(
                f"{os.fspath(path)!r}: made for popsize {getattr(es, 'popsize', None)} and "
                f"{len(es.mean)} parameters; this run has {self.popsize} and {self.es.N}"
            )
        policy = {k: torch.as_tensor(v) for k, v in state["policy"].items()}
        self.teacher.policy.load_state_dict(policy)
        self.es, self._numpy_state = es, state["numpy_state"]
        self.history = [dict(r) for r in state["history"]]
        # Checkpoints written before the selection option kept no means.
        self.means = [np.asarray(m) for m in state.get("means", [])]


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints :meth:`ESTrainer.save_checkpoint` wrote in ``folder``, newest first.

    :param folder: a checkpoint folder (missing: none).
    :return: their paths, the most episodes first.
    """
    return numbered_files(folder, _CHECKPOINT_NAME)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read an ES checkpoint after checking its SHA-256; the payload is unpickled, which can run
    code: read only checkpoints from a trusted source.

    :param path: the file.
    :return: the state, for :meth:`ESTrainer.resume`.
    :raises FileNotFoundError: if there is no file at ``path``.
    :raises DamagedFileError: (a ``ValueError``) for an empty, damaged or foreign file, or a
        state without its entries.
    """
    _import_cma()  # the cma object's classes must import
    return unpickle_sealed(path, CHECKPOINT_KIND, "ES checkpoint", _STATE_KEYS)
