"""Teachers: the baselines' rules, seeding, run_episode, and the Bernoulli policy and its files."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from file_damage import flipped
from safetensors import safe_open
from safetensors.torch import save_file
from synthetic_env import SyntheticTeachingEnv

import l2t_gym
from l2t_gym.features import build_features, feature_names
from l2t_gym.files import DamagedFileError
from l2t_gym.teachers import (
    BernoulliTeacher,
    LossRank,
    NoTeach,
    RandTeach,
    SelfPaced,
    Teacher,
    make_teacher,
    run_episode,
)
from l2t_gym.teachers.bernoulli import file_digest

NAMES = feature_names(10)
LN10 = math.log(10)


def observation(losses, progress=0.0, names=NAMES) -> np.ndarray:
    """Hand-built observation: the given per-row losses and training progress, zeros elsewhere."""
    obs = np.zeros((len(losses), len(names)), dtype=np.float32)
    obs[:, names.index("loss")] = losses
    obs[:, names.index("iteration")] = progress
    return obs


def realistic_obs(rng: np.random.Generator, m: int = 32, progress: float = 0.3) -> np.ndarray:
    logits = rng.normal(0.0, 2.0, (m, 10)).astype(np.float32)
    return build_features(logits, rng.integers(0, 10, m), progress, 1.7, 0.6)


def started(teacher: Teacher, names=NAMES, seed: int | None = None) -> Teacher:
    teacher.reset(names, seed=seed)
    return teacher


# -- SelfPaced ------------------------------------------------------------------------------
def test_spl_admits_everything_after_the_ramp_by_default():
    spl = started(SelfPaced(start=1.0, end=3.0, ramp=0.5))
    assert spl.threshold(0.49) < 3 * LN10 and spl.threshold(0.5) == math.inf
    assert spl.act(observation([0.1, 50.0, 1e6], progress=0.6)).all()


def test_spl_threshold_grows_geometrically_then_holds():
    spl = started(SelfPaced(start=1.0, end=3.0, ramp=0.5, admit_all=False))
    assert spl.threshold(0.0) == pytest.approx(LN10)
    assert spl.threshold(0.25) == pytest.approx(LN10 * math.sqrt(3.0))
    assert spl.threshold(0.5) == pytest.approx(3 * LN10)
    assert spl.threshold(1.0) == pytest.approx(3 * LN10)
    grid = [spl.threshold(t) for t in np.linspace(0, 1, 21)]
    assert (np.diff(grid) >= 0).all()


def test_spl_default_schedule_opens_up_by_ramp():
    spl = started(SelfPaced())
    assert spl.threshold(0.0) == pytest.approx(LN10)  # beats a uniform guess
    assert spl.threshold(0.299) == pytest.approx(10 * LN10, rel=0.01)
    assert spl.threshold(0.3) == math.inf == spl.threshold(0.9)


def test_spl_keeps_losses_below_the_growing_threshold():
    spl = started(SelfPaced(start=1.0, end=3.0, ramp=0.5, admit_all=False))
    losses = [0.5, 2.0, 2.5, 4.0, 8.0]  # thresholds: 2.30 at t=0, 3.99 at 0.25, 6.91 from 0.5
    assert spl.act(observation(losses, 0.0)).tolist() == [True, True, False, False, False]
    assert spl.act(observation(losses, 0.25)).tolist() == [True, True, True, False, False]
    assert spl.act(observation(losses, 0.5)).tolist() == [True, True, True, True, False]
    assert spl.act(observation(losses, 1.0)).tolist() == [True, True, True, True, False]


def test_spl_min_keep_floor_keeps_the_lowest_losses():
    losses = [9.0, 5.0, 7.0, 5.0, 6.0]  # all above ln 10 at t = 0
    assert started(SelfPaced()).act(observation(losses)).tolist() == [0, 1, 0, 0, 0]
    two = started(SelfPaced(min_keep=2)).act(observation(losses))
    assert two.tolist() == [0, 1, 0, 1, 0]  # the tie at 5.0: both lowest
    three = started(SelfPaced(min_keep=3)).act(observation(losses))
    assert three.tolist() == [0, 1, 0, 1, 1]
    assert started(SelfPaced(min_keep=0)).act(observation(losses)).sum() == 0
    assert started(SelfPaced(min_keep=99)).act(observation(losses)).all()
    # The floor only adds: a batch with enough easy instances keeps exactly those.
    assert started(SelfPaced(min_keep=1)).act(observation([0.1, 0.2, 9.0])).tolist() == [1, 1, 0]


def test_spl_threshold_scales_with_the_number_of_classes():
    spl = started(SelfPaced(), feature_names(2))
    assert spl.num_classes == 2
    assert spl.threshold(0.0) == pytest.approx(math.log(2))
    assert spl.act(observation([0.6, 0.8], names=feature_names(2))).tolist() == [True, False]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": 0.0},
        {"start": -1.0},
        {"end": 0.5},
        {"end": math.inf},
        {"ramp": 0.0},
        {"ramp": 1.5},
        {"min_keep": -1},
        {"min_keep": 1.5},
    ],
)
def test_spl_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SelfPaced(**kwargs)


# -- LossRank -------------------------------------------------------------------------------
def test_lossrank_keeps_the_highest_losses_ties_by_position():
    losses = [1.0, 3.0, 2.0, 3.0, 0.5]
    assert started(LossRank(0.4)).act(observation(losses)).tolist() == [0, 1, 0, 1, 0]
    assert started(LossRank(0.2)).act(observation(losses)).tolist() == [0, 1, 0, 0, 0]
    assert started(LossRank(0.5)).act(observation(losses)).tolist() == [0, 1, 1, 1, 0]
    assert started(LossRank(1.0)).act(observation(losses)).all()
    assert started(LossRank(0.01)).act(observation(losses)).sum() == 1


def test_lossrank_count_is_the_ceiling_without_float_error():
    rng = np.random.default_rng(0)
    for ratio, m, k in [(0.07, 100, 7), (0.14, 50, 7), (0.3, 10, 3), (0.25, 32, 8), (0.26, 32, 9)]:
        keep = started(LossRank(ratio)).act(observation(rng.uniform(0, 5, m)))
        assert keep.sum() == k, (ratio, m)


def test_lossrank_on_real_features():
    obs = realistic_obs(np.random.default_rng(1))
    keep = started(LossRank(0.25)).act(obs)
    loss = obs[:, NAMES.index("loss")]
    assert keep.sum() == 8
    assert loss[keep].min() >= loss[~keep].max()


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, math.nan])
def test_lossrank_and_randteach_reject_bad_fractions(ratio):
    with pytest.raises(ValueError, match="keep_ratio"):
        LossRank(ratio)
    with pytest.raises(ValueError, match="keep_prob"):
        RandTeach(ratio)


# -- reading features by name ---------------------------------------------------------------
@pytest.mark.parametrize(
    "make", [NoTeach, SelfPaced, lambda: SelfPaced(start=0.3, min_keep=3), lambda: LossRank(0.3)]
)
def test_decisions_do_not_depend_on_column_order(make):
    rng = np.random.default_rng(2)
    perm = rng.permutation(len(NAMES))
    permuted_names = tuple(NAMES[i] for i in perm)
    reference, shuffled = started(make()), started(make(), permuted_names)
    for progress in (0.0, 0.2, 0.7):
        obs = realistic_obs(rng, progress=progress)
        expected = reference.act(obs)
        assert np.array_equal(shuffled.act(obs[:, perm]), expected)


def test_rand_decisions_do_not_depend_on_column_order():
    perm = np.random.default_rng(3).permutation(len(NAMES))
    obs = realistic_obs(np.random.default_rng(4))
    a = started(RandTeach(0.5), seed=7).act(obs)
    b = started(RandTeach(0.5), tuple(NAMES[i] for i in perm), seed=7).act(obs[:, perm])
    assert np.array_equal(a, b)


@pytest.mark.parametrize("make", [SelfPaced, LossRank])
def test_missing_feature_is_named(make):
    names = tuple(n for n in NAMES if n != "loss")
    with pytest.raises(ValueError, match="'loss'"):
        make().reset(names)


def test_subclasses_read_columns_and_rows_through_public_helpers():
    teacher = started(NoTeach())
    assert teacher.column("loss") == NAMES.index("loss")
    obs = np.zeros((3, len(NAMES)), dtype=np.float32)
    assert teacher.rows(obs) is obs
    with pytest.raises(ValueError, match="NoTeach needs the feature 'nope'"):
        teacher.column("nope")
    with pytest.raises(ValueError, match=r"shape \(M, 25\) with M >= 1"):
        teacher.rows(np.zeros((0, len(NAMES))))


def test_spl_needs_progress_and_labels():
    with pytest.raises(ValueError, match="'iteration'"):
        SelfPaced().reset(tuple(n for n in NAMES if n != "iteration"))
    with pytest.raises(ValueError, match="label_"):
        SelfPaced().reset(tuple(n for n in NAMES if not n.startswith("label_")))


def test_act_before_reset_and_wrong_width_are_errors():
    with pytest.raises(RuntimeError, match="reset"):
        NoTeach().act(np.zeros((4, len(NAMES)), dtype=np.float32))
    with pytest.raises(ValueError, match=f"\\(M, {len(NAMES)}\\)"):
        started(LossRank()).act(np.zeros((4, len(NAMES) - 1), dtype=np.float32))


# -- RandTeach ------------------------------------------------------------------------------
def test_randteach_keep_ratio_matches_its_probability():
    obs = np.zeros((1000, len(NAMES)), dtype=np.float32)
    for p in (0.1, 0.5, 0.8):
        teacher = started(RandTeach(p), seed=0)
        kept = np.mean([teacher.act(obs).mean() for _ in range(20)])
        assert abs(kept - p) < 4 * math.sqrt(p * (1 - p) / 20_000)
    assert started(RandTeach(1.0)).act(obs).all()


def test_randteach_seeding():
    obs = np.zeros((64, len(NAMES)), dtype=np.float32)

    def masks(teacher, n=5):
        return np.stack([teacher.act(obs) for _ in range(n)])

    a, b = started(RandTeach(0.5), seed=1), started(RandTeach(0.5), seed=1)
    assert np.array_equal(masks(a), masks(b))
    assert not np.array_equal(masks(started(RandTeach(0.5), seed=2)), masks(b))
    # reset(seed=s) restarts the stream; reset(seed=None) carries it on.
    first = masks(started(a, seed=1))
    assert np.array_equal(masks(started(a, seed=1)), first)
    started(a, seed=1)
    head = masks(a, 2)
    started(a)
    assert np.array_equal(np.concatenate([head, masks(a, 3)]), first)
    # Constructor seed and reset seed are the same stream.
    assert np.array_equal(masks(started(RandTeach(0.5, seed=1))), first)


# -- run_episode ----------------------------------------------------------------------------
class RecordInfo(gym.Wrapper):
    """Keeps the last info and the actions sent, to check run_episode's bookkeeping."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.last_info, self.actions = info, []
        return obs, info

    def step(self, action):
        self.actions.append(np.asarray(action))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_info = info
        return obs, reward, terminated, truncated, info


