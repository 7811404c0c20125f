"""l2t_gym.experiment: the configuration's checks and command-line helpers, and the recipes that
hold logic (env building, heuristics at a ratio, the LossRank sweep, the paper's comparison,
teacher training's warm start and control)."""

from __future__ import annotations

import argparse
import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from fabricate import write_mirror

from l2t_gym import ENV_IDS, TASKS
from l2t_gym.data import RawData
from l2t_gym.data.vision import normalise_cifar10
from l2t_gym.experiment import (
    ExperimentConfig,
    add_arguments,
    available_baselines,
    best_lossrank_ratio,
    best_setting,
    best_settings,
    checkpoint_folder,
    compare_teachers,
    config_from_arguments,
    env_kwargs,
    feature_names,
    feature_overrides,
    field_docs,
    heuristics_at,
    load_extra,
    make_env,
    make_vector_env,
    parse_key_value,
    train_teacher,
)
from l2t_gym.teachers import (
    BernoulliTeacher,
    LossRank,
    NoTeach,
    RandTeach,
    RhoLoss,
    SelectiveBackprop,
    SelfPaced,
    run_episode,
)

TINY = {"max_iters": 8}


def tiny(**fields) -> ExperimentConfig:
    return ExperimentConfig(**{"env_args": TINY, "device": "cpu", **fields})


# -- the configuration -------------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(TASKS))
def test_env_id_is_derived_from_the_task_table(task):
    for name in (task, TASKS[task].env_id):
        cfg = ExperimentConfig(task=name)
        assert cfg.task == task and cfg.env_id == TASKS[task].env_id
        assert gym.spec(cfg.env_id).kwargs["task"] == task == ENV_IDS[cfg.env_id]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"task": "svhn"}, r"task: unknown task 'svhn'; expected one of \['cifar10'"),
        ({"env_args": {"tua": 0.9}}, r"env_args: 'tua' is not an L2TEnv argument"),
        ({"env_args": {"fold": "teacher"}}, r"env_args: 'fold' is set by .*--fold"),
        ({"offline_mnist": "x"}, r"offline_mnist: it is MNIST data; the task is 'digits'"),
        ({"offline_cifar10": "x"}, r"offline_cifar10: it is CIFAR-10 data; the task is 'digits'"),
        (
            {"task": "mnist", "offline_cifar10": "x"},
            r"offline_cifar10: it is CIFAR-10 data; the task is 'mnist'",
        ),
        ({"candidate_cost": -1.0}, r"candidate_cost must be >= 0"),
        ({"candidate_cost": float("nan")}, r"candidate_cost must be >= 0"),
        ({"students": 1}, r"students must be >= 2"),
        ({"episodes": -1}, r"episodes must be >= 0, got -1"),
        ({"sweep_students": 0}, r"sweep_students must be >= 1"),
        ({"extra": ["model.zip"]}, r"extra expects NAME=SPEC"),
        ({"ratios": (0.5, 1.5)}, r"ratios must be keep ratios in \(0, 1\]"),
        ({"lr": 0.0}, r"lr must be positive"),
        ({"baseline": "seed"}, r"baseline='seed' needs repeats >= 2"),
        ({"repeats": 3}, r"repeats must be a positive divisor of students_per_update \(8\)"),
        ({"lr_halve_every": 12}, r"lr_halve_every must be None or a positive multiple of "),
        ({"lr_halve_every": 0}, r"lr_halve_every must be None or a positive multiple of "),
        ({"weight_decay": -1e-4}, r"weight_decay must be a finite number >= 0"),
    ],
)
def test_config_errors_name_the_field(fields, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig(**fields)


def test_config_checks_again_when_replaced():
    cfg = ExperimentConfig()
    with pytest.raises(ValueError, match="students must be >= 2"):
        dataclasses.replace(cfg, students=0)


def test_reinforce_settings_come_from_the_config_in_one_place():
    cfg = ExperimentConfig(
        episodes=12, students_per_update=4, lr=0.5, baseline="seed", repeats=2, train_seed=7
    )
    rc = cfg.reinforce_config()
    assert (rc.episodes, rc.students_per_update, rc.lr, rc.seed) == (12, 4, 0.5, 7)
    assert (rc.baseline, rc.repeats, rc.checkpoint_every, rc.patience) == ("seed", 2, 0, None)
    assert cfg.reinforce_config(episodes=3).episodes == 3
    authors = ExperimentConfig(lr_halve_every=800, weight_decay=1e-4, baseline_momentum=0.2)
    rc = authors.reinforce_config()
    assert (rc.lr_halve_every, rc.weight_decay, rc.baseline_momentum) == (800, 1e-4, 0.2)
    assert (cfg.reinforce_config().lr_halve_every, cfg.reinforce_config().weight_decay) == (
        None,
        0.0,
    )
    assert cfg.student_seeds == list(range(1000, 1010))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("tau=0.9", ("tau", 0.9)),
        ('student="mlp-256"', ("student", "mlp-256")),
        ("baseline=seed", ("baseline", "seed")),  # a bare word stays a string
        ('env_args={"max_iters": 30}', ("env_args", {"max_iters": 30})),
        ("note=a=b", ("note", "a=b")),  # the first = splits
        ("vector=True", ("vector", True)),
    ],
)
def test_parse_key_value(item, expected):
    assert parse_key_value(item) == expected


