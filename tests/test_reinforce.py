"""REINFORCE for the Bernoulli teacher: the loss, learning a known rule, checkpoints and resume."""

from __future__ import annotations

import copy
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from file_damage import flipped
from synthetic_env import SyntheticTeachingEnv

from l2t_gym.files import DamagedFileError, seal
from l2t_gym.teachers import BernoulliTeacher
from l2t_gym.teachers.reinforce import (
    CHECKPOINT_KIND,
    ReinforceConfig,
    ReinforceTrainer,
    checkpoint_files,
    env_seed,
    episode_seed,
    read_checkpoint,
    reinforce_loss,
    seed_baseline,
)

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from record_reinforce import CASES, OUT  # noqa: E402
from record_reinforce import run as run_case  # noqa: E402


def test_loss_against_a_hand_computed_case():
    names = SyntheticTeachingEnv().feature_names
    teacher = BernoulliTeacher(names, seed=0)
    obs = np.random.default_rng(0).uniform(0, 2, size=(2, 3, len(names))).astype(np.float32)
    actions = np.array([[1, 0, 1], [0, 0, 1]])
    rewards, baseline = torch.tensor([1.2, 0.3]), 0.5

    log_probs = teacher.log_prob(obs, actions)
    loss = reinforce_loss(log_probs, rewards, baseline)
    loss.backward()
    grad = [p.grad.clone() for p in teacher.policy.parameters()]

    # By hand: p from the policy's forward pass, log p for kept and log(1 - p) for dropped.
    teacher.policy.zero_grad()
    p = torch.sigmoid(teacher.policy(torch.as_tensor(obs)).squeeze(-1))
    a = torch.as_tensor(actions, dtype=torch.float32)
    per_step = (a * torch.log(p) + (1 - a) * torch.log(1 - p)).sum(-1)
    expected = -(((rewards - baseline) * per_step).sum() / 2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    expected.backward()
    for g, p_ in zip(grad, teacher.policy.parameters(), strict=True):
        torch.testing.assert_close(g, p_.grad)
    # Dropped instances matter: zero advantage on one student removes its whole contribution.
    only_first = reinforce_loss(log_probs.detach(), torch.tensor([1.2, 0.5]), 0.5)
    assert only_first.item() == pytest.approx(-0.7 * log_probs[0].item() / 2, rel=1e-5)


def test_teacher_learns_the_known_rule_on_the_synthetic_env():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=0)
    config = ReinforceConfig(episodes=240, students_per_update=4, lr=0.03, seed=0)
    history = ReinforceTrainer(env, teacher, config).train()
    first = np.mean([r["reward"] for r in history[:40]])
    last = np.mean([r["reward"] for r in history[-40:]])
    assert last > first + 0.25  # keep-all earns ~0.89 here, the best rule ~1.61
    obs = np.concatenate([env.reset(seed=s)[0] for s in range(50)])
    loss = obs[:, env.feature_names.index("loss")]
    p = teacher.keep_probabilities(obs)
    assert p[loss > 2.0].mean() > 0.9 and p[loss < 1.0].mean() < 0.5


def run(tmp_path, episodes, resume=False, every=6):
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=1)
    config = ReinforceConfig(
        episodes=episodes, students_per_update=3, lr=0.05, checkpoint_every=every, seed=7
    )
    trainer = ReinforceTrainer(env, teacher, config, checkpoint_dir=tmp_path)
    if resume:
        assert trainer.resume() is not None
    return trainer.train(), teacher


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full, teacher_full = run(tmp_path / "a", 30)
    run(tmp_path / "b", 12)  # stops after 12 episodes, checkpoint at 12
    resumed, teacher_resumed = run(tmp_path / "b", 30, resume=True)
    assert resumed == full
    for a, b in zip(
        teacher_full.policy.parameters(), teacher_resumed.policy.parameters(), strict=True
    ):
        assert torch.equal(a, b)


