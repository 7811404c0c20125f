"""N students' training runs side by side: data order, pool, the candidate look, training step,
evaluation and histories, written once for one student (L2TEnv) and for many (L2TVectorEnv).

An env drives a :class:`StudentRun` through three calls per teacher step: :meth:`StudentRun.offer`
hands over the teacher's keep masks for the last candidate batches (the students that have M
kept instances take one optimiser step), :meth:`StudentRun.evaluate` measures dev accuracy when
due, and :meth:`StudentRun.propose` draws the next candidate batches and looks at them. How the
students' tensors are held is the one thing that differs between one and many: see
:mod:`l2t_gym.student.modules` and :mod:`l2t_gym.student.stacked`.

A teacher step moves one thing between host and device each way: the candidate indices up
(asynchronously, from pinned memory) and the packed logits and loss sums down, the step's only
synchronisation. A dev evaluation, every ``eval_every`` iterations, adds one more: its accuracy
decides the episode's end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from l2t_gym.data.augment import random_crop_flip
from l2t_gym.settings import Settings
from l2t_gym.student.base import Logits, Students, to_device_async
from l2t_gym.student.modules import ModuleStudents, StudentCompiler
from l2t_gym.student.stacked import StackedStudents


@dataclass(frozen=True)
class Candidate:
    """The candidate batches of N students, as a teacher's features need them (host arrays).

    :ivar indices: (N, M) int64, the instances' positions in the task's training set.
    :ivar labels: (N, M) int64, their classes.
    :ivar extras: (N, M, k) float32, the task's per-instance data features, or None.
    :ivar logits: (N, M, C) float32, each student's outputs on its batch (training mode).
    :ivar avg_train_loss: (N,) float64, mean loss of the minibatches trained on so far (ln C,
        a uniform guess, before the first).
    :ivar diverged: (N,) bool, the student's loss or logits are no longer finite.
    """

    indices: np.ndarray
    labels: np.ndarray
    extras: np.ndarray | None
    logits: np.ndarray
    avg_train_loss: np.ndarray
    diverged: np.ndarray


class StudentRun:
    """N students trained on what their teachers keep, side by side on one device.

    In ``"paper"`` mode kept instances join a FIFO pool and a student takes one optimiser step
    whenever its pool holds ``batch_size`` of them; in ``"mask"`` mode it steps at once on the
    kept part of each candidate batch (no step if nothing is kept).

    The candidate forward pass (:meth:`look`) is computed in training mode, as the students
    would see the batch if they trained on it, but never changes them: BatchNorm running
    statistics are put back at once, and the forward's update is applied only to a student that
    trains on the batch. When the whole candidate batch becomes the training batch (always so
    for a keep-all teacher) its autograd graph is reused, so judging a batch and training on it
    cost one forward pass, like a plain training loop.

    Every student draws everything random from the seeds :meth:`start` gives it: its initial
    weights, its data order (a continuous stream of shuffled passes over the fold) and its
    augmentation.

    :param settings: the env's settings.
    :param n: the number of students.
    :param stacked: hold the students stacked (:class:`~l2t_gym.student.stacked.StackedStudents`:
        ``torch.func``, SGD, ``mode="paper"``) instead of as modules.
    :param compiler: the env's :class:`StudentCompiler` when ``settings.compile``.
    """

    def __init__(
        self,
        settings: Settings,
        n: int = 1,
        stacked: bool = False,
        compiler: StudentCompiler | None = None,
    ) -> None:
        self.settings, self.n = settings, n
        if settings.mode == "mask" and n > 1:
            raise ValueError(
                "mode='mask' trains each student on a batch of its own size: n must be 1"
            )
        self.batch_size = settings.batch_size
        self.device = settings.device
        self.data = data = settings.load_data()
        self.fold = fold = settings.fold_of(data)
        # The slots' weights are replaced by start(); these only give the architecture.
        models = [settings.build_student(data, seed=0) for _ in range(n)]
        self.students: Students = (
            StackedStudents(models, settings)
            if stacked
            else ModuleStudents(models, settings, compiler)
        )
        dev = torch.from_numpy(fold.dev).to(self.device)
        # Laid out once here: the dev set is read at every evaluation.
        self._dev_x, self._dev_y = self.students.layout(data.x_train[dev]), data.y_train[dev]
        self._augment = settings.augment
        self._order: list[np.random.Generator | None] = [None] * n
        self._augment_generators: list[torch.Generator | None] = [None] * n
        self._queues = [np.empty(0, np.int64)] * n
        self._positions = [0] * n
        self._pools = [np.empty(0, np.int64)] * n
        #: (N,) float32 on the device: the sum of each student's training losses so far.
        self.loss_sum = torch.zeros(n, device=self.device)
        #: The last proposed candidate batches (None before the first).
        self.candidate: Candidate | None = None
        self._pending: _Pending | None = None
        #: (N,) bool, all true: "every student", for masks that are.
        self.everyone = np.ones(n, dtype=bool)
        #: (N,) student iterations (optimiser steps) so far.
        self.iteration = np.zeros(n, dtype=np.int64)
        #: (N,) instances kept and trained on so far.
        self.effective_instances = np.zeros(n, dtype=np.int64)
        #: (N,) the last dev accuracy, the best so far, and the iteration it was measured at.
        self.dev_accuracy = np.zeros(n)
        self.best_dev_accuracy = np.zeros(n)
        self.dev_iteration = np.zeros(n, dtype=np.int64)
        #: Per student, (iteration, dev accuracy) of every evaluation since its start.
        self.dev_history: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        #: (N,) the last test accuracy (NaN until measured) and the seconds spent measuring it.
        self.test_accuracy = np.full(n, math.nan)
        self.test_seconds = np.zeros(n)

    # -- a student's start --------------------------------------------------------------------
    def start(self, i: int, init_seed: int, order_seed: int, augment_seed: int) -> None:
        """A freshly initialised student in slot ``i``, with its own data order and augmentation
        stream, and empty histories."""
        self.students.load(i, self.settings.build_student(self.data, init_seed))
        if self._pending is not None:
            # The pending candidate's graph ran through the slot's old weights, which load()
            # just overwrote in place: it can no longer be backpropagated.
            self._pending.graph = None
        self._order[i] = np.random.default_rng(order_seed)
        if self._augment:
            self._augment_generators[i] = torch.Generator(device=self.device)
            self._augment_generators[i].manual_seed(augment_seed)
        self._queues[i], self._positions[i] = np.empty(0, np.int64), 0
        self._pools[i] = np.empty(0, np.int64)
        self.loss_sum[i] = 0
        self.iteration[i] = self.effective_instances[i] = 0
        self.dev_history[i] = []
        self.test_accuracy[i], self.test_seconds[i] = math.nan, 0.0

    # -- the teacher's view -------------------------------------------------------------------
    def propose(self, keep_graph: bool = True) -> Candidate:
        """Draw every student's next candidate batch and :meth:`look` at it.

        :param keep_graph: keep the forward's autograd graph, to reuse it if the whole batch is
            trained on next (pass False when no step will follow).
        :return: the candidates, with logits and average losses, in one device-to-host transfer.
        """
        idx = (
            self._next_indices(0)[None]
            if self.n == 1
            else np.stack([self._next_indices(i) for i in range(self.n)])
        )
        x, y = self._gather(idx, self.everyone)
        # A graph is only worth keeping when a whole batch could be trained on as it is.
        keep_graph = keep_graph and (
            self.settings.mode == "mask" or not any(len(p) for p in self._pools)
        )
        logits, after = self.look(x, keep_graph)
        self._pending = _Pending(idx, x, y, logits if keep_graph else None, after)
        host_logits, loss_sums = self._to_host(logits)
        its = self.iteration
        if self.n == 1:  # float division of Python numbers, as one student's average always was
            avg = np.array(
                [float(loss_sums[0]) / int(its[0]) if its[0] else math.log(self.data.num_classes)]
            )
        else:
            avg = np.where(its > 0, loss_sums / np.maximum(its, 1), math.log(self.data.num_classes))
        diverged = ~(np.isfinite(avg) & np.isfinite(host_logits).all(axis=(1, 2)))
        data = self.data
        self.candidate = Candidate(
            indices=idx,
            labels=data.y_train_host[idx],
            extras=None if data.extras_train_host is None else data.extras_train_host[idx],
            logits=host_logits,
            avg_train_loss=avg,
            diverged=diverged,
        )
        return self.candidate

    def look(self, x: torch.Tensor, keep_graph: bool) -> tuple[Logits, list | None]:
        """The students' training-mode logits (N, M, C) on their candidate inputs x (N, M, ...),
        without changing the students.

        The forward updates BatchNorm statistics as a training step would; that update is kept
        aside (returned, when ``keep_graph``, for the case the batch is trained on) and the
        students are put back as they were.
        """
        batchnorm = self.students.batchnorm
        before = batchnorm.save()
        with torch.set_grad_enabled(keep_graph):
            logits = self.students.forward(x, saved=before)
        after = batchnorm.save() if keep_graph else None
        batchnorm.restore(before)
        return logits, after

    def offer(
        self, keep: np.ndarray, active: np.ndarray | None = None, n_kept: np.ndarray | None = None
    ) -> np.ndarray:
        """Hand over the keep masks (N, M) bool for the last proposed batches; students not in
        ``active`` (bool (N,); all when None) ignore theirs. ``n_kept``: the masks' counts of
        kept instances (N,), if the caller has them.

        :return: bool (N,): which students took an optimiser step.
        """
        pending = self._pending
        if pending is None:
            raise RuntimeError("offer() needs a batch from propose() first")
        self._pending = None
        n, m, mask_mode = self.n, self.batch_size, self.settings.mode == "mask"
        if n_kept is None:
            n_kept = np.count_nonzero(keep, axis=1)
        trains = np.zeros(n, dtype=bool)
        # Students that train on their whole candidate batch, the very images the look saw.
        whole = np.zeros(n, dtype=bool)
        batches = [None] * n
        for i in range(n) if active is None else np.flatnonzero(active):
            if n_kept[i] == m and (mask_mode or len(self._pools[i]) == 0):
                trains[i] = whole[i] = True
                continue
            kept = pending.idx[i][keep[i]]
            if mask_mode:
                if len(kept):
                    trains[i], batches[i] = True, kept
                continue
            pool = np.concatenate([self._pools[i], kept]) if len(self._pools[i]) else kept
            if len(pool) >= m:
                trains[i] = True
                batches[i], pool = pool[:m], pool[m:]
            self._pools[i] = pool
        if trains.any():
            self._train(trains, whole, batches, pending)
        return trains

    # -- measurements -------------------------------------------------------------------------
    def evaluate(
        self, on: Literal["dev", "test"] = "dev", rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Accuracy (R,) of the students in ``rows`` (bool (N,); all when None) on the fold's dev
        set (recorded in the students' histories) or the official test set."""
        x, y = (self._dev_x, self._dev_y) if on == "dev" else (self.data.x_test, self.data.y_test)
        students, chunk = self.students, self.students.eval_chunk
        start = time.perf_counter()
        students.set_training(False)
        try:
            with torch.inference_mode():
                correct = 0
                for s in range(0, len(y), chunk):
                    logits = students.eval_logits(x[s : s + chunk], rows)
                    correct = correct + (logits.argmax(-1) == y[s : s + chunk]).sum(-1)
        finally:
            students.set_training(True)
        # The step's one synchronisation beyond the observation: the episode's end depends on it.
        accuracy = correct.double().cpu().numpy() / len(y)
        picked = np.arange(self.n) if rows is None else np.flatnonzero(rows)
        if on == "dev":
            for i, acc in zip(picked, accuracy, strict=True):
                history = self.dev_history[i]
                history.append((int(self.iteration[i]), float(acc)))
                # The first evaluation, of the fresh student, starts the best-so-far.
                best = acc if len(history) == 1 else max(self.best_dev_accuracy[i], acc)
                self.best_dev_accuracy[i] = best
            self.dev_accuracy[picked] = accuracy
            self.dev_iteration[picked] = self.iteration[picked]
        else:
            self.test_accuracy[picked] = accuracy
            self.test_seconds[picked] += time.perf_counter() - start
        return accuracy

    @property
    def pool_size(self) -> np.ndarray:
        """(N,) instances kept and waiting in each student's pool."""
        return np.array([len(p) for p in self._pools])

    # -- internals ----------------------------------------------------------------------------
    def _train(
        self, trains: np.ndarray, whole: np.ndarray, batches: list, pending: _Pending
    ) -> None:
        students, everyone = self.students, bool(trains.all())
        if pending.graph is not None and whole[trains].all():
            # Every student that trains does so on its whole candidate batch: reuse its graph.
            rows = None if everyone else to_device_async(trains, self.device)
            students.batchnorm.restore(pending.bn_after, rows)
            logits, y = pending.graph, pending.y
        else:
            idx = pending.idx.copy() if self.n > 1 else None
            if idx is None:
                idx = batches[0][None] if batches[0] is not None else pending.idx
            else:
                for i in np.flatnonzero(trains & ~whole):
                    idx[i] = batches[i]
            fresh = trains & ~whole
            x, y = self._gather(idx, fresh)
            if whole.any() and fresh.any():
                # The students training on their whole batch see the images the look saw.
                rows = to_device_async(whole, self.device)
                x = torch.where(rows.view(-1, *([1] * (x.dim() - 1))), pending.x, x)
            elif whole.any():
                x = pending.x
            before = None if everyone else students.batchnorm.save()
            logits = students.forward(x, rows=trains)
            if before is not None:  # only the students that train keep the forward's update
                students.batchnorm.restore(before, to_device_async(~trains, self.device))
        losses = students.step(logits, y, trains)
        self.loss_sum += losses
        if everyone:
            self.iteration += 1
            self.effective_instances += y.shape[1]
        else:
            self.iteration[trains] += 1
            self.effective_instances[trains] += y.shape[1]

    def _next_indices(self, i: int) -> np.ndarray:
        # One continuous stream of shuffled passes: every instance is offered once per pass.
        m, queue, pos = self.batch_size, self._queues[i], self._positions[i]
        while len(queue) - pos < m:
            queue = np.concatenate([queue[pos:], self._order[i].permutation(self.fold.train)])
            pos = 0
        self._queues[i], self._positions[i] = queue, pos + m
        return queue[pos : pos + m]

    def _gather(self, idx: np.ndarray, augment: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (N, B, ...) and labels (N, B) of the instances ``idx`` (N, B), each student's
        in ``augment`` (bool (N,)) drawn from its own augmentation stream."""
        idx_t = to_device_async(idx, self.device)
        x, y = self.data.x_train[idx_t], self.data.y_train[idx_t]
        if self._augment:
            gens = self._augment_generators
            if self.n == 1:
                x = random_crop_flip(x[0], gens[0]).unsqueeze(0) if augment[0] else x
            else:
                x = torch.stack(
                    [random_crop_flip(x[i], gens[i]) if augment[i] else x[i] for i in range(self.n)]
                )
        return x, y

    def _to_host(self, logits: Logits) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(logits, list):
            logits = logits[0].unsqueeze(0) if self.n == 1 else torch.stack(logits)
        logits = logits.detach()
        if self.device.type == "cpu":
            return logits.float().numpy(), self.loss_sum.numpy()
        # One transfer, hence one synchronisation, per teacher step.
        n = self.n
        packed = torch.cat([logits.float().flatten(), self.loss_sum]).cpu().numpy()
        return packed[:-n].reshape(logits.shape), packed[-n:]


class _Pending:
    """The last proposed batches: indices (host), inputs and labels (device), and, if kept, the
    forward's graph (logits) and the BatchNorm statistics a training step on them would leave."""

    __slots__ = ("idx", "x", "y", "graph", "bn_after")

    def __init__(self, idx, x, y, graph, bn_after):
        self.idx, self.x, self.y, self.graph, self.bn_after = idx, x, y, graph, bn_after
