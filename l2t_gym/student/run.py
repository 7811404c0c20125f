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
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from l2t_gym.data.augment import random_crop_flip
from l2t_gym.settings import Settings
from l2t_gym.student.base import Batch, Logits, Students, to_device_async
from l2t_gym.student.modules import ModuleStudents, StudentCompiler
from l2t_gym.student.stacked import StackedStudents


class Candidate:
    """The candidate batches of N students, as a teacher's features need them (host arrays).

    :ivar indices: (N, M) int64, the instances' positions in the task's training set.
    :ivar labels: (N, M) int64, their classes.
    :ivar extras: (N, M, k) float32, the task's per-instance data features, or None.
    :ivar logits: (N, M, C) float32, each student's outputs on its batch (training mode).
    :ivar avg_train_loss: (N,) float64, mean loss of the minibatches trained on so far (ln C,
        a uniform guess, before the first).
    :ivar diverged: (N,) bool, the student's logits or average loss are no longer finite, or the
        average loss has passed the settings' ``divergence_loss``.
    """

    # A plain class with slots: one is made per teacher step, and a frozen dataclass costs
    # several times as much to build.
    __slots__ = ("indices", "labels", "extras", "logits", "avg_train_loss", "diverged")

    def __init__(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        extras: np.ndarray | None,
        logits: np.ndarray,
        avg_train_loss: np.ndarray,
        diverged: np.ndarray,
    ) -> None:
        self.indices, self.labels, self.extras = indices, labels, extras
        self.logits, self.avg_train_loss, self.diverged = logits, avg_train_loss, diverged


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

    Per-student numbers are Python lists indexed by student (``run.iteration[i]``): a teacher
    step reads and writes a few of them per student, and plain numbers cost a tenth of what
    NumPy's small-array operations do.

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
        if settings.batch_size > len(fold.train):
            raise ValueError(
                f"batch_size={settings.batch_size} is larger than the {settings.fold} fold's "
                f"{len(fold.train)} training instances"
            )
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
        self._augment, self._stacked = settings.augment, stacked
        self._on_cpu = self.device.type == "cpu"
        self._order: list[np.random.Generator | None] = [None] * n
        self._augment_generators: list[torch.Generator | None] = [None] * n
        self._queues = [np.empty(0, np.int64)] * n
        self._positions = [0] * n
        self._pools = [np.empty(0, np.int64)] * n
        self._everyone = np.ones(n, dtype=bool)
        self._no_one = (False,) * n
        # The average loss before the first update: that of a uniform guess.
        self._uniform_loss = math.log(data.num_classes)
        self._pending: _Pending | None = None
        #: (N,) float32 on the device: the sum of each student's training losses so far.
        self.loss_sum = torch.zeros(n, device=self.device)
        #: The last proposed candidate batches (None before the first).
        self.candidate: Candidate | None = None
        #: Student iterations (optimiser steps) so far, per student.
        self.iteration = [0] * n
        #: Instances kept and trained on so far, per student.
        self.effective_instances = [0] * n
        #: The last dev accuracy, the best so far and the iteration it was measured at.
        self.dev_accuracy = [0.0] * n
        self.best_dev_accuracy = [0.0] * n
        self.dev_iteration = [0] * n
        #: Per student, (iteration, dev accuracy) of every evaluation since its start.
        self.dev_history: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        #: Per student, the sum of those accuracies (their mean without a pass over the history).
        self.dev_accuracy_sum = [0.0] * n
        #: The last test accuracy (NaN until measured) and the seconds spent measuring it.
        self.test_accuracy = [math.nan] * n
        self.test_seconds = [0.0] * n

    def __getstate__(self) -> dict:
        # A pending candidate's autograd graph cannot be copied or pickled. A copy trains on the
        # same images with a fresh forward pass instead, which on a CPU gives the same logits,
        # the same BatchNorm update and the same gradients: it continues exactly as the original.
        state = self.__dict__.copy()
        pending = state["_pending"]
        if pending is not None and pending.graph is not None:
            state["_pending"] = _Pending(pending.idx, pending.x, pending.y, None, None)
        return state

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
        self.dev_accuracy_sum[i] = 0.0
        self.test_accuracy[i], self.test_seconds[i] = math.nan, 0.0

    # -- the teacher's view -------------------------------------------------------------------
    def propose(self, keep_graph: bool = True) -> Candidate:
        """Draw every student's next candidate batch and :meth:`look` at it.

        :param keep_graph: keep the forward's autograd graph, to reuse it if the whole batch is
            trained on next (pass False when no step will follow).
        :return: the candidates, with logits and average losses, in one device-to-host transfer.
        """
        rows = [self._next_indices(i) for i in range(self.n)]
        idx = rows[0][None] if self.n == 1 else np.stack(rows)
        x, y = self._gather(rows, self._everyone)
        # A graph is only worth keeping when a whole batch could be trained on as it is.
        keep_graph = keep_graph and (self.settings.mode == "mask" or not any(map(len, self._pools)))
        logits, after = self.look(x, keep_graph)
        self._pending = _Pending(idx, x, y, logits if keep_graph else None, after)
        host_logits, loss_sums = self._to_host(logits)
        uniform = self._uniform_loss
        avg = [t / i if i else uniform for t, i in zip(loss_sums, self.iteration, strict=True)]
        # Diverged: the logits are not finite, or the average loss is not, or it has passed the
        # settings' divergence_loss (a student can explode and stay finite).
        cap = self.settings.divergence_loss
        if np.isfinite(host_logits).all() and all(math.isfinite(a) and a <= cap for a in avg):
            diverged = self._no_one  # the usual case, in one pass over the logits
        else:
            finite = np.isfinite(host_logits).all(axis=(1, 2))
            diverged = [
                not (math.isfinite(a) and a <= cap and f) for a, f in zip(avg, finite, strict=True)
            ]
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
        if not batchnorm.flats:  # no running statistics: nothing to put back
            with torch.set_grad_enabled(keep_graph):
                return self.students.forward(x), []
        before = batchnorm.save()
        with torch.set_grad_enabled(keep_graph):
            logits = self.students.forward(x, saved=before)
        after = batchnorm.save() if keep_graph else None
        batchnorm.restore(before)
        return logits, after

    def offer(
        self,
        keep: np.ndarray,
        students: Sequence[int] | None = None,
        n_kept: Sequence[int] | None = None,
    ) -> list[int]:
        """Hand over the keep masks (N, M) bool for the last proposed batches; only the
        ``students`` listed (all when None) take theirs. ``n_kept``: the masks' counts of kept
        instances, per student, if the caller has them.

        :return: the students that took an optimiser step.
        """
        pending = self._pending
        if pending is None:
            raise RuntimeError("offer() needs a batch from propose() first")
        self._pending = None
        m, mask_mode = self.batch_size, self.settings.mode == "mask"
        if n_kept is None:
            n_kept = keep.sum(axis=1).tolist()
        trained, whole, batches = [], [], {}
        for i in range(self.n) if students is None else students:
            if n_kept[i] == m and (mask_mode or len(self._pools[i]) == 0):
                # The student trains on its whole candidate batch, the very images it looked at.
                trained.append(i)
                whole.append(i)
                continue
            kept = pending.idx[i][keep[i]]
            if mask_mode:
                if len(kept):
                    trained.append(i)
                    batches[i] = kept
                continue
            pool = np.concatenate([self._pools[i], kept]) if len(self._pools[i]) else kept
            if len(pool) >= m:
                trained.append(i)
                batches[i], pool = pool[:m], pool[m:]
            self._pools[i] = pool
        if trained:
            self._train(trained, whole, batches, pending)
        return trained

    # -- measurements -------------------------------------------------------------------------
    def evaluate(
        self, on: Literal["dev", "test"] = "dev", students: Sequence[int] | None = None
    ) -> list[float]:
        """Accuracy of the ``students`` listed (all when None) on the fold's dev set (recorded in
        their histories) or the official test set."""
        x, y = (self._dev_x, self._dev_y) if on == "dev" else (self.data.x_test, self.data.y_test)
        picked = range(self.n) if students is None else students
        rows = None if len(picked) == self.n else self._mask(picked)
        engine, chunk = self.students, self.students.eval_chunk
        start = time.perf_counter()
        engine.set_training(False)
        try:
            with torch.inference_mode():
                counts = [engine.count_correct(x[:chunk], y[:chunk], rows)]
                for s in range(chunk, len(y), chunk):
                    counts.append(engine.count_correct(x[s : s + chunk], y[s : s + chunk], rows))
        finally:
            engine.set_training(True)
        # The step's one synchronisation beyond the observation (the episode's end depends on
        # it): every student's and chunk's count is summed on the device and copied at once.
        first = counts[0]
        if len(counts) == 1 and len(first) == 1:
            correct = [int(first[0])]
        elif len(counts) == 1 and isinstance(first, torch.Tensor):
            correct = first.tolist()
        else:
            stacked = [c if isinstance(c, torch.Tensor) else torch.stack(c) for c in counts]
            correct = torch.stack(stacked).sum(0).tolist()
        accuracy = [c / len(y) for c in correct]
        if on == "dev":
            for i, acc in zip(picked, accuracy, strict=True):
                history = self.dev_history[i]
                history.append((self.iteration[i], acc))
                # The first evaluation, of the fresh student, starts the best-so-far.
                best = acc if len(history) == 1 else max(self.best_dev_accuracy[i], acc)
                self.best_dev_accuracy[i], self.dev_accuracy[i] = best, acc
                self.dev_accuracy_sum[i] += acc
                self.dev_iteration[i] = self.iteration[i]
        else:
            seconds = time.perf_counter() - start
            for i, acc in zip(picked, accuracy, strict=True):
                self.test_accuracy[i] = acc
                self.test_seconds[i] += seconds
        return accuracy

    @property
    def pool_size(self) -> list[int]:
        """Instances kept and waiting in each student's pool."""
        return [len(p) for p in self._pools]

    # -- internals ----------------------------------------------------------------------------
    def _mask(self, students: Sequence[int]) -> np.ndarray:
        if len(students) == self.n:
            return self._everyone
        mask = np.zeros(self.n, dtype=bool)
        mask[list(students)] = True
        return mask

    def _train(
        self, trained: list[int], whole: list[int], batches: dict, pending: _Pending
    ) -> None:
        engine, everyone = self.students, len(trained) == self.n
        who = self._mask(trained)
        if pending.graph is not None and len(whole) == len(trained):
            # Every student that trains does so on its whole candidate batch: reuse its graph.
            if pending.bn_after:
                rows = None if everyone else to_device_async(who, self.device)
                engine.batchnorm.restore(pending.bn_after, rows)
            logits, y = pending.graph, pending.y
        else:
            rows = [batches.get(i, pending.idx[i]) for i in range(self.n)]
            x, y = self._gather(rows, self._mask(list(batches)))
            if whole and batches:
                # The students training on their whole batch see the images the look saw.
                if self._stacked:
                    rows = to_device_async(self._mask(whole), self.device)
                    x = torch.where(rows.view(-1, *([1] * (x.dim() - 1))), pending.x, x)
                else:
                    x = [pending.x[i] if i in whole else xi for i, xi in enumerate(x)]
            elif whole:
                x = pending.x
            before = None if everyone else engine.batchnorm.save()
            logits = engine.forward(x, rows=who)
            if before is not None:  # only the students that train keep the forward's update
                engine.batchnorm.restore(before, to_device_async(~who, self.device))
        self.loss_sum += engine.step(logits, y, who)
        size = len(y[0])
        for i in trained:
            self.iteration[i] += 1
            self.effective_instances[i] += size

    def _next_indices(self, i: int) -> np.ndarray:
        # One continuous stream of shuffled passes: every instance is offered once per pass.
        m, queue, pos = self.batch_size, self._queues[i], self._positions[i]
        while len(queue) - pos < m:
            queue = np.concatenate([queue[pos:], self._order[i].permutation(self.fold.train)])
            pos = 0
        self._queues[i], self._positions[i] = queue, pos + m
        return queue[pos : pos + m]

    def _gather(self, rows: list[np.ndarray], augment: np.ndarray) -> tuple[Batch, Batch]:
        """Inputs and labels of each student's instances ``rows[i]`` (B,), those of the students
        in ``augment`` (bool (N,)) drawn from their own augmentation streams: stacked (N, B, ...)
        tensors for stacked students, lists of N (B, ...) tensors for modules (one student's
        batch is then used as it is gathered, with no view taken of it)."""
        data, gens = self.data, self._augment_generators
        if not self._stacked:
            xs, ys = [], []
            for i, r in enumerate(rows):
                r = torch.from_numpy(r) if self._on_cpu else to_device_async(r, self.device)
                x = data.x_train[r]
                xs.append(random_crop_flip(x, gens[i]) if self._augment and augment[i] else x)
                ys.append(data.y_train[r])
            return xs, ys
        idx = to_device_async(np.stack(rows), self.device)
        x, y = data.x_train[idx], data.y_train[idx]
        if self._augment:
            x = torch.stack(
                [random_crop_flip(x[i], gens[i]) if augment[i] else x[i] for i in range(self.n)]
            )
        return x, y

    def _to_host(self, logits: Logits) -> tuple[np.ndarray, list[float]]:
        """The logits (N, M, C) and the loss sums (N,) on the host, in one transfer."""
        if isinstance(logits, list):
            if self.n == 1 and self.device.type == "cpu":  # a NumPy view, no torch op
                return logits[0].detach().float().numpy()[None], self.loss_sum.tolist()
            logits = torch.stack(logits)
        logits = logits.detach()
        if self.device.type == "cpu":
            return logits.float().numpy(), self.loss_sum.tolist()
        # One transfer, hence one synchronisation, per teacher step.
        n = self.n
        packed = torch.cat([logits.float().flatten(), self.loss_sum]).cpu().numpy()
        return packed[:-n].reshape(logits.shape), packed[-n:].tolist()


class _Pending:
    """The last proposed batches: indices (host), inputs and labels (device), and, if kept, the
    forward's graph (logits) and the BatchNorm statistics a training step on them would leave."""

    __slots__ = ("idx", "x", "y", "graph", "bn_after")

    def __init__(self, idx, x, y, graph, bn_after):
        self.idx, self.x, self.y, self.graph, self.bn_after = idx, x, y, graph, bn_after