def test_checkpoints_fall_between_updates(tmp_path):
    run(tmp_path, 10, every=4)  # updates of 3: after episodes 3, 6, 9, 10
    names = sorted(p.name for p in tmp_path.glob("checkpoint-*.pt"))
    assert names == ["checkpoint-000006.pt", "checkpoint-000009.pt"]


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    env = SyntheticTeachingEnv()
    trainer = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=0), checkpoint_dir=tmp_path
    )
    bad = tmp_path / "checkpoint-000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="damaged or not an l2t-gym checkpoint") as err:
        trainer.resume(bad)
    assert str(bad) in str(err.value)
    other = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=0), ReinforceConfig(seed=5)
    )
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(trainer.state_dict())
    bigger = BernoulliTeacher(env.feature_names, hidden=13, seed=0)
    with pytest.raises(ValueError, match="another teacher network"):
        ReinforceTrainer(env, bigger).load_state_dict(trainer.state_dict())
    # As many weights, other columns read: only the inputs tell them apart.
    reads = ReinforceTrainer(env, BernoulliTeacher(env.feature_names, seed=0, inputs=("loss",)))
    other = BernoulliTeacher(env.feature_names, seed=0, inputs=("margin",))
    with pytest.raises(ValueError, match=r"reading the columns \['loss'\]"):
        ReinforceTrainer(env, other).load_state_dict(reads.state_dict())
    # A checkpoint written before teachers had inputs read every column.
    old = trainer.state_dict()
    del old["inputs"]
    with pytest.raises(ValueError, match=r"reading the columns \['label_0', .*'margin'\]; t"):
        ReinforceTrainer(env, other).load_state_dict(old)
    ReinforceTrainer(env, BernoulliTeacher(env.feature_names, seed=0)).load_state_dict(old)


def trained_state(tmp_path) -> dict:
    run(tmp_path / "src", 6)
    return read_checkpoint(tmp_path / "src" / "checkpoint-000006.pt")


def _edit(state: dict, change) -> dict:
    state = copy.deepcopy(state)
    change(state)
    return state


WRONG_STRUCTURES = {
    "not a dict": lambda s: [s],
    "missing history": lambda s: {k: v for k, v in s.items() if k != "history"},
    "history not a list": lambda s: {**s, "history": "abc"},
    "a reward that is a string": lambda s: _edit(s, lambda t: t["history"][2].update(reward="0.5")),
    "a record without its episode": lambda s: _edit(s, lambda t: t["history"][0].pop("episode")),
    "records out of order": lambda s: {**s, "history": s["history"][::-1]},
    "a record with keys of mixed types": lambda s: {**s, "history": [{1: 2, "a": 3}]},
    "optimiser parameters that are not indices": lambda s: _edit(
        s, lambda t: t["optimizer"]["param_groups"][0].update(params=[[0], [1], [2], [3]])
    ),
    "a policy of lists": lambda s: {**s, "policy": {k: v.tolist() for k, v in s["policy"].items()}},
    "an optimiser without state": lambda s: {**s, "optimizer": {"param_groups": []}},
    "an optimiser state of the wrong shape": lambda s: _edit(
        s, lambda t: t["optimizer"]["state"][0].update(exp_avg=torch.zeros(2, 2))
    ),
    "policy weights of the wrong shape": lambda s: _edit(
        s, lambda t: t["policy"].update({"0.weight": torch.zeros(3, 3)})
    ),
    "a seed that is a string": lambda s: _edit(s, lambda t: t["config"].update(seed="7")),
    "baseline None after updates": lambda s: {**s, "baseline": None},
    "stale negative": lambda s: {**s, "stale": -1},
}


