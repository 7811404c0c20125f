"""Student architectures (``l2t_gym.models``): names, shapes, parameter counts, the ResNets'
shortcuts and BatchNorm, the LSTM's padding mask, and the batched forward passes the vector env
runs (vmap, the MLP's stacked forward)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from l2t_gym.models import STUDENT_NAMES, LSTMClassifier, build_student, check_student_name
from l2t_gym.models.resnet import BasicBlock, CifarResNet


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _expected_resnet_params(depth: int, in_channels: int = 3, num_classes: int = 10) -> int:
    """Parameters of He et al.'s CIFAR ResNet from its description alone: a 3x3 conv to 16
    channels, three stages of n blocks (each two bias-free 3x3 convs and two BatchNorms with
    weight and bias), parameter-free option-A shortcuts, and a 64 -> classes linear head."""
    n = (depth - 2) // 6
    total = in_channels * 16 * 9 + 2 * 16
    channels = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += channels * width * 9 + width * width * 9 + 2 * 2 * width
            channels = width
    return total + 64 * num_classes + num_classes


@pytest.mark.parametrize(
    ("name", "depth", "published"), [("resnet20", 20, 0.27e6), ("resnet32", 32, 0.46e6)]
)
def test_resnet_parameter_counts(name: str, depth: int, published: float) -> None:
    model = build_student(name, (3, 32, 32), 10)
    count = _n_params(model)
    assert count == _expected_resnet_params(depth)
    # He et al. 2016, Table 6: 0.27M (ResNet-20) and 0.46M (ResNet-32).
    assert abs(count - published) / published < 0.02


@pytest.mark.parametrize(
    ("name", "depth"), [("resnet20", 20), ("resnet32", 32), ("resnet110", 110)]
)
def test_resnet_layer_count(name: str, depth: int) -> None:
    # depth = 6n+2 weighted layers: 6n+1 convolutions (the stem plus two per block in 3n blocks)
    # and one linear head; option-A shortcuts add no conv.
    n = (depth - 2) // 6
    model = build_student(name, (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(convs) == 6 * n + 1
    assert len(linears) == 1
    assert len(convs) + len(linears) == depth
    assert len(blocks) == 3 * n
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert sorted({c.out_channels for c in convs}) == [16, 32, 64]


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("resnet20", (3, 32, 32)),
        ("resnet20", (1, 28, 28)),
        ("resnet32", (3, 32, 32)),
        ("mlp-500", (1, 28, 28)),
        ("mlp-64", (1, 8, 8)),
        ("mlp-64-32", (3, 32, 32)),
    ],
)
def test_output_shapes(name: str, shape: tuple[int, ...]) -> None:
    model = build_student(name, shape, 10)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10)
    assert out.dtype == torch.float32


def test_resnet_runs_on_small_and_odd_sizes() -> None:
    # Any size that survives two stride-2 stages: 8x8 digits, odd 7x9, even a single pixel.
    for shape in [(1, 8, 8), (2, 7, 9), (3, 1, 1)]:
        model = build_student("resnet20", shape, 4)
        assert model(torch.randn(3, *shape)).shape == (3, 4)


def test_mlp_layers_exact() -> None:
    def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
        return [
            (m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)
        ]

    assert linear_shapes(build_student("mlp-64", (1, 8, 8), 10)) == [(64, 64), (64, 10)]
    assert linear_shapes(build_student("mlp-500", (1, 28, 28), 10)) == [(784, 500), (500, 10)]
    assert linear_shapes(build_student("mlp-64-32", (1, 8, 8), 3)) == [(64, 64), (64, 32), (32, 3)]
    mlp = build_student("mlp-64", (1, 8, 8), 10)
    assert sum(isinstance(m, nn.ReLU) for m in mlp.modules()) == 1
    assert _n_params(mlp) == 64 * 64 + 64 + 64 * 10 + 10


@pytest.mark.parametrize(
    "name",
    ["resnet", "resnet18", "resnet-20", "mlp", "mlp-", "mlp-0", "mlp-64-", "mlp--64", "mlp-064",
     "mlp-a", "MLP-64", "mlp-64 ", "lstm", ""],
)  # fmt: skip
def test_bad_names_raise(name: str) -> None:
    with pytest.raises(ValueError, match="resnet32") as info:
        build_student(name, (3, 32, 32), 10)
    assert "mlp-<w>" in str(info.value)
    with pytest.raises(ValueError, match="resnet32"):
        check_student_name(name)


def test_check_student_name_accepts_valid_names() -> None:
    for name in [
        "mlp-500",
        "mlp-64-32",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    ]:
        check_student_name(name)
    with pytest.raises(ValueError):
        check_student_name(None)  # type: ignore[arg-type]


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_student("resnet20", (64,), 10)
    with pytest.raises(ValueError):
        build_student("mlp-64", (), 10)
    with pytest.raises(ValueError):
        build_student("mlp-64", (1, 8, 8), 0)
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)
    assert set(STUDENT_NAMES) >= {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}


def test_option_a_shortcut_has_no_parameters_and_pads_zeros() -> None:
    model = build_student("resnet20", (3, 32, 32), 10)
    down = [b for b in model.modules() if isinstance(b, BasicBlock) and b.stride == 2]
    assert len(down) == 2
    for block in model.modules():
        if isinstance(block, BasicBlock):
            # Only the two conv-BN pairs own parameters; nothing on the shortcut path.
            names = {name.split(".")[0] for name, _ in block.named_parameters()}
            assert names == {"conv1", "bn1", "conv2", "bn2"}
            assert list(block.buffers()) == [*block.bn1.buffers(), *block.bn2.buffers()]

    block = down[0]  # 16 channels 32x32 -> 32 channels 16x16
    x = torch.randn(2, 16, 32, 32)
    short = block.shortcut(x)
    assert short.shape == (2, 32, 16, 16)
    assert torch.equal(short[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(short[:, 16:], torch.zeros(2, 16, 16, 16))

    # With the residual branch silenced, the block's output is exactly relu(shortcut(x)).
    block.eval()
    with torch.no_grad():
        block.conv2.weight.zero_()
    assert torch.equal(block(x), torch.relu(short))


def test_resnet_eval_forward_is_batch_independent() -> None:
    torch.manual_seed(0)
    model = build_student("resnet20", (3, 32, 32), 10, generator=torch.Generator().manual_seed(1))
    model(torch.randn(16, 3, 32, 32))  # train-mode forward: non-trivial running statistics
    model.eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        batch = model(x)
        for i in range(len(x)):
            torch.testing.assert_close(model(x[i : i + 1])[0], batch[i], rtol=1e-5, atol=1e-5)


def test_generator_fixes_initial_weights() -> None:
    def params(seed: int) -> list[torch.Tensor]:
        model = build_student(
            "resnet20", (3, 32, 32), 10, generator=torch.Generator().manual_seed(seed)
        )
        return [p.detach() for p in model.parameters()]

    a, b, c = params(3), params(3), params(4)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_kaiming_normal_init() -> None:
    model = build_student("resnet20", (3, 32, 32), 10, generator=torch.Generator().manual_seed(0))
    conv = model.blocks[-1].conv2  # 64 -> 64, 3x3: fan_out = 576, 36,864 weights
    expected = (2.0 / (64 * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.05
    assert torch.equal(model.fc.bias, torch.zeros(10))


@pytest.mark.parametrize("train", [False, True])
def test_functional_call_vmap_over_students(train: bool) -> None:
    # Several students stacked into one batched forward: the vectorised env's fast path.
    students = [
        build_student("resnet20", (3, 8, 8), 10, generator=torch.Generator().manual_seed(s))
        for s in range(3)
    ]
    for s in students:
        s.train(train)
    params, buffers = stack_module_state(students)
    x = torch.randn(3, 4, 3, 8, 8)

    def forward(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
        return functional_call(students[0], (p, b), (xx,))

    out = vmap(forward)(params, buffers, x)
    reference = torch.stack([s(xx) for s, xx in zip(students, x, strict=True)])
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


def test_the_mlps_stacked_forward_equals_each_student_alone() -> None:
    models = [build_student("mlp-16-8", (1, 4, 4), 3) for _ in range(4)]
    params, _ = stack_module_state(models)
    x = torch.randn(4, 5, 1, 4, 4)
    shared = torch.randn(7, 1, 4, 4)
    batched = models[0].stacked_forward(params, x)
    common = models[0].stacked_forward(params, shared)
    for i, model in enumerate(models):
        torch.testing.assert_close(batched[i], model(x[i]))
        torch.testing.assert_close(common[i], model(shared))


# -- the LSTM -----------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_the_lstms_output_ignores_padding(pooling: str) -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(
        50, 8, 12, 2, pooling=pooling, generator=torch.Generator().manual_seed(0)
    )
    lengths = [3, 7, 1, 10]
    rows = [torch.randint(1, 50, (n,)) for n in lengths]

    def batch(width: int) -> torch.Tensor:
        x = torch.zeros(len(rows), width, dtype=torch.int64)
        for i, r in enumerate(rows):
            x[i, : len(r)] = r
        return x

    with torch.no_grad():
        tight, padded = model(batch(10)), model(batch(40))
        alone = torch.cat([model(batch(10)[i : i + 1, : lengths[i]]) for i in range(len(rows))])
    torch.testing.assert_close(tight, padded, rtol=0, atol=1e-6)
    torch.testing.assert_close(tight, alone, rtol=0, atol=1e-6)
    # The padding row of the embedding is zero and gets no gradient.
    model(batch(40)).sum().backward()
    assert not model.embedding.weight[0].any() and not model.embedding.weight.grad[0].any()


def test_an_lstm_student_needs_a_vocabulary_and_is_seeded() -> None:
    model = build_student("lstm-16-8", (20,), 2, vocab_size=30)
    assert model.embedding.weight.shape == (30, 16) and model.lstm.hidden_size == 8
    assert model(torch.randint(0, 30, (5, 20))).shape == (5, 2)
    with pytest.raises(ValueError, match="vocab_size"):
        build_student("lstm-16-8", (20,), 2)
    with pytest.raises(ValueError, match="max_len"):
        build_student("lstm-16-8", (1, 20), 2, vocab_size=30)
    with pytest.raises(ValueError, match="unknown student"):
        build_student("lstm-16", (20,), 2, vocab_size=30)
    a, b = (
        build_student(
            "lstm-16-8", (20,), 2, vocab_size=30, generator=torch.Generator().manual_seed(3)
        )
        for _ in range(2)
    )
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
