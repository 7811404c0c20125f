"""One validated settings object: a task's defaults overridden by an env's keyword arguments.

:meth:`Settings.resolve` is the only place an env's arguments are read, checked and given their
task defaults; :class:`l2t_gym.L2TEnv` and :class:`l2t_gym.vector.L2TVectorEnv` both hold one, and
everything downstream (the student run, the episode rules, the features) reads its values from
it. The object also builds what the settings describe: the dataset on the device, the fold, a
freshly seeded student and its optimiser.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from l2t_gym.data import FOLDS, DeviceData, Fold, RawData, load_dataset, make_folds
from l2t_gym.features import check_extra_features, feature_names
from l2t_gym.models import build_student, check_student_input, check_student_name
from l2t_gym.tasks import TASKS, TaskSpec

Mode = Literal["paper", "mask"]
Reward = Literal["paper", "thresholds"]
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
ReportTest = bool | Literal["end", "eval"]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
StudentFactory = Callable[[], nn.Module]

#: Arguments whose default (None) means the task's value in :data:`l2t_gym.tasks.TASKS`.
TASK_DEFAULTS = (
    "tau",
    "max_iters",
    "batch_size",
    "eval_every",
    "student",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "augment",
    "dev_fraction",
)
#: The other arguments and their defaults (``max_teacher_steps``: None means 10 x max_iters;
#: ``divergence_loss``: None means :data:`DIVERGENCE_LOSS` x ln C).
DEFAULTS: dict[str, Any] = {
    "fold": "teacher",
    "mode": "paper",
    "max_teacher_steps": None,
    "candidate_cost": 0.0,
    "divergence_loss": None,
    "device": "auto",
    "data_root": None,
    "download": True,
    "data": None,
    "report_test": False,
    "precision": "fp32",
    "channels_last": False,
    "compile": False,
    "reward": "paper",
    "taus": None,
    "tau_weights": None,
    "extra_features": (),
}
#: A student whose average training loss exceeds this many times ln C (the loss of a uniform
#: guess over C classes) has diverged: no healthy run comes near it (a uniform guess scores 1, a
#: fresh student about 1 to 3), while an exploding one passes it at its first update.
DIVERGENCE_LOSS = 100.0
#: Every keyword argument of an L2T env besides ``task`` (and the single env's ``render_mode``).
ARGUMENTS: tuple[str, ...] = (*TASK_DEFAULTS, *DEFAULTS)


@dataclass(frozen=True, eq=False)
class Settings:
    """An env's settings, resolved and checked (see :class:`l2t_gym.L2TEnv` for each field's
    meaning). Build one with :meth:`resolve`; it is immutable."""

    task: str
    spec: TaskSpec
    tau: float
    max_iters: int
    batch_size: int
    eval_every: int
    fold: str
    mode: Mode
    student: str | StudentFactory
    optimizer: str | OptimizerFactory
    lr: float
    momentum: float
    weight_decay: float
    augment: bool
    max_teacher_steps: int
    candidate_cost: float
    divergence_loss: float
    device: torch.device
    data_root: str | Path | None
    download: bool
    data: RawData | None
    dev_fraction: float
    report_test: ReportTest
    precision: Precision
    channels_last: bool
    compile: bool
    reward: Reward
    #: With ``reward="thresholds"``: the thresholds and their weights (None under the paper's).
    taus: tuple[float, ...] | None
    tau_weights: tuple[float, ...] | None
    extra_features: tuple[str, ...]

    @classmethod
    def resolve(cls, task: str = "digits", **kwargs: Any) -> Settings:
        """The task's defaults, overridden by every keyword argument that is not None.

        The arguments are those of :class:`l2t_gym.L2TEnv` (:data:`ARGUMENTS` lists them);
        ``split``, the old name of ``fold``, is accepted with a DeprecationWarning.

        :raises TypeError: for an argument no env takes, or ``data`` that is not a RawData.
        :raises ValueError: for an unknown task or an argument out of its range.
        """
        if "split" in kwargs:
            warnings.warn(
                "the split argument is deprecated: it is now called fold", DeprecationWarning, 3
            )
            kwargs["fold"] = kwargs.pop("split")
        unknown = sorted(set(kwargs) - set(ARGUMENTS))
        if unknown:
            raise TypeError(
                f"unexpected argument(s) {', '.join(unknown)}; an L2T env takes "
                f"{', '.join(ARGUMENTS)}"
            )
        if not isinstance(task, str):
            raise TypeError(f"task must be a task name (str), got {type(task).__name__}")
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
        spec = TASKS[task]
        values = {**DEFAULTS, **{k: v for k, v in kwargs.items() if v is not None}}
        tau_given = "tau" in values  # before the task's default fills it in
        for name in TASK_DEFAULTS:
            values.setdefault(name, getattr(spec, name))
        checked = _checked(values, spec)
        settings = cls(task=task, spec=spec, **{**checked, **_reward(values, spec, tau_given)})
        settings._check()
        return settings

    # -- what the settings describe -----------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The observation's column names, in order (see :mod:`l2t_gym.features`)."""
        return feature_names(self.spec.num_classes, self.spec.extra_names, self.extra_features)

    def load_data(self) -> DeviceData:
        """The task's dataset on the device, shared with every env of the process.

        :raises ValueError: if the data's per-instance features differ from the task's.
        """
        data = load_dataset(
            self.spec.dataset, self.data_root, self.download, self.device, arrays=self.data
        )
        if data.extra_names != self.spec.extra_names:
            raise ValueError(
                f"task {self.task!r} expects data features {self.spec.extra_names}, the data "
                f"has {data.extra_names}"
            )
        return data

    def fold_of(self, data: DeviceData) -> Fold:
        """This env's fold of ``data``'s training set (training instances and dev set)."""
        return make_folds(data.y_train_host, self.dev_fraction)[self.fold]

    def build_student(self, data: DeviceData, seed: int) -> nn.Module:
        """A freshly initialised student on the device, its weights drawn from ``seed`` (torch's
        global generator is left as it was).

        :raises TypeError: if a ``student`` callable returns something other than an nn.Module.
        :raises ValueError: the first time, if that module cannot read two of the task's inputs
            or does not answer with (2, C) logits.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if callable(self.student):
                try:
                    model = self.student()
                except Exception as err:
                    raise TypeError(f"student: the student callable failed ({err})") from err
                if not isinstance(model, nn.Module):
                    raise TypeError(
                        f"student callable must return an nn.Module, got {type(model).__name__}"
                    )
            else:
                model = build_student(
                    self.student, data.input_shape, data.num_classes, vocab_size=data.vocab_size
                )
        model = model.to(self.device)
        if callable(self.student) and self not in _MODULES_CHECKED:
            _check_module(model, data)
            _MODULES_CHECKED.add(self)
        return model

    def build_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """The student's optimiser: ``"sgd"`` (with momentum) or ``"adam"``, fused kernels where
        this torch has them, or the ``optimizer`` callable applied to the parameters."""
        if callable(self.optimizer):
            try:
                optimizer = self.optimizer(params)
            except Exception as err:
                raise TypeError(f"optimizer: the optimizer callable failed ({err})") from err
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(
                    "optimizer callable must return a torch.optim.Optimizer, got "
                    f"{type(optimizer).__name__}"
                )
            return optimizer
        params = list(params)
        kwargs: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            cls, kwargs = torch.optim.SGD, {**kwargs, "momentum": self.momentum}
        else:
            cls = torch.optim.Adam
        try:
            # The fused step is one kernel instead of one per parameter: same arithmetic, less
            # dispatch, which matters for the small students this env runs by the thousand.
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            return cls(params, **kwargs)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some arguments changed, every one checked again."""
        values = {name: getattr(self, name) for name in ARGUMENTS}
        return type(self).resolve(self.task, **{**values, **changes})

    # -- checks -------------------------------------------------------------------------------
    def _check(self) -> None:
        """What depends on more than one argument."""
        if self.data is not None and self.data.num_classes != self.spec.num_classes:
            raise ValueError(
                f"data: task {self.task!r} has {self.spec.num_classes} classes, data has "
                f"{self.data.num_classes}"
            )
        if (
            self.precision == "bf16"
            and self.device.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)
        ):
            raise ValueError(f"precision='bf16' asked for, but {self.device} has no bfloat16")
        shape = self.spec.input_shape if self.data is None else self.data.x_train.shape[1:]
        if isinstance(self.student, str):  # a callable's model is only seen at the first reset
            check_student_input(self.student, shape)
        if self.channels_last and len(shape) != 3:
            raise ValueError(
                f"channels_last needs 4-D image inputs (N, C, H, W); task {self.task!r} has "
                f"inputs of shape (N, {', '.join(map(str, shape))})"
            )


