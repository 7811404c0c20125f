"""Today's data-selection teachers (RHO-LOSS, InfoBatch, Selective-Backprop) on hand-made
observations, and make_teacher's specs: names, module:Class, SB3 zips, bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from l2t_gym.features import feature_names
from l2t_gym.teachers import (
    TEACHER_LABELS,
    TEACHER_NAMES,
    InfoBatch,
    NoTeach,
    RhoLoss,
    SelectiveBackprop,
    Teacher,
    make_teacher,
)

NAMES = feature_names(10)
RHO_NAMES = (*NAMES, "irreducible_loss")


def observation(losses, progress=0.0, names=NAMES, irreducible=None) -> np.ndarray:
    """Rows with the given losses (and irreducible losses), training progress, zeros elsewhere."""
    obs = np.zeros((len(losses), len(names)), dtype=np.float32)
    obs[:, names.index("loss")] = losses
    obs[:, names.index("iteration")] = progress
    if irreducible is not None:
        obs[:, names.index("irreducible_loss")] = irreducible
    return obs


class KeepFirst(Teacher):
    """A user's teacher, for make_teacher's module:Class: keeps the first ``n`` candidates."""

    def __init__(self, n: int = 1) -> None:
        super().__init__()
        self.n = n

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.arange(len(self.rows(obs))) < self.n


# -- RhoLoss ----------------------------------------------------------------------------------
def test_rholoss_keeps_the_highest_reducible_losses_not_the_highest_losses():
    rho = RhoLoss(keep_ratio=0.5)
    rho.reset(RHO_NAMES)
    # Loss 5 is mostly irreducible (noise); 2 - 0 and 3 - 0.5 are the learnable ones.
    obs = observation([5.0, 2.0, 0.5, 3.0], irreducible=[4.5, 0.0, 0.1, 0.5], names=RHO_NAMES)
    assert rho.act(obs).tolist() == [False, True, False, True]
    tied = observation([1.0, 1.0, 1.0], irreducible=[0.0, 0.0, 0.0], names=RHO_NAMES)
    one = RhoLoss(0.1)  # keeps at least one
    one.reset(RHO_NAMES)
    assert one.act(tied).tolist() == [True, False, False]  # ties: earlier position


def test_rholoss_without_the_column_says_how_to_build_the_env():
    assert RhoLoss.required_features == ("irreducible_loss",) and NoTeach.required_features == ()
    with pytest.raises(ValueError, match=r"extra_features=\('irreducible_loss',\)"):
        RhoLoss().reset(NAMES)


# -- InfoBatch --------------------------------------------------------------------------------
def test_infobatch_drops_only_below_mean_instances_at_about_rate_r():
    ib = InfoBatch(prune_ratio=0.3)
    ib.reset(NAMES, seed=0)
    assert ib.act(observation([1.0, 3.0])).all()  # no mean yet: the first batch is kept whole
    assert ib.mean_loss == 2.0
    low, high = [], []
    for _ in range(2000):
        keep = ib.act(observation([1.0, 3.0, 1.5, 2.5]))  # the mean stays 2
        low.append(keep[[0, 2]])
        high.append(keep[[1, 3]])
    assert np.all(high)
    assert 1 - np.mean(low) == pytest.approx(0.3, abs=0.02)


def test_infobatch_keeps_everything_once_training_passes_one_minus_delta():
    ib = InfoBatch(prune_ratio=0.9, anneal=0.25)
    ib.reset(NAMES, seed=1)
    ib.act(observation([1.0, 3.0]))
    dropped = sum((~ib.act(observation([1.0] * 8, progress=0.7))).sum() for _ in range(10))
    assert dropped > 0
    assert all(ib.act(observation([1.0] * 8, progress=0.75)).all() for _ in range(50))


def test_infobatch_is_seeded_and_reset_clears_the_running_mean():
    def run(seed):
        ib = InfoBatch()
        ib.reset(NAMES, seed=seed)
        return [ib.act(observation([1.0, 3.0, 0.5, 0.2])).tolist() for _ in range(20)], ib

    (a, ib), (b, _) = run(3), run(3)
    assert a == b
    ib.reset(NAMES, seed=3)
    assert np.isnan(ib.mean_loss) and ib.act(observation([0.1, 9.0])).all()


# -- SelectiveBackprop -------------------------------------------------------------------------
def test_selective_backprop_cdf_counts_the_last_history_losses():
    sb = SelectiveBackprop(history=4)
    sb.reset(NAMES)
    assert sb.cdf(np.array([0.0])).tolist() == [1.0]  # nothing remembered yet
    sb.remember(np.array([9.0, 9.0, 1.0, 2.0, 3.0, 4.0]))  # only the last 4 stay
    assert sb.cdf(np.array([0.5, 1.0, 2.5, 4.0, 5.0])).tolist() == [0, 0.25, 0.5, 1, 1]
    sb.remember(np.array([0.0]))  # forgets 1.0, the oldest
    assert sb.cdf(np.array([1.0])).tolist() == [0.25]


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_selective_backprop_keeps_with_probability_cdf_to_the_beta(beta):
    sb = SelectiveBackprop(beta=beta, history=4)
    sb.reset(NAMES, seed=0)
    # The history is always this batch: F = 1/4, 2/4, 3/4, 1.
    kept = np.mean([sb.act(observation([1.0, 2.0, 3.0, 4.0])) for _ in range(4000)], axis=0)
    expected = np.array([0.25, 0.5, 0.75, 1.0]) ** beta
    np.testing.assert_allclose(kept, expected, atol=0.025)


def test_selective_backprop_reset_clears_the_history():
    sb = SelectiveBackprop(history=8)
    sb.reset(NAMES)
    sb.act(observation([5.0, 6.0]))
    sb.reset(NAMES)
    assert sb.cdf(np.array([0.0])).tolist() == [1.0]
    twin = sb.spawn()
    twin.reset(NAMES)
    twin.act(observation([1.0]))
    assert sb.cdf(np.array([0.0])).tolist() == [1.0]  # a spawned copy has its own history


# -- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs", "named"),
    [
        (RhoLoss, {"keep_ratio": 0.0}, "keep_ratio"),
        (RhoLoss, {"keep_ratio": 1.5}, "keep_ratio"),
        (InfoBatch, {"prune_ratio": 1.0}, "prune_ratio"),
        (InfoBatch, {"prune_ratio": -0.1}, "prune_ratio"),
        (InfoBatch, {"anneal": 1.5}, "anneal"),
        (SelectiveBackprop, {"beta": -1.0}, "beta"),
        (SelectiveBackprop, {"beta": float("nan")}, "beta"),
        (SelectiveBackprop, {"history": 0}, "history"),
        (SelectiveBackprop, {"history": 2.5}, "history"),
    ],
)
def test_selection_teachers_refuse_bad_parameters_by_name(cls, kwargs, named):
    with pytest.raises(ValueError, match=named):
        cls(**kwargs)


# -- make_teacher -----------------------------------------------------------------------------
def test_make_teacher_knows_the_new_names_and_every_name_has_a_label():
    assert isinstance(make_teacher("RhoLoss", keep_ratio=0.2), RhoLoss)
    assert make_teacher("infobatch", prune_ratio=0.7).prune_ratio == 0.7
    assert make_teacher("selectivebackprop", beta=2).beta == 2.0
    assert set(TEACHER_NAMES) | {"l2t"} == set(TEACHER_LABELS)
    assert TEACHER_LABELS["rholoss"] == "RHO-LOSS" and TEACHER_LABELS["spl"] == "SPL"


def test_make_teacher_imports_module_class_with_keyword_arguments():
    assert isinstance(make_teacher("l2t_gym.teachers:NoTeach"), NoTeach)
    teacher = make_teacher("test_selection:KeepFirst", n=2)
    teacher.reset(NAMES)
    assert teacher.act(observation([1.0, 2.0, 3.0])).tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("no_such_module_xyz:Teacher", {}, "cannot import module 'no_such_module_xyz'"),
        ("l2t_gym.teachers:Nope", {}, "has no attribute 'Nope'"),
        ("l2t_gym.teachers:make_teacher", {}, "not a subclass of l2t_gym.teachers.Teacher"),
        ("l2t_gym.teachers:Teacher", {}, "abstract"),
        ("l2t_gym.teachers:NoTeach", {"keep_ratio": 0.5}, r"bad keyword arg.*keep_ratio"),
        ("lossrank", {"ratio": 0.5}, "bad keyword arguments"),
        ("nope", {}, "unknown teacher 'nope'.*module:Class"),
    ],
)
def test_make_teacher_refuses_bad_specs_naming_them(spec, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        make_teacher(spec, **kwargs)
    assert repr(spec) in str(err.value)


def test_make_teacher_loads_an_sb3_zip_as_a_teacher(tmp_path):
    from stable_baselines3 import PPO
    from synthetic_env import SyntheticTeachingEnv

    from l2t_gym.sb3 import InstancePolicy, InstanceTeacher

    env = SyntheticTeachingEnv()
    PPO(InstancePolicy, env, n_steps=8, batch_size=8, device="cpu").save(tmp_path / "ppo.zip")
    teacher = make_teacher(tmp_path / "ppo.zip", deterministic=True)
    assert isinstance(teacher, InstanceTeacher) and teacher.deterministic
    teacher.reset(env.feature_names, seed=0)
    obs, _ = env.reset(seed=0)
    assert teacher.act(obs).shape == (len(obs),)
    with pytest.raises(ValueError, match="rows of"):
        make_teacher(tmp_path / "ppo.zip", expected_feature_names=("loss",))
    with pytest.raises(ValueError, match="algo 'Nope'"):
        make_teacher(tmp_path / "ppo.zip", algo="Nope")


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("rand", {"keep_prob": "abc"}, r"teacher 'rand': could not convert.*keep_prob"),
        ("infobatch", {"prune_ratio": 2}, r"teacher 'infobatch': prune_ratio must lie in"),
        ("rholoss", {"keep_ratio": 0}, r"teacher 'rholoss': keep_ratio must lie in"),
    ],
)
def test_values_a_teacher_refuses_are_reported_with_the_teachers_name(spec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_teacher(spec, **kwargs)


@pytest.mark.parametrize("spec", [None, 3, 0.5])
def test_a_spec_that_is_no_string_or_path_is_refused_saying_what_was_expected(spec):
    with pytest.raises(TypeError, match="teacher spec must be a name, a path or"):
        make_teacher(spec)