@pytest.mark.parametrize("sealed", [False, True], ids=["bare torch.save", "sealed"])
@pytest.mark.parametrize("case", list(WRONG_STRUCTURES))
def test_a_loadable_checkpoint_of_the_wrong_structure_is_refused_clearly(tmp_path, case, sealed):
    state = WRONG_STRUCTURES[case](trained_state(tmp_path))
    path = tmp_path / "checkpoint-000006.pt"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path.write_bytes(seal(CHECKPOINT_KIND, data) if sealed else data)
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=1)
    trainer = ReinforceTrainer(env, teacher, ReinforceConfig(seed=7), tmp_path)
    weights = copy.deepcopy(teacher.policy.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bare torch.save file: "read unchecked"
        with pytest.raises(ValueError, match="checkpoint") as err:
            trainer.resume(path)
    assert not isinstance(err.value, (KeyError, TypeError, RuntimeError))
    assert str(path) in str(err.value), err.value
    # Nothing was half-loaded.
    assert trainer.history == [] and trainer.baseline is None
    for key, value in teacher.policy.state_dict().items():
        assert torch.equal(value, weights[key])


def test_a_flipped_byte_anywhere_in_a_checkpoint_is_refused(tmp_path):
    run(tmp_path, 6)
    path = tmp_path / "checkpoint-000006.pt"
    good = path.read_bytes()
    env = SyntheticTeachingEnv()
    trainer = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=1), ReinforceConfig(seed=7)
    )
    for i in range(len(good)):  # the kind line, the digest line and torch.save's zip
        damaged = pytest.raises(ValueError, match="damaged or not an l2t-gym checkpoint")
        with flipped(path, i, 0xFF if i % 2 else 0x01), damaged:
            trainer.resume(path)
    assert trainer.history == [] and path.read_bytes() == good
    assert trainer.resume(path) == path and len(trainer.history) == 6


def test_resume_falls_back_past_a_zero_byte_newest_checkpoint_with_a_warning(tmp_path):
    full, teacher_full = run(tmp_path / "a", 30)
    run(tmp_path / "b", 15, every=6)  # checkpoints at 6 and 12
    (tmp_path / "b" / "checkpoint-000012.pt").write_bytes(b"")  # a full disk, a crash
    flipped = bytearray((tmp_path / "b" / "checkpoint-000006.pt").read_bytes())
    (tmp_path / "b" / "checkpoint-000009.pt").write_bytes(bytes(flipped[:-1] + b"?"))
    with pytest.warns(UserWarning, match="checkpoint-000006.pt") as caught:
        resumed, teacher_resumed = run(tmp_path / "b", 30, resume=True)
    message = str(caught[0].message)
    assert "checkpoint-000012.pt (the file is empty)" in message
    assert "checkpoint-000009.pt (its contents do not match" in message
    # Resumed from episode 6, it still ends with the uninterrupted run's teacher.
    assert resumed == full
    for a, b in zip(
        teacher_full.policy.parameters(), teacher_resumed.policy.parameters(), strict=True
    ):
        assert torch.equal(a, b)


def test_resume_with_every_checkpoint_damaged_names_them_and_changes_nothing(tmp_path):
    (tmp_path / "checkpoint-000003.pt").write_bytes(b"")
    (tmp_path / "checkpoint-000006.pt").write_bytes(b"l2t-gym checkpoint 2\nsha256:00\n")
    env = SyntheticTeachingEnv()
    trainer = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=1), ReinforceConfig(), tmp_path
    )
    with pytest.raises(DamagedFileError, match="no intact checkpoint") as err:
        trainer.resume()
    assert "checkpoint-000003.pt" in str(err.value) and "checkpoint-000006.pt" in str(err.value)
    assert trainer.history == []


def test_resume_with_no_checkpoint_yet_returns_none_and_the_run_starts(tmp_path):
    fresh, _ = run(tmp_path / "a", 6)
    env = SyntheticTeachingEnv()
    config = ReinforceConfig(episodes=6, students_per_update=3, lr=0.05, seed=7)
    trainer = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=1), config, tmp_path / "b"
    )
    assert trainer.resume() is None
    assert trainer.train() == fresh


