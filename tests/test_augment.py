"""random_crop_flip against a slow per-image reference."""

from __future__ import annotations

import pytest
import torch

from l2t_gym.data.augment import random_crop_flip


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_matches(image: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple]:
    """Every (dy, dx, flipped) whose crop of the zero-padded image equals ``out``; a slow loop."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    found = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flipped, candidate in ((False, crop), (True, crop.flip(-1))):
                if torch.equal(candidate, out):
                    found.append((dy, dx, flipped))
    return found


@pytest.mark.parametrize(("shape", "padding"), [((64, 3, 32, 32), 4), ((16, 2, 6, 9), 2)])
def test_each_output_is_a_crop_or_its_mirror(shape: tuple[int, ...], padding: int) -> None:
    x = torch.randn(*shape)
    out = random_crop_flip(x, _gen(0), padding=padding)
    assert out.shape == x.shape and out.dtype == x.dtype
    choices = []
    for i in range(len(x)):
        matches = _reference_matches(x[i], out[i], padding)
        assert len(matches) == 1, f"image {i}: {matches}"  # continuous data: a unique match
        choices.append(matches[0])
    flips = [f for _, _, f in choices]
    assert any(flips) and not all(flips)
    # Offsets vary from image to image (not one crop for the whole batch) and reach both edges.
    assert len({(dy, dx) for dy, dx, _ in choices}) > len(x) // 4
    if len(x) >= 64:
        assert {0, 2 * padding} <= {dy for dy, _, _ in choices}
        assert {0, 2 * padding} <= {dx for _, dx, _ in choices}


def test_both_flips_occur_on_a_batch_of_64() -> None:
    x = torch.arange(8.0).expand(64, 1, 8, 8).contiguous()  # each row reads 0..7
    out = random_crop_flip(x, _gen(5), padding=0)
    # With padding 0 each image is x or its mirror, nothing else.
    n_flipped = sum(torch.equal(out[i], x[i].flip(-1)) for i in range(64))
    n_kept = sum(torch.equal(out[i], x[i]) for i in range(64))
    assert n_flipped + n_kept == 64
    assert 16 <= n_flipped <= 48  # p = 0.5: outside this is a < 1e-4 event


def test_deterministic_given_generator_and_seed_dependent() -> None:
    x = torch.randn(32, 3, 32, 32)
    a = random_crop_flip(x, _gen(7))
    b = random_crop_flip(x, _gen(7))
    c = random_crop_flip(x, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = _gen(7)
    first, second = random_crop_flip(x, g), random_crop_flip(x, g)
    assert torch.equal(first, a)
    assert not torch.equal(first, second)  # the generator advances: epochs differ


def test_input_unchanged_and_new_tensor() -> None:
    x = torch.randn(8, 3, 32, 32)
    before = x.clone()
    out = random_crop_flip(x, _gen(0), padding=0)
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr()
    out.add_(1.0)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_keeps_dtype(dtype: torch.dtype) -> None:
    x = torch.randint(1, 255, (4, 3, 10, 10)).to(dtype)
    out = random_crop_flip(x, _gen(1), padding=3)
    assert out.dtype == dtype and out.shape == x.shape
    for i in range(len(x)):
        assert len(_reference_matches(x[i], out[i], 3)) >= 1


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_crop_flip(torch.zeros(3, 32, 32), _gen(0))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.zeros(1, 3, 32, 32), _gen(0), padding=-1)
