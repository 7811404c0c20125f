"""L2TEnv: a student network's training run as a Gymnasium environment."""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from l2t_gym.data import FOLDS, RawData, load_dataset, make_folds
from l2t_gym.data.augment import random_crop_flip
from l2t_gym.features import build_features, feature_bounds, feature_names
from l2t_gym.models import build_student, check_student_name
from l2t_gym.student import (
    PRECISIONS,
    Mode,
    OptimizerFactory,
    Precision,
    StudentCompiler,
    StudentRun,
    build_optimizer,
)
from l2t_gym.tasks import TASKS


def _autograd_on(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return method(*args, **kwargs)  # the usual case: no context to enter
        with torch.inference_mode(False), torch.enable_grad():
            return method(*args, **kwargs)

    return wrapper


class L2TEnv(gym.Env[np.ndarray, np.ndarray]):
    """
    ## Description

    "Learning to Teach" (Fan, Tian, Qin, Li and Liu, ICLR 2018) as an environment: each episode is
    one student network trained from scratch, and the agent is the *teacher*, which decides for
    every instance of every candidate minibatch whether the student trains on it. The episode ends
    when the student's dev accuracy first reaches ``tau``; the sooner, the higher the reward.

    ## Action Space

    ``MultiBinary(M)``, M = ``batch_size``: 1 keeps the candidate instance, 0 drops it. Bool, int
    or float arrays of 0/1 are accepted (Stable-Baselines3 sends floats); anything else raises.

    ## Observation Space

    ``Box`` of float32, shape (M, d): one row of state features g(s) per candidate instance, in
    the column order of ``feature_names`` (d = 25 for 10 classes): the label one-hot; task extras;
    ``iteration`` (clock / T'), ``avg_train_loss``, ``best_dev_accuracy``; the predicted class
    probabilities; the instance's ``loss`` (-log p_y) and ``margin`` (p_y - max other p).

    ## Rewards

    0.0 on every step but the last. Reaching ``tau`` at clock value c_tau gives -log(c_tau / T'),
    T' = ``max_iters``; running out of clock gives 0 = -log(T'/T'). The clock is the number of
    student iterations i (the paper) plus ``candidate_cost`` times the candidate batches shown.

    ## Starting State

    A freshly initialised student, evaluated once on the dev set, and its first candidate batch.
    Initialisation, data order and augmentation all derive from ``reset(seed=...)``.

    ## Episode End

    Terminated when a dev evaluation (every ``eval_every`` iterations, from iteration 1 on)
    reaches ``tau``, when the clock reaches T', or when the student's loss stops being finite
    (``info["diverged"]``, reward 0). Truncated when the teacher has taken ``max_teacher_steps``
    steps (a teacher that drops nearly everything), reward 0.

    ## Arguments

    ``task`` ("digits", "mnist", "cifar10", "imdb") picks the dataset and the defaults every other
    argument falls back to when None (see ``l2t_gym.tasks.TASKS``):

    * ``tau``, ``max_iters`` (T'), ``batch_size`` (M), ``eval_every``: the episode;
    * ``fold``: "teacher" (teachers learn on this fold) or "student" (fresh students);
      ``split`` is its old name, accepted with a DeprecationWarning;
    * ``mode``: "paper" (kept instances pooled until M form one update; default) or "mask"
      (one update per teacher step on the kept part of the batch);
    * ``student``: a model name (see ``l2t_gym.models``) or a zero-argument callable returning an
      ``nn.Module``; it is built under a seeded RNG at every reset;
    * ``optimizer`` ("sgd", "adam" or a callable taking the parameters), ``lr``, ``momentum``,
      ``weight_decay``; ``augment`` (random crop + flip, on the device);
    * ``max_teacher_steps``: the truncation cap (default 10 x ``max_iters``);
    * ``candidate_cost``: clock units charged per candidate batch shown (default 0, the paper);
    * ``device``: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...;
    * ``data_root``, ``download``: where the dataset lives and whether to fetch it if missing;
      ``data``: your own arrays instead (``l2t_gym.data.RawData.from_arrays``), e.g. MNIST
      images you already have in memory;
    * ``dev_fraction``: share of each fold held out as its dev set;
    * ``precision``: "fp32" (default) or "bf16": the student's forward passes (candidate,
      training, evaluation) under bfloat16 autocast; parameters, optimiser state, losses and
      observations stay float32;
    * ``channels_last``: store the student's convolution weights and its input batches
      channels-last (4-D image inputs only; same results to float tolerance);
    * ``compile``: run the student's forward passes through ``torch.compile``; if compiling
      fails the env warns once (RuntimeWarning) and runs eagerly, with the same results;
    * ``report_test``: also report the official test accuracy (``info["test_accuracy"]``): at the
      end of each episode (True or "end"), or at the start and at every dev evaluation too
      ("eval", for accuracy curves; ``info["test_seconds"]`` then holds the time spent on it, so
      benchmarks can take it off the wall-clock). The reward never reads it.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str = "digits",
        *,
        tau: float | None = None,
        max_iters: int | None = None,
        batch_size: int | None = None,
        eval_every: int | None = None,
        fold: str = "teacher",
        mode: Mode = "paper",
        student: str | Callable[[], nn.Module] | None = None,
        optimizer: str | OptimizerFactory | None = None,
        lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        augment: bool | None = None,
        max_teacher_steps: int | None = None,
        candidate_cost: float = 0.0,
        device: str | torch.device = "auto",
        data_root: str | Path | None = None,
        download: bool = True,
        data: RawData | None = None,
        dev_fraction: float | None = None,
        report_test: bool | Literal["end", "eval"] = False,
        precision: Precision = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        render_mode: str | None = None,
        split: str | None = None,
    ) -> None:
        if split is not None:
            warnings.warn(
                "L2TEnv(split=...) is deprecated: the argument is now called fold",
                DeprecationWarning,
                stacklevel=2,
            )
            fold = split
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
        spec = TASKS[task]
        self.task = task
        self.tau = float(spec.tau if tau is None else tau)
        self.max_iters = int(spec.max_iters if max_iters is None else max_iters)
        self.batch_size = int(spec.batch_size if batch_size is None else batch_size)
        self.eval_every = int(spec.eval_every if eval_every is None else eval_every)
        self.max_teacher_steps = int(
            10 * self.max_iters if max_teacher_steps is None else max_teacher_steps
        )
        self.candidate_cost = float(candidate_cost)
        self.dev_fraction = float(spec.dev_fraction if dev_fraction is None else dev_fraction)
        self.fold, self.mode = fold, mode
        self.student = spec.student if student is None else student
        self.optimizer = spec.optimizer if optimizer is None else optimizer
        self.lr = float(spec.lr if lr is None else lr)
        self.momentum = float(spec.momentum if momentum is None else momentum)
        self.weight_decay = float(spec.weight_decay if weight_decay is None else weight_decay)
        self.augment = bool(spec.augment if augment is None else augment)
        self.data_root, self.download, self.report_test = data_root, bool(download), report_test
        if report_test not in (False, True, "end", "eval"):
            raise ValueError(
                f"report_test must be False, True, 'end' or 'eval', got {report_test!r}"
            )
        if data is not None and not isinstance(data, RawData):
            raise TypeError(f"data must be an l2t_gym.data.RawData, got {type(data).__name__}")
        if data is not None and data.num_classes != spec.num_classes:
            raise ValueError(
                f"task {task!r} has {spec.num_classes} classes, data has {data.num_classes}"
            )
        self.data = data
        self.device = _resolve_device(device)
        self.precision, self.channels_last = precision, bool(channels_last)
        self.compile = bool(compile)
        # One compiler for every student of this env: a failure warns once and sticks.
        self._compiler = StudentCompiler() if compile else None
        self._check_arguments()
        if render_mode is not None:
            raise ValueError(
                f"L2TEnv renders nothing; render_mode must be None, got {render_mode!r}"
            )
        self.render_mode = None
        self._spec = spec

        self.feature_names = feature_names(spec.num_classes, spec.extra_names)
        low, high = feature_bounds(spec.num_classes, len(spec.extra_names))
        m = self.batch_size
        self.observation_space = spaces.Box(
            np.broadcast_to(low, (m, len(low))),
            np.broadcast_to(high, (m, len(high))),
            dtype=np.float32,
        )
        self.action_space = spaces.MultiBinary(m)
        self._run: StudentRun | None = None
        self._done = True

    # -- Gymnasium API ------------------------------------------------------------------------
    # The student trains inside step() and reset(), whatever autograd mode the caller is in (an
    # agent may well collect its rollouts under torch.no_grad() or inference_mode()).
    @_autograd_on
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        data = load_dataset(
            self._spec.dataset, self.data_root, self.download, self.device, arrays=self.data
        )
        if data.extra_names != self._spec.extra_names:
            raise ValueError(
                f"task {self.task!r} expects data features {self._spec.extra_names}, the data "
                f"has {data.extra_names}"
            )
        fold = make_folds(data.y_train_host, self.dev_fraction)[self.fold]
        init_seed, order_seed, aug_seed = (int(s) for s in self.np_random.integers(2**62, size=3))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = self._make_student(data.input_shape, data.num_classes, data.vocab_size)
        model = model.to(self.device)
        optimizer = build_optimizer(
            self.optimizer,
            model.parameters(),
            self.lr,
            self.momentum,
            self.weight_decay,
        )
        self._run = StudentRun(
            model,
            optimizer,
            data,
            fold,
            self.batch_size,
            self.mode,
            order_seed,
            augment=random_crop_flip if self.augment else None,
            augment_seed=aug_seed,
            precision=self.precision,
            channels_last=self.channels_last,
            compile=self._compiler or False,
        )
        self._teacher_step = 0
        self._kept = 0
        self._reached_tau = False
        self._diverged = False
        self._dev_accuracy = self._run.evaluate("dev")
        self._best_dev = self._dev_accuracy
        self._test_accuracy: float | None = None
        self._test_seconds = 0.0
        if self.report_test == "eval":
            self._evaluate_test()
        self._done = False
        obs = self._observe(keep_graph=True)
        return obs, self._info()

    @_autograd_on
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._run is None or self._done:
            raise gym.error.ResetNeeded(
                "call reset() before step(): the episode is over or has not begun"
            )
        keep = self._keep_mask(action)
        run = self._run
        n_kept = int(np.count_nonzero(keep))
        self._teacher_step += 1
        self._kept += n_kept
        trained = run.offer(keep, n_kept)
        reward, terminated = 0.0, False
        if trained and run.iteration % self.eval_every == 0:
            self._dev_accuracy = run.evaluate("dev")
            self._best_dev = max(self._best_dev, self._dev_accuracy)
            if self.report_test == "eval":
                self._evaluate_test()
            if self._dev_accuracy >= self.tau:
                self._reached_tau = terminated = True
                reward = -math.log(self.clock / self.max_iters)
        terminated = terminated or self.clock >= self.max_iters
        obs = self._observe(keep_graph=not terminated)
        terminated = terminated or self._diverged
        truncated = not terminated and self._teacher_step >= self.max_teacher_steps
        self._done = terminated or truncated
        info = self._info()
        if self._done:
            info.update(self._final_info())
        return obs, float(reward), bool(terminated), bool(truncated), info

    # -- public state -------------------------------------------------------------------------
    @property
    def clock(self) -> float:
        """The episode's clock: student iterations + candidate_cost x candidate batches shown."""
        assert self._run is not None
        return self._run.iteration + self.candidate_cost * self._teacher_step

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    # -- internals ----------------------------------------------------------------------------
    def _evaluate_test(self) -> float:
        assert self._run is not None
        start = time.perf_counter()
        self._test_accuracy = self._run.evaluate("test")
        self._test_seconds += time.perf_counter() - start
        return self._test_accuracy

    def _observe(self, keep_graph: bool) -> np.ndarray:
        assert self._run is not None
        idx, logits, avg_loss = self._run.propose(keep_graph=keep_graph)
        data = self._run.data
        extras = None if data.extras_train_host is None else data.extras_train_host[idx]
        if not (math.isfinite(avg_loss) and np.isfinite(logits).all()):
            # The student has diverged. Its features mean nothing, but the last observation must
            # still lie in the observation space: report a uniform guess and the largest loss.
            self._diverged = True
            logits = np.zeros_like(logits)
            avg_loss = float(np.finfo(np.float32).max)
        progress = min(self.clock / self.max_iters, 1.0)
        return build_features(
            logits, data.y_train_host[idx], progress, avg_loss, self._best_dev, extras
        )

    def _info(self) -> dict[str, Any]:
        run = self._run
        assert run is not None
        return {
            "iteration": run.iteration,
            "teacher_step": self._teacher_step,
            "clock": self.clock,
            "effective_instances": run.effective_instances,
            "instances_seen": self._teacher_step * self.batch_size,
            "kept_instances": self._kept,
            "pool_size": run.pool_size,
            "dev_accuracy": self._dev_accuracy,
            "best_dev_accuracy": self._best_dev,
            "reached_tau": self._reached_tau,
            "diverged": self._diverged,
            **self._test_info(),
        }

    def _test_info(self) -> dict[str, Any]:
        if self.report_test != "eval":
            return {}
        return {"test_accuracy": self._test_accuracy, "test_seconds": self._test_seconds}

    def _final_info(self) -> dict[str, Any]:
        run = self._run
        assert run is not None
        last_iteration = run.dev_history[-1][0] if run.dev_history else -1
        final = self._dev_accuracy if last_iteration == run.iteration else run.evaluate("dev")
        info: dict[str, Any] = {"final_dev_accuracy": final}
        if self.report_test == "eval" and last_iteration != run.iteration:
            # The final dev evaluation was off the eval grid: test the same student.
            self._evaluate_test()
            info.update(self._test_info())
        elif self.report_test and self.report_test != "eval":
            info["test_accuracy"] = run.evaluate("test")
        return info

    def _keep_mask(self, action: Any) -> np.ndarray:
        expected = f"a keep mask of shape ({self.batch_size},) with values 0/1 (bool, int or float)"
        if action is None or isinstance(action, (str, bytes)):
            raise TypeError(f"expected {expected}, got {type(action).__name__}")
        try:
            a = np.asarray(action)
        except Exception as err:  # noqa: BLE001 - whatever np.asarray rejects is a bad action
            raise TypeError(f"expected {expected}, got {type(action).__name__}") from err
        if a.dtype == np.bool_ and a.shape == (self.batch_size,):
            return a
        if a.dtype.kind not in "biuf":
            raise TypeError(f"expected {expected}, got an array of dtype {a.dtype}")
        if a.shape != (self.batch_size,):
            raise ValueError(f"expected {expected}, got shape {a.shape}")
        valid = (a == 0) | (a == 1)
        if not valid.all():
            raise ValueError(f"expected {expected}, got values {np.unique(a[~valid])[:5]}")
        return a != 0

    def _make_student(
        self, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
    ) -> nn.Module:
        if callable(self.student):
            model = self.student()
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"student callable must return an nn.Module, got {type(model).__name__}"
                )
            return model
        return build_student(self.student, input_shape, num_classes, vocab_size=vocab_size)

    def _check_arguments(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must lie in (0, 1], got {self.tau}")
        for name in ("max_iters", "batch_size", "eval_every", "max_teacher_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not (math.isfinite(self.candidate_cost) and self.candidate_cost >= 0):
            raise ValueError(f"candidate_cost must be >= 0, got {self.candidate_cost}")
        if self.fold not in FOLDS:
            raise ValueError(f"fold must be one of {FOLDS}, got {self.fold!r}")
        if self.mode not in ("paper", "mask"):
            raise ValueError(f"mode must be 'paper' or 'mask', got {self.mode!r}")
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must lie in (0, 1), got {self.dev_fraction}")
        if not (callable(self.optimizer) or self.optimizer in ("sgd", "adam")):
            raise ValueError(
                f"optimizer must be 'sgd', 'adam' or a callable, got {self.optimizer!r}"
            )
        if not callable(self.student):
            check_student_name(self.student)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if (
            self.precision == "bf16"
            and self.device.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)
        ):
            raise ValueError(f"precision='bf16' asked for, but {self.device} has no bfloat16")
        shape = TASKS[self.task].input_shape if self.data is None else self.data.x_train.shape[1:]
        if self.channels_last and len(shape) != 3:
            raise ValueError(
                f"channels_last needs 4-D image inputs (N, C, H, W); task {self.task!r} has "
                f"inputs of shape (N, {', '.join(map(str, shape))})"
            )


def _resolve_device(device: str | torch.device) -> torch.device:
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
