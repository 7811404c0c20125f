"""CMA-ES teacher training: common random numbers, fitness, resume, vector env, config."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from synthetic_env import SyntheticTeachingEnv

pytest.importorskip("cma")

from l2t_gym.files import DamagedFileError, seal, write_bytes  # noqa: E402
from l2t_gym.teachers import BernoulliTeacher, es  # noqa: E402
from l2t_gym.teachers.es import (  # noqa: E402
    ESConfig,
    ESTrainer,
    checkpoint_files,
    student_seed,
    validation_seed,
)

DIGITS = {"device": "cpu", "fold": "teacher", "max_iters": 20, "tau": 0.5}


class Recorder(gym.Wrapper):
    """Keeps every reset's seed and every episode's total reward, in order."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seeds: list[int | None] = []
        self.returns: list[float] = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        self.returns.append(0.0)
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        out = self.env.step(action)
        self.returns[-1] += float(out[1])
        return out


def synthetic_trainer(generations=2, seed=3, **kwargs):
    env = Recorder(SyntheticTeachingEnv())
    teacher = BernoulliTeacher(env.unwrapped.feature_names, seed=0)
    config = ESConfig(episodes=4 * 2 * generations, popsize=4, students=2, seed=seed, **kwargs)
    return env, teacher, config


def weights(teacher):
    return [p.detach().clone() for p in teacher.policy.parameters()]


def test_every_candidate_of_a_generation_teaches_the_same_students():
    env, teacher, config = synthetic_trainer(generations=3)
    ESTrainer(env, teacher, config).train()
    per_generation = [env.seeds[g * 8 : (g + 1) * 8] for g in range(3)]
    for g, seeds in enumerate(per_generation):
        expected = [student_seed(3, g, 0), student_seed(3, g, 1)]
        assert seeds == expected * 4  # four candidates, the same two students each
    firsts = {tuple(s[:2]) for s in per_generation}
    assert len(firsts) == 3  # fresh students every generation


def test_fitness_is_the_mean_episode_reward_and_cma_is_told_its_negative(monkeypatch):
    env, teacher, config = synthetic_trainer(generations=2)
    trainer = ESTrainer(env, teacher, config)
    told = []
    tell = trainer.es.tell
    monkeypatch.setattr(trainer.es, "tell", lambda x, f: (told.append(list(f)), tell(x, f))[1])
    history = trainer.train()
    returns = np.array(env.returns).reshape(2, 4, 2)  # generation, candidate, student
    assert len(set(env.returns)) > 1  # the students' rewards differ: the mean is a real test
    for g, record in enumerate(history):
        np.testing.assert_allclose(record["fitness"], returns[g].mean(axis=1))
        np.testing.assert_allclose(told[g], -returns[g].mean(axis=1))
        assert record["best_fitness"] == max(record["fitness"])
        assert record["mean_fitness"] == pytest.approx(np.mean(record["fitness"]))
        assert record["episodes"] == 8 * (g + 1) and record["generation"] == g
        assert record["sigma"] > 0 and 0 <= record["keep_ratio"] <= 1


def test_the_teacher_ends_holding_cmas_mean_and_starts_from_its_own_weights():
    env, teacher, config = synthetic_trainer(generations=1)
    start = torch.cat([p.detach().flatten() for p in teacher.policy.parameters()])
    trainer = ESTrainer(env, teacher, config)
    np.testing.assert_allclose(trainer.es.mean, start.numpy(), rtol=1e-6)
    trainer.train()
    np.testing.assert_allclose(trainer.parameters(), trainer.es.result.xfavorite, rtol=1e-5)
    assert not np.allclose(trainer.parameters(), start.numpy())


def run(folder, generations, resume=False):
    env, teacher, config = synthetic_trainer(generations=generations, checkpoint_every=8)
    trainer = ESTrainer(env, teacher, config, checkpoint_dir=folder)
    if resume:
        assert trainer.resume() is not None
    return trainer.train(), teacher


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full, teacher_full = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    np.random.seed(123)  # the caller's global NumPy state must not matter  # noqa: NPY002 - cma draws from the global generator
    resumed, teacher_resumed = run(tmp_path / "b", 4, resume=True)
    assert resumed == full
    for a, b in zip(weights(teacher_full), weights(teacher_resumed), strict=True):
        assert torch.equal(a, b)
    assert [p.name for p in checkpoint_files(tmp_path / "b")][0] == "es-checkpoint-000032.pkl"