def test_noteach_on_digits_reaches_tau_and_bookkeeping_matches_info():
    env = RecordInfo(l2t_gym.L2TEnv("digits", device="cpu"))
    result = run_episode(env, NoTeach(), seed=0)
    info = env.last_info
    assert result.reached_tau and not result.truncated
    assert result.iterations == info["iteration"] == result.teacher_steps  # keep-all: 1 per step
    assert result.keep_ratio == 1.0 and result.kept_instances == info["kept_instances"]
    assert result.effective_instances == 32 * result.iterations == info["effective_instances"]
    assert result.instances_seen == 32 * result.teacher_steps == info["instances_seen"]
    assert result.reward == pytest.approx(-math.log(result.iterations / 100))
    assert result.final_dev_accuracy == info["final_dev_accuracy"] >= 0.93
    assert result.test_accuracy is None
    # eval_every = 1: a point per iteration, from the start, in order.
    assert [p.iteration for p in result.curve] == list(range(result.iterations + 1))
    assert [p.effective_instances for p in result.curve] == [32 * p.iteration for p in result.curve]
    assert result.curve[0].dev_accuracy < 0.93 <= result.curve[-1].dev_accuracy
    assert result.curve[-1].dev_accuracy == info["dev_accuracy"]
    seconds = [p.seconds for p in result.curve]
    assert seconds == sorted(seconds) and seconds[-1] <= result.seconds


