"""Students as plain modules: one ``nn.Module`` and one ``torch.optim`` optimiser each.

This is how :class:`l2t_gym.L2TEnv` holds its student (N = 1): any architecture, any optimiser
(SGD, Adam or the user's own), and the speed options that need a real module (``channels_last``,
``torch.compile``, bf16 autocast for every layer type).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from l2t_gym.settings import Settings
from l2t_gym.student.base import BatchNormStats, autocast


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


class ModuleStudents:
    """N students of one architecture as N modules, each with its own optimiser.

    ``precision="bf16"`` runs every forward under bfloat16 autocast; ``channels_last`` stores the
    convolution weights and the 4-D inputs channels-last; ``compile`` runs the forward passes
    through ``torch.compile`` (one :class:`StudentCompiler` per env), eagerly if that fails.

    :param models: the N modules (their weights are replaced by :meth:`load` before use).
    :param settings: the env's settings (optimiser, precision, memory format, compile).
    :param compiler: the env's compiler, when ``settings.compile``.
    """

    eval_chunk = 1024

    def __init__(
        self, models: list[nn.Module], settings: Settings, compiler: StudentCompiler | None
    ) -> None:
        self.settings = settings
        self.n = len(models)
        self.device = settings.device
        self.precision = settings.precision
        self.channels_last = settings.channels_last
        if self.channels_last:
            # Before the BatchNorm buffers are gathered below; parameters are converted in
            # place (param.data), so an optimiser built on them later holds them as they are.
            for model in models:
                model.to(memory_format=torch.channels_last)
        self.modules = models
        self.batchnorm = BatchNormStats.of_modules(models)
        self.optimizers = [settings.build_optimizer(m.parameters()) for m in models]
        self._parameters = [list(m.parameters()) for m in models]
        # Setting the flag directly is what model.train()/eval() do, minus a recursive walk that
        # costs as much as a small student's dev evaluation.
        self._module_dicts = [module.__dict__ for model in models for module in model.modules()]
        self._compiler = compiler
        self._compiled = [compiler.compile(m) if compiler else None for m in models]
        for model in models:
            model.train()

    def __getstate__(self) -> dict:
        # Compiled forwards do not copy; the copy compiles its own (if compiling works here).
        state = self.__dict__.copy()
        state["_compiled"] = [None] * self.n
        state.pop("_module_dicts")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # The modules' own attribute dicts: a copied list would hold copies of them, and
        # switching those would not switch the modules.
        self._module_dicts = [
            module.__dict__ for model in self.modules for module in model.modules()
        ]
        compiler = self._compiler
        self._compiled = [compiler.compile(m) if compiler else None for m in self.modules]

    def load(self, i: int, model: nn.Module) -> None:
        with torch.no_grad():
            # Into the slot's own tensors: the BatchNorm buffers are views into the shared block,
            # and a compiled forward stays valid for the same module.
            self.modules[i].load_state_dict(model.state_dict())
        self.optimizers[i] = self.settings.build_optimizer(self.modules[i].parameters())

    def forward(
        self, x: list[torch.Tensor], rows: np.ndarray | None = None, saved: list | None = None
    ) -> list[torch.Tensor | None]:
        # A list, not a stacked tensor: stacking (or, for one student, a view) would put one more
        # node into each graph the backward walks, ~10 us apiece for a small student on a CPU.
        if self.n == 1:
            return [self._forward(0, self.layout(x[0]), saved)]
        return [
            self._forward(i, self.layout(x[i]), saved) if rows is None or rows[i] else None
            for i in range(self.n)
        ]

    def step(self, logits: list, y: list[torch.Tensor], who: np.ndarray) -> torch.Tensor:
        losses = []
        for i in range(self.n):
            if not who[i]:
                losses.append(torch.zeros((), device=self.device))
                continue
            # In float32 whatever the forward's precision: bf16 logits would round the loss, and
            # the loss sum that becomes a feature.
            loss = F.cross_entropy(logits[i].float(), y[i])
            # What optimizer.zero_grad(set_to_none=True) does for the parameters this loss
            # reaches, without its profiler and hook machinery (~5 us a step).
            for p in self._parameters[i]:
                p.grad = None
            loss.backward()
            self.optimizers[i].step()
            losses.append(loss.detach())
        return losses[0].view(1) if self.n == 1 else torch.stack(losses)

    def count_correct(
        self, x: torch.Tensor, y: torch.Tensor, rows: np.ndarray | None
    ) -> list[torch.Tensor]:
        x = self.layout(x)
        picked = range(self.n) if rows is None else np.flatnonzero(rows).tolist()
        return [(self._forward(i, x).argmax(1) == y).sum() for i in picked]

    def set_training(self, flag: bool) -> None:
        # ``training`` is a plain instance attribute; nn.Module.__setattr__ would first look for
        # parameters, buffers and submodules of that name, ~5 us a module, and a Digits student
        # is evaluated after every iteration.
        for attributes in self._module_dicts:
            attributes["training"] = flag

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        # Per batch rather than once for the whole training set: the device data are shared by
        # every env of the task in the process, and a copy of M images is small next to the
        # forward pass it feeds.
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, i: int, x: torch.Tensor, saved: list | None = None) -> torch.Tensor:
        """Student i's forward pass, in the run's precision, compiled if asked and it works.

        ``saved``: the BatchNorm statistics as they were before this call, if the caller has
        them; a compiled call that fails part way may have updated them, and the eager retry
        must start from where the failed call did.
        """
        model, compiled = self.modules[i], self._compiled[i]
        if compiled is None and self.precision == "fp32":
            return model(x)  # the default path, without entering a null context
        with autocast(self.device, self.precision):
            if compiled is None:
                return model(x)
            if saved is None and model.training:  # eval-mode BatchNorm updates nothing
                saved = self.batchnorm.save()
            try:
                return compiled(x)
            except Exception as err:  # noqa: BLE001 - any failure of the compiled path
                assert self._compiler is not None
                self._compiler.give_up(err)
                self._compiled = [None] * self.n
                if saved:
                    self.batchnorm.restore(saved)
                return model(x)
