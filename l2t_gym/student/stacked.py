"""Students stacked: N students' parameters as one tensor per parameter, run with ``torch.func``.

This is how :class:`l2t_gym.vector.L2TVectorEnv` holds its students: every forward pass is one
``torch.vmap`` of ``functional_call`` over the students (or, for the package's MLPs, a few
batched matmuls), so N small students cost little more than one. The one thing that must differ
from :class:`~l2t_gym.student.modules.ModuleStudents` lives here: a step in which only some
students train. torch's functional SGD (``torch.optim.sgd.sgd``) updates the stacked parameters
(its arithmetic is elementwise, so each student's rows get exactly the update they would get
alone), on the rows of the students that train only. SGD only: Adam's step count is per
tensor, not per student.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state
from torch.optim.sgd import sgd

from l2t_gym.models import MLP
from l2t_gym.settings import Settings
from l2t_gym.student.base import BatchNormStats, autocast, to_device_async


class StackedStudents:
    """N students of one architecture with their parameters, buffers and SGD momentum stacked on
    a leading student dimension.

    :param models: N modules of one architecture (their weights are replaced by :meth:`load`).
    :param settings: the env's settings: ``optimizer="sgd"``, its rate, momentum and weight decay,
        and the precision (bf16 for the package's MLPs only: ``torch.vmap`` does not apply
        autocast to convolutions).
    """

    eval_chunk = 512

    def __init__(self, models: list[nn.Module], settings: Settings) -> None:
        self.n = len(models)
        self.device = settings.device
        self.precision = settings.precision
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.batchnorm = BatchNormStats.of_stacked(self.buffers)
        #: SGD's momentum buffers, stacked like the parameters (name -> (N, ...)).
        self.momentum = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self._sgd = {
            "lr": settings.lr,
            "momentum": settings.momentum,
            "weight_decay": settings.weight_decay,
            "dampening": 0.0,
            "nesterov": False,
            "maximize": False,
        }
        # The stateless copy that functional_call runs: its own tensors are never used.
        self._base = copy.deepcopy(models[0]).to("meta")
        self._base_modules = list(self._base.modules())
        # The package's MLP students have a direct batched forward (same arithmetic, no vmap).
        self._mlp = models[0] if type(models[0]) is MLP else None
        #: Set by a training forward of some students only (MLPs): (who, their rows on the
        #: device, their parameters gathered as leaves), which the next :meth:`step` updates.
        self._some: tuple[np.ndarray, torch.Tensor, dict[str, torch.Tensor]] | None = None
        self._vectorise()

    def _vectorise(self) -> None:
        # Built once: students (params, buffers) batched, inputs batched or shared (dev sets).
        self._vmapped = torch.vmap(self._one)
        self._vmapped_shared_x = torch.vmap(self._one, in_dims=(0, 0, None))

    def __getstate__(self) -> dict:
        # vmap's wrappers hold a bound method and do not pickle: rebuilt on arrival.
        state = self.__dict__.copy()
        del state["_vmapped"], state["_vmapped_shared_x"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._vectorise()

    def load(self, i: int, model: nn.Module) -> None:
        with torch.no_grad():
            for k, v in model.named_parameters():
                self.params[k][i] = v
                self.momentum[k][i] = 0
            for k, v in model.named_buffers():
                self.buffers[k][i] = v

    def forward(
        self, x: torch.Tensor, rows: np.ndarray | None = None, saved: list | None = None
    ) -> torch.Tensor:
        """Training-mode logits (N, B, C); for MLPs with ``rows`` (bool (N,)) naming only some
        students, those students' logits alone, (R, B, C), from their parameters gathered for
        the :meth:`step` that must follow (at a keep ratio of 0.1 one or two of eight students
        train at a step, and computing all of them cost the most of MNIST's vector step)."""
        self._some = None
        with autocast(self.device, self.precision):
            if self._mlp is None:
                return self._vmapped(self.params, self.buffers, x)
            if rows is None or rows.all():
                return self._mlp.stacked_forward(self.params, x)
            idx = to_device_async(np.flatnonzero(rows), self.device)
            some = {
                k: v.index_select(0, idx).detach().requires_grad_(True)
                for k, v in self.params.items()
            }
            self._some = (rows.copy(), idx, some)
            return self._mlp.stacked_forward(some, x.index_select(0, idx))

    def step(self, logits: torch.Tensor, y: torch.Tensor, who: np.ndarray) -> torch.Tensor:
        if self._some is not None:
            return self._step_some(logits, y, who)
        losses = _mean_losses(logits, y)
        params = list(self.params.values())
        everyone = bool(who.all())  # the common case (keep-all) needs no masking
        mask = None if everyone else to_device_async(who, self.device)
        total = losses.sum() if mask is None else (losses * mask).sum()
        grads = list(torch.autograd.grad(total, params))
        with torch.no_grad():
            if mask is None:
                self._sgd_step(params, grads, list(self.momentum.values()))
            else:
                self._sgd_step_some(grads, who)
        return losses.detach() if mask is None else torch.where(mask, losses.detach(), 0.0)

    def _step_some(self, logits: torch.Tensor, y: torch.Tensor, who: np.ndarray) -> torch.Tensor:
        """:meth:`step` after a forward of some students only: their gathered parameters and
        momentum are stepped and written back into their rows."""
        rows, idx, some = self._some
        self._some = None
        if not np.array_equal(rows, who):
            raise RuntimeError(f"step for students {who} after a forward of students {rows}")
        losses = _mean_losses(logits, y.index_select(0, idx))
        params = list(some.values())
        grads = list(torch.autograd.grad(losses.sum(), params))
        with torch.no_grad():
            self._step_rows(idx, params, grads)
        return torch.zeros(self.n, device=losses.device).index_copy_(0, idx, losses.detach())

    def _sgd_step(self, params: list, grads: list, momenta: list) -> None:
        """torch's own SGD update (``torch.optim.sgd.sgd``, multi-tensor kernels) on the stacked
        tensors: elementwise, so every student's rows get the update they would get alone."""
        # Without momentum the buffers are not used (and the update reads the gradients).
        buffers = momenta if self._sgd["momentum"] else [None] * len(params)
        sgd(params, grads, buffers, foreach=True, **self._sgd)

    def _sgd_step_some(self, grads: list, who: np.ndarray) -> None:
        """The SGD step for the students in ``who`` (bool (N,)) only: their rows are gathered,
        stepped and written back, so the others' parameters and momentum are never touched and
        the work is in proportion to the students that train (at a keep ratio of 0.1 most steps
        train one or two students of eight; stepping all and putting the rest back cost MNIST's
        vector env three times the single env's time per run)."""
        rows = to_device_async(np.flatnonzero(who), self.device)
        some = [p.index_select(0, rows) for p in self.params.values()]
        self._step_rows(rows, some, [g.index_select(0, rows) for g in grads])

    def _step_rows(self, rows: torch.Tensor, params: list, grads: list) -> None:
        """SGD on the students ``rows`` (indices on the device), given their parameters and
        gradients gathered from the stacked tensors; written back with their momentum."""
        momenta = [b.index_select(0, rows) for b in self.momentum.values()]
        self._sgd_step(params, grads, momenta)
        for whole, new, b, new_b in zip(
            self.params.values(), params, self.momentum.values(), momenta, strict=True
        ):
            whole.index_copy_(0, rows, new)
            if self._sgd["momentum"]:
                b.index_copy_(0, rows, new_b)

    def count_correct(
        self, x: torch.Tensor, y: torch.Tensor, rows: np.ndarray | None
    ) -> torch.Tensor:
        params, buffers = self.params, self.buffers
        one = None if rows is None or rows.sum() != 1 else int(np.flatnonzero(rows)[0])
        if one is not None:  # a student starting its episode: run it alone
            params = {k: v[one : one + 1] for k, v in params.items()}
            buffers = {k: v[one : one + 1] for k, v in buffers.items()}
        with autocast(self.device, self.precision):
            if self._mlp is not None:
                logits = self._mlp.stacked_forward(params, x)
            else:
                logits = self._vmapped_shared_x(params, buffers, x)
        if one is None and rows is not None:
            logits = logits[torch.from_numpy(np.flatnonzero(rows)).to(logits.device)]
        return (logits.argmax(-1) == y).sum(-1)

    def set_training(self, flag: bool) -> None:
        for module in self._base_modules:
            module.training = flag

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _one(self, params, buffers, x):
        return functional_call(self._base, (params, buffers), (x,))


def _mean_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each student's mean cross-entropy, (S,), from logits (S, B, C) and labels (S, B); in
    float32 whatever the forward's precision, as ModuleStudents computes it."""
    s, b = y.shape
    losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
    return losses.view(s, b).mean(1)