def test_run_episode_through_gym_make_with_sparse_evaluation():
    env = RecordInfo(
        gym.make("L2T-Digits-v0", device="cpu", eval_every=5, max_iters=12, report_test=True)
    )
    result = run_episode(env, RandTeach(0.5), seed=3)
    info = env.last_info
    kept = int(sum(a.sum() for a in env.actions))
    assert result.kept_instances == kept == info["kept_instances"]
    assert result.keep_ratio == pytest.approx(kept / (32 * result.teacher_steps))
    assert 0.3 < result.keep_ratio < 0.7
    assert result.effective_instances == 32 * result.iterations == info["effective_instances"]
    assert result.test_accuracy == info["test_accuracy"]
    iterations = [p.iteration for p in result.curve]
    assert iterations[0] == 0 and all(i % 5 == 0 for i in iterations[1:-1])
    assert iterations[-1] == result.iterations and iterations == sorted(set(iterations))
    # 12 iterations are far too few for tau: the clock runs out off the eval grid, and the
    # env's final evaluation closes the curve.
    assert not result.reached_tau and result.reward == 0.0
    assert result.iterations == 12 and iterations == [0, 5, 10, 12]
    assert result.curve[-1].dev_accuracy == result.final_dev_accuracy


def test_run_episode_on_the_synthetic_env():
    # The synthetic env's best teacher keeps loss > 1.5; LossRank keeps high losses and is faster.
    plain = run_episode(SyntheticTeachingEnv(), NoTeach(), seed=0)
    ranked = run_episode(SyntheticTeachingEnv(), LossRank(0.5), seed=0)
    assert ranked.reached_tau and ranked.iterations < plain.iterations
    assert ranked.keep_ratio == 0.5 and math.isnan(ranked.final_dev_accuracy)
    assert ranked.instances_seen == 8 * ranked.teacher_steps


