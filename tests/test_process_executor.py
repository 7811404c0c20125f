"""Episodes on local worker processes (no Ray): the same teacher as in process, the comparison
fanned out, vector envs cut into tasks, and the executor chosen from ExperimentConfig."""

from __future__ import annotations

import dataclasses

import pytest
from executor_checks import assert_same_results, assert_same_run, teachers_to_compare, weights

from l2t_gym.evaluation import evaluate
from l2t_gym.experiment import EnvSpec, ExperimentConfig
from l2t_gym.experiment.recipes import make_executor
from l2t_gym.teachers import BernoulliTeacher, NoTeach
from l2t_gym.teachers.es import ESConfig, ESTrainer
from l2t_gym.teachers.executors import EpisodeJob, InProcessExecutor
from l2t_gym.teachers.process_executor import ProcessExecutor
from l2t_gym.teachers.reinforce import ReinforceConfig, ReinforceTrainer

CFG = ExperimentConfig(task="digits", device="cpu", env_args={"max_iters": 24, "tau": 0.5})
SPEC = EnvSpec(CFG, "teacher")
NAMES = SPEC().unwrapped.feature_names


@pytest.fixture(scope="module")
def two_workers():
    with ProcessExecutor(workers=2) as executor:
        yield executor


def es_run(executor, spec):
    executor.envs["train"] = spec
    teacher = BernoulliTeacher(NAMES, hidden=2, init_keep=0.5, seed=0)
    config = ESConfig(episodes=12, popsize=3, students=2, seed=1)
    return ESTrainer(executor, teacher, config, env_name="train").train(), weights(teacher)


@pytest.mark.parametrize("side_by_side", [None, 2])
def test_es_is_the_same_run_in_process_and_on_two_processes(two_workers, side_by_side):
    spec = EnvSpec(CFG, "teacher", num_envs=side_by_side)
    alone = es_run(InProcessExecutor({}), spec)
    assert len(alone[0]) == 2
    assert_same_run(alone, es_run(two_workers, spec))
    assert two_workers.num_envs("train") == (side_by_side or 1)


def test_reinforce_is_the_same_run_in_process_and_on_two_processes(two_workers):
    runs = []
    for executor in (InProcessExecutor({}), two_workers):
        executor.envs["train"] = SPEC
        teacher = BernoulliTeacher(NAMES, seed=0)
        config = ReinforceConfig(episodes=6, students_per_update=3, lr=0.05, seed=4)
        history = ReinforceTrainer(executor, teacher, config, env_name="train").train()
        runs.append((history, weights(teacher)))
    assert len({r["reward"] for r in runs[0][0]}) > 1  # the students differ
    assert_same_run(*runs)


def test_a_comparison_on_two_processes_equals_the_one_in_process(two_workers):
    student, teachers = EnvSpec(CFG, "student"), teachers_to_compare(NAMES)
    ours = evaluate(student, teachers, [5, 6, 7])
    assert_same_results(ours, evaluate(student, teachers, [5, 6, 7], executor=two_workers))


def test_unknown_envs_bad_arguments_and_a_closed_executor_are_clear_errors():
    for bad in ({"workers": 0}, {"workers": True}, {"threads": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a positive integer"):
            ProcessExecutor(**bad)
    executor = ProcessExecutor(workers=1)
    with pytest.raises(KeyError, match="no env named 'nowhere'"):
        executor.run([EpisodeJob(NoTeach(), [0], [0], env="nowhere")])
    executor.close()
    with pytest.raises(RuntimeError, match="closed"):
        executor.run([EpisodeJob(NoTeach(), [0], [0])])


def test_workers_without_ray_address_run_on_local_processes():
    with make_executor(dataclasses.replace(CFG, workers=2)) as executor:
        assert isinstance(executor, ProcessExecutor) and executor.workers == 2
    assert isinstance(make_executor(CFG), InProcessExecutor)