#: Settings whose student callable's module has been checked once (see :func:`_check_module`).
_MODULES_CHECKED: weakref.WeakSet[Settings] = weakref.WeakSet()


def _check_module(model: nn.Module, data: DeviceData) -> None:
    """Refuse, naming ``student``, a user's module that cannot read the task's inputs or does not
    return one logit per class: one forward of two training inputs in evaluation mode, without
    gradients, so no parameter, statistic or random stream changes."""
    x, c = data.x_train[:2], data.num_classes
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:
        raise ValueError(
            f"student: the callable's {type(model).__name__} cannot read the task's inputs of "
            f"shape (N, {', '.join(map(str, data.input_shape))}) ({type(err).__name__}: {err})"
        ) from err
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, c):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"student: the callable's {type(model).__name__} returns {got} for 2 inputs; "
            f"expected logits of shape (2, {c}), one per class"
        )


def _checked(values: dict[str, Any], spec: TaskSpec) -> dict[str, Any]:
    """Every argument checked for its type and range, and converted only where nothing is lost
    (an integer where a float is wanted): no float becomes an integer, nothing but a bool is a
    flag. Raises TypeError or ValueError naming the argument and saying what was expected."""
    max_iters = require_integer("max_iters", values["max_iters"])
    steps = values["max_teacher_steps"]
    loss = values["divergence_loss"]
    return {
        "tau": _real("tau", values["tau"], 0.0, 1.0, "(0, 1]", low_open=True),
        "max_iters": max_iters,
        "batch_size": require_integer("batch_size", values["batch_size"]),
        "eval_every": require_integer("eval_every", values["eval_every"]),
        "fold": _choice("fold", values["fold"], FOLDS),
        "mode": _choice("mode", values["mode"], ("paper", "mask")),
        "student": _student(values["student"]),
        "optimizer": _optimizer(values["optimizer"]),
        "lr": _real("lr", values["lr"], 0.0, math.inf, "> 0", low_open=True),
        "momentum": _real("momentum", values["momentum"], 0.0, 1.0, "[0, 1)", high_open=True),
        "weight_decay": _real("weight_decay", values["weight_decay"], 0.0, math.inf, ">= 0"),
        "augment": _flag("augment", values["augment"]),
        "max_teacher_steps": 10 * max_iters
        if steps is None
        else require_integer("max_teacher_steps", steps),
        "candidate_cost": _real("candidate_cost", values["candidate_cost"], 0.0, math.inf, ">= 0"),
        "divergence_loss": DIVERGENCE_LOSS * math.log(spec.num_classes)
        if loss is None
        else _real("divergence_loss", loss, 0.0, math.inf, "> 0", low_open=True, inf=True),
        "device": resolve_device(values["device"]),
        "data_root": _path("data_root", values["data_root"]),
        "download": _flag("download", values["download"]),
        "data": _data(values["data"]),
        "dev_fraction": _real(
            "dev_fraction",
            values["dev_fraction"],
            0.0,
            1.0,
            "(0, 1)",
            low_open=True,
            high_open=True,
        ),
        "report_test": _report_test(values["report_test"]),
        "precision": _choice("precision", values["precision"], PRECISIONS),
        "channels_last": _flag("channels_last", values["channels_last"]),
        "compile": _flag("compile", values["compile"]),
        "extra_features": check_extra_features(values["extra_features"]),
    }