def test_a_checkpoint_from_before_checksums_still_resumes_with_a_warning(tmp_path):
    full, _ = run(tmp_path / "a", 12)
    run(tmp_path / "b", 6)
    path = tmp_path / "b" / "checkpoint-000006.pt"
    legacy = io.BytesIO()
    torch.save(read_checkpoint(path), legacy)  # what l2t-gym wrote before the seal
    path.write_bytes(legacy.getvalue())
    with pytest.warns(UserWarning, match="before checkpoints carried a checksum"):
        resumed, _ = run(tmp_path / "b", 12, resume=True)
    assert resumed == full


def test_checkpoints_sort_by_episodes_not_by_name(tmp_path):
    for name in ["checkpoint-999999.pt", "checkpoint-1000000.pt", "checkpoint-x.pt", "other.pt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in checkpoint_files(tmp_path)] == [
        "checkpoint-1000000.pt",
        "checkpoint-999999.pt",
    ]
    assert checkpoint_files(tmp_path / "absent") == []


def test_plateau_stops_early():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=0)
    config = ReinforceConfig(
        episodes=400, students_per_update=2, lr=1e-6, patience=5, min_delta=0.5, seed=0
    )
    trainer = ReinforceTrainer(env, teacher, config)
    history = trainer.train()
    assert trainer.stopped_early and len(history) == 2 * 6


@pytest.mark.parametrize(
    "bad", [{"episodes": 0}, {"baseline_momentum": 1.0}, {"lr": 0.0}, {"patience": 0}]
)
def test_bad_config(bad):
    with pytest.raises(ValueError):
        ReinforceConfig(**bad)


def test_side_by_side_students_equal_sequential_ones():
    from l2t_gym import L2TEnv
    from l2t_gym.vector import L2TVectorEnv

    kwargs = {"device": "cpu", "fold": "teacher", "max_iters": 30}
    config = ReinforceConfig(episodes=5, students_per_update=2, lr=0.05, seed=3)
    runs = []
    for env in (L2TEnv("digits", **kwargs), L2TVectorEnv(2, "digits", **kwargs)):
        teacher = BernoulliTeacher(env.unwrapped.feature_names, seed=0)
        history = ReinforceTrainer(env, teacher, config).train()
        runs.append((history, [p.detach().clone() for p in teacher.policy.parameters()]))
    (seq, seq_params), (vec, vec_params) = runs
    assert [r["episode"] for r in vec] == list(range(5))  # the short last update: one student
    for a, b in zip(seq, vec, strict=True):
        assert (a["iterations"], a["teacher_steps"], a["reached_tau"]) == (
            b["iterations"],
            b["teacher_steps"],
            b["reached_tau"],
        )
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-9)
    for a, b in zip(seq_params, vec_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_vector_env_must_match_students_per_update():
    from l2t_gym.vector import L2TVectorEnv

    env = L2TVectorEnv(3, "digits", device="cpu")
    with pytest.raises(ValueError, match="students_per_update=3"):
        ReinforceTrainer(
            env, BernoulliTeacher(env.feature_names, seed=0), ReinforceConfig(students_per_update=2)
        )


def test_seed_baseline_is_leave_one_out_within_a_student_seed():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0, 0.5])
    base = seed_baseline(rewards, [7, 7, 9, 9, 9, 11], fallback=-1.0)
    # seed 7: each run's other run; seed 9: mean of the two others; seed 11: alone -> fallback
    torch.testing.assert_close(base, torch.tensor([2.0, 1.0, 5.0, 4.5, 3.5, -1.0]))


def test_repeats_share_the_student_seed_but_not_the_sampling():
    assert env_seed(3, 0, 2) == env_seed(3, 1, 2) == episode_seed(3, 0)
    assert env_seed(3, 2, 2) == env_seed(3, 3, 2) == episode_seed(3, 2) != env_seed(3, 1, 2)
    assert [env_seed(3, e) for e in range(4)] == [episode_seed(3, e) for e in range(4)]

    class Recording(SyntheticTeachingEnv):
        seeds: list = []

        def reset(self, *, seed=None, options=None):
            self.seeds.append(seed)
            return super().reset(seed=seed, options=options)

    env = Recording()
    config = ReinforceConfig(students_per_update=2, repeats=2, baseline="seed", seed=3)
    trainer = ReinforceTrainer(env, BernoulliTeacher(env.feature_names, seed=0), config)
    log_probs = [trainer.run_episode(episode)[0].log_prob for episode in range(4)]
    assert env.seeds == [env_seed(3, e, 2) for e in range(4)]
    assert env.seeds[0] == env.seeds[1] != env.seeds[2] == env.seeds[3]
    # Same student, different draws of the teacher: the runs differ.
    assert log_probs[0] != log_probs[1] and log_probs[2] != log_probs[3]


