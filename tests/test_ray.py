"""Episodes on Ray workers: the same teacher as in process, resume across executors, a worker
killed mid-update, the comparison fanned out, and Ray kept on the loopback address.

Ray is started once for the module, on 127.0.0.1 with the dashboard off and 4 logical CPUs (on 2
cores), and the workers (1 and 2) once each; every test registers its own envs with them.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from executor_checks import (  # noqa: E402
    assert_same_results,
    assert_same_run,
    teachers_to_compare,
    weights,
)

from l2t_gym.evaluation import evaluate  # noqa: E402
from l2t_gym.experiment import EnvSpec, ExperimentConfig  # noqa: E402
from l2t_gym.teachers import BernoulliTeacher, NoTeach  # noqa: E402
from l2t_gym.teachers.es import ESConfig, ESTrainer  # noqa: E402
from l2t_gym.teachers.executors import EpisodeJob, InProcessExecutor  # noqa: E402
from l2t_gym.teachers.ray_executor import LOOPBACK, RayExecutor, connect  # noqa: E402
from l2t_gym.teachers.reinforce import ReinforceConfig, ReinforceTrainer  # noqa: E402

CFG = ExperimentConfig(task="digits", device="cpu", env_args={"max_iters": 24, "tau": 0.5})
SPEC = EnvSpec(CFG, "teacher")
NAMES = SPEC().unwrapped.feature_names


@pytest.fixture(scope="module")
def ray_local():
    # Workers import this module's helpers (KillOnce) by name, as any user's own env code.
    here = str(Path(__file__).parent)
    before = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_ADDRESS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, before["PYTHONPATH"]) if p)
    # "local" starts its own Ray even where the environment names a cluster (here: nothing).
    os.environ["RAY_ADDRESS"] = "127.0.0.1:1"
    try:
        connect("local", num_cpus=4)  # logical: both executors' workers, and one CPU more
    finally:
        for key, value in before.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_worker(ray_local):
    with RayExecutor(workers=1) as executor:
        yield executor


@pytest.fixture(scope="module")
def two_workers(ray_local):
    with RayExecutor(workers=2) as executor:
        yield executor


def reinforce(executor, episodes=6, checkpoint_dir=None, resume=False, **config):
    teacher = BernoulliTeacher(NAMES, seed=0)
    settings = {"episodes": episodes, "students_per_update": 3, "lr": 0.05, "seed": 4, **config}
    if isinstance(executor, RayExecutor):
        executor.envs["train"] = SPEC
    else:
        executor = InProcessExecutor({"train": SPEC})
    trainer = ReinforceTrainer(
        executor, teacher, ReinforceConfig(**settings), checkpoint_dir, env_name="train"
    )
    if resume:
        trainer.resume()
    return trainer.train(), weights(teacher)


def test_local_ray_runs_on_the_loopback_address_without_a_dashboard(ray_local):
    nodes = ray.nodes()
    assert nodes and all(n["NodeManagerAddress"] == LOOPBACK for n in nodes)
    assert ray.get_runtime_context().gcs_address.startswith(LOOPBACK + ":")
    with socket.socket() as probe:  # the dashboard's port is free
        assert probe.connect_ex((LOOPBACK, 8265)) != 0


def test_reinforce_is_the_same_run_in_process_and_on_one_or_two_workers(one_worker, two_workers):
    alone = reinforce(None)
    assert len({r["reward"] for r in alone[0]}) > 1  # the students differ
    assert_same_run(alone, reinforce(one_worker))
    assert_same_run(alone, reinforce(two_workers))


def test_es_is_the_same_run_in_process_and_on_two_workers(two_workers):
    runs = []
    for executor in (InProcessExecutor({"train": SPEC}), two_workers):
        executor.envs["train"] = SPEC
        teacher = BernoulliTeacher(NAMES, hidden=2, init_keep=0.5, seed=0)
        config = ESConfig(episodes=12, popsize=3, students=2, seed=1)
        history = ESTrainer(executor, teacher, config, env_name="train").train()
        runs.append((history, weights(teacher)))
    assert len(runs[0][0]) == 2
    assert_same_run(*runs)


def test_a_run_resumed_on_ray_from_an_in_process_checkpoint_continues_it(tmp_path, two_workers):
    whole = reinforce(None)
    reinforce(None, episodes=3, checkpoint_dir=tmp_path, checkpoint_every=3)
    resumed = reinforce(two_workers, checkpoint_dir=tmp_path, resume=True, checkpoint_every=3)
    assert_same_run(whole, resumed)


@dataclasses.dataclass(frozen=True)
class KillOnce:
    """An env spec whose env kills its worker's process at the reset of ``seed``, once: the
    first to find ``marker`` removes it and dies."""

    spec: EnvSpec
    marker: str
    seed: int

    def __call__(self):
        env = self.spec()
        reset = env.reset

        def reset_or_die(*, seed=None, options=None):
            if seed == self.seed and os.path.exists(self.marker):
                os.remove(self.marker)
                os._exit(1)
            return reset(seed=seed, options=options)

        env.reset = reset_or_die
        return env


def test_a_worker_killed_mid_update_is_restarted_and_the_run_is_unchanged(tmp_path, two_workers):
    from l2t_gym.teachers.reinforce import env_seed

    alone = reinforce(None)
    marker = tmp_path / "kill"
    marker.write_text("once")
    killer = KillOnce(SPEC, str(marker), env_seed(4, 4))  # episode 4: the second update
    teacher = BernoulliTeacher(NAMES, seed=0)
    two_workers.envs["killer"] = killer
    config = ReinforceConfig(episodes=6, students_per_update=3, lr=0.05, seed=4)
    trainer = ReinforceTrainer(two_workers, teacher, config, env_name="killer")
    history = trainer.train()
    assert not marker.exists()  # a worker did die
    assert_same_run(alone, (history, weights(teacher)))


def test_a_comparison_on_two_workers_equals_the_one_in_process(two_workers):
    student, teachers = EnvSpec(CFG, "student"), teachers_to_compare(NAMES)
    ours = evaluate(student, teachers, [5, 6, 7])
    assert_same_results(ours, evaluate(student, teachers, [5, 6, 7], executor=two_workers))


def test_a_job_on_an_unknown_env_is_refused_naming_the_envs(one_worker):
    with pytest.raises(KeyError, match="no env named 'nowhere'"):
        one_worker.run([EpisodeJob(NoTeach(), [0], [0], env="nowhere")])


def test_gpus_a_local_ray_lacks_are_refused_at_once(ray_local):
    with pytest.raises(ValueError, match=r"gpus_per_worker=1.0: 2 workers need 2 GPUs"):
        RayExecutor(workers=2, gpus_per_worker=1.0)


def test_workers_that_cannot_start_are_a_timeout_not_a_hang(one_worker, two_workers):
    # Three of the four CPUs of the module's Ray are held by the other executors' workers.
    with pytest.raises(TimeoutError, match=r"did not start within 2 s; the cluster has free"):
        RayExecutor(workers=2, start_timeout=2)


class CountBuilds:
    """An env source without value equality, that counts its builds in a file."""

    def __init__(self, path):
        self.path = path

    def __call__(self):
        with open(self.path, "a") as f:
            f.write("built\n")
        return SPEC()


def test_a_worker_builds_an_env_once_until_the_driver_changes_it(tmp_path, one_worker):
    log = tmp_path / "builds"
    one_worker.envs["counted"] = CountBuilds(str(log))
    jobs = [EpisodeJob(NoTeach(), [s], [s], env="counted") for s in range(3)]
    one_worker.run(jobs)
    one_worker.run(jobs[:1])
    assert log.read_text().count("built") == 1
    one_worker.envs["counted"] = CountBuilds(str(log))  # another source under the same name
    one_worker.run(jobs[:1])
    assert log.read_text().count("built") == 2


def test_a_closed_executor_says_so(ray_local):
    executor = RayExecutor(workers=1)
    executor.close()
    with pytest.raises(RuntimeError, match="closed"):
        executor.run([EpisodeJob(NoTeach(), [0], [0])])


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"gpus_per_worker": -1.0}, "gpus_per_worker"),
        ({"threads": 0}, "threads"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"start_timeout": 0}, "start_timeout"),
        ({"tasks_per_worker": 0}, "tasks_per_worker"),
    ],
)
def test_bad_ray_executor_arguments_are_refused_naming_them(bad, match):
    with pytest.raises(ValueError, match=match):
        RayExecutor(**bad)