def test_training_leaves_numpys_global_generator_alone():
    env, teacher, config = synthetic_trainer(generations=1)
    np.random.seed(5)  # noqa: NPY002 - cma draws from the global generator
    expected = np.random.rand()  # noqa: NPY002 - cma draws from the global generator
    np.random.seed(5)  # noqa: NPY002 - cma draws from the global generator
    ESTrainer(env, teacher, config).train()
    assert np.random.rand() == expected  # noqa: NPY002 - cma draws from the global generator


def test_a_damaged_checkpoint_is_refused_clearly(tmp_path):
    env, teacher, config = synthetic_trainer(generations=1, checkpoint_every=8)
    path = ESTrainer(env, teacher, config, checkpoint_dir=tmp_path).train() and next(
        iter(checkpoint_files(tmp_path))
    )
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    fresh = ESTrainer(env, teacher, config, checkpoint_dir=tmp_path)
    with pytest.raises(DamagedFileError, match="SHA-256|sha256|checksum"):
        fresh.resume(path)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    env, teacher, config = synthetic_trainer(generations=1, checkpoint_every=8)
    ESTrainer(env, teacher, config, checkpoint_dir=tmp_path).train()
    other = ESConfig(episodes=8, popsize=4, students=2, seed=4)
    with pytest.raises(ValueError, match="seed"):
        ESTrainer(env, teacher, other, checkpoint_dir=tmp_path).resume()


def test_a_checkpoint_of_a_teacher_reading_other_columns_is_refused(tmp_path):
    env, _, config = synthetic_trainer(generations=1, checkpoint_every=8)
    names = env.unwrapped.feature_names
    reads = BernoulliTeacher(names, seed=0, inputs=("loss", "margin"))
    ESTrainer(env, reads, config, checkpoint_dir=tmp_path).train()
    # The same number of weights, other columns: only the inputs tell them apart.
    other = BernoulliTeacher(names, seed=0, inputs=("loss", "prob_0"))
    with pytest.raises(ValueError, match=r"reading the columns \['loss', 'margin'\]"):
        ESTrainer(env, other, config, checkpoint_dir=tmp_path).resume()
    assert ESTrainer(env, reads, config, checkpoint_dir=tmp_path).resume() is not None


def test_a_checkpoint_from_before_teachers_had_inputs_reads_every_column(tmp_path):
    env, teacher, config = synthetic_trainer(generations=1, checkpoint_every=8)
    ESTrainer(env, teacher, config, checkpoint_dir=tmp_path).train()
    (path,) = tmp_path.glob("es-checkpoint-*.pkl")
    state = es.read_checkpoint(path)
    del state["inputs"]  # as written before teachers had inputs
    write_bytes(path, seal(es.CHECKPOINT_KIND, pickle.dumps(state, protocol=4)))
    names = env.unwrapped.feature_names
    subset = BernoulliTeacher(names, hidden=teacher.hidden, seed=0, inputs=names[:-1])
    with pytest.raises(ValueError, match=rf"reading the columns \['{names[0]}'"):
        ESTrainer(env, subset, config, checkpoint_dir=tmp_path).resume()
    assert ESTrainer(env, teacher, config, checkpoint_dir=tmp_path).resume() == path


def test_side_by_side_students_equal_sequential_ones():
    from l2t_gym import L2TEnv
    from l2t_gym.vector import L2TVectorEnv

    config = ESConfig(episodes=16, popsize=4, students=2, seed=1)
    runs = []
    for env in (L2TEnv("digits", **DIGITS), L2TVectorEnv(2, "digits", **DIGITS)):
        teacher = BernoulliTeacher(env.unwrapped.feature_names, seed=0, init_keep=0.5)
        history = ESTrainer(env, teacher, config).train()
        runs.append((history, weights(teacher)))
    (seq, seq_weights), (vec, vec_weights) = runs
    assert len(seq) == 2 and len({f for r in seq for f in r["fitness"]}) > 1
    for a, b in zip(seq, vec, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, err_msg=key)
    for a, b in zip(seq_weights, vec_weights, strict=True):
        torch.testing.assert_close(a, b)


