"""The student-speed options: bf16 autocast, channels-last images and torch.compile's fallback.

Every option is compared against the default path on the same seeds and actions (their argument
checks are in ``test_settings.py``, the vector env's refusals in ``test_vector.py``). Nothing here
compiles for real (far too slow on a CI core): torch.compile is replaced by fakes that fail in
the ways a real compiler can, or that pass the call through.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
from fabricate import CIFAR_SHAPE, balanced_labels, class_images

from l2t_gym import L2TEnv
from l2t_gym.data import RawData
from l2t_gym.vector import L2TVectorEnv

PROBS = slice(13, 23)  # the predicted class probabilities (10 classes, no extras)


@pytest.fixture(scope="module")
def cifar_like() -> RawData:
    """120 training and 20 test images of CIFAR's shape, classes told apart by a prototype."""
    rng = np.random.default_rng(0)
    y = balanced_labels(140, rng)
    x = class_images(y, CIFAR_SHAPE, rng).astype(np.float32) / 255.0 - 0.5
    return RawData.from_arrays(x[:120], y[:120], x[120:], y[120:], 10)


def resnet_env(data: RawData, **kwargs) -> L2TEnv:
    kwargs = {
        "device": "cpu",
        "data": data,
        "student": "resnet20",
        "batch_size": 8,
        "eval_every": 3,
        "tau": 1.0,
        "max_iters": 50,
        "lr": 0.01,
        **kwargs,
    }
    return L2TEnv("cifar10", **kwargs)


def rollout(env: L2TEnv, steps: int, keep_prob: float, seeds=(0,)) -> list[np.ndarray]:
    """Observations and dev accuracies of ``steps`` steps per seed, actions drawn from a fixed
    stream (every fourth keeps all, so the candidate pass's graph is reused as well as pools
    filled)."""
    rng = np.random.default_rng(1)
    out = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        out += [obs, np.array([info["dev_accuracy"]])]
        for t in range(steps):
            keep = rng.random(env.batch_size) < (keep_prob if t % 4 else 1.1)
            obs, _, terminated, truncated, info = env.step(keep)
            out += [obs, np.array([info["dev_accuracy"]])]
            if terminated or truncated:
                break
    return out


