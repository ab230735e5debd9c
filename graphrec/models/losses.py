"""Losses of a positive score against the scores of its negatives (TwHIN, by name).

Every loss is registered in :data:`LOSSES` (``TwHINConfig.loss``) and has the signature
``loss(pos, neg, valid, margin) -> scalar``:

* ``pos``: ``[B]`` scores of the positives;
* ``neg``: ``[B, N]`` scores of each positive's negatives (a shared set, scored with one
  matmul);
* ``valid``: ``[B, N]`` bool, ``False`` where ``neg[i, j]`` is no negative of positive
  ``i`` (itself in the batch, its own tail among the shared candidates, padding);
* ``margin``: ``γ`` of margin-based losses (ignored by the others).

The result is the mean over the ``B`` positives of a per-positive loss over its valid
negatives ``n_j``.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.registry import Registry


class LossFunction(Protocol):
    def __call__(self, pos: Tensor, neg: Tensor, valid: Tensor, margin: float = 1.0) -> Tensor: ...


LOSSES: Registry[LossFunction] = Registry("loss")
"""TwHIN losses by name (``TwHINConfig.loss``)."""


@LOSSES.register_as("softmax")
def softmax_loss(pos: Tensor, neg: Tensor, valid: Tensor, margin: float = 1.0) -> Tensor:
    r"""Sampled softmax (cross-entropy of the positive among its negatives):
    ``−log(e^p / (e^p + Σ_j e^{n_j}))``."""
    logits = torch.cat([pos[:, None], neg.masked_fill(~valid, float("-inf"))], dim=1)
    return F.cross_entropy(logits, torch.zeros(pos.shape[0], dtype=torch.long))


@LOSSES.register_as("softplus")
def softplus_loss(pos: Tensor, neg: Tensor, valid: Tensor, margin: float = 1.0) -> Tensor:
    r"""Logistic loss: ``softplus(−p) + mean_j softplus(n_j)``."""
    w = valid.float()
    return (F.softplus(-pos) + (F.softplus(neg) * w).sum(1) / w.sum(1).clamp_min(1.0)).mean()


@LOSSES.register_as("margin")
def margin_loss(pos: Tensor, neg: Tensor, valid: Tensor, margin: float = 1.0) -> Tensor:
    r"""Margin ranking loss: ``mean_j max(0, γ − p + n_j)`` with ``γ = margin``."""
    w = valid.float()
    return ((F.relu(margin - pos[:, None] + neg) * w).sum(1) / w.sum(1).clamp_min(1.0)).mean()