# -- BernoulliTeacher -----------------------------------------------------------------------
@pytest.mark.parametrize("init_keep", [0.9, 0.3])
def test_bernoulli_starts_near_init_keep(init_keep):
    teacher = started(BernoulliTeacher(NAMES, init_keep=init_keep, seed=0), seed=0)
    rng = np.random.default_rng(5)
    observations = [realistic_obs(rng, progress=rng.uniform()) for _ in range(50)]
    p = np.concatenate([teacher.keep_probabilities(o) for o in observations])
    assert np.all(np.abs(p - init_keep) < 0.03)
    kept = np.mean([teacher.act(o).mean() for o in observations])
    assert abs(kept - init_keep) < 4 * math.sqrt(init_keep * (1 - init_keep) / 1600)


def test_bernoulli_is_permutation_equivariant():
    teacher = BernoulliTeacher(NAMES, seed=1)
    # Away from the near-constant start, so rows really differ; from a generator of its own, as
    # about one global RNG state in six saturates every p and fails the std check below.
    scramble = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in teacher.policy.parameters():
            param.normal_(0.0, 1.0, generator=scramble)
    obs = realistic_obs(np.random.default_rng(6))
    perm = np.random.default_rng(7).permutation(len(obs))
    p = teacher.keep_probabilities(obs)
    assert p.std() > 0.05
    np.testing.assert_allclose(teacher.keep_probabilities(obs[perm]), p[perm], rtol=1e-6)


