"""Batched data augmentation on the device: no per-instance Python, no DataLoader workers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation on a whole batch: pad, random crop back, random mirror.

    Each image ``x[i]`` (of a batch ``(N, C, H, W)``) is padded by ``padding`` pixels of zeros on
    every side, cropped back to ``H x W`` at a uniformly random offset in ``[0, 2 * padding]`` per
    axis, and mirrored left-right with probability 0.5. The random numbers come from
    ``generator``, which must live on ``x``'s device: the same generator state gives the same
    output. ``x`` is not modified; the result is a new tensor of the same shape and dtype.

    Padding is with zeros of the input as given, i.e. of the *already normalised* tensor: for data
    normalised to per-channel mean 0 the border is the dataset's mean colour, not black. This is a
    deliberate choice. torchvision's ``RandomCrop(32, padding=4)`` placed before ``Normalize`` pads
    with black, but the original ResNet CIFAR code (fb.resnet.torch: ``ColorNormalize``, then a
    ``RandomCrop`` that zero-pads) pads the normalised image with zeros, as we do; and zeros need
    no knowledge of how a task normalised its data, so one function serves every task and the
    padding stays a single ``F.pad``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    device = x.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5

    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # (N, H) rows of padded to keep
    cols = offsets[1, :, None] + torch.arange(w, device=device)  # (N, W)
    # Mirroring the crop is reading its columns in reverse, so the flip costs nothing extra: it is
    # folded into the column index rather than applied to the images.
    cols = torch.where(flip[:, None], cols.flip(1), cols)

    # Two gathers (rows, then columns) with broadcast (stride-0) indices: one pass each over the
    # data and no (N, C, H, W) index tensor materialised.
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