def test_seed_baseline_learns_the_known_rule():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=0)
    config = ReinforceConfig(
        episodes=240, students_per_update=4, repeats=2, baseline="seed", lr=0.03, seed=0
    )
    history = ReinforceTrainer(env, teacher, config).train()
    first = np.mean([r["reward"] for r in history[:40]])
    last = np.mean([r["reward"] for r in history[-40:]])
    assert last > first + 0.25


@pytest.mark.parametrize(
    "bad",
    [
        {"baseline": "mean"},
        {"baseline": "seed"},  # repeats=1: no other run to compare with
        {"students_per_update": 4, "repeats": 3},
        {"repeats": 0},
    ],
)
def test_bad_baseline_config(bad):
    with pytest.raises(ValueError):
        ReinforceConfig(**bad)


@pytest.mark.parametrize("name", list(CASES))
def test_runs_replay_the_records_of_the_code_before_the_rollout_loop_exactly(name):
    # Recorded by fixtures/record_reinforce.py on the code before the keep-sampler and the
    # rollout loop existed; sequential and side by side, each with a short last update.
    recorded = json.loads(OUT.read_text())["runs"][name]
    history, weights = run_case(*CASES[name])
    assert len({r["reward"] for r in history}) > 2  # students differ: the policy has moved
    assert history == recorded["history"]  # rewards, keep ratios, seeds' outcomes, baselines
    for key, tensor in weights.items():
        expected = torch.tensor(recorded["weights"][key]).view(tensor.shape)
        # To float tolerance, not bit for bit: the vector env promises the single env's results
        # to float tolerance only (see test_trajectories.py), and the update now sums each
        # episode's gradient piece (computed where the episode ran, see executors.py) instead of
        # back-propagating through the mean of all of them at once, which rounds differently.
        # Every sampled decision, hence every record above, is still the same. On a machine
        # whose CPU kernels round differently from the recording one's (test_trajectories.py)
        # the weights part by a few 1e-6 over the run's updates.
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-5, msg=key)


# -- the authors' code's details, as options ---------------------------------------------------
def test_init_keep_088_starts_at_the_authors_keep_probability():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, init_keep=0.88, seed=0)
    obs = np.concatenate([env.reset(seed=s)[0] for s in range(20)])
    p = teacher.keep_probabilities(obs)
    # The output bias is logit(0.88) and the last layer's weights are near zero.
    assert abs(float(p.mean()) - 0.88) < 0.01 and float(np.abs(p - 0.88).max()) < 0.05


def test_authors_baseline_rule_is_momentum_02():
    env = SyntheticTeachingEnv()
    config = ReinforceConfig(episodes=3, baseline_momentum=0.2, lr=1e-6, seed=0)
    history = ReinforceTrainer(env, BernoulliTeacher(env.feature_names, seed=0), config).train()
    b = history[0]["reward"]  # it starts at the first update's reward
    for record in history[1:]:
        b = 0.2 * b + 0.8 * record["reward"]
        assert record["baseline"] == pytest.approx(b, abs=1e-6)  # R in float32


def test_lr_halves_after_every_lr_halve_every_episodes():
    env = SyntheticTeachingEnv()
    config = ReinforceConfig(episodes=18, students_per_update=3, lr=0.04, lr_halve_every=6)
    trainer = ReinforceTrainer(env, BernoulliTeacher(env.feature_names, seed=0), config)
    used = []  # the rate of each update's optimiser step, with the episodes done before it
    trainer.optimizer.register_step_pre_hook(
        lambda opt, *_: used.append((trainer.episodes_done, opt.param_groups[0]["lr"]))
    )
    trainer.train()
    assert used == [(0, 0.04), (3, 0.04), (6, 0.02), (9, 0.02), (12, 0.01), (15, 0.01)]
    assert trainer.optimizer.param_groups[0]["lr"] == 0.005  # after 18 episodes