def test_bernoulli_log_prob_matches_hand_computation():
    teacher = BernoulliTeacher(NAMES, seed=2)
    scramble = torch.Generator().manual_seed(0)  # independent of the tests run before
    with torch.no_grad():
        for param in teacher.policy.parameters():
            param.normal_(0.0, 1.0, generator=scramble)
    rng = np.random.default_rng(8)
    obs = np.stack([realistic_obs(rng, m=16) for _ in range(3)])
    actions = rng.integers(0, 2, (3, 16))
    actions[0, :2] = (0, 1)  # both actions present
    expected = [
        sum(
            math.log(p) if a else math.log(1 - p)
            for p, a in zip(teacher.keep_probabilities(o).astype(np.float64), acts, strict=True)
        )
        for o, acts in zip(obs, actions, strict=True)
    ]
    got = teacher.log_prob(torch.as_tensor(obs), torch.as_tensor(actions))
    assert got.shape == (3,)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-4)
    # Differentiable in the policy, and finite where p saturates.
    got.sum().backward()
    assert all(p.grad is not None for p in teacher.policy.parameters())
    with torch.no_grad():
        teacher.policy[2].bias.fill_(60.0)
    drop_all = teacher.log_prob(obs, np.zeros((3, 16)))
    assert torch.isfinite(drop_all).all() and (drop_all < -100).all()
    with pytest.raises(ValueError, match="shape"):
        teacher.log_prob(obs, actions[:, :8])
    with pytest.raises(ValueError, match="0/1"):
        teacher.log_prob(obs, np.full((3, 16), 0.5))


def test_bernoulli_sampling_is_seeded():
    obs = realistic_obs(np.random.default_rng(9))
    a = started(BernoulliTeacher(NAMES, init_keep=0.5, seed=3), seed=4)
    b = started(BernoulliTeacher(NAMES, init_keep=0.5, seed=3), seed=4)
    np.testing.assert_array_equal(a.keep_probabilities(obs), b.keep_probabilities(obs))
    assert all(np.array_equal(a.act(obs), b.act(obs)) for _ in range(5))
    started(a, seed=5)
    assert not all(np.array_equal(a.act(obs), b.act(obs)) for _ in range(5))


def test_deterministic_bernoulli_keeps_p_above_half_and_warns_when_dropping_all():
    teacher = started(BernoulliTeacher(NAMES, init_keep=0.9, deterministic=True))
    obs = realistic_obs(np.random.default_rng(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert teacher.act(obs).all()
    with torch.no_grad():
        teacher.policy[2].bias.fill_(-3.0)
    assert (teacher.keep_probabilities(obs) < 0.5).all()
    with pytest.warns(UserWarning, match="drops every candidate"):
        assert not teacher.act(obs).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per episode
        teacher.act(obs)
    teacher.reset(NAMES)
    with pytest.warns(UserWarning, match="drops every candidate"):
        teacher.act(obs)


def test_bernoulli_save_load_round_trip(tmp_path):
    teacher = BernoulliTeacher(NAMES, hidden=7, init_keep=0.8, seed=11)
    with torch.no_grad():
        for param in teacher.policy.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)))
    path = tmp_path / "teacher.safetensors"
    teacher.save(path, task="digits")
    loaded = BernoulliTeacher.load(path, expected_feature_names=NAMES)
    assert (loaded.layout, loaded.hidden, loaded.init_keep, loaded.task) == (
        NAMES,
        7,
        0.8,
        "digits",
    )
    obs = np.stack([realistic_obs(np.random.default_rng(12)) for _ in range(2)])
    np.testing.assert_array_equal(
        loaded.keep_probabilities(obs[0]), teacher.keep_probabilities(obs[0])
    )
    actions = np.random.default_rng(13).integers(0, 2, (2, 32))
    assert torch.equal(loaded.log_prob(obs, actions), teacher.log_prob(obs, actions))
    # The file is plain safetensors with the layout readable by anyone.
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "l2t-gym-teacher" and meta["task"] == "digits"
    assert tuple(json.loads(meta["feature_names"])) == NAMES
    # make_teacher reads files too, passing options through.
    via_make = make_teacher(str(path), deterministic=True)
    assert isinstance(via_make, BernoulliTeacher) and via_make.deterministic