@pytest.mark.parametrize("item", ["tau", "=0.9", ""])
def test_parse_key_value_names_the_option_it_came_from(item):
    with pytest.raises(ValueError, match="--base expects KEY=VALUE"):
        parse_key_value(item, "--base")


def test_every_field_has_a_docstring_and_an_option():
    docs = field_docs()
    names = [f.name for f in dataclasses.fields(ExperimentConfig)]
    assert sorted(docs) == sorted(names) and all(docs.values())
    parser = argparse.ArgumentParser()
    add_arguments(parser, ExperimentConfig(lr=0.5), flags={"train_seed": "--seed"})
    text = " ".join(parser.format_help().split())
    assert "--lr LR REINFORCE: Adam's learning rate. (default: 0.5)" in text
    assert "--seed TRAIN_SEED" in text and "--env-arg KEY=VALUE" in text


def test_options_round_trip_into_a_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser, ExperimentConfig())
    argv = ["--task", "L2T-Digits-v0", "--env-arg", "tau=0.9", "--env-arg", 'student="mlp-128"']
    argv += ["--ratios", "0.2", "0.4", "--vector", "--patience", "3", "--extra", "a=b.zip"]
    # --teacher-arg items belong to the --extra just before them.
    argv += ["--extra", "c=l2t_gym.teachers:LossRank", "--teacher-arg", "keep_ratio=0.3"]
    argv += ["--baselines", "infobatch"]
    cfg = config_from_arguments(parser.parse_args(argv))
    assert cfg == ExperimentConfig(
        task="digits",
        env_args={"tau": 0.9, "student": "mlp-128"},
        ratios=(0.2, 0.4),
        vector=True,
        patience=3,
        extra=["a=b.zip", "c=l2t_gym.teachers:LossRank"],
        extra_args=[{}, {"keep_ratio": 0.3}],
        baselines=("infobatch",),
    )
    assert config_from_arguments(parser.parse_args([])) == ExperimentConfig()
    assert config_from_arguments(parser.parse_args(["--baselines"])).baselines == ()
    with pytest.raises(SystemExit):  # a --teacher-arg with no teacher before it
        parser.parse_args(["--teacher-arg", "keep_ratio=0.3"])
    with pytest.raises(ValueError, match="--env-arg expects KEY=VALUE"):
        config_from_arguments(parser.parse_args(["--env-arg", "tau"]))


def test_offline_cifar10_option_sets_its_field_and_is_refused_for_another_task():
    parser = argparse.ArgumentParser()
    add_arguments(parser, ExperimentConfig())
    args = parser.parse_args(["--task", "cifar10", "--offline-cifar10", "some/mirror"])
    cfg = config_from_arguments(args)
    assert cfg == ExperimentConfig(task="cifar10", offline_cifar10="some/mirror")
    with pytest.raises(ValueError, match="offline_cifar10: it is CIFAR-10 data"):
        config_from_arguments(parser.parse_args(["--offline-cifar10", "some/mirror"]))


