"""The text student: word embedding, a one-layer LSTM, pooling over the real tokens, a linear head.

Inputs are int64 token ids (B, T) padded with 0 *at the end* (as ``l2t_gym.data.imdb`` writes
them); a review's length is its number of non-zero ids, so the ids stay one tensor and nothing
has to travel to the host. Because the LSTM reads left to right and padding comes last, its
outputs at real positions never depend on the padding: pooling only over those positions is
exactly what a packed sequence would give, without ``pack_padded_sequence``'s lengths on the CPU
(a device synchronisation per batch on a GPU) and with the fused cuDNN / oneDNN kernels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Pooling = Literal["mean", "last"]


class LSTMClassifier(nn.Module):
    """``Embedding(vocab, embed_dim) -> LSTM(hidden) -> pool -> Linear(hidden, classes)``.

    :param vocab_size: number of token ids, padding (id 0, a zero embedding that never trains)
        included.
    :param embed_dim: word vector width.
    :param hidden: LSTM state width.
    :param num_classes: number of output logits.
    :param pooling: ``"mean"`` (default) averages the LSTM outputs over a review's real tokens, as
        the classic Theano LSTM sentiment tutorial does; ``"last"`` takes the output at its last
        real token. Mean pooling sends gradient into every time step. With ``"last"`` the gradient
        reaching early steps decays into subnormal floats, which x86 CPUs handle several times
        slower: a training step cost 4-5x as much on our CPU (unless
        ``torch.set_flush_denormal(True)``), and the student learned more slowly.
    :param generator: CPU generator for the initial weights (the global RNG when ``None``).

    Weights are drawn as PyTorch's defaults draw them (embedding N(0, 1), LSTM and head uniform
    in +-1/sqrt(fan)), but from ``generator``, so one seeded generator fixes the whole student.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden: int,
        num_classes: int,
        pooling: Pooling = "mean",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, generator=generator)
            self.embedding.weight[0].zero_()
            bound = hidden**-0.5
            for p in self.lstm.parameters():
                nn.init.uniform_(p, -bound, bound, generator=generator)
            nn.init.uniform_(self.head.weight, -bound, bound, generator=generator)
            nn.init.uniform_(self.head.bias, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real = x != 0  # (B, T); padding is id 0, at the end of each row
        out, _ = self.lstm(self.embedding(x))  # (B, T, H)
        if self.pooling == "mean":
            weights = real.unsqueeze(-1).to(out.dtype)
            # clamp: an all-padding row gives zeros instead of NaN.
            pooled = (out * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            last = real.sum(1).clamp_min(1) - 1
            pooled = out[torch.arange(len(x), device=x.device), last]
        return self.head(pooled)