def test_bernoulli_refuses_other_layouts(tmp_path):
    teacher = BernoulliTeacher(NAMES)
    path = tmp_path / "teacher.safetensors"
    teacher.save(path)
    other = feature_names(2)
    with pytest.raises(ValueError, match="different observation layout") as err:
        BernoulliTeacher.load(path, expected_feature_names=other)
    assert "label_9" in str(err.value) and str(list(other)) in str(err.value)
    with pytest.raises(ValueError, match="different observation layout"):
        teacher.reset(other)
    reordered = (*NAMES[1:], NAMES[0])
    with pytest.raises(ValueError, match="different observation layout"):
        BernoulliTeacher.load(path).reset(reordered)
    assert BernoulliTeacher.load(path).task is None


def test_corrupt_or_foreign_teacher_files_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DamagedFileError, match="not an l2t-gym teacher"):
        BernoulliTeacher.load(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(3)}, str(foreign))
    with pytest.raises(DamagedFileError, match="not an l2t-gym teacher"):
        BernoulliTeacher.load(foreign)
    meta, tensors = read_raw(saved_teacher(tmp_path))

    def resealed(name, tensors):
        # Checksummed as l2t-gym would: only the structure checks can catch these.
        path = tmp_path / name
        save_file(tensors, str(path), metadata={**meta, "sha256": file_digest(meta, tensors)})
        return path

    partial = resealed("partial.safetensors", {k: v for k, v in tensors.items() if k != "2.bias"})
    with pytest.raises(DamagedFileError, match="not an l2t-gym teacher.*2.bias"):
        BernoulliTeacher.load(partial)
    misshapen = resealed("misshapen.safetensors", {**tensors, "0.weight": torch.zeros(12, 3)})
    with pytest.raises(DamagedFileError, match="weights do not fit its metadata"):
        BernoulliTeacher.load(misshapen)
    with pytest.raises(FileNotFoundError):
        BernoulliTeacher.load(tmp_path / "absent.safetensors")


def saved_teacher(folder) -> Path:
    path = folder / "teacher.safetensors"
    teacher = BernoulliTeacher(NAMES, hidden=5, init_keep=0.8, seed=3)
    with torch.no_grad():
        teacher.policy[2].weight.add_(1.0)  # not the initial values: every byte matters
    teacher.save(path, task="digits")
    return path


def read_raw(path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable


@pytest.mark.parametrize("region", ["header length", "metadata and layout", "weights"])
def test_a_flipped_byte_anywhere_in_a_teacher_file_is_refused(tmp_path, region):
    path = saved_teacher(tmp_path)
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")  # safetensors: u64 length, JSON, data
    positions = {
        "header length": range(8),
        "metadata and layout": range(8, header_end),
        "weights": range(header_end, len(data)),
    }[region]
    for i in positions:
        for mask in (0x01, 0x80, 0xFF):
            damaged = pytest.raises(DamagedFileError, match="not an l2t-gym teacher file")
            with flipped(path, i, mask), damaged as err:
                BernoulliTeacher.load(path)
            assert str(path) in str(err.value)
    assert path.read_bytes() == data and BernoulliTeacher.load(path).task == "digits"


def test_an_edited_metadata_value_is_refused(tmp_path):
    meta, tensors = read_raw(saved_teacher(tmp_path))
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata={**meta, "init_keep": "0.3"})
    with pytest.raises(DamagedFileError, match="do not match their SHA-256"):
        BernoulliTeacher.load(edited)
    # A file that claims to be version 1 is still held to a checksum it carries.
    save_file(tensors, str(edited), metadata={**meta, "format_version": "1"})
    with pytest.raises(DamagedFileError, match="do not match their SHA-256"):
        BernoulliTeacher.load(edited)
    del meta["sha256"]
    save_file(tensors, str(edited), metadata=meta)
    with pytest.raises(DamagedFileError, match="checksum is missing"):
        BernoulliTeacher.load(edited)


