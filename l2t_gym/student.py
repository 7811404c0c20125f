"""One student's training run: model, optimiser, data order, pool, iteration count, dev eval.

The env drives a :class:`StudentRun` through two calls per teacher step: :meth:`propose` draws the
next candidate minibatch and runs the student on it once, and :meth:`offer` hands over the
teacher's keep mask. Everything random in a run comes from the seeds it is built with.

A teacher step moves one thing between host and device each way: the candidate indices up
(asynchronously, from pinned memory) and the packed logits and loss sum down, the step's only
synchronisation. A dev evaluation, every ``eval_every`` iterations, adds one more: its accuracy
decides the episode's end.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from l2t_gym.data import DeviceData, Fold

Mode = Literal["paper", "mask"]
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def build_optimizer(
    spec: str | OptimizerFactory,
    params: Iterable[nn.Parameter],
    lr: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """``"sgd"`` (with momentum) or ``"adam"``, fused kernels where this torch has them, or any
    callable mapping parameters to an optimiser."""
    if callable(spec):
        return spec(params)
    params = list(params)
    kwargs: dict = {"lr": lr, "weight_decay": weight_decay}
    if spec == "sgd":
        cls, kwargs = torch.optim.SGD, {**kwargs, "momentum": momentum}
    elif spec == "adam":
        cls = torch.optim.Adam
    else:
        raise ValueError(f"optimizer must be 'sgd', 'adam' or a callable, got {spec!r}")
    try:
        # The fused step is one kernel instead of one per parameter: same arithmetic, less
        # dispatch, which matters for the small students this env runs by the thousand.
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kwargs)


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The context a student's forward passes run in: bfloat16 autocast for ``"bf16"`` (matmuls
    and convolutions in bf16; parameters, optimiser state and losses stay float32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device_async(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device`` without synchronising: a copy from pageable memory may wait for
    the stream, one from pinned memory never does (the pinned block is kept until it is done)."""
    t = torch.from_numpy(array)
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


class StudentCompiler:
    """``torch.compile`` for the students of one env, with one way out.

    The first time compiling, or running a compiled forward, raises (no C compiler, an operator
    the compiler cannot handle, ...), this and every later student of the env run eagerly: the
    same module, so the same results, and one ``RuntimeWarning`` saying why.
    """

    def __init__(self) -> None:
        self.failure: str | None = None

    def compile(self, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor] | None:
        """The compiled ``fn`` (compilation itself happens at its first call), or None if
        compiling has failed before."""
        if self.failure is not None:
            return None
        try:
            return torch.compile(fn)
        except Exception as err:  # noqa: BLE001 - whatever the compiler raises, eager works
            self.give_up(err)
            return None

    def give_up(self, err: BaseException) -> None:
        if self.failure is not None:
            return
        lines = str(err).strip().splitlines()
        self.failure = f"{type(err).__name__}: {lines[0][:300] if lines else ''}"
        warnings.warn(
            f"torch.compile failed ({self.failure}); the student runs eagerly from now on, "
            "with the same results",
            RuntimeWarning,
            stacklevel=2,
        )


