"""Many students at once: N independent L2T episodes on one device, trained with ``torch.func``."""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import nn
from torch.func import functional_call, stack_module_state

from l2t_gym.data import load_dataset, make_folds
from l2t_gym.data.augment import random_crop_flip
from l2t_gym.env import L2TEnv, _autograd_on
from l2t_gym.features import build_features
from l2t_gym.models import MLP
from l2t_gym.student import autocast, to_device_async


class L2TVectorEnv(VectorEnv):
    """
    ## Description

    ``num_envs`` students of one task, each in its own L2T episode, trained together on one
    device. Their parameters are stacked and every forward pass is one ``torch.func.vmap`` of
    ``functional_call`` over the students, so N small students cost little more than one. Each
    student keeps its own initialisation, SGD momentum, data order, augmentation stream, pool,
    iteration count, clock and episode end: with the same seeds and actions the results equal
    N separate :class:`~l2t_gym.L2TEnv` to float tolerance.

    ## Spaces

    Observations ``Box`` (N, M, d) and actions ``MultiBinary((N, M))``, the single env's spaces
    batched; rewards, terminations and truncations are arrays of shape (N,).

    ## Autoreset

    Gymnasium's next-step mode (``metadata["autoreset_mode"]``): the step after a sub-env's
    episode ended resets that sub-env (a new student, from its own continuing seed stream),
    ignores its action and returns its first observation with reward 0.

    ## Arguments

    ``num_envs`` and every :class:`~l2t_gym.L2TEnv` keyword argument, with two limits:
    ``mode="paper"`` only (the mask mode trains each student on a batch of its own size), and
    ``optimizer="sgd"`` only (its update is applied to the stacked parameters here, the same
    arithmetic as ``torch.optim.SGD`` with momentum and weight decay). Of the speed options,
    ``precision="bf16"`` works for the package's MLP students (named ``"mlp-..."``), whose
    batched forward is plain matmuls; ``torch.vmap`` does not apply autocast to convolutions, so
    other students, ``channels_last`` and ``compile`` raise a ValueError: use ``L2TEnv``.

    BatchNorm students work: their running statistics are stacked like the parameters and each
    student's are updated only by its own training batches (candidate forward passes run on a
    copy, kept only when that copy's batch is trained on).

    ## Info

    A dict of arrays of shape (N,), with Gymnasium's ``_key`` masks; the keys of ``L2TEnv``'s
    info. ``final_dev_accuracy`` (and ``test_accuracy`` with ``report_test``) are set where an
    episode ended on this step.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, task: str = "digits", **kwargs: Any) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs}")
        # One single env validates the arguments and holds the settings and spaces; it never
        # runs an episode itself.
        self.template = template = L2TEnv(task, **kwargs)
        if template.mode != "paper":
            raise ValueError("the vector env supports mode='paper' only")
        if template.optimizer != "sgd":
            raise ValueError("the vector env supports optimizer='sgd' only")
        if template.channels_last:
            raise ValueError(
                "channels_last is not supported by the vector env (torch.vmap runs the students "
                "as one grouped convolution, which keeps no memory format); use L2TEnv"
            )
        if template.compile:
            raise ValueError("compile=True is not supported by the vector env; use L2TEnv")
        if template.report_test == "eval":
            raise ValueError(
                "report_test='eval' is not supported by the vector env (it reports test "
                "accuracy at the end of an episode: report_test=True); use L2TEnv for curves"
            )
        mlp = isinstance(template.student, str) and template.student.startswith("mlp-")
        if template.precision == "bf16" and not mlp:
            raise ValueError(
                "precision='bf16' in the vector env needs an MLP student ('mlp-...'): "
                f"torch.vmap does not apply autocast to convolutions, got {template.student!r}; "
                "use L2TEnv for other students"
            )
        self.num_envs = n = int(num_envs)
        self.batch_size = m = template.batch_size
        self.feature_names = template.feature_names
        self.device = template.device
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.render_mode = None
        self._m = m
        self._rngs: list[np.random.Generator] | None = None
        self._needs_reset = np.zeros(n, dtype=bool)

    # -- Gymnasium API ------------------------------------------------------------------------
    @_autograd_on
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if isinstance(seed, (list, tuple)):
            if len(seed) != n:
                raise ValueError(f"expected {n} seeds, got {len(seed)}")
            seeds = list(seed)
        else:  # Gymnasium's convention: sub-env i gets seed + i
            seeds = [None if seed is None else seed + i for i in range(n)]
        if self._rngs is None:
            self._setup()
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = gym.utils.seeding.np_random(s)
        for i in range(n):
            self._reset_student(i)
        self._needs_reset[:] = False
        obs = self._observe(keep_graph=True)
        return obs, self._info(np.zeros(n, dtype=bool))

    @_autograd_on
    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._rngs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        keep = self._keep_masks(actions)
        n, m = self.num_envs, self._m
        resetting = self._needs_reset.copy()
        active = ~resetting
        for i in np.flatnonzero(resetting):
            self._reset_student(i)
        self._needs_reset[:] = False
        keep[resetting] = False  # the action of a sub-env being reset is ignored

        n_kept = keep.sum(1)
        self._teacher_step[active] += 1
        self._kept[active] += n_kept[active]
        cand, self._cand = self._cand, None
        # Who trains now, and on what: the whole candidate batch (its graph, if kept, reused)
        # or the head of the pool.
        train = np.zeros(n, dtype=bool)
        batches = cand["idx"].copy()  # rows of students that do not train are never used
        reuse = np.zeros(n, dtype=bool)
        if active.all() and (n_kept == m).all() and not any(len(p) for p in self._pools):
            train[:] = reuse[:] = True  # every student trains on its whole candidate batch
            active_rest = ()
        else:
            active_rest = np.flatnonzero(active)
        for i in active_rest:
            if len(self._pools[i]) == 0 and n_kept[i] == m:
                train[i] = reuse[i] = True
                batches[i] = cand["idx"][i]
                continue
            kept = cand["idx"][i][keep[i]]
            pool = np.concatenate([self._pools[i], kept]) if len(self._pools[i]) else kept
            if len(pool) >= m:
                train[i] = True
                batches[i], pool = pool[:m], pool[m:]
            self._pools[i] = pool
        if train.any():
            if cand["logits"] is not None and reuse[train].all():
                self._train(train, cand["logits"], cand["y"], cand["buffers"])
            else:
                self._train(train, *self._forward_batches(batches, train & ~reuse, reuse, cand))

        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        due = train & (self._iteration % self.template.eval_every == 0)
        if due.any():
            acc = self._evaluate("dev")
            for i in np.flatnonzero(due):
                self._dev[i] = acc[i]
                self._dev_at[i] = self._iteration[i]
                self._best[i] = max(self._best[i], acc[i])
                if acc[i] >= self.template.tau:
                    self._reached[i] = terminated[i] = True
                    rewards[i] = -math.log(self._clocks()[i] / self.template.max_iters)
        terminated |= active & (self._clocks() >= self.template.max_iters)
        obs = self._observe(keep_graph=not terminated.any())
        terminated |= active & self._diverged
        truncated = active & ~terminated & (self._teacher_step >= self.template.max_teacher_steps)
        ended = terminated | truncated
        info = self._info(ended)
        self._needs_reset = ended
        return obs, rewards, terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        self.template.close()

    # -- the students -------------------------------------------------------------------------
    def _setup(self) -> None:
        t = self.template
        self.data = data = load_dataset(t._spec.dataset, t.data_root, t.download, t.device, t.data)
        fold = make_folds(data.y_train_host, t.dev_fraction)[t.fold]
        self.fold = fold
        dev = torch.from_numpy(fold.dev).to(self.device)
        self._dev_x, self._dev_y = data.x_train[dev], data.y_train[dev]
        n = self.num_envs
        models = [self._build(seed=0) for _ in range(n)]
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.momentum = {k: torch.zeros_like(v) for k, v in self.params.items()}
        # The stateless copy that functional_call runs: its own tensors are never used.
        self._base = copy.deepcopy(models[0]).to("meta")
        self._base_modules = list(self._base.modules())
        # Built once: students (params, buffers) batched, inputs batched or shared (dev sets).
        self._vmapped = torch.vmap(self._one)
        self._vmapped_shared_x = torch.vmap(self._one, in_dims=(0, 0, None))
        # The package's MLP students have a direct batched forward (same arithmetic, no vmap).
        self._mlp = models[0] if type(models[0]) is MLP else None
        self._rngs = [None] * n
        self._order = [None] * n
        self._aug = [None] * n
        self._queues = [np.empty(0, np.int64)] * n
        self._pos = np.zeros(n, dtype=np.int64)
        self._pools = [np.empty(0, np.int64)] * n
        self._loss_sum = torch.zeros(n, device=self.device)
        for name in ("_iteration", "_teacher_step", "_kept", "_effective", "_dev_at"):
            setattr(self, name, np.zeros(n, dtype=np.int64))
        self._dev, self._best = np.zeros(n), np.zeros(n)
        self._reached, self._diverged = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        self._cand: dict[str, Any] | None = None

    def _build(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.template._make_student(
                self.data.input_shape, self.data.num_classes, self.data.vocab_size
            )

    def _reset_student(self, i: int) -> None:
        """A fresh student in slot i, seeded exactly as L2TEnv.reset seeds its student."""
        rng = self._rngs[i]
        init_seed, order_seed, aug_seed = (int(s) for s in rng.integers(2**62, size=3))
        model = self._build(init_seed).to(self.device)
        with torch.no_grad():
            for k, v in model.named_parameters():
                self.params[k][i] = v
                self.momentum[k][i] = 0
            for k, v in model.named_buffers():
                self.buffers[k][i] = v
        self._order[i] = np.random.default_rng(order_seed)
        if self.template.augment:
            self._aug[i] = torch.Generator(device=self.device)
            self._aug[i].manual_seed(aug_seed)
        self._queues[i], self._pos[i] = np.empty(0, np.int64), 0
        self._pools[i] = np.empty(0, np.int64)
        self._loss_sum[i] = 0
        for name in ("_iteration", "_teacher_step", "_kept", "_effective"):
            getattr(self, name)[i] = 0
        self._reached[i] = self._diverged[i] = False
        self._dev[i] = self._best[i] = self._evaluate("dev", only=i)
        self._dev_at[i] = 0

    def _one(self, params, buffers, x):
        return functional_call(self._base, (params, buffers), (x,))

    def _forward(self, x: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        with autocast(self.device, self.template.precision):
            if self._mlp is not None:
                return self._mlp.stacked_forward(self.params, x)
            return self._vmapped(self.params, buffers, x)

    def _gather(self, idx: np.ndarray, who: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx_t = to_device_async(idx, self.device)
        x, y = self.data.x_train[idx_t], self.data.y_train[idx_t]
        if self.template.augment:
            # Each student's own stream, in the same order as L2TEnv draws it.
            x = torch.stack(
                [random_crop_flip(x[i], self._aug[i]) if who[i] else x[i] for i in range(len(x))]
            )
        return x, y

    def _forward_batches(self, batches, fresh: np.ndarray, reuse: np.ndarray, cand: dict):
        # Students training on their whole candidate batch see the very images (augmentation
        # included) the candidate pass saw, as in L2TEnv; the others get freshly drawn ones.
        x, y = self._gather(batches, fresh)
        if reuse.any():
            rows = to_device_async(reuse, self.device)
            x = torch.where(rows.view(-1, *([1] * (x.dim() - 1))), cand["x"], x)
        # On a copy of the running statistics: only the students that train keep the update.
        buffers = {k: v.clone() for k, v in self.buffers.items()}
        return self._forward(x, buffers), y, buffers

    def _train(self, train: np.ndarray, logits: torch.Tensor, y: torch.Tensor, new_buffers):
        t, n, m = self.template, self.num_envs, self._m
        mask = to_device_async(train, self.device)
        # In float32 whatever the forward's precision, as L2TEnv computes it.
        losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
        losses = losses.view(n, m).mean(1)
        names = list(self.params)
        everyone = bool(train.all())  # the common case (keep-all) skips the masking
        total = losses.sum() if everyone else (losses * mask).sum()
        grads = torch.autograd.grad(total, [self.params[k] for k in names])
        with torch.no_grad():
            if everyone:
                self._sgd_all(
                    [self.params[k] for k in names], list(grads), [self.momentum[k] for k in names]
                )
                names, grads = [], []
            for k, g in zip(names, grads, strict=True):
                p, buf = self.params[k], self.momentum[k]
                sel = mask.view(-1, *([1] * (p.dim() - 1)))
                d = g + t.weight_decay * p if t.weight_decay else g
                new_buf = buf * t.momentum + d if t.momentum else d
                buf.copy_(torch.where(sel, new_buf, buf))
                p.copy_(torch.where(sel, p - t.lr * new_buf, p))
            if new_buffers is not None:
                for k, b in self.buffers.items():
                    sel = mask.view(-1, *([1] * (b.dim() - 1)))
                    b.copy_(torch.where(sel, new_buffers[k], b))
            self._loss_sum += losses.detach() if everyone else torch.where(mask, losses, 0.0)
        self._iteration[train] += 1
        self._effective[train] += m

    def _sgd_all(self, params, grads, bufs) -> None:
        # Every student steps: the same arithmetic as the masked update, in three multi-tensor
        # kernels instead of a handful per parameter tensor.
        t = self.template
        if t.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=t.weight_decay)
        if t.momentum:
            torch._foreach_mul_(bufs, t.momentum)
            torch._foreach_add_(bufs, grads)
        else:
            torch._foreach_copy_(bufs, grads)
        torch._foreach_add_(params, bufs, alpha=-t.lr)

    def _evaluate(self, split: str, only: int | None = None, chunk: int = 512) -> np.ndarray:
        x, y = (
            (self._dev_x, self._dev_y) if split == "dev" else (self.data.x_test, self.data.y_test)
        )
        for module in self._base_modules:
            module.training = False
        params = (
            self.params if only is None else {k: v[only : only + 1] for k, v in self.params.items()}
        )
        buffers = (
            self.buffers
            if only is None
            else {k: v[only : only + 1] for k, v in self.buffers.items()}
        )

        with torch.inference_mode(), autocast(self.device, self.template.precision):
            correct = 0
            for s in range(0, len(y), chunk):
                if self._mlp is not None:
                    logits = self._mlp.stacked_forward(params, x[s : s + chunk])
                else:
                    logits = self._vmapped_shared_x(params, buffers, x[s : s + chunk])
                correct = correct + (logits.argmax(-1) == y[s : s + chunk]).sum(-1)
        for module in self._base_modules:
            module.training = True
        acc = (correct.double() / len(y)).cpu().numpy()
        return acc[0] if only is not None else acc

    # -- observations -------------------------------------------------------------------------
    def _observe(self, keep_graph: bool) -> np.ndarray:
        n = self.num_envs
        idx = np.stack([self._next_indices(i) for i in range(n)])
        x, y = self._gather(idx, np.ones(n, dtype=bool))
        keep_graph = keep_graph and all(len(p) == 0 for p in self._pools)
        cand_buffers = {k: v.clone() for k, v in self.buffers.items()}
        with torch.set_grad_enabled(keep_graph):
            logits = self._forward(x, cand_buffers)
        self._cand = {
            "idx": idx,
            "x": x,
            "y": y,
            "logits": logits if keep_graph else None,
            "buffers": cand_buffers if keep_graph else None,
        }
        if self.device.type == "cpu":
            host, loss_sum = logits.detach().float().numpy(), self._loss_sum.numpy()
        else:
            packed = torch.cat([logits.detach().float().flatten(), self._loss_sum]).cpu().numpy()
            host, loss_sum = packed[:-n].reshape(logits.shape), packed[-n:]
        t, data = self.template, self.data
        its = self._iteration
        avg = np.where(its > 0, loss_sum / np.maximum(its, 1), math.log(data.num_classes))
        bad = ~(np.isfinite(avg) & np.isfinite(host).all(axis=(1, 2)))
        if bad.any():
            # Diverged students: a uniform guess and the largest loss, as L2TEnv reports them.
            self._diverged |= bad
            host = np.where(bad[:, None, None], 0.0, host).astype(np.float32)
            avg = np.where(bad, np.finfo(np.float32).max, avg)
        progress = np.minimum(self._clocks() / t.max_iters, 1.0)
        # All students' rows in one pass: the model features repeat per row.
        rows = idx.reshape(-1)
        extras = None if data.extras_train_host is None else data.extras_train_host[rows]
        obs = build_features(
            host.reshape(n * self._m, -1),
            data.y_train_host[rows],
            np.repeat(progress, self._m),
            np.repeat(avg, self._m),
            np.repeat(self._best, self._m),
            extras,
        )
        return obs.reshape(self.observation_space.shape)

    def _next_indices(self, i: int) -> np.ndarray:
        while len(self._queues[i]) - self._pos[i] < self._m:
            fresh = self._order[i].permutation(self.fold.train)
            self._queues[i] = np.concatenate([self._queues[i][self._pos[i] :], fresh])
            self._pos[i] = 0
        idx = self._queues[i][self._pos[i] : self._pos[i] + self._m]
        self._pos[i] += self._m
        return idx

    def _clocks(self) -> np.ndarray:
        return self._iteration + self.template.candidate_cost * self._teacher_step

    def _keep_masks(self, actions: Any) -> np.ndarray:
        shape = (self.num_envs, self._m)
        a = np.asarray(actions) if actions is not None else None
        if a is None or a.dtype.kind not in "biuf":
            raise TypeError(f"expected keep masks of shape {shape} with values 0/1")
        if a.shape != shape:
            raise ValueError(f"expected keep masks of shape {shape} with values 0/1, got {a.shape}")
        if a.dtype != np.bool_ and not ((a == 0) | (a == 1)).all():
            raise ValueError(f"expected keep masks of shape {shape} with values 0/1")
        return a != 0

    def _info(self, ended: np.ndarray) -> dict[str, Any]:
        n = self.num_envs
        info: dict[str, Any] = {
            "iteration": self._iteration.copy(),
            "teacher_step": self._teacher_step.copy(),
            "clock": self._clocks(),
            "effective_instances": self._effective.copy(),
            "instances_seen": self._teacher_step * self._m,
            "kept_instances": self._kept.copy(),
            "pool_size": np.array([len(p) for p in self._pools]),
            "dev_accuracy": self._dev.copy(),
            "best_dev_accuracy": self._best.copy(),
            "reached_tau": self._reached.copy(),
            "diverged": self._diverged.copy(),
        }
        everywhere = np.ones(n, dtype=bool)
        info.update({f"_{k}": everywhere for k in list(info)})
        if ended.any():
            final = np.where(self._dev_at == self._iteration, self._dev, np.nan)
            stale = ended & np.isnan(final)
            if stale.any():
                final = np.where(stale, self._evaluate("dev"), final)
            info["final_dev_accuracy"] = np.where(ended, final, np.nan)
            info["_final_dev_accuracy"] = ended.copy()
            if self.template.report_test:
                info["test_accuracy"] = np.where(ended, self._evaluate("test"), np.nan)
                info["_test_accuracy"] = ended.copy()
        return info