def test_a_version_1_teacher_file_loads_unchecked_with_a_warning(tmp_path):
    meta, tensors = read_raw(saved_teacher(tmp_path))
    del meta["sha256"]
    old = tmp_path / "v1.safetensors"
    save_file(tensors, str(old), metadata={**meta, "format_version": "1"})  # as l2t-gym 0.x did
    with pytest.warns(UserWarning, match="loaded unchecked.*Save it again"):
        teacher = BernoulliTeacher.load(old)
    for key, value in teacher.policy.state_dict().items():
        assert torch.equal(value, tensors[key])
    teacher.save(old)  # saving again adds the checksum
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BernoulliTeacher.load(old).task == "digits"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"hidden": 0}, "hidden"),
        ({"init_keep": 0.0}, "init_keep"),
        ({"init_keep": 1.0}, "init_keep"),
        ({"feature_names": ()}, "feature_names"),
        ({"feature_names": ("loss", "loss")}, "feature_names"),
        ({"inputs": ()}, "inputs"),
        ({"inputs": ("loss", "loss")}, "inputs"),
        ({"inputs": ("loss", "loss_rank")}, r"inputs.*\['loss_rank'\] are not columns"),
        ({"inputs": "loss"}, "inputs must be a sequence"),
    ],
)
def test_bernoulli_rejects_bad_arguments(kwargs, named):
    with pytest.raises(ValueError, match=named):
        BernoulliTeacher(**{"feature_names": NAMES, **kwargs})


# -- make_teacher ---------------------------------------------------------------------------
def test_make_teacher_names():
    assert isinstance(make_teacher("noteach"), NoTeach)
    assert make_teacher("rand", keep_prob=0.3).keep_prob == 0.3
    assert make_teacher("spl", min_keep=2).min_keep == 2
    assert make_teacher("LossRank", keep_ratio=0.2).keep_ratio == 0.2
    with pytest.raises(ValueError, match="keep_prob"):
        make_teacher("rand")
    with pytest.raises(ValueError, match="unknown teacher 'nope'"):
        make_teacher("nope")


def test_teachers_find_their_columns_by_name_when_optional_columns_are_appended():
    extras = ("loss_rank", "kept_fraction", "irreducible_loss")
    plain = gym.make("L2T-Digits-v0", device="cpu")
    extended = gym.make("L2T-Digits-v0", device="cpu", extra_features=extras)
    names = extended.unwrapped.feature_names
    teachers = [LossRank(0.5), LossRank(0.5)]
    teachers[0].reset(plain.unwrapped.feature_names)
    teachers[1].reset(names)
    assert teachers[1].column("loss") == names.index("loss") and names[-1] == "irreducible_loss"
    assert teachers[1].column("kept_fraction") == len(names) - 2
    a, _ = plain.reset(seed=0)
    b, _ = extended.reset(seed=0)
    for _ in range(4):
        keep = teachers[0].act(a)
        np.testing.assert_array_equal(keep, teachers[1].act(b))
        a, *_ = plain.step(keep)
        b, *_ = extended.step(keep)


def test_a_saved_bernoulli_teacher_refuses_a_layout_with_other_optional_columns(tmp_path):
    with_extra = feature_names(10, (), ("loss_rank",))
    for saved, other in ((NAMES, with_extra), (with_extra, NAMES)):
        path = tmp_path / "teacher.safetensors"
        BernoulliTeacher(saved).save(path)
        with pytest.raises(ValueError, match="different observation layout") as err:
            BernoulliTeacher.load(path, expected_feature_names=other)
        assert str(list(other)) in str(err.value)
        loaded = BernoulliTeacher.load(path, expected_feature_names=saved)
        assert loaded.layout == saved
        with pytest.raises(ValueError, match="different observation layout"):
            loaded.reset(other)
        loaded.reset(saved, seed=0)
        obs = np.zeros((32, len(saved)), dtype=np.float32)
        assert loaded.act(obs).shape == (32,)