class StudentRun:
    """A student network trained on the instances a teacher keeps.

    In ``"paper"`` mode kept instances join a FIFO pool and the student takes one optimiser step
    whenever the pool holds ``batch_size`` of them; in ``"mask"`` mode it steps at once on the kept
    part of each candidate batch (no step if nothing is kept).

    The candidate forward pass is computed in training mode, as the student would see the batch if
    it trained on it, but never changes the student: BatchNorm running statistics are put back
    at once, and the forward's update is applied only if the batch is trained on. When the whole
    candidate batch becomes the training batch (always so for a keep-all teacher) its autograd
    graph is reused, so judging a batch and training on it cost one forward pass, like a plain
    training loop.

    Speed options, all off by default: ``precision="bf16"`` runs every forward pass under
    bfloat16 autocast (parameters, optimiser state and the loss stay float32, and so do the
    logits handed to the host); ``channels_last`` stores the model's convolution weights and its
    4-D image inputs channels-last; ``compile`` (True, or a :class:`StudentCompiler` shared by an
    env's students) runs the forward passes through ``torch.compile``, eagerly if that fails.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: DeviceData,
        fold: Fold,
        batch_size: int,
        mode: Mode,
        order_seed: int,
        augment: Augment | None = None,
        augment_seed: int = 0,
        precision: Precision = "fp32",
        channels_last: bool = False,
        compile: bool | StudentCompiler = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if channels_last and data.x_train.dim() != 4:
            raise ValueError(
                "channels_last needs 4-D image inputs (N, C, H, W), got inputs of shape "
                f"{tuple(data.x_train.shape)}"
            )
        if channels_last:
            # Before the BatchNorm buffers are flattened below; parameters are converted in
            # place (param.data), so an optimiser already built on them still holds them.
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.fold = fold
        self.batch_size = batch_size
        self.mode = mode
        self.device = data.x_train.device
        self.precision = precision
        self.channels_last = bool(channels_last)
        self._augment = augment
        self._aug_gen: torch.Generator | None = None
        if augment is not None:
            self._aug_gen = torch.Generator(device=self.device)
            self._aug_gen.manual_seed(augment_seed)
        self._order_rng = np.random.default_rng(order_seed)
        self._queue = np.empty(0, dtype=np.int64)
        self._pos = 0
        self._pool = np.empty(0, dtype=np.int64)
        self._bn_buffers = _flatten_batchnorm_buffers(model)
        dev = torch.from_numpy(fold.dev).to(self.device)
        self._dev_x, self._dev_y = self._layout(data.x_train[dev]), data.y_train[dev]
        self._loss_sum = torch.zeros((), device=self.device)
        # Setting the flag directly is what model.train()/eval() do, minus a recursive walk that
        # costs as much as a small student's dev evaluation.
        self._module_dicts = [module.__dict__ for module in model.modules()]
        self._candidate: _Candidate | None = None
        if compile is True:
            compile = StudentCompiler()
        self._compiler = compile or None
        self._compiled = None if self._compiler is None else self._compiler.compile(model)
        self.iteration = 0
        self.effective_instances = 0
        self.dev_history: list[tuple[int, float]] = []
        model.train()

    # -- the teacher's view -------------------------------------------------------------------
    def propose(self, keep_graph: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
        """Draw the next candidate batch and run the student on it.

        Returns the candidates' indices into the training set and their logits on the host, and
        the average training loss so far, all in one device-to-host transfer.
        """
        idx = self._next_indices()
        x, y = self._batch(idx)
        # A graph is only worth keeping when the whole batch could be trained on as it is.
        keep_graph = keep_graph and (self.mode == "mask" or len(self._pool) == 0)
        before = [flat.clone() for flat in self._bn_buffers]
        with torch.set_grad_enabled(keep_graph):
            logits = self._forward(x, before)
        # The forward updated the BatchNorm statistics as a training step would: keep that update
        # aside for the case the batch is trained on, and put the student back as it was.
        after = [flat.clone() for flat in self._bn_buffers] if keep_graph else []
        self._restore(before)
        self._candidate = _Candidate(idx, y, logits if keep_graph else None, after)
        host_logits, loss_sum = self._to_host(logits.detach())
        return idx, host_logits, self._average_loss(loss_sum)

    def offer(self, keep: np.ndarray, n_kept: int | None = None) -> bool:
        """Hand over the teacher's keep mask (``n_kept`` of its entries true, if the caller has
        counted them) for the last proposed batch; True if the student took an optimiser step."""
        cand = self._candidate
        if cand is None:
            raise RuntimeError("offer() needs a batch from propose() first")
        self._candidate = None
        # propose() kept a graph only if this batch, whole, would be the next training batch.
        if n_kept is None:
            n_kept = int(np.count_nonzero(keep))
        if cand.logits is not None and n_kept == len(keep):
            self._restore(cand.bn_after)
            self._train(cand.logits, cand.y)
            return True
        kept = cand.idx[keep]
        if self.mode == "mask":
            if n_kept == 0:
                return False
            batch = kept
        else:
            self._pool = np.concatenate([self._pool, kept]) if len(self._pool) else kept
            if len(self._pool) < self.batch_size:
                return False
            batch, self._pool = self._pool[: self.batch_size], self._pool[self.batch_size :]
        x, y = self._batch(batch)
        self._train(self._forward(x), y)
        return True

    # -- measurements -------------------------------------------------------------------------
    def evaluate(self, split: Literal["dev", "test"] = "dev", chunk: int = 1024) -> float:
        """Accuracy on the fold's dev set (recorded in ``dev_history``) or the official test set."""
        x, y = (
            (self._dev_x, self._dev_y) if split == "dev" else (self.data.x_test, self.data.y_test)
        )
        self._set_training(False)
        with torch.inference_mode():
            correct = sum(
                (self._forward(self._layout(x[s : s + chunk])).argmax(1) == y[s : s + chunk]).sum()
                for s in range(0, len(y), chunk)
            )
        self._set_training(True)
        # The step's one synchronisation beyond the observation: the episode's end depends on it.
        accuracy = float(correct) / len(y)
        if split == "dev":
            self.dev_history.append((self.iteration, accuracy))
        return accuracy

    @property
    def pool_size(self) -> int:
        return len(self._pool)

    # -- internals ----------------------------------------------------------------------------
    def _next_indices(self) -> np.ndarray:
        # One continuous stream of shuffled epochs: every instance is offered once per pass.
        while len(self._queue) - self._pos < self.batch_size:
            fresh = self._order_rng.permutation(self.fold.train)
            self._queue = np.concatenate([self._queue[self._pos :], fresh])
            self._pos = 0
        idx = self._queue[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx_t = to_device_async(idx, self.device)
        x = self.data.x_train[idx_t]
        if self._augment is not None:
            x = self._augment(x, self._aug_gen)
        return self._layout(x), self.data.y_train[idx_t]

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        # Per batch rather than once for the whole training set: the device data are shared by
        # every env of the task in the process, and a copy of M images is small next to the
        # forward pass it feeds. (The dev set is converted once, when the run gathers it.)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x: torch.Tensor, saved: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The student's forward pass, in the run's precision, compiled if asked and it works.

        ``saved``: the BatchNorm statistics as they were before this call, if the caller has
        them; a compiled call that fails part way may have updated them, and the eager retry
        must start from where the failed call did.
        """
        if self._compiled is None and self.precision == "fp32":
            return self.model(x)  # the default path, without entering a null context
        with autocast(self.device, self.precision):
            if self._compiled is None:
                return self.model(x)
            if saved is None and self.model.training:  # eval-mode BatchNorm updates nothing
                saved = [flat.clone() for flat in self._bn_buffers]
            try:
                return self._compiled(x)
            except Exception as err:  # noqa: BLE001 - any failure of the compiled path
                assert self._compiler is not None
                self._compiler.give_up(err)
                self._compiled = None
                self._restore(saved or [])
                return self.model(x)

    def _train(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        # In float32 whatever the forward's precision: bf16 logits would round the loss, and
        # the loss sum that becomes a feature.
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._loss_sum += loss.detach()
        self.iteration += 1
        self.effective_instances += len(y)

    def _set_training(self, flag: bool) -> None:
        # ``training`` is a plain instance attribute; nn.Module.__setattr__ would first look for
        # parameters, buffers and submodules of that name, ~5 us a module, and a Digits student
        # is evaluated after every iteration.
        for attributes in self._module_dicts:
            attributes["training"] = flag

    def _restore(self, saved: list[torch.Tensor]) -> None:
        # Through .data: the kept graph's BatchNorm nodes hold the running statistics, and a
        # plain in-place write would bump their version and fail the backward. Training-mode
        # BatchNorm's backward never reads them, so the write cannot change a gradient.
        for flat, values in zip(self._bn_buffers, saved, strict=False):
            flat.data.copy_(values)

    def _to_host(self, logits: torch.Tensor) -> tuple[np.ndarray, float]:
        if self.device.type == "cpu":
            return logits.float().numpy(), float(self._loss_sum)
        # One transfer, hence one synchronisation, per teacher step.
        packed = torch.cat([logits.float().flatten(), self._loss_sum.view(1)]).cpu().numpy()
        return packed[:-1].reshape(logits.shape), float(packed[-1])

    def _average_loss(self, loss_sum: float) -> float:
        if self.iteration == 0:
            return math.log(self.data.num_classes)
        return loss_sum / self.iteration


def _flatten_batchnorm_buffers(model: nn.Module) -> list[torch.Tensor]:
    """Move every BatchNorm buffer into one flat tensor per dtype, the modules keeping views.

    Restoring the running statistics after a candidate forward is then one copy per dtype rather
    than one per buffer: ResNet-32 has 93 buffers, and a kernel launch each would cost more than
    the rest of the env's work on a GPU. Returns the flat tensors.
    """
    owners = [
        (mod, name, buf)
        for mod in model.modules()
        if isinstance(mod, nn.modules.batchnorm._BatchNorm)
        for name, buf in mod.named_buffers(recurse=False)
        if buf is not None
    ]
    flats = []
    for dtype in sorted({buf.dtype for _, _, buf in owners}, key=str):
        group = [(mod, name, buf) for mod, name, buf in owners if buf.dtype == dtype]
        flat = torch.cat([buf.reshape(-1) for _, _, buf in group])
        offset = 0
        for mod, name, buf in group:
            mod._buffers[name] = flat[offset : offset + buf.numel()].view_as(buf)
            offset += buf.numel()
        flats.append(flat)
    return flats


class _Candidate:
    """The last proposed batch: indices (host), labels (device), and, if its graph was kept, the
    logits and the BatchNorm statistics a training step on it would leave."""

    __slots__ = ("idx", "y", "logits", "bn_after")

    def __init__(self, idx, y, logits, bn_after):
        self.idx, self.y, self.logits, self.bn_after = idx, y, logits, bn_after
