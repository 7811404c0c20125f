"""One validated settings object (``l2t_gym.settings``): the task table's defaults, keyword
arguments over them, errors that name the argument, and what the settings build (the data,
the fold, a seeded student, its optimiser)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from l2t_gym import TASKS, L2TEnv
from l2t_gym.data import RawData
from l2t_gym.settings import (
    ARGUMENTS,
    DEFAULTS,
    DIVERGENCE_LOSS,
    TASK_DEFAULTS,
    Settings,
    resolve_device,
)
from l2t_gym.vector import L2TVectorEnv


def resolve(**kwargs) -> Settings:
    return Settings.resolve("digits", **{"device": "cpu", **kwargs})


# -- defaults and overrides -------------------------------------------------------------------
@pytest.mark.parametrize("task", list(TASKS))
def test_every_default_comes_from_the_task_table_or_the_env_defaults(task):
    settings = Settings.resolve(task, device="cpu")
    spec = TASKS[task]
    assert settings.task == task and settings.spec is spec
    for name in TASK_DEFAULTS:
        assert getattr(settings, name) == getattr(spec, name), name
    for name, value in DEFAULTS.items():
        if name not in ("max_teacher_steps", "device", "divergence_loss"):
            assert getattr(settings, name) == value, name
    assert settings.max_teacher_steps == 10 * spec.max_iters
    assert settings.divergence_loss == DIVERGENCE_LOSS * math.log(spec.num_classes)
    assert settings.num_classes == spec.num_classes
    assert len(settings.feature_names) == 2 * spec.num_classes + 5 + len(spec.extra_names)


@pytest.mark.parametrize(
    "name, value",
    [
        ("tau", 0.5),
        ("max_iters", 17),
        ("batch_size", 9),
        ("eval_every", 4),
        ("student", "mlp-8"),
        ("optimizer", "adam"),
        ("lr", 0.003),
        ("momentum", 0.5),
        ("weight_decay", 1e-3),
        ("augment", True),
        ("dev_fraction", 0.3),
        ("fold", "student"),
        ("mode", "mask"),
        ("max_teacher_steps", 3),
        ("candidate_cost", 0.25),
        ("report_test", "eval"),
        ("precision", "bf16"),
    ],
)
def test_a_keyword_argument_overrides_its_default_and_none_keeps_it(name, value):
    default = getattr(resolve(), name)
    assert value != default
    assert getattr(resolve(**{name: value}), name) == value
    assert getattr(resolve(**{name: None}), name) == default


def test_the_truncation_cap_follows_the_budget_unless_given():
    assert resolve(max_iters=7).max_teacher_steps == 70
    assert resolve(max_iters=7, max_teacher_steps=9).max_teacher_steps == 9


def test_every_argument_is_documented_in_the_env_and_taken_by_both_envs():
    doc = L2TEnv.__doc__
    for name in ARGUMENTS:
        assert f"``{name}``" in doc, name
    # None stands for the default of every argument: both envs take each one.
    defaults = {name: None for name in ARGUMENTS}
    for env in (L2TEnv("digits", **defaults), L2TVectorEnv(2, "digits", **defaults)):
        assert env.settings.tau == TASKS["digits"].tau


# -- errors -----------------------------------------------------------------------------------
def test_an_unknown_argument_is_a_type_error_that_names_it_and_lists_the_arguments():
    with pytest.raises(TypeError, match="unexpected argument.*tua.*tau, max_iters"):
        resolve(tua=0.5)
    with pytest.raises(TypeError, match="tua"):
        L2TEnv("digits", tua=0.5)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": 1.5}, "tau"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_iters": -3}, "max_iters"),
        ({"eval_every": 0}, "eval_every"),
        ({"max_teacher_steps": 0}, "max_teacher_steps"),
        ({"candidate_cost": -1.0}, "candidate_cost"),
        ({"candidate_cost": float("nan")}, "candidate_cost"),
        ({"fold": "train"}, "fold"),
        ({"mode": "fast"}, "mode"),
        ({"device": "tpu"}, "device"),
        ({"device": "nonsense:device"}, "device"),
        ({"student": "mlp-0"}, "student"),
        ({"student": "vgg16"}, "student"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"dev_fraction": 1.0}, "dev_fraction"),
        ({"report_test": "always"}, "report_test"),
        ({"precision": "fp16"}, "precision"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"momentum": 1.5}, "momentum"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": float("inf")}, "weight_decay"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"tau": float("nan")}, "tau"),
        ({"dev_fraction": float("nan")}, "dev_fraction"),
        ({"divergence_loss": 0.0}, "divergence_loss"),
        ({"divergence_loss": float("nan")}, "divergence_loss"),
        ({"candidate_cost": float("inf")}, "candidate_cost"),
        ({"report_test": "no"}, "report_test"),
    ],
)
def test_a_value_out_of_range_is_a_value_error_that_names_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=named):
        resolve(**kwargs)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        # No float becomes an integer, even a whole one, and no other number does either.
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": 32.0}, "batch_size"),
        ({"batch_size": float("inf")}, "batch_size"),
        ({"batch_size": float("nan")}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"max_iters": "100"}, "max_iters"),
        ({"eval_every": 1.5}, "eval_every"),
        ({"max_teacher_steps": 10.0}, "max_teacher_steps"),
        # Nothing but True or False is a flag: strings and numbers are not.
        ({"augment": "False"}, "augment"),
        ({"download": "no"}, "download"),
        ({"compile": "False"}, "compile"),
        ({"channels_last": 1}, "channels_last"),
        ({"augment": 0}, "augment"),
        # Numbers are numbers.
        ({"tau": "abc"}, "tau"),
        ({"lr": "0.1"}, "lr"),
        ({"momentum": [0.9]}, "momentum"),
        ({"candidate_cost": "free"}, "candidate_cost"),
        ({"divergence_loss": True}, "divergence_loss"),
        ({"student": 64}, "student"),
        ({"data_root": 3}, "data_root"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_type_error_that_names_the_argument(kwargs, named):
    with pytest.raises(TypeError, match=named):
        resolve(**kwargs)


@pytest.mark.parametrize("kwargs", [{"lr": -0.1}, {"batch_size": 2.5}, {"augment": "False"}])
def test_both_envs_refuse_bad_arguments_when_built_not_at_reset(kwargs):
    for make in (
        lambda: L2TEnv("digits", device="cpu", **kwargs),
        lambda: L2TVectorEnv(4, "digits", device="cpu", **kwargs),
        lambda: gym.make_vec("L2T-Digits-v0", num_envs=4, device="cpu", **kwargs),
        lambda: gym.make("L2T-Digits-v0", device="cpu", **kwargs),
    ):
        with pytest.raises((TypeError, ValueError), match=next(iter(kwargs))):
            make()


def test_numpy_numbers_and_whole_python_numbers_are_accepted_where_they_lose_nothing():
    s = resolve(batch_size=np.int64(16), lr=1, tau=np.float32(0.5), augment=np.bool_(True))
    assert (s.batch_size, s.lr, s.augment) == (16, 1.0, True)
    assert type(s.batch_size) is int and type(s.lr) is float and type(s.augment) is bool
    assert s.tau == pytest.approx(0.5)


def test_an_unknown_task_is_a_value_error_listing_the_tasks():
    with pytest.raises(ValueError, match="unknown task 'imagenet'.*digits"):
        Settings.resolve("imagenet")


def test_channels_last_needs_4d_image_inputs():
    with pytest.raises(ValueError, match="channels_last needs 4-D image inputs"):
        Settings.resolve("imdb", device="cpu", channels_last=True)
    rng = np.random.default_rng(0)
    flat = RawData.from_arrays(
        rng.normal(size=(50, 64)), np.arange(50) % 10, rng.normal(size=(10, 64)), np.arange(10), 10
    )
    with pytest.raises(ValueError, match="channels_last needs 4-D image inputs"):
        resolve(data=flat, channels_last=True)
    resolve(data=flat)  # the same data without the option are fine
    assert Settings.resolve("cifar10", device="cpu", channels_last=True).channels_last


def test_data_must_be_raw_data_with_the_tasks_classes():
    with pytest.raises(TypeError, match="RawData"):
        resolve(data=np.zeros((4, 64)))
    rng = np.random.default_rng(0)
    three = RawData.from_arrays(
        rng.normal(size=(30, 64)), np.arange(30) % 3, rng.normal(size=(6, 64)), np.arange(6) % 3, 3
    )
    with pytest.raises(ValueError, match="10 classes, data has 3"):
        resolve(data=three)


def test_data_without_the_tasks_per_instance_features_is_refused_at_loading():
    rng = np.random.default_rng(0)
    tokens = RawData.from_arrays(
        rng.integers(1, 50, size=(20, 8)), np.arange(20) % 2, rng.integers(1, 50, size=(4, 8)),
        np.arange(4) % 2, 2,
    )  # fmt: skip
    settings = Settings.resolve("imdb", device="cpu", data=tokens)
    with pytest.raises(ValueError, match="review_length"):
        settings.load_data()


def test_split_is_the_deprecated_name_of_fold():
    with pytest.warns(DeprecationWarning, match="split.*fold"):
        settings = resolve(split="student")
    assert settings.fold == "student"


def test_replace_checks_again_and_leaves_the_original_as_it_was():
    settings = resolve()
    assert settings.replace(tau=0.5).tau == 0.5 and settings.tau == TASKS["digits"].tau
    with pytest.raises(ValueError, match="tau"):
        settings.replace(tau=2.0)
    with pytest.raises(AttributeError):
        settings.tau = 0.5  # frozen


# -- devices ----------------------------------------------------------------------------------
def test_devices_resolve_to_torch_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("mps")


# -- what the settings build ------------------------------------------------------------------
def test_the_dataset_is_loaded_once_and_shared():
    a, b = resolve(), resolve(fold="student", batch_size=8)
    assert a.load_data() is b.load_data()
    one, other = L2TEnv("digits", device="cpu"), L2TEnv("digits", device="cpu", fold="student")
    one.reset(seed=0)
    other.reset(seed=0)
    assert one.run.data is other.run.data


def test_the_two_folds_share_no_instance():
    settings = resolve()
    data = settings.load_data()
    teacher, student = settings.fold_of(data), settings.replace(fold="student").fold_of(data)
    assert not set(teacher.train) & set(student.train)
    assert not set(teacher.dev) & (set(student.train) | set(teacher.train) | set(student.dev))


def test_a_student_is_drawn_from_its_seed_and_leaves_torchs_generator_alone():
    settings = resolve()
    data = settings.load_data()
    state = torch.random.get_rng_state()
    a, b, c = (settings.build_student(data, seed) for seed in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_a_student_callable_is_built_under_the_seed_and_must_return_a_module():
    def factory():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    settings = resolve(student=factory)
    data = settings.load_data()
    a, b = settings.build_student(data, 1), settings.build_student(data, 1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(TypeError, match="nn.Module"):
        resolve(student=lambda: "not a module").build_student(data, 0)
    with pytest.raises(TypeError, match="nn.Module"):  # through the env, at its first reset
        L2TEnv("digits", device="cpu", student=lambda: "not a module").reset(seed=0)


def test_the_optimiser_is_sgd_with_momentum_adam_or_the_callable_given():
    params = [nn.Parameter(torch.zeros(3))]
    sgd = resolve(lr=0.2, momentum=0.8, weight_decay=0.01).build_optimizer(params)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.2, 0.8, 0.01)
    adam = resolve(optimizer="adam", lr=0.003).build_optimizer(params)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.003
    own = resolve(optimizer=lambda p: torch.optim.RMSprop(p, lr=0.5)).build_optimizer(params)
    assert isinstance(own, torch.optim.RMSprop)


# -- reward="thresholds" --------------------------------------------------------------------
@pytest.mark.parametrize("task", list(TASKS))
def test_the_thresholds_default_to_the_tasks_and_end_at_its_tau(task):
    settings = Settings.resolve(task, device="cpu", reward="thresholds")
    spec = TASKS[task]
    assert settings.taus == spec.thresholds and settings.tau_weights == spec.threshold_weights
    assert settings.tau == spec.thresholds[-1] == spec.tau
    assert len(spec.thresholds) == len(spec.threshold_weights)
    assert list(spec.thresholds) == sorted(set(spec.thresholds))


def test_the_paper_reward_has_no_thresholds():
    settings = resolve()
    assert settings.reward == "paper" and settings.taus is None and settings.tau_weights is None


def test_given_taus_set_tau_to_their_highest_and_lists_and_arrays_become_tuples():
    settings = resolve(reward="thresholds", taus=[0.5, 0.7], tau_weights=np.array([1, 3]))
    assert settings.taus == (0.5, 0.7) and settings.tau_weights == (1.0, 3.0)
    assert settings.tau == 0.7
    assert resolve(reward="thresholds", taus=(0.5, 0.7), tau_weights=(1, 1), tau=0.7).tau == 0.7
    with pytest.raises(ValueError, match="tau_weights.*per threshold.*task's default"):
        resolve(reward="thresholds", taus=(0.5, 0.7))  # the task's three weights do not fit
    # replace() passes every argument again, tau included: it must still agree.
    assert settings.replace(fold="student").taus == (0.5, 0.7)


@pytest.mark.parametrize(
    "kwargs, error, named",
    [
        ({"reward": "dense"}, ValueError, "reward"),
        ({"taus": (0.5, 0.9)}, ValueError, "taus.*reward='thresholds'"),
        ({"tau_weights": (1.0,)}, ValueError, "tau_weights.*reward='thresholds'"),
        ({"reward": "thresholds", "tau": 0.9}, ValueError, "tau=0.9 conflicts"),
        ({"reward": "thresholds", "taus": ()}, ValueError, "taus"),
        ({"reward": "thresholds", "taus": 0.9}, TypeError, "taus"),
        ({"reward": "thresholds", "taus": "0.9"}, TypeError, "taus"),
        ({"reward": "thresholds", "taus": (0.9, 0.8, 0.95)}, ValueError, "taus.*increasing"),
        ({"reward": "thresholds", "taus": (0.8, 0.8, 0.9)}, ValueError, "taus.*increasing"),
        ({"reward": "thresholds", "taus": (0.0, 0.8, 0.9)}, ValueError, r"taus\[0\]"),
        ({"reward": "thresholds", "taus": (0.8, 0.9, 1.5)}, ValueError, r"taus\[2\]"),
        ({"reward": "thresholds", "taus": (0.8, math.nan, 0.9)}, ValueError, r"taus\[1\]"),
        ({"reward": "thresholds", "taus": (0.8, True, 0.9)}, TypeError, r"taus\[1\]"),
        ({"reward": "thresholds", "tau_weights": (1.0, 1.0)}, ValueError, "tau_weights.*one"),
        ({"reward": "thresholds", "tau_weights": (1.0, -1.0, 1.0)}, ValueError, "tau_weights"),
        ({"reward": "thresholds", "tau_weights": (1.0, math.inf, 1.0)}, ValueError, "tau_w"),
        ({"reward": "thresholds", "tau_weights": (0, 0.0, 0)}, ValueError, "weights must not all"),
    ],
)
def test_bad_reward_arguments_are_refused_naming_the_argument(kwargs, error, named):
    with pytest.raises(error, match=named):
        resolve(**kwargs)


@pytest.mark.parametrize(
    "value, error",
    [
        ("loss_rank", TypeError),
        ((1,), TypeError),
        (("rank",), ValueError),
        (("loss_rank", "loss_rank"), ValueError),
    ],
)
def test_bad_extra_features_are_refused_by_both_envs_and_gym_naming_the_argument(value, error):
    for make in (
        lambda: L2TEnv("digits", device="cpu", extra_features=value),
        lambda: L2TVectorEnv(2, "digits", device="cpu", extra_features=value),
        lambda: gym.make("L2T-Digits-v0", device="cpu", extra_features=value),
        lambda: gym.make_vec("L2T-Digits-v0", num_envs=2, device="cpu", extra_features=value),
    ):
        with pytest.raises(error, match="extra_features.*loss_rank") as err:
            make()
        assert "irreducible_loss" in str(err.value)  # every name available is listed


def test_extra_features_pass_through_gym_make_and_make_vec_as_a_tuple():
    names = ["margin_rank", "kept_fraction"]
    env = gym.make("L2T-Digits-v0", device="cpu", extra_features=names)
    vec = gym.make_vec("L2T-Digits-v0", num_envs=2, device="cpu", extra_features=names)
    for settings in (env.unwrapped.settings, vec.unwrapped.settings):
        assert settings.extra_features == ("margin_rank", "kept_fraction")
        assert settings.feature_names[-2:] == ("margin_rank", "kept_fraction")
    assert env.unwrapped.feature_names == vec.unwrapped.feature_names
    assert vec.single_observation_space.shape == (32, 27)
    assert resolve(extra_features=None).extra_features == ()


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: nn.Linear(5, 10), r"cannot read the task's inputs of shape \(N, 1, 8, 8\)"),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), r"returns \(2, 3\).*\(2, 10\)"),
    ],
)
def test_a_student_callable_whose_module_does_not_fit_the_task_is_refused_naming_it(
    factory, message
):
    for env in (
        gym.make("L2T-Digits-v0", device="cpu", student=factory),
        L2TVectorEnv(2, "digits", device="cpu", student=factory),
    ):
        with pytest.raises(ValueError, match="student: .*" + message):
            env.reset(seed=0)


def test_checking_a_student_callables_module_changes_nothing_it_builds():
    def factory():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 10))

    settings = Settings.resolve("digits", device="cpu", student=factory)
    data = settings.load_data()
    checked = settings.build_student(data, seed=3)  # the first build runs the check
    again = settings.build_student(data, seed=3)
    assert checked.training and again.training
    for (name, a), (_, b) in zip(
        checked.state_dict().items(), again.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
