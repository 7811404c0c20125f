"""What both ways of holding N students share: the interface the run drives them through,
their BatchNorm running statistics as one saveable block, autocast and asynchronous uploads."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import nn

from l2t_gym.settings import Precision

#: Students' logits, indexable by student: a stacked (N, B, C) tensor or a list of N (B, C).
Logits = torch.Tensor | list
#: Students' inputs or labels, indexable by student: stacked (N, B, ...) or a list of N (B, ...).
Batch = torch.Tensor | list


class Students(Protocol):
    """N students of one architecture, as :class:`~l2t_gym.student.run.StudentRun` drives them.

    Two implementations: :class:`~l2t_gym.student.modules.ModuleStudents` (one ``nn.Module``
    and one ``torch.optim`` optimiser each; the single env) and
    :class:`~l2t_gym.student.stacked.StackedStudents` (parameters stacked and run through
    ``torch.func``; the vector env). Everything else about a run is written once, in the run.
    """

    n: int
    device: torch.device
    batchnorm: BatchNormStats
    #: Instances per forward pass in :meth:`count_correct` calls.
    eval_chunk: int

    def load(self, i: int, model: nn.Module) -> None:
        """Make slot ``i`` the freshly initialised ``model``, with fresh optimiser state."""

    def forward(
        self, x: Batch, rows: np.ndarray | None = None, saved: list | None = None
    ) -> Logits:
        """Training-mode logits of inputs x (N, B, ...), each student on its own row: (N, B, C),
        as a tensor or a list of N (B, C) tensors. BatchNorm statistics are updated as a training
        step would. Only ``rows`` (bool (N,)) need be computed (the others may be None);
        ``saved`` holds the statistics as they were before the call."""

    def step(self, logits: Logits, y: Batch, who: np.ndarray) -> torch.Tensor:
        """One optimiser step for each student in ``who`` (bool (N,)) on the mean cross-entropy
        of its row of ``logits`` against ``y`` (N, B); the others stay as they were.
        Returns the losses (N,), detached, 0 where a student did not step."""

    def count_correct(
        self, x: torch.Tensor, y: torch.Tensor, rows: np.ndarray | None
    ) -> torch.Tensor | list[torch.Tensor]:
        """How many of the shared inputs x (B, ...) each of the R students in ``rows`` (bool
        (N,); all when None) classifies as ``y`` (B,) says, in evaluation mode: R counts, as one
        tensor or a list of 0-d tensors."""

    def set_training(self, flag: bool) -> None:
        """Switch every student between training and evaluation mode."""

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """One student's input batch in the memory format its forward pass wants."""


class BatchNormStats:
    """Every BatchNorm running statistic (and any other buffer) of N students, gathered into one
    flat tensor per dtype; the modules, or the stacked buffers, keep views into it.

    Putting a student back as it was after a candidate forward is then one copy per dtype rather
    than one per buffer: ResNet-32 has 93 buffers, and a kernel launch each would cost more than
    the rest of the env's work on a GPU. Each view stays contiguous, as the forward passes (vmap's
    BatchNorm rule among them) need to update the statistics in place.

    :param flats: one 1-D tensor per dtype.
    :param owners: for each flat, the student (0 .. N-1) each of its elements belongs to.
    """

    def __init__(self, flats: list[torch.Tensor], owners: list[torch.Tensor]) -> None:
        self.flats, self.owners = flats, owners

    @classmethod
    def of_modules(cls, models: Sequence[nn.Module]) -> BatchNormStats:
        """The BatchNorm buffers of N models of one architecture, model by model."""
        per_model = [
            [
                (mod, name, buf)
                for mod in model.modules()
                if isinstance(mod, nn.modules.batchnorm._BatchNorm)
                for name, buf in mod.named_buffers(recurse=False)
                if buf is not None
            ]
            for model in models
        ]
        flats, owners = [], []
        for dtype in sorted({buf.dtype for _, _, buf in per_model[0]}, key=str):
            groups = [[o for o in model if o[2].dtype == dtype] for model in per_model]
            flat = torch.cat([b.reshape(-1) for group in groups for _, _, b in group])
            offset = 0
            for group in groups:
                for mod, name, buf in group:
                    mod._buffers[name] = flat[offset : offset + buf.numel()].view_as(buf)
                    offset += buf.numel()
            size = flat.numel() // len(models)
            flats.append(flat)
            owners.append(torch.arange(len(models), device=flat.device).repeat_interleave(size))
        return cls(flats, owners)

    @classmethod
    def of_stacked(cls, buffers: dict[str, torch.Tensor]) -> BatchNormStats:
        """Stacked buffers (name -> (N, ...)), as ``torch.func.stack_module_state`` returns them,
        buffer by buffer; the dict's entries are replaced by views."""
        flats, owners = [], []
        for dtype in sorted({b.dtype for b in buffers.values()}, key=str):
            names = [k for k, b in buffers.items() if b.dtype == dtype]
            flat = torch.cat([buffers[k].reshape(-1) for k in names])
            whose, offset = [], 0
            for k in names:
                shape, size = buffers[k].shape, buffers[k].numel()
                buffers[k] = flat[offset : offset + size].view(shape)
                whose.append(
                    torch.arange(shape[0], device=flat.device).repeat_interleave(size // shape[0])
                )
                offset += size
            flats.append(flat)
            owners.append(torch.cat(whose))
        return cls(flats, owners)

    def save(self) -> list[torch.Tensor]:
        """A copy of every statistic."""
        return [flat.clone() for flat in self.flats]

    def restore(self, saved: list[torch.Tensor], rows: torch.Tensor | None = None) -> None:
        """Put back the ``saved`` statistics of the students in ``rows`` (bool (N,) on the device;
        all when None).

        Through ``.data``: a kept candidate graph's BatchNorm nodes hold the running statistics,
        and a plain in-place write would bump their version and fail the backward. Training-mode
        BatchNorm's backward never reads them, so the write cannot change a gradient.
        """
        for flat, values, owner in zip(self.flats, saved, self.owners, strict=True):
            if rows is None:
                flat.data.copy_(values)
            else:
                flat.data.copy_(torch.where(rows[owner], values, flat.data))


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
