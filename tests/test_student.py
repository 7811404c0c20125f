"""The student run (``l2t_gym.student``): data order, the FIFO pool, the candidate look that never
changes a student, the training step, evaluation and histories, for students held as modules
(the single env) and stacked for ``torch.func`` (the vector env).

The two holders must give the same results for the same seeds and keep masks: that is the
contract of the one place where the batched path differs, tested here directly on the run
rather than through the envs.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from l2t_gym.settings import Settings
from l2t_gym.student import BatchNormStats, StackedStudents, StudentRun

M = 32  # Digits' batch size
HOLDERS = {"modules": False, "stacked": True}


def start(run: StudentRun, i: int, seed: int) -> None:
    """A fresh student in slot i, every stream seeded from ``seed``, evaluated once (as an
    episode starts)."""
    run.start(i, init_seed=1000 + seed, order_seed=2000 + seed, augment_seed=3000 + seed)
    run.evaluate("dev", [i])


def make_run(n: int = 1, stacked: bool = False, task: str = "digits", **kwargs) -> StudentRun:
    run = StudentRun(Settings.resolve(task, device="cpu", **kwargs), n=n, stacked=stacked)
    for i in range(n):
        start(run, i, seed=i)
    return run


def batchnorm_run(data, n: int = 1, stacked: bool = False, **kwargs) -> StudentRun:
    """ResNet-20 students (BatchNorm) on ``small_images``, batches of 6."""
    kwargs = {"student": "resnet20", "batch_size": 6, "augment": False, "lr": 0.01, **kwargs}
    return make_run(n, stacked, "cifar10", data=data, **kwargs)


def student_state(run: StudentRun, i: int) -> dict[str, torch.Tensor]:
    """Student i's parameters and buffers (BatchNorm statistics), by name, copied."""
    students = run.students
    if isinstance(students, StackedStudents):
        tensors = {**students.params, **students.buffers}
        return {k: v[i].detach().clone() for k, v in tensors.items()}
    return {k: v.detach().clone() for k, v in students.modules[i].state_dict().items()}


def momenta(run: StudentRun, i: int) -> dict[str, torch.Tensor]:
    """Student i's SGD momentum by parameter name (zeros before its first step)."""
    students = run.students
    if isinstance(students, StackedStudents):
        return {k: b[i].clone() for k, b in students.momentum.items()}
    state = students.optimizers[i].state
    return {
        k: state[p]["momentum_buffer"].clone()
        if "momentum_buffer" in state[p]
        else torch.zeros_like(p)
        for k, p in students.modules[i].named_parameters()
    }