def worst(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def record_forwards(env: L2TEnv) -> list[tuple[bool, torch.dtype]]:
    """Wrap reset so that every later forward of the new student (candidate, training and dev
    passes) records whether its input was channels-last and the dtype of its output."""
    seen: list[tuple[bool, torch.dtype]] = []
    reset = env.reset

    def hooked_reset(**kwargs):
        out = reset(**kwargs)
        env.run.students.modules[0].register_forward_hook(
            lambda _, args, y: seen.append(
                (args[0].is_contiguous(memory_format=torch.channels_last), y.dtype)
            )
        )
        return out

    env.reset = hooked_reset
    return seen


def state_dtypes(env: L2TEnv) -> set[torch.dtype]:
    run = env.run
    model, optimizer = run.students.modules[0], run.students.optimizers[0]
    tensors = [*model.parameters(), *model.buffers(), run.loss_sum]
    tensors += [s for state in optimizer.state.values() for s in state.values()]
    return {t.dtype for t in tensors if torch.is_tensor(t) and t.is_floating_point()}


# -- bf16 -----------------------------------------------------------------------------------
def test_bf16_computes_in_bf16_and_keeps_state_and_observations_float32():
    fp32 = L2TEnv("digits", device="cpu", tau=1.0, max_iters=40)
    bf16 = L2TEnv("digits", device="cpu", tau=1.0, max_iters=40, precision="bf16")
    seen_fp32, seen_bf16 = record_forwards(fp32), record_forwards(bf16)
    ref = rollout(fp32, 12, 0.7)
    got = rollout(bf16, 12, 0.7)
    # Every forward (candidate, training, dev) computed in bf16, and only with the option.
    assert {dtype for _, dtype in seen_bf16} == {torch.bfloat16}
    assert {dtype for _, dtype in seen_fp32} == {torch.float32}
    assert state_dtypes(bf16) == {torch.float32}  # parameters, momentum, loss sum
    for obs in got[::2]:
        assert obs.dtype == np.float32 and bf16.observation_space.contains(obs)
    obs_bf16, obs_fp32 = np.stack(got[::2]), np.stack(ref[::2])
    diff = np.abs(obs_bf16 - obs_fp32)[..., PROBS].max()
    assert 1e-4 < diff < 0.05  # bf16 rounding shows, but the student is the same student


def test_bf16_student_learns_like_fp32():
    # Keep-all episodes to tau on Digits: bf16 reaches it too, in about as many iterations.
    its = {}
    for precision in ("fp32", "bf16"):
        env = L2TEnv("digits", device="cpu", precision=precision)
        its[precision] = []
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(np.ones(len(obs), dtype=bool))
                done = terminated or truncated
            assert info["reached_tau"], (precision, seed)
            its[precision].append(info["iteration"])
    ratio = np.median(its["bf16"]) / np.median(its["fp32"])
    assert 0.6 < ratio < 1.6, its


def test_bf16_batchnorm_student_keeps_float32_statistics(cifar_like):
    ref = rollout(resnet_env(cifar_like), 5, 0.6)
    env = resnet_env(cifar_like, precision="bf16")
    seen = record_forwards(env)
    got = rollout(env, 5, 0.6)
    assert {dtype for _, dtype in seen} == {torch.bfloat16}
    assert state_dtypes(env) == {torch.float32}
    assert all(o.dtype == np.float32 and env.observation_space.contains(o) for o in got[::2])
    diff = max(
        float(np.abs(a - b)[:, PROBS].max()) for a, b in zip(got[::2], ref[::2], strict=True)
    )
    assert 1e-4 < diff < 0.1


# -- channels_last ---------------------------------------------------------------------------
@pytest.mark.parametrize("augment", [False, True])
def test_channels_last_gives_the_default_results(cifar_like, augment):
    # A small rate: a ResNet on 8-image batches turns float-level differences (the two layouts
    # sum in different orders) into visible ones within a few steps at the task's rates; a
    # layout bug differs at once and by far more.
    default = resnet_env(cifar_like, augment=augment, lr=1e-3)
    fast = resnet_env(cifar_like, augment=augment, lr=1e-3, channels_last=True)
    seen_default, seen_fast = record_forwards(default), record_forwards(fast)
    ref = rollout(default, 6, 0.6, seeds=(0, 1))
    got = rollout(fast, 6, 0.6, seeds=(0, 1))
    assert worst(ref[:2], got[:2]) < 1e-5  # the first candidate pass: one forward apart
    assert worst(ref, got) < 1e-3
    # It did change the layout: weights and every input (candidate, training and dev batches).
    model, optimizer = fast.run.students.modules[0], fast.run.students.optimizers[0]
    conv = model.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert seen_fast and all(cl for cl, _ in seen_fast)
    assert not any(cl for cl, _ in seen_default)
    # The optimiser still holds the model's (converted) parameters: it trained the student.
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters()}


def test_channels_last_test_accuracy_matches(cifar_like):
    accs = [
        resnet_env(cifar_like, channels_last=cl, max_iters=3, report_test=True)
        for cl in (False, True)
    ]
    finals = []
    for env in accs:
        env.reset(seed=0)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(np.ones(8, dtype=bool))
            done = terminated or truncated
        finals.append((info["final_dev_accuracy"], info["test_accuracy"]))
    assert finals[0] == finals[1]


# -- compile ---------------------------------------------------------------------------------
class FakeCompiled:
    """What torch.compile returns, failing as a real compiled module can: after part of the work
    (here the whole eager forward, so BatchNorm statistics have been updated) at its first call
    from one of the run's three forward sites (a recompile for eval mode, for a new grad mode,
    ...); or passing every call through."""

    def __init__(self, model, fail_in):
        self.model, self.fail_in, self.calls = model, fail_in, 0

    def __call__(self, x):
        self.calls += 1
        out = self.model(x)
        frame = sys._getframe(1)
        while frame.f_code.co_name not in ("evaluate", "propose", "offer"):
            frame = frame.f_back
        if frame.f_code.co_name == self.fail_in:
            raise RuntimeError("InductorError: no working C++ compiler found")
        return out


