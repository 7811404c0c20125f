"""The CIFAR ResNets of He et al. 2016 (section 4.2): depth 6n+2, option-A shortcuts.

Widths 16/32/64, three stages of n basic blocks, 3x3 convolutions without bias, BatchNorm, ReLU,
global average pooling and a linear head. ResNet-20/32/44/56/110 have 0.27M/0.46M/0.66M/0.85M/1.7M
parameters, as in the paper's Table 6.

The forward is written for ``torch.func.functional_call`` and ``torch.func.vmap``: no in-place op
on an input or activation, no ``.item()``, no Python branch on tensor values; the shortcut is a
strided slice plus ``F.pad``, so it has no parameters and needs no tensor created elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a parameter-free (option A) shortcut around them.

    When the block halves the resolution and widens the channels, the shortcut keeps every other
    pixel of the input (stride-2 subsample) and appends zero channels, as in the original Torch
    code (fb.resnet.torch's ``shortcutType = 'A'``: the identity concatenated with zeros).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # x[..., ::2, ::2] has ceil(H/2) rows, the same as the 3x3/stride-2/pad-1 conv output,
            # so odd sizes (MNIST: 28 -> 14 -> 7 -> 4) line up too.
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth ``6n+2`` for small images (He et al. 2016, CIFAR-10 architecture).

    :param depth: 20, 32, 44, 56, 110, ... (any ``6n+2`` with ``n >= 1``).
    :param in_channels: input channels (3 for CIFAR-10; 1 works for MNIST).
    :param num_classes: number of output logits.
    :param generator: CPU generator for the initial weights (the global RNG when ``None``).

    Any spatial size works (the two stride-2 stages round up); pooling is global. Convolutions
    get Kaiming-normal weights (fan-out, ReLU gain, as in He et al.'s code and torchvision), the
    head Kaiming-normal (fan-in) with a zero bias, BatchNorm weight 1 and bias 0. Every parameter is
    re-initialised here so that one seeded generator fixes the whole student.
    """

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        num_classes: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv = nn.Conv2d(in_channels, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(WIDTHS[0])
        blocks: list[nn.Module] = []
        channels = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu", generator=generator
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu", generator=generator)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        return self.fc(out.mean(dim=(-2, -1)))