def test_es_learns_the_known_rule_on_the_synthetic_env():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=0)
    config = ESConfig(episodes=8 * 2 * 20, popsize=8, students=2, seed=0)
    history = ESTrainer(env, teacher, config).train()
    first = np.mean([r["mean_fitness"] for r in history[:3]])
    last = np.mean([r["mean_fitness"] for r in history[-3:]])
    assert last > first + 0.15  # keep-all earns ~0.89 here, the best rule ~1.61
    obs = np.concatenate([env.reset(seed=s)[0] for s in range(50)])
    loss = obs[:, env.feature_names.index("loss")]
    p = teacher.keep_probabilities(obs)
    assert p[loss > 2.0].mean() > p[loss < 1.0].mean() + 0.2


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"episodes": 0}, "episodes"),
        ({"popsize": 1}, "popsize"),
        ({"sigma0": 0.0}, "sigma0"),
        ({"sigma0": float("nan")}, "sigma0"),
        ({"students": 0}, "students"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"select_last": -1}, "select_last"),
        ({"select_students": 0}, "select_students"),
    ],
)
def test_bad_config_is_refused_naming_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        ESConfig(**bad)


def test_a_budget_below_one_generation_is_refused_naming_episodes():
    env, teacher, _ = synthetic_trainer()
    with pytest.raises(ValueError, match="episodes"):
        ESTrainer(env, teacher, ESConfig(episodes=7, popsize=4, students=2))


def test_checkpoints_without_a_folder_are_refused():
    env, teacher, config = synthetic_trainer(checkpoint_every=8)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        ESTrainer(env, teacher, config)


def test_without_cma_the_error_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_cma(name, *args, **kwargs):
        if name == "cma":
            raise ImportError("No module named 'cma'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cma)
    env, teacher, config = synthetic_trainer()
    with pytest.raises(ImportError, match=r"l2t-gym\[es\]"):
        ESTrainer(env, teacher, config)


def test_checkpoint_payload_is_a_pickle_of_the_cma_object(tmp_path):
    env, teacher, config = synthetic_trainer(generations=1, checkpoint_every=8)
    trainer = ESTrainer(env, teacher, config, checkpoint_dir=tmp_path)
    trainer.train()
    path = checkpoint_files(tmp_path)[0]
    payload = path.read_bytes().split(b"\n", 2)[2]
    state = pickle.loads(payload)
    np.testing.assert_array_equal(state["es"].mean, trainer.es.mean)
    assert state["history"] == trainer.history


def test_cli_trains_by_es_and_the_teacher_loads(tmp_path):
    import csv
    import json

    from script_runner import run as run_script

    args = ["train", "L2T-Digits-v0", "--algo", "es", "--episodes", "16", "--es-popsize", "4"]
    args += ["--es-students", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path)]
    args += ["--teacher-inputs", "margin", "loss"]
    out = run_script("-m", "l2t_gym", *args, "--env-arg", "max_iters=20").stdout
    assert "trained 2 generations (16 episodes) by CMA-ES" in out
    teacher = BernoulliTeacher.load(tmp_path / "teacher.safetensors")
    assert teacher.task == "digits" and teacher.inputs == ("loss", "margin")
    assert [r["generation"] for r in json.loads((tmp_path / "training.json").read_text())] == [0, 1]
    rows = list(csv.DictReader((tmp_path / "training.csv").open()))
    assert [r["episodes"] for r in rows] == ["8", "16"] and "sigma" in rows[0]


def test_cli_reports_the_selection_and_the_curve_marks_it(tmp_path):
    import csv

    from script_runner import run as run_script

    args = ["train", "L2T-Digits-v0", "--algo", "es", "--episodes", "18", "--es-popsize", "4"]
    args += ["--es-students", "2", "--es-select-last", "1", "--es-select-students", "2"]
    args += ["--device", "cpu", "--quiet", "--out", str(tmp_path)]
    out = run_script("-m", "l2t_gym", *args, "--env-arg", "max_iters=20").stdout
    assert "trained 2 generations (18 episodes) by CMA-ES" in out
    assert "kept generation 1's mean" in out
    rows = list(csv.DictReader((tmp_path / "training.csv").open()))
    assert [r["episodes"] for r in rows] == ["8", "16", "18"]
    assert [r["selected_generation"] for r in rows] == ["", "", "1"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"algo": "dqn"}, "algo"),
        ({"es_sigma": -1.0}, "es_sigma"),
        ({"es_students": 0}, "es_students"),
        ({"es_select_last": -2}, "es_select_last"),
        ({"es_select_students": 0}, "es_select_students"),
        ({"teacher_inputs": ("loss", "loss")}, "teacher_inputs must be distinct"),
        ({"teacher_inputs": "margin"}, "teacher_inputs must be a sequence .* 'margin'"),
        ({"teacher_inputs": ("loss",), "init_teacher": "t.safetensors"}, "teacher_inputs"),
    ],
)
def test_experiment_config_refuses_bad_es_settings_naming_the_field(bad, field):
    from l2t_gym.experiment import ExperimentConfig

    with pytest.raises(ValueError, match=field):
        ExperimentConfig(**bad)