def _reward(values: dict[str, Any], spec: TaskSpec, tau_given: bool) -> dict[str, Any]:
    """``reward``, ``taus`` and ``tau_weights`` checked together, with ``tau``: under
    ``reward="thresholds"`` the episode ends at the highest of ``taus``, so that is ``tau``.

    Nothing is silently ignored: ``taus`` or ``tau_weights`` with the paper's reward, or a ``tau``
    passed with the thresholds that is not their highest, is a ValueError naming it. Missing
    ``taus`` / ``tau_weights`` are the task's ``thresholds`` / ``threshold_weights``.
    """
    reward = _choice("reward", values["reward"], ("paper", "thresholds"))
    taus, weights = values["taus"], values["tau_weights"]
    if reward == "paper":
        for name, value in (("taus", taus), ("tau_weights", weights)):
            if value is not None:
                raise ValueError(
                    f"{name} is used only with reward='thresholds' (got reward='paper', whose "
                    f"one threshold is tau), got {name}={value!r}"
                )
        return {"reward": reward, "taus": None, "tau_weights": None}
    taus = _reals("taus", spec.thresholds if taus is None else taus, 0.0, 1.0, "(0, 1]", True)
    if any(b <= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ValueError(f"taus must be strictly increasing, got {taus}")
    weights = _reals(
        "tau_weights", spec.threshold_weights if weights is None else weights, 0.0, math.inf, ">= 0"
    )
    if len(weights) != len(taus):
        given = "got" if values["tau_weights"] is not None else "the task's default is"
        raise ValueError(
            f"tau_weights must hold one weight per threshold of taus ({len(taus)}), {given} "
            f"{weights}"
        )
    if not any(weights):
        raise ValueError(f"tau_weights must not all be 0 (the reward would be 0), got {weights}")
    if tau_given and float(values["tau"]) != taus[-1]:
        raise ValueError(
            f"tau={values['tau']!r} conflicts with reward='thresholds': the episode ends at the "
            f"highest of taus ({taus[-1]}); leave tau out or make it taus[-1]"
        )
    return {"reward": reward, "taus": taus, "tau_weights": weights, "tau": taus[-1]}


def _reals(
    name: str, value: Any, low: float, high: float, expected: str, low_open: bool = False
) -> tuple[float, ...]:
    """A non-empty tuple, list or 1-D array of finite numbers in a range, as a tuple of floats."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value)
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            f"{name} must be a tuple of numbers {expected}, got {value!r} ({type(value).__name__})"
        )
    if not value:
        raise ValueError(f"{name} must hold at least one number {expected}, got {value!r}")
    return tuple(
        _real(f"{name}[{k}]", v, low, high, expected, low_open=low_open)
        for k, v in enumerate(value)
    )


def require_integer(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer >= {low}, got {value!r} ({type(value).__name__})"
        )
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def _real(
    name: str,
    value: Any,
    low: float,
    high: float,
    expected: str,
    low_open: bool = False,
    high_open: bool = False,
    inf: bool = False,
) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(
            f"{name} must be a number {expected}, got {value!r} ({type(value).__name__})"
        )
    if isinstance(value, np.complexfloating):
        raise TypeError(f"{name} must be a real number {expected}, got {value!r}")
    x = float(value)
    within = (low < x if low_open else low <= x) and (x < high if high_open else x <= high)
    if math.isnan(x) or (math.isinf(x) and not inf) or not within:
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
    return x


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _student(value: Any) -> str | StudentFactory:
    if callable(value):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"student must be a model name (str) or a callable returning an nn.Module, got "
            f"{value!r} ({type(value).__name__})"
        )
    check_student_name(value)
    return value


def _optimizer(value: Any) -> str | OptimizerFactory:
    if callable(value) or (isinstance(value, str) and value in ("sgd", "adam")):
        return value
    raise ValueError(f"optimizer must be 'sgd', 'adam' or a callable, got {value!r}")


def _path(name: str, value: Any) -> str | Path | None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return value
    raise TypeError(f"{name} must be a path (str or os.PathLike) or None, got {value!r}")


def _data(value: Any) -> RawData | None:
    if value is not None and not isinstance(value, RawData):
        raise TypeError(f"data must be an l2t_gym.data.RawData, got {type(value).__name__}")
    return value


def _report_test(value: Any) -> ReportTest:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value in ("end", "eval"):
        return value
    raise ValueError(f"report_test must be False, True, 'end' or 'eval', got {value!r}")


class SettingsAttributes:
    """Mixin for the envs: their settings' values (``tau``, ``max_iters``, ``batch_size``,
    ``eval_every``, ``fold``, ``device``, ...) read as the env's own attributes."""

    settings: Settings

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the object lacks. Guarded so that copying and unpickling, which
        # look attributes up before __init__ ran, see a plain AttributeError.
        if name.startswith("__") or name == "settings" or "settings" not in self.__dict__:
            raise AttributeError(name)
        try:
            return getattr(self.settings, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            ) from None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device.

    :raises ValueError: for another kind of device, or CUDA where torch sees none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
    return dev