# -- envs ----------------------------------------------------------------------------------------
def test_env_kwargs_fold_and_precedence():
    cfg = tiny(candidate_cost=0.5, env_args={"candidate_cost": 0.25, "tau": 0.5})
    kwargs = env_kwargs(cfg, "student", report_test="eval")
    assert kwargs == {
        "device": "cpu",
        "candidate_cost": 0.25,  # env_args win over the fields
        "report_test": "eval",
        "tau": 0.5,
        "fold": "student",
    }
    env = make_env(cfg, "student").unwrapped
    assert (env.fold, env.candidate_cost, env.tau, env.task) == ("student", 0.25, 0.5, "digits")
    vec = make_vector_env(tiny(), "teacher", 3)
    assert vec.num_envs == 3 and tuple(vec.unwrapped.feature_names) == feature_names(tiny())


def test_offline_cifar10_envs_of_both_folds_share_the_mirror_loaded_once(tmp_path, monkeypatch):
    monkeypatch.setenv("L2T_DATA", str(tmp_path / "data_root"))  # the decoded cache goes here
    decoded = write_mirror(tmp_path / "mirror")
    cfg = tiny(task="cifar10", offline_cifar10=str(tmp_path / "mirror"))
    teacher, student = env_kwargs(cfg, "teacher"), env_kwargs(cfg, "student")
    data = teacher["data"]
    assert isinstance(data, RawData) and student["data"] is data
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.y_train.tolist() == [label for label, _ in decoded["train"]]
    pixels = np.stack([p for _, p in decoded["train"]])
    assert torch.equal(data.x_train, normalise_cifar10(pixels))
    assert len(list((tmp_path / "data_root" / "cache").glob("cifar10-jpg-*.npz"))) == 1
    # A config without the field keeps the task's own loader: no data argument at all.
    assert "data" not in env_kwargs(tiny(task="cifar10"), "teacher")


# -- heuristics and the comparison -------------------------------------------------------------
def test_heuristics_at_a_ratio():
    teachers = heuristics_at(0.534, best_ratio=0.2)
    assert list(teachers) == [
        "NoTeach",
        "RandTeach 0.53",
        "LossRank 0.53",
        "LossRank 0.20 (best)",
        "SPL",
    ]
    kinds = [type(t) for t in teachers.values()]
    assert kinds == [NoTeach, RandTeach, LossRank, LossRank, SelfPaced]
    assert teachers["RandTeach 0.53"].keep_prob == 0.534
    assert teachers["LossRank 0.53"].keep_ratio == 0.534
    assert teachers["LossRank 0.20 (best)"].keep_ratio == 0.2
    # A teacher that kept nothing still gets heuristics that train their students.
    assert list(heuristics_at(0.0)) == ["NoTeach", "RandTeach 0.01", "LossRank 0.01", "SPL"]
    assert heuristics_at(0.0)["RandTeach 0.01"].keep_prob == 0.01


def test_heuristics_at_runs_the_new_baselines_at_the_ratio_where_they_have_one_and_at_best():
    best = {"lossrank": 0.2, "infobatch": 0.3, "selectivebackprop": 0.25, "rholoss": 0.1}
    teachers = heuristics_at(0.5, best=best, baselines=list(best)[1:])
    assert list(teachers) == [
        "NoTeach",
        "RandTeach 0.50",
        "LossRank 0.50",
        "LossRank 0.20 (best)",
        "InfoBatch prune_ratio=0.70 (best)",  # no keep ratio: its best setting only
        "Selective-Backprop 0.50",
        "Selective-Backprop 0.25 (best)",
        "RHO-LOSS 0.50",
        "RHO-LOSS 0.10 (best)",
        "SPL",
    ]
    assert teachers["InfoBatch prune_ratio=0.70 (best)"].prune_ratio == pytest.approx(0.7)
    # beta = 1/r - 1 keeps r on average: 1 at one half, 3 at a quarter.
    assert teachers["Selective-Backprop 0.50"].beta == 1.0
    assert teachers["Selective-Backprop 0.25 (best)"].beta == 3.0
    assert teachers["RHO-LOSS 0.10 (best)"].keep_ratio == 0.1
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        heuristics_at(0.5, baselines=["nope"])


def test_every_baseline_runs_and_one_whose_column_the_env_lacks_is_left_out(capsys, monkeypatch):
    cfg = tiny()
    assert available_baselines(cfg) == ["rholoss", "infobatch", "selectivebackprop"]
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(RhoLoss, "required_features", ("no_such_column",))
    assert available_baselines(cfg) == ["infobatch", "selectivebackprop"]
    assert "RHO-LOSS left out of the comparison" in capsys.readouterr().err
    assert available_baselines(tiny(baselines=())) == []
    with pytest.raises(ValueError, match="baselines: unknown baseline 'nope'"):
        tiny(baselines=("nope",))