@pytest.fixture
def fake_compile(monkeypatch):
    made: list[FakeCompiled] = []

    def install(fail_in):
        def fake(model, *args, **kwargs):
            if fail_in == "torch.compile":
                raise RuntimeError("Python 3.99 is not supported by torch.compile")
            made.append(FakeCompiled(model, fail_in))
            return made[-1]

        monkeypatch.setattr(torch, "compile", fake)
        return made

    return install


def assert_same_student(a: L2TEnv, b: L2TEnv) -> None:
    sa = a.run.students.modules[0].state_dict()
    sb = b.run.students.modules[0].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # BatchNorm statistics included


@pytest.mark.parametrize("fail_in", ["evaluate", "propose", "offer", "torch.compile"])
def test_compile_failure_falls_back_to_eager_with_one_warning(cifar_like, fake_compile, fail_in):
    eager = resnet_env(cifar_like)
    ref = rollout(eager, 7, 0.6)
    made = fake_compile(fail_in)
    env = resnet_env(cifar_like, compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = rollout(env, 7, 0.6)
        # Bit-identical: the eager retry starts from the BatchNorm statistics the failed call
        # found, and the student ends as the eager one did.
        assert worst(ref, got) == 0.0
        assert_same_student(eager, env)
        again, again_ref = rollout(env, 3, 0.6, seeds=(1,)), rollout(eager, 3, 0.6, seeds=(1,))
    assert worst(again, again_ref) == 0.0  # a second student of the same env
    ours = [w for w in caught if "torch.compile failed" in str(w.message)]
    assert len(ours) == 1 and ours[0].category is RuntimeWarning
    assert ("C++ compiler" if fail_in != "torch.compile" else "not supported") in str(
        ours[0].message
    )
    assert len(made) == (0 if fail_in == "torch.compile" else 1)  # never retried


def test_compile_uses_the_compiled_forward_when_it_works(cifar_like, fake_compile):
    ref = rollout(resnet_env(cifar_like), 7, 0.6, seeds=(0, 1))
    made = fake_compile("nowhere")
    env = resnet_env(cifar_like, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = rollout(env, 7, 0.6, seeds=(0, 1))
    assert worst(ref, got) == 0.0
    # Compiled once for the env's student slot: a new student loads its weights into the same
    # module, so its compiled forward (and torch.compile's cache) serves every episode.
    assert len(made) == 1 and made[0].calls > 14


# -- the vector env --------------------------------------------------------------------------
def test_vector_env_bf16_mlp_students_equal_separate_bf16_envs():
    n, kwargs = 3, {"device": "cpu", "max_iters": 40, "tau": 1.0, "precision": "bf16"}
    venv = L2TVectorEnv(n, "digits", **kwargs)
    envs = [L2TEnv("digits", **kwargs) for _ in range(n)]
    fp32 = L2TVectorEnv(n, "digits", **{**kwargs, "precision": "fp32"})
    # Every column but best_dev_accuracy: the batched dev pass rounds its bf16 logits a little
    # differently from the single env's, which may flip the argmax of a near tie or two.
    cols = np.arange(25) != venv.feature_names.index("best_dev_accuracy")
    vobs, _ = venv.reset(seed=5)
    ref, _ = fp32.reset(seed=5)
    singles = [e.reset(seed=5 + i)[0] for i, e in enumerate(envs)]
    rng = np.random.default_rng(0)
    gap, off = 0.0, 0.0
    for t in range(10):
        keep = rng.random((n, 32)) < (0.6 if t % 3 else 1.1)
        vobs, *_ = venv.step(keep)
        ref, *_ = fp32.step(keep)
        singles = [e.step(keep[i])[0] for i, e in enumerate(envs)]
        assert vobs.dtype == np.float32 and venv.observation_space.contains(vobs)
        gap = max(gap, float(np.abs(vobs - np.stack(singles))[..., cols].max()))
        off = max(off, float(np.abs(vobs - ref)[..., PROBS].max()))
    assert venv.run.loss_sum.dtype == torch.float32
    assert {v.dtype for v in venv.run.students.params.values()} == {torch.float32}
    assert off > 1e-3  # it computed in bf16 ...
    assert gap < 1e-3  # ... as the single envs do