def test_no_halving_by_default_and_the_scheduler_only_with_the_option():
    env = SyntheticTeachingEnv()
    trainer = ReinforceTrainer(env, BernoulliTeacher(env.feature_names, seed=0))
    assert trainer.scheduler is None and "scheduler" not in trainer.state_dict()
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.0


def test_weight_decay_shrinks_the_weights_without_a_gradient_signal():
    # Every reward equals the baseline (b starts at the first update's mean, one student per
    # update, momentum 0 after it keeps b = R): the REINFORCE term is zero, only the decay acts.
    class Constant(SyntheticTeachingEnv):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, (1.0 if terminated or truncated else 0.0), terminated, truncated, info

    env = Constant()
    norms = {}
    for wd in (0.0, 0.1):
        teacher = BernoulliTeacher(env.feature_names, seed=0)
        config = ReinforceConfig(episodes=5, lr=0.01, weight_decay=wd, baseline_momentum=0.0)
        before = [p.detach().clone() for p in teacher.policy.parameters()]
        ReinforceTrainer(env, teacher, config).train()
        after = list(teacher.policy.parameters())
        norms[wd] = [(a.norm().item(), b.norm().item()) for a, b in zip(after, before, strict=True)]
        if wd == 0.0:
            assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert all(a < b for a, b in norms[0.1])


def run_halving(tmp_path, episodes, resume=False):
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=1)
    config = ReinforceConfig(
        episodes=episodes,
        students_per_update=3,
        lr=0.05,
        checkpoint_every=6,
        seed=7,
        lr_halve_every=9,
        weight_decay=1e-3,
    )
    trainer = ReinforceTrainer(env, teacher, config, checkpoint_dir=tmp_path)
    if resume:
        assert trainer.resume() is not None
    return trainer.train(), teacher, trainer


def test_resume_with_the_lr_schedule_equals_an_uninterrupted_run(tmp_path):
    full, teacher_full, trainer_full = run_halving(tmp_path / "a", 30)
    run_halving(tmp_path / "b", 12)  # checkpoint at 12, after the first halving (at 9)
    state = read_checkpoint(tmp_path / "b" / "checkpoint-000012.pt")
    assert state["scheduler"]["last_epoch"] == 4
    resumed, teacher_resumed, trainer_resumed = run_halving(tmp_path / "b", 30, resume=True)
    assert resumed == full
    for a, b in zip(
        teacher_full.policy.parameters(), teacher_resumed.policy.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    assert trainer_resumed.scheduler.state_dict() == trainer_full.scheduler.state_dict()
    assert trainer_resumed.optimizer.param_groups[0]["lr"] == 0.05 / 8  # after 30 episodes


def test_a_checkpoint_of_another_lr_schedule_is_refused(tmp_path):
    run_halving(tmp_path, 6)
    env = SyntheticTeachingEnv()
    config = ReinforceConfig(episodes=12, students_per_update=3, lr=0.05, seed=7)
    trainer = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=1), config, checkpoint_dir=tmp_path
    )
    with pytest.raises(ValueError, match="lr_halve_every=9, this run has None"):
        trainer.resume()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"lr_halve_every": 0}, "lr_halve_every"),
        ({"lr_halve_every": -4}, "lr_halve_every"),
        ({"lr_halve_every": 5, "students_per_update": 2}, r"lr_halve_every .* \(2\)"),
        ({"lr_halve_every": 2.5}, "lr_halve_every"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"weight_decay": float("inf")}, "weight_decay"),
    ],
)
def test_bad_authors_options_are_refused_naming_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        ReinforceConfig(**bad)
