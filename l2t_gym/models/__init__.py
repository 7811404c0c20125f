"""Student architectures, built by name: the paper's MNIST MLP, the CIFAR ResNets and the IMDB
LSTM."""

from __future__ import annotations

import re

import torch
from torch import nn

from l2t_gym.models.lstm import LSTMClassifier
from l2t_gym.models.mlp import MLP
from l2t_gym.models.resnet import CifarResNet

__all__ = [
    "MLP",
    "STUDENT_NAMES",
    "CifarResNet",
    "LSTMClassifier",
    "build_student",
    "check_student_input",
    "check_student_name",
]

RESNET_DEPTHS: dict[str, int] = {
    "resnet20": 20,
    "resnet32": 32,
    "resnet44": 44,
    "resnet56": 56,
    "resnet110": 110,
}

#: Names :func:`build_student` accepts. ``mlp-<w>[-<w>...]`` is a pattern: positive hidden widths
#: joined by dashes, e.g. ``mlp-500`` (the paper's MNIST 784-500-10) or ``mlp-64-32``.
#: ``lstm-<emb>-<hidden>`` is one too: word vectors of width emb, an LSTM of width hidden.
STUDENT_NAMES: tuple[str, ...] = ("mlp-<w>[-<w>...]", "lstm-<emb>-<hidden>", *RESNET_DEPTHS)

_MLP_NAME = re.compile(r"mlp((?:-[1-9][0-9]*)+)")
_LSTM_NAME = re.compile(r"lstm-([1-9][0-9]*)-([1-9][0-9]*)")


def _mlp_widths(name: object) -> list[int] | None:
    match = _MLP_NAME.fullmatch(name) if isinstance(name, str) else None
    return [int(w) for w in match.group(1)[1:].split("-")] if match else None


def check_student_name(name: str) -> None:
    """Raise a ValueError listing the accepted names unless ``name`` is one; build nothing."""
    if isinstance(name, str) and (
        name in RESNET_DEPTHS or _mlp_widths(name) is not None or _LSTM_NAME.fullmatch(name)
    ):
        return
    raise ValueError(
        f"unknown student {name!r}; expected one of {', '.join(STUDENT_NAMES)}"
        " (widths are positive integers, e.g. 'mlp-500', 'mlp-64-32' or 'lstm-64-64')"
    )


def build_student(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
) -> nn.Module:
    """Build a freshly initialised student network on the CPU.

    :param name: one of :data:`STUDENT_NAMES`, e.g. ``"mlp-500"`` or ``"resnet32"``.
    :param input_shape: one instance's shape without the batch dimension; ResNets need
        ``(C, H, W)``.
    :param num_classes: number of output logits.
    :param generator: CPU generator for the initial weights, so a seeded run is reproducible; the
        global RNG when ``None``.
    :param vocab_size: number of token ids (padding included); LSTMs need it, and read inputs of
        shape ``(max_len,)``. Other students ignore it.

    :raises ValueError: for an unknown or malformed name, or an input shape the model cannot take.
    """
    shape = check_student_input(name, input_shape)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    lstm = _LSTM_NAME.fullmatch(name)
    if lstm is not None:
        if vocab_size is None or vocab_size < 2:
            raise ValueError(
                f"{name} needs vocab_size (token ids, padding included, at least 2), got "
                f"{vocab_size}; the env passes the dataset's"
            )
        embed, width = (int(g) for g in lstm.groups())
        return LSTMClassifier(int(vocab_size), embed, width, num_classes, generator=generator)
    hidden = _mlp_widths(name)
    if hidden is not None:
        return MLP(shape, hidden, num_classes, generator=generator)
    return CifarResNet(RESNET_DEPTHS[name], shape[0], num_classes, generator=generator)


def check_student_input(name: str, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Raise a ValueError unless student ``name`` can read instances of ``input_shape`` (LSTMs
    token ids (max_len,), ResNets images (C, H, W), MLPs anything); build nothing.

    :return: the shape as a tuple of ints.
    """
    check_student_name(name)
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be non-empty and positive, got {input_shape}")
    if _LSTM_NAME.fullmatch(name) and len(shape) != 1:
        raise ValueError(f"student {name} reads token ids of shape (max_len,), got {shape}")
    if name in RESNET_DEPTHS and len(shape) != 3:
        raise ValueError(f"student {name} needs images of shape (C, H, W), got {shape}")
    return shape