# -- inputs: the columns a Bernoulli teacher reads ------------------------------------------
SCALE_FREE = ("margin", "loss_rank")


def test_a_teacher_reads_only_its_inputs():
    names = feature_names(10, (), ("loss_rank",))
    teacher = BernoulliTeacher(names, hidden=3, seed=0, inputs=("loss_rank", "margin"))
    assert teacher.inputs == SCALE_FREE  # the observation's order, whatever order given
    assert teacher.policy[0].in_features == 2
    with torch.no_grad():
        teacher.policy[2].weight.fill_(1.0)
        teacher.policy[0].weight.copy_(torch.arange(6.0).reshape(3, 2))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2, 32, len(names))).astype(np.float32)
    z = teacher.logits(obs)
    # The same network applied by hand to the two columns alone.
    cols = obs[..., [names.index("margin"), names.index("loss_rank")]]
    by_hand = teacher.policy(torch.as_tensor(cols)).squeeze(-1)
    assert torch.equal(z, by_hand)
    # Changing any other column changes nothing.
    other = obs.copy()
    other[..., names.index("loss")] += 100.0
    other[..., names.index("iteration")] = 1.0
    assert torch.equal(teacher.logits(other), z)
    other[..., names.index("margin")] += 0.5
    assert not torch.equal(teacher.logits(other), z)


def test_a_teacher_given_every_column_is_the_papers():
    paper = BernoulliTeacher(NAMES, hidden=4, seed=5)
    every = BernoulliTeacher(NAMES, hidden=4, seed=5, inputs=tuple(reversed(NAMES)))
    assert every.inputs == paper.inputs == NAMES
    for a, b in zip(paper.policy.parameters(), every.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    obs = realistic_obs(np.random.default_rng(1))
    assert torch.equal(paper.logits(obs), every.logits(obs))


def test_inputs_survive_save_and_load_and_only_a_subset_bumps_the_version(tmp_path):
    names = feature_names(10, (), ("loss_rank",))
    teacher = BernoulliTeacher(names, hidden=3, seed=0, inputs=SCALE_FREE)
    with torch.no_grad():
        teacher.policy[2].weight.fill_(0.7)
    path = tmp_path / "subset.safetensors"
    teacher.save(path)
    meta, _ = read_raw(path)
    assert meta["format_version"] == "3" and json.loads(meta["inputs"]) == list(SCALE_FREE)
    loaded = BernoulliTeacher.load(path, expected_feature_names=names)
    assert loaded.inputs == SCALE_FREE
    obs = np.random.default_rng(2).normal(size=(32, len(names))).astype(np.float32)
    np.testing.assert_array_equal(loaded.keep_probabilities(obs), teacher.keep_probabilities(obs))
    full = tmp_path / "full.safetensors"
    BernoulliTeacher(names, hidden=3, seed=0).save(full)
    meta, _ = read_raw(full)
    assert meta["format_version"] == "2" and "inputs" not in meta


def test_damaged_inputs_metadata_is_refused(tmp_path):
    names = feature_names(10, (), ("loss_rank",))
    path = tmp_path / "subset.safetensors"
    BernoulliTeacher(names, hidden=3, seed=0, inputs=SCALE_FREE).save(path)
    meta, tensors = read_raw(path)
    for bad, match in (("[]", "inputs metadata"), ('["nope"]', "weights do not fit")):
        edited = {**meta, "inputs": bad}
        save_file(tensors, str(path), metadata={**edited, "sha256": file_digest(edited, tensors)})
        with pytest.raises(DamagedFileError, match=match):
            BernoulliTeacher.load(path)