def test_best_setting_sweeps_each_baseline_on_the_teacher_fold():
    cfg = tiny(env_args={"max_iters": 30}, ratios=(0.25, 0.5), sweep_students=1)
    best, rewards = best_setting(cfg, "selectivebackprop")
    assert list(rewards) == [0.25, 0.5] and rewards[best] == max(rewards.values())
    env = make_env(cfg, "teacher")
    by_hand = run_episode(env, SelectiveBackprop(beta=1.0), seed=10_000).reward
    assert rewards[0.5] == by_hand
    with pytest.raises(ValueError, match="unknown baseline"):
        best_setting(cfg, "spl")


def test_best_lossrank_ratio_is_the_highest_mean_reward_on_the_teacher_fold():
    cfg = tiny(env_args={"max_iters": 40}, ratios=(0.1, 0.5, 1.0), sweep_students=2)
    best, rewards = best_lossrank_ratio(cfg)
    assert list(rewards) == [0.1, 0.5, 1.0] and rewards[best] == max(rewards.values())
    env = make_env(cfg, "teacher")
    by_hand = [run_episode(env, LossRank(0.5), seed=s).reward for s in (10_000, 10_001)]
    assert rewards[0.5] == pytest.approx(sum(by_hand) / 2)


def test_compare_teachers_probes_the_learned_ratio_then_runs_every_teacher():
    cfg = tiny(students=2, first_seed=5)
    seen = []
    results = compare_teachers(
        cfg,
        {"L2T": LossRank(0.5)},
        0.25,
        baselines=(),
        progress=lambda n, s, r: seen.append((n, s)),
    )
    names = ["NoTeach", "RandTeach 0.50", "LossRank 0.50", "LossRank 0.25 (best)", "SPL", "L2T"]
    assert list(results) == names
    assert seen == [("L2T", 5), ("L2T", 6)] + [(n, s) for s in (5, 6) for n in names]
    # The "learned" teacher is LossRank 0.5 itself: the heuristic at its ratio repeats its runs.
    for a, b in zip(results["L2T"], results["LossRank 0.50"], strict=True):
        assert (a.iterations, a.effective_instances, a.teacher_steps) == (
            b.iterations,
            b.effective_instances,
            b.teacher_steps,
        )
    # The student fold, with test accuracy at every dev evaluation.
    assert not any(math.isnan(p.test_accuracy) for p in results["SPL"][0].curve)
    with pytest.raises(ValueError, match="at least one learned teacher"):
        compare_teachers(cfg, {})


# -- teachers ----------------------------------------------------------------------------------
def test_training_can_start_from_a_saved_teacher(tmp_path):
    names = feature_names(tiny())
    saved = BernoulliTeacher(names, init_keep=0.2, seed=5)
    saved.save(tmp_path / "t.safetensors")
    cfg = tiny(
        episodes=1, students_per_update=1, lr=1e-9, init_teacher=str(tmp_path / "t.safetensors")
    )
    trained = train_teacher(cfg)
    assert len(trained.history) == 1 and trained.resumed_from is None
    for a, b in zip(trained.teacher.policy.parameters(), saved.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)  # lr 1e-9: it starts where it was
    fresh = train_teacher(dataclasses.replace(cfg, init_teacher=None)).teacher
    assert not torch.allclose(fresh.policy[2].bias, saved.policy[2].bias)


def test_zero_episodes_give_the_untrained_teacher(tmp_path):
    cfg = tiny(episodes=0, init_keep=0.4, train_seed=3, out=str(tmp_path))
    trained = train_teacher(cfg)
    assert trained.history == [] and trained.teacher.init_keep == 0.4
    untrained = BernoulliTeacher(feature_names(cfg), init_keep=0.4, seed=3)
    assert torch.equal(trained.teacher.policy[0].weight, untrained.policy[0].weight)


