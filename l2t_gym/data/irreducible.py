"""Irreducible losses: each training instance's loss under a small model that never saw it.

RHO-LOSS (Mindermann et al., "Prioritized Training on Points that are Learnable, Worth Learning,
and Not Yet Learnt", ICML 2022) scores an instance by its training loss minus its *irreducible*
loss, the loss of a model trained on other data. That second number is the optional
``irreducible_loss`` observation column (:data:`l2t_gym.features.EXTRA_FEATURES`), built here
once per dataset and fold and shared by every env of the process.

* **Data.** Only the fold's *training* instances: never its dev set (the reward reads it), the
  other fold or the test set. They are split into two halves, stratified by class with the
  fixed seed :data:`CROSS_FIT_SEED` (shuffled, sorted by label, then alternated), and each half
  is scored by a model trained on the other half (2-fold cross-fitting): no instance's value
  comes from a model that trained on it.
* **Model.** Multinomial logistic regression: a linear layer on the flattened inputs (images),
  or on the mean of the token ids' learned class scores (text: a bag-of-words linear model,
  padding excluded). Zero-initialised (the problem is convex, so no random initialisation is
  needed), trained with Adam (lr 0.01, weight decay 1e-4) on minibatches of 128 for 10 epochs
  and at least 200 steps, in an order drawn from :data:`CROSS_FIT_SEED`: deterministic, and
  bit-identical on a CPU for a given torch thread count.
* **Cost.** Two such fits per dataset and fold, on the device the data live on, once per
  process. Measured on a CPU with one torch thread: Digits (halves of 288 and 287, 200 steps
  each) 0.07 s, or about 1 s when it is the process's first Adam step; MNIST-shaped data (the
  teacher fold's 28,001 instances of 784 values, fabricated: the real images were not at hand;
  1,100 steps each) 0.9 s, 1.7 s the first time. A linear model fitted this way on the whole
  Digits teacher fold reaches 0.92 dev accuracy. Nothing is paid per step but an index gather.
"""

from __future__ import annotations

import hashlib
import math
import threading
import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from l2t_gym.data.folds import Fold

if TYPE_CHECKING:
    from l2t_gym.data import DeviceData

#: Seed of the halves and of the training order.
CROSS_FIT_SEED = 20220617
EPOCHS, MIN_STEPS, BATCH, LR, WEIGHT_DECAY = 10, 200, 128, 0.01, 1e-4

_CACHE: dict[tuple[int, str], np.ndarray] = {}
_LOCK = threading.Lock()
#: How many tables this process has fitted (tests read it to see the cache work).
fits = 0


def cross_fit_halves(train: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training instances ``train`` (indices into the training set) in two halves,
    stratified by ``labels`` (the whole training set's labels), sorted."""
    rng = np.random.default_rng(CROSS_FIT_SEED)
    shuffled = rng.permutation(train)
    by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]
    return np.sort(by_class[0::2]), np.sort(by_class[1::2])


class LinearModel(nn.Module):
    """Logistic regression: flattened float inputs (B, ...) or token ids (B, L) -> logits (B, C).

    :param vocab_size: for token ids, the number of ids (0 is padding, left out of the mean);
        None for float inputs of ``in_features`` values each.
    """

    def __init__(self, in_features: int, num_classes: int, vocab_size: int | None) -> None:
        super().__init__()
        if vocab_size is None:
            self.linear: nn.Module = nn.Linear(in_features, num_classes)
        else:
            self.linear = nn.EmbeddingBag(vocab_size, num_classes, mode="mean", padding_idx=0)
            self.bias = nn.Parameter(torch.zeros(num_classes))
        for p in self.parameters():
            nn.init.zeros_(p)
        self.tokens = vocab_size is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return self.linear(x) + self.bias
        return self.linear(x.flatten(1).float())


def fit_linear(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, vocab_size: int | None
) -> LinearModel:
    """A :class:`LinearModel` fitted to inputs ``x`` (B, ...) and labels ``y`` (B,) as the module
    docstring says; torch's global generator is not touched."""
    n = len(y)
    with torch.random.fork_rng(devices=[]):  # the layers' default init draws, then is zeroed
        model = LinearModel(int(np.prod(x.shape[1:])), num_classes, vocab_size).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    per_epoch = math.ceil(n / BATCH)
    steps = max(EPOCHS * per_epoch, MIN_STEPS)
    order = torch.Generator().manual_seed(CROSS_FIT_SEED)
    perm = torch.randperm(n, generator=order)
    with torch.enable_grad(), torch.inference_mode(False):
        for step in range(steps):
            k = step % per_epoch
            if k == 0 and step:
                perm = torch.randperm(n, generator=order)
            rows = perm[k * BATCH : (k + 1) * BATCH].to(x.device)
            loss = F.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model


@torch.inference_mode()
def instance_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """-log p_y of each instance under ``model``: float32 (B,) on the host."""
    chunks = [
        F.cross_entropy(model(x[s : s + 4096]), y[s : s + 4096], reduction="none")
        for s in range(0, len(y), 4096)
    ]
    return torch.cat(chunks).float().cpu().numpy()


def irreducible_losses(data: DeviceData, fold: Fold) -> np.ndarray:
    """Each training-set instance's cross-fitted loss, computed once per dataset and fold in
    this process.

    :param data: the task's :class:`~l2t_gym.data.DeviceData`.
    :param fold: the env's fold; only its ``train`` instances are read.
    :return: float32 (n_train,) over the whole training set: finite on ``fold.train``, NaN
        elsewhere (the dev set and the other fold are never scored). Shared: do not write to it.
    """
    global fits
    key = (id(data), hashlib.sha1(np.ascontiguousarray(fold.train).tobytes()).hexdigest())
    with _LOCK:
        table = _CACHE.get(key)
        if table is not None:
            return table
        halves = cross_fit_halves(fold.train, data.y_train_host)
        table = np.full(len(data.y_train_host), np.nan, dtype=np.float32)
        vocab = None if data.x_train.is_floating_point() else data.vocab_size
        for fit_on, score in (halves, halves[::-1]):
            rows = torch.from_numpy(fit_on).to(data.x_train.device)
            model = fit_linear(data.x_train[rows], data.y_train[rows], data.num_classes, vocab)
            scored = torch.from_numpy(score).to(data.x_train.device)
            table[score] = instance_losses(model, data.x_train[scored], data.y_train[scored])
        table.flags.writeable = False
        fits += 1
        _CACHE[key] = table
        # The entry goes with the dataset (an id can be reused once its object is gone).
        weakref.finalize(data, _CACHE.pop, key, None)
        return table