def assert_same(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if tolerance:
            torch.testing.assert_close(a[k], b[k], **tolerance, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


def keep_mask(k: int, m: int = M, rng: np.random.Generator | None = None) -> np.ndarray:
    """A (1, m) mask keeping k candidates: the first k, or k at random positions."""
    keep = np.zeros(m, dtype=bool)
    keep[np.arange(k) if rng is None else rng.choice(m, k, replace=False)] = True
    return keep[None]


class Reference:
    """A plain PyTorch copy of a run's student 0 (one module, its own optimiser), trained on the
    instances a test names."""

    def __init__(self, run: StudentRun) -> None:
        self.model = copy.deepcopy(run.students.modules[0])
        self.optimizer = run.settings.build_optimizer(self.model.parameters())
        self.data = run.data
        self.losses: list[float] = []

    def train_on(self, idx: np.ndarray) -> None:
        rows = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        loss = F.cross_entropy(self.model(self.data.x_train[rows]), self.data.y_train[rows])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


# -- data order -------------------------------------------------------------------------------
def test_the_data_order_is_a_stream_of_shuffled_passes_over_the_folds_training_instances():
    run = make_run()
    train = run.fold.train
    stream: list[int] = []
    while len(stream) < 3 * len(train):
        stream.extend(run.propose().indices[0])
        run.offer(keep_mask(0))
    passes = [np.array(stream[k * len(train) : (k + 1) * len(train)]) for k in range(3)]
    for one_pass in passes:  # every instance once per pass, and no other instance
        np.testing.assert_array_equal(np.sort(one_pass), train)
        assert not np.array_equal(one_pass, train)  # shuffled
    assert not np.array_equal(passes[0], passes[1])  # each pass in an order of its own


def test_the_data_order_comes_from_the_order_seed_alone_not_from_the_keeps():
    def order(init_seed, order_seed, keep):
        run = make_run()
        run.start(0, init_seed=init_seed, order_seed=order_seed, augment_seed=0)
        out = []
        for _ in range(6):
            out.append(run.propose().indices[0].copy())
            run.offer(keep_mask(keep))
        return np.concatenate(out)

    reference = order(1, 2, keep=M)
    np.testing.assert_array_equal(order(1, 2, keep=0), reference)
    np.testing.assert_array_equal(order(5, 2, keep=7), reference)
    assert not np.array_equal(order(1, 3, keep=M), reference)


@pytest.mark.parametrize("fold", ["teacher", "student"])
def test_candidates_come_from_the_folds_own_training_instances(fold):
    run = make_run(fold=fold)
    other = run.settings.replace(fold="student" if fold == "teacher" else "teacher")
    other_fold = other.fold_of(run.data)
    seen = np.concatenate([run.propose().indices[0] for _ in range(40)])
    assert np.isin(seen, run.fold.train).all()
    assert not np.isin(seen, run.fold.dev).any()
    assert not np.isin(seen, np.concatenate([other_fold.train, other_fold.dev])).any()


# -- the pool and the training step -----------------------------------------------------------
def test_the_pool_trains_on_the_first_m_kept_instances_in_the_order_they_were_kept():
    run = make_run()
    reference = Reference(run)
    rng = np.random.default_rng(0)
    pool: list[int] = []
    # Running totals 5, 25, 32 (an update), 32 (a whole batch: the look's graph is reused),
    # 10, 41 (an update, 9 left), 9, 32 (an update).
    kept = [5, 20, 7, 32, 10, 31, 0, 23]
    iterations = [0, 0, 1, 2, 2, 3, 3, 4]
    pool_sizes = [5, 25, 0, 0, 10, 9, 9, 0]
    previous = 0
    for k, iteration, pool_size in zip(kept, iterations, pool_sizes, strict=True):
        candidate = run.propose()
        if reference.losses:  # the mean loss of the minibatches trained on so far
            mean = np.mean(reference.losses)
            assert candidate.avg_train_loss[0] == pytest.approx(mean, rel=1e-5)
        else:
            assert candidate.avg_train_loss[0] == math.log(10)
        keep = keep_mask(k, rng=rng)
        pool.extend(candidate.indices[0][keep[0]])
        trained = run.offer(keep)
        if len(pool) >= M:
            reference.train_on(pool[:M])
            pool = pool[M:]
        assert trained == ([0] if iteration > previous else [])
        previous = iteration
        assert run.iteration[0] == iteration and run.pool_size[0] == pool_size == len(pool)
        assert_same(student_state(run, 0), reference.state(), rtol=1e-6, atol=1e-7)
    assert run.effective_instances[0] == 4 * M


def test_mask_mode_trains_at_once_on_the_kept_part_of_each_batch():
    run = make_run(mode="mask")
    reference = Reference(run)
    rng = np.random.default_rng(1)
    for k, iteration in [(5, 1), (0, 1), (32, 2), (1, 3)]:
        candidate = run.propose()
        keep = keep_mask(k, rng=rng)
        run.offer(keep)
        if k:
            reference.train_on(candidate.indices[0][keep[0]])
        assert run.iteration[0] == iteration and run.pool_size[0] == 0
        assert_same(student_state(run, 0), reference.state(), rtol=1e-6, atol=1e-7)
    assert run.effective_instances[0] == 5 + 32 + 1


def test_mask_mode_runs_one_student_only():
    with pytest.raises(ValueError, match="n must be 1"):
        StudentRun(Settings.resolve("digits", device="cpu", mode="mask"), n=2)


def test_adam_steps_the_student_as_torch_adam_does():
    # Single env only: the stacked students' update is SGD's (test_vector checks the refusal).
    run = make_run(optimizer="adam", lr=1e-3)
    assert isinstance(run.students.optimizers[0], torch.optim.Adam)
    reference = Reference(run)
    for _ in range(3):
        candidate = run.propose()
        run.offer(keep_mask(M))
        reference.train_on(candidate.indices[0])
    assert_same(student_state(run, 0), reference.state(), rtol=1e-6, atol=1e-7)
    assert run.iteration[0] == 3


# -- the look ---------------------------------------------------------------------------------
@pytest.mark.parametrize("holder", list(HOLDERS))
def test_the_candidate_look_never_changes_the_students_batchnorm_statistics_included(
    small_images, holder
):
    run = batchnorm_run(small_images, n=2, stacked=HOLDERS[holder])
    before = [student_state(run, i) for i in range(2)]
    for k in (0, 2, 3):  # pools of 0, 2 and 5 < 6: nobody trains
        run.propose()
        assert run.offer(np.repeat(keep_mask(k, 6), 2, axis=0)) == []
    for i in range(2):
        assert_same(student_state(run, i), before[i])
    run.propose()
    assert run.offer(np.repeat(keep_mask(1, 6), 2, axis=0)) == [0, 1]  # the pools fill: a step
    for i in range(2):
        after = student_state(run, i)
        assert not torch.equal(after["bn.running_mean"], before[i]["bn.running_mean"])
        assert not torch.equal(after["fc.weight"], before[i]["fc.weight"])


def test_the_look_returns_training_mode_logits_and_sets_their_batchnorm_update_aside(
    small_images,
):
    run = batchnorm_run(small_images)
    model = run.students.modules[0]
    twin = copy.deepcopy(model)  # in training mode, as the run holds its students
    x = run.data.x_train[:6][None]
    before = student_state(run, 0)
    expected = twin(x[0])
    logits, update = run.look(x, keep_graph=False)
    torch.testing.assert_close(logits[0], expected, rtol=1e-6, atol=1e-6)
    assert logits[0].grad_fn is None and update is None
    assert_same(student_state(run, 0), before)
    logits, update = run.look(x, keep_graph=True)
    assert logits[0].grad_fn is not None  # kept, for a step on this very batch
    assert_same(student_state(run, 0), before)
    # The update set aside is the one the twin's forward made.
    run.students.batchnorm.restore(update)
    for (name, ours), theirs in zip(model.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("holder", list(HOLDERS))
@pytest.mark.parametrize("student", ["mlp-32", "resnet20"])
def test_reusing_the_candidate_graph_equals_a_fresh_forward(small_images, student, holder):
    def play(keep_graph):
        run = batchnorm_run(small_images, n=2, stacked=HOLDERS[holder], student=student)
        calls = [0]
        if holder == "modules":
            for model in run.students.modules:
                model.register_forward_hook(
                    lambda module, args, out: calls.__setitem__(0, calls[0] + module.training)
                )
        logits = []
        for _ in range(5):
            logits.append(run.propose(keep_graph).logits)
            assert run.offer(np.ones((2, 6), dtype=bool)) == [0, 1]
        return run, np.stack(logits), calls[0]

    reused, fresh = play(True), play(False)
    np.testing.assert_array_equal(reused[1], fresh[1])
    for i in range(2):
        assert_same(student_state(reused[0], i), student_state(fresh[0], i))
        assert_same(momenta(reused[0], i), momenta(fresh[0], i))
    if holder == "modules":  # one training-mode forward per step and student, not two
        assert (reused[2], fresh[2]) == (2 * 5, 2 * 2 * 5)


# -- students that do not train, and the two holders ------------------------------------------
@pytest.mark.parametrize("holder", list(HOLDERS))
def test_a_student_that_does_not_train_is_left_exactly_as_it_was(small_images, holder):
    run = batchnorm_run(small_images, n=3, stacked=HOLDERS[holder])
    run.propose()
    run.offer(np.ones((3, 6), dtype=bool))  # everyone steps once: momentum to keep
    frozen, frozen_momenta = student_state(run, 1), momenta(run, 1)
    others = student_state(run, 0)
    keep = np.ones((3, 6), dtype=bool)
    keep[1] = False
    for _ in range(3):
        run.propose()
        assert run.offer(keep) == [0, 2]
    assert run.iteration == [4, 1, 4]
    assert_same(student_state(run, 1), frozen)
    assert_same(momenta(run, 1), frozen_momenta)
    assert frozen_momenta["fc.weight"].abs().sum() > 0
    moved = student_state(run, 0)
    assert not torch.equal(moved["bn.running_var"], others["bn.running_var"])


#: task, env arguments, and the tolerance of float32 sums taken in another order: the MLPs'
#: batched matmuls agree to ~1e-7, the ResNets' grouped convolutions (vmap) to ~1e-5; a wrong
#: update (momentum not put back, a student trained that should not be) is off by far more.
CASES = {
    "mlp on digits": ("digits", {}, {"rtol": 1e-5, "atol": 1e-6}),
    "mlp on digits, plain sgd": ("digits", {"momentum": 0.0}, {"rtol": 1e-5, "atol": 1e-6}),
    "resnet with batchnorm and augmentation": (
        "cifar10",
        {"student": "resnet20", "batch_size": 6, "augment": True, "lr": 0.01},
        {"rtol": 1e-3, "atol": 1e-4},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_module_and_stacked_students_give_the_same_results(small_images, case):
    task, kwargs, tolerance = CASES[case]
    if task == "cifar10":
        kwargs = {**kwargs, "data": small_images}

    def play(stacked):
        run = make_run(3, stacked, task, **kwargs)
        rng = np.random.default_rng(0)
        steps = []
        for t in range(10):
            if t == 6:
                start(run, 1, seed=7)  # a new student in one slot: fresh weights and momentum
            candidate = run.propose()
            keep = rng.random((3, run.batch_size)) < 0.6
            keep[:, :] |= t % 4 == 0  # whole batches now and then: the look's graph reused
            keep[0] |= t == 1  # a step where one student trains on its whole batch ...
            keep[2] &= not 2 <= t <= 4  # ... and one keeps nothing for a while
            trained = run.offer(keep)
            steps.append((candidate.logits, trained, run.loss_sum.clone()))
        dev = run.evaluate("dev")
        return run, steps, dev

    (modules, by_module, dev_m), (stacked, by_stack, dev_s) = play(False), play(True)
    some_trained = False
    for (logits_m, trained_m, loss_m), (logits_s, trained_s, loss_s) in zip(
        by_module, by_stack, strict=True
    ):
        np.testing.assert_allclose(logits_m, logits_s, **tolerance)
        np.testing.assert_array_equal(trained_m, trained_s)
        torch.testing.assert_close(loss_m, loss_s, **tolerance)
        some_trained |= 0 < len(trained_m) < 3
    assert some_trained  # the masks did include steps where only some students train
    np.testing.assert_array_equal(modules.iteration, stacked.iteration)
    np.testing.assert_allclose(dev_m, dev_s)
    for i in range(3):
        assert_same(student_state(modules, i), student_state(stacked, i), **tolerance)
        assert_same(momenta(modules, i), momenta(stacked, i), **tolerance)


# -- evaluation and histories -----------------------------------------------------------------
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    try:
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()
    finally:
        model.train()


def test_evaluate_measures_dev_and_test_accuracy_and_records_the_dev_history():
    run = make_run()
    first = run.dev_history[0][0]
    for _ in range(3):
        run.propose()
        run.offer(keep_mask(M))
    model, data, dev = run.students.modules[0], run.data, torch.from_numpy(run.fold.dev)
    accuracy = run.evaluate("dev")
    assert accuracy == [_accuracy(model, data.x_train[dev], data.y_train[dev])]
    assert model.training  # back in training mode
    assert run.dev_history[0] == [first, (3, accuracy[0])]
    assert run.dev_accuracy[0] == accuracy[0] and run.dev_iteration[0] == 3
    assert run.best_dev_accuracy[0] == max(first[1], accuracy[0])
    assert math.isnan(run.test_accuracy[0])
    test = run.evaluate("test")
    assert test == [_accuracy(model, data.x_test, data.y_test)]
    assert run.test_accuracy[0] == test[0] and run.test_seconds[0] > 0
    assert len(run.dev_history[0]) == 2  # the test set is no part of the dev history


def test_evaluating_some_students_records_only_theirs():
    stacked, modules = make_run(3, stacked=True), make_run(3)
    for run in (stacked, modules):
        run.propose()
        run.offer(np.ones((3, M), dtype=bool))
    accuracy = stacked.evaluate("dev", [1])
    assert len(accuracy) == 1
    assert [len(h) for h in stacked.dev_history] == [1, 2, 1]
    assert stacked.dev_iteration == [0, 1, 0]
    np.testing.assert_allclose(accuracy, modules.evaluate("dev", [1]))


def test_start_gives_a_fresh_student_with_empty_histories():
    run = make_run()
    initial = student_state(run, 0)
    first = run.propose().indices.copy()
    for k in (32, 20, 20):
        run.offer(keep_mask(k))
        run.propose()
    run.evaluate("test")
    assert run.iteration[0] == 2 and run.pool_size[0] == 8
    run.start(0, init_seed=1000, order_seed=2000, augment_seed=3000)  # the seeds of make_run
    assert run.iteration[0] == run.effective_instances[0] == run.pool_size[0] == 0
    assert run.loss_sum[0] == 0 and run.dev_history[0] == []
    assert math.isnan(run.test_accuracy[0]) and run.test_seconds[0] == 0.0
    assert_same(student_state(run, 0), initial)
    candidate = run.propose()
    np.testing.assert_array_equal(candidate.indices, first)
    assert candidate.avg_train_loss[0] == math.log(10)


def test_batchnorm_stats_put_back_only_the_students_asked_for():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    stats = BatchNormStats.of_modules(models)
    saved = stats.save()
    initial = [[b.clone() for b in m.buffers()] for m in models]
    for model in models:  # a training-mode forward updates the statistics in place ...
        model(torch.randn(5, 3))
    moved = [[b.clone() for b in m.buffers()] for m in models]
    # ... of the shared block: the modules hold views into it.
    assert not all(torch.equal(a, b) for a, b in zip(stats.flats, saved, strict=True))
    stats.restore(saved, rows=torch.tensor([True, False]))
    assert all(torch.equal(a, b) for a, b in zip(models[0].buffers(), initial[0], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(models[1].buffers(), moved[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(moved[1], initial[1], strict=True))