def test_teacher_inputs_none_or_a_bare_flag_read_every_column():
    from l2t_gym.cli import _config, _parser
    from l2t_gym.experiment import ExperimentConfig

    assert ExperimentConfig(teacher_inputs=None).teacher_inputs == ()
    # The demo's default reads four columns; a bare --teacher-inputs gives the paper's teacher.
    demo = ["demo", "--algo", "ppo", "--no-vector", "--teacher-hidden", "12", "--workers", "1"]
    cfg = _config(_parser().parse_args([*demo, "--teacher-inputs"]))
    assert cfg.teacher_inputs == () and cfg.algo == "ppo"
    with pytest.raises(ValueError, match="teacher_inputs does not apply to algo='ppo'"):
        _config(_parser().parse_args(demo))


def selecting_trainer(folder=None, checkpoint_every=0):
    # 4 generations of 4 candidates x 2 students, then 3 means x 2 fresh students.
    env = Recorder(SyntheticTeachingEnv())
    teacher = BernoulliTeacher(env.unwrapped.feature_names, seed=0)
    config = ESConfig(
        episodes=4 * 8 + 6,
        popsize=4,
        students=2,
        seed=3,
        select_last=3,
        select_students=2,
        checkpoint_every=checkpoint_every,
    )
    return env, teacher, ESTrainer(env, teacher, config, checkpoint_dir=folder)


def test_the_selection_keeps_the_mean_with_the_best_reward_on_fresh_students():
    env, teacher, trainer = selecting_trainer()
    assert trainer.generations == 4  # the selection's 6 runs come out of the 38
    history = trainer.train()
    assert [r["generation"] for r in history] == [0, 1, 2, 3, 4]
    assert trainer.generations_done == 4 and trainer.selected and trainer.episodes_done == 38
    # The three means teach the same two fresh students, none of a generation's.
    assert env.seeds[32:] == [validation_seed(3, 0), validation_seed(3, 1)] * 3
    assert not set(env.seeds[32:]) & set(env.seeds[:32])
    record = history[-1]
    returns = np.array(env.returns[32:]).reshape(3, 2)
    np.testing.assert_allclose(record["fitness"], returns.mean(axis=1))
    assert len(set(record["fitness"])) > 1  # the means differ: the choice is a real test
    best = int(np.argmax(record["fitness"][::-1]))
    best = 2 - best  # the later generation on a tie
    assert record["selected_generation"] == 1 + best
    assert record["best_fitness"] == max(record["fitness"])
    np.testing.assert_allclose(trainer.parameters(), trainer.means[1 + best], rtol=1e-6)
    np.testing.assert_allclose(trainer.means[-1], trainer.es.result.xfavorite)


