"""Fully connected students: the paper's MNIST MLP (784-500-10) and small variants."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU`` for each hidden width, then a ``Linear`` to the classes.

    :param input_shape: shape of one instance without the batch dimension, e.g. ``(1, 28, 28)``.
    :param hidden: hidden layer widths, e.g. ``(500,)`` for the paper's 784-500-10 MNIST student.
    :param num_classes: number of output logits.
    :param generator: CPU generator for the initial weights (the global RNG when ``None``).

    Hidden layers get Kaiming-normal weights (fan-in, ReLU gain) and zero biases; every parameter
    is re-initialised here so that one seeded generator fixes the whole student.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden: Sequence[int],
        num_classes: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        widths = [prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def stacked_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The forward pass of S students at once, their parameters stacked on dim 0 (named as
        in ``named_parameters``); ``x`` is (S, B, ...) or, shared by all, (B, ...).

        The arithmetic of ``torch.vmap(functional_call(...))`` in a few batched matmuls, without
        its per-call machinery, which costs more than a small student's whole forward pass.
        """
        h = x.flatten(x.dim() - len(self.input_shape))
        for name, layer in self.layers.named_children():
            if isinstance(layer, nn.Linear):
                w, b = params[f"layers.{name}.weight"], params[f"layers.{name}.bias"]
                h = (
                    torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                    if h.dim() == 3
                    else (torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1))
                )
            elif isinstance(layer, nn.ReLU):
                h = torch.relu(h)
        return h