def test_resume_without_a_checkpoint_yet_starts_the_run(tmp_path):
    cfg = tiny(episodes=2, checkpoint_every=1, train_seed=3, out=str(tmp_path / "a"))
    resumed = train_teacher(cfg, resume=True)
    assert resumed.resumed_from is None and resumed.resumed_episodes == 0
    assert checkpoint_folder(cfg) == tmp_path / "a" / "checkpoints"
    assert (checkpoint_folder(cfg) / "checkpoint-000002.pt").is_file()
    fresh = train_teacher(dataclasses.replace(cfg, out=str(tmp_path / "b")))
    assert resumed.history == fresh.history
    # Resuming once more continues from the checkpoint, even with checkpoints now off.
    again = train_teacher(dataclasses.replace(cfg, episodes=3, checkpoint_every=0), resume=True)
    assert again.resumed_from == checkpoint_folder(cfg) / "checkpoint-000002.pt"
    assert [r["episode"] for r in again.history] == [0, 1, 2]


def test_tail_and_save(tmp_path):
    cfg = tiny(episodes=4, students_per_update=2, out=str(tmp_path))
    trained = train_teacher(cfg)
    reward, keep = trained.tail(2)
    assert reward == pytest.approx(sum(r["reward"] for r in trained.history[2:]) / 2)
    assert 0.0 <= keep <= 1.0 and trained.tail(0) != trained.tail(0)  # NaNs for no episode
    trained.save(tmp_path / "t.safetensors", tmp_path / "h.json")
    assert BernoulliTeacher.load(tmp_path / "t.safetensors").task == "digits"
    assert (tmp_path / "h.json").read_text().startswith("[")


def test_load_extra_reads_an_sb3_model_and_a_bernoulli_teacher(tmp_path):
    from stable_baselines3 import PPO

    from l2t_gym import L2TEnv
    from l2t_gym.sb3 import InstancePolicy, InstanceTeacher

    env = L2TEnv("digits", device="cpu", max_iters=5)
    PPO(InstancePolicy, env, n_steps=8, batch_size=8, device="cpu").save(tmp_path / "ppo.zip")
    name, teacher = load_extra(f"ppo={tmp_path / 'ppo.zip'}", env.feature_names)
    assert name == "ppo" and isinstance(teacher, InstanceTeacher)
    BernoulliTeacher(env.feature_names).save(tmp_path / "b.safetensors")
    name, teacher = load_extra(f"b={tmp_path / 'b.safetensors'}", env.feature_names)
    assert name == "b" and isinstance(teacher, BernoulliTeacher)
    with pytest.raises(ValueError, match="different observation layout"):
        load_extra(f"b={tmp_path / 'b.safetensors'}", env.feature_names[::-1])
    with pytest.raises(ValueError, match="NAME=SPEC"):
        load_extra("ppo.zip", env.feature_names)
    name, teacher = load_extra("r=lossrank", env.feature_names, kwargs={"keep_ratio": 0.4})
    assert name == "r" and isinstance(teacher, LossRank) and teacher.keep_ratio == 0.4


def test_a_teachers_columns_join_those_the_experiment_asks_for():
    cfg = tiny(env_args={**TINY, "extra_features": ("loss_rank",)})
    kwargs = env_kwargs(cfg, "student", **feature_overrides(RhoLoss))
    assert kwargs["extra_features"] == ("loss_rank", "irreducible_loss")
    both = tiny(env_args={**TINY, "extra_features": ["irreducible_loss", "loss_rank"]})
    assert env_kwargs(both, "teacher", **feature_overrides(RhoLoss))["extra_features"] == (
        "irreducible_loss",
        "loss_rank",
    )
    assert env_kwargs(tiny(), "teacher", **feature_overrides(RhoLoss))["extra_features"] == (
        "irreducible_loss",
    )
    assert "extra_features" not in env_kwargs(tiny(), "teacher")


def test_best_settings_notes_name_the_parameter_and_say_when_settings_tie():
    # Three iterations reach no tau: every setting earns 0, a tie the notes must admit.
    cfg = ExperimentConfig(
        env_args={"max_iters": 3},
        device="cpu",
        ratios=(0.3, 0.6),
        sweep_students=1,
        baselines=("infobatch",),
    )
    best, notes = best_settings(cfg)
    assert best == {"lossrank": 0.3, "infobatch": 0.3}
    assert notes[0].endswith("-> best 0.3, tied with 0.6: the first taken.")
    assert "-> best 0.3 (InfoBatch prune_ratio=0.70), tied with 0.6" in notes[1]