def test_a_run_with_selection_resumes_exactly_and_does_not_select_twice(tmp_path):
    _, full_teacher, full = selecting_trainer(tmp_path / "a", checkpoint_every=8)
    history = full.train()
    names = [p.name for p in checkpoint_files(tmp_path / "a")]
    assert names[0] == "es-checkpoint-000038.pkl"  # written after the selection
    # Interrupted after two generations: resume from there.
    (tmp_path / "b").mkdir()
    for name in names:
        if int(name[14:20]) <= 16:
            (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    _, teacher, resumed = selecting_trainer(tmp_path / "b", checkpoint_every=8)
    resumed.resume()
    assert resumed.train() == history
    for a, b in zip(weights(full_teacher), weights(teacher), strict=True):
        assert torch.equal(a, b)
    # Resumed after the selection: nothing more runs.
    env, teacher, done = selecting_trainer(tmp_path / "a", checkpoint_every=8)
    done.resume()
    assert done.train() == history and env.seeds == []
    for a, b in zip(weights(full_teacher), weights(teacher), strict=True):
        assert torch.equal(a, b)


def test_a_budget_without_room_for_the_selection_is_refused_naming_it():
    env, teacher, _ = synthetic_trainer()
    config = ESConfig(episodes=8 + 5, popsize=4, students=2, select_last=1, select_students=6)
    with pytest.raises(ValueError, match="select_last 1 x select_students 6"):
        ESTrainer(env, teacher, config)
    config = ESConfig(episodes=2 * 8 + 6, popsize=4, students=2, select_last=3, select_students=2)
    with pytest.raises(ValueError, match="3 generation"):
        ESTrainer(env, teacher, config)


def test_a_run_resumed_between_its_last_generation_and_the_selection_selects_as_it_would(tmp_path):
    _, full_teacher, full = selecting_trainer(tmp_path / "a", checkpoint_every=8)
    history = full.train()
    (tmp_path / "b").mkdir()
    name = "es-checkpoint-000032.pkl"  # after the last generation, before the selection
    (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    env, teacher, resumed = selecting_trainer(tmp_path / "b", checkpoint_every=8)
    resumed.resume()
    assert resumed.train() == history
    assert env.seeds == [validation_seed(3, 0), validation_seed(3, 1)] * 3  # only the selection
    for a, b in zip(weights(full_teacher), weights(teacher), strict=True):
        assert torch.equal(a, b)


def test_a_larger_budget_after_the_selection_is_refused_naming_episodes(tmp_path):
    selecting_trainer(tmp_path, checkpoint_every=8)[2].train()
    env = Recorder(SyntheticTeachingEnv())
    teacher = BernoulliTeacher(env.unwrapped.feature_names, seed=0)
    config = ESConfig(
        episodes=6 * 8 + 6, popsize=4, students=2, seed=3, select_last=3, select_students=2
    )
    config = ESConfig(**{**config.__dict__, "checkpoint_every": 8})
    trainer = ESTrainer(env, teacher, config, checkpoint_dir=tmp_path)
    trainer.resume()
    with pytest.raises(ValueError, match=r"episodes \(54\): this run's selection already ran"):
        trainer.train()
    assert env.seeds == []


def test_a_checkpoint_from_before_the_selection_option_resumes_only_without_it(tmp_path):
    env, teacher, config = synthetic_trainer(generations=1, checkpoint_every=8)
    ESTrainer(env, teacher, config, checkpoint_dir=tmp_path).train()
    (path,) = tmp_path.glob("es-checkpoint-*.pkl")
    state = es.read_checkpoint(path)
    for key in ("select_last", "select_students"):
        del state["config"][key]  # as written before the option existed
    del state["means"]
    write_bytes(path, seal(es.CHECKPOINT_KIND, pickle.dumps(state, protocol=4)))
    assert ESTrainer(env, teacher, config, checkpoint_dir=tmp_path).resume() == path
    selecting = ESConfig(**{**config.__dict__, "episodes": 16 + 2, "select_last": 1})
    selecting = ESConfig(**{**selecting.__dict__, "select_students": 2})
    with pytest.raises(ValueError, match="select_last=0, this run has 1"):
        ESTrainer(env, teacher, selecting, checkpoint_dir=tmp_path).resume()


def test_the_printer_always_shows_the_selection_and_tail_leaves_it_out():
    import io

    from l2t_gym.experiment import ExperimentConfig, TrainedTeacher, training_printer

    cfg = ExperimentConfig(algo="es", episodes=12800, es_students=32)
    out = io.StringIO()
    progress = training_printer(cfg, file=out)
    generation = {"generation": 37, "mean_fitness": 0.5, "best_fitness": 1.0, "sigma": 0.5}
    progress({**generation, "episodes": 12160, "keep_ratio": 0.2})
    selection = {"generation": 38, "episodes": 12400, "mean_fitness": 2.0, "best_fitness": 2.5}
    selection |= {"fitness": [1.5, 2.5], "keep_ratio": 0.1, "sigma": 0.5}
    progress({**selection, "selected_generation": 37})
    # 12,160 and 12,400 fall in one block of 320 runs below the budget: the selection shows.
    assert out.getvalue().splitlines()[1:] == [
        "  episode 12400/12800: selection: kept generation 37's mean (reward 2.500 on 32 fresh "
        "teacher-fold students; the last 2 means 2.000 on average), keep 0.10"
    ]
    history = [{**generation, "episodes": 12160, "keep_ratio": 0.2}]
    history.append({**selection, "selected_generation": 37})
    trained = TrainedTeacher(None, history, 0.0, False, "digits", algo="es")
    assert trained.tail(5) == (0.5, 0.2)
    assert trained.selection is history[-1] and trained.episodes == 12400


def test_an_es_budget_error_names_the_experiments_options(tmp_path):
    from l2t_gym.experiment import ExperimentConfig, train_teacher

    cfg = ExperimentConfig(
        algo="es",
        episodes=13,
        es_popsize=4,
        es_students=2,
        es_select_last=1,
        es_select_students=6,
        device="cpu",
        out=str(tmp_path),
    )
    with pytest.raises(ValueError, match="es_select_last 1 x es_select_students 6"):
        train_teacher(cfg)
