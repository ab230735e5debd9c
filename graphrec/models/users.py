"""User vectors for item-embedding models (PinSage): a learned table trained next to
the item encoder, or a recency-weighted mean of each user's item vectors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphrec.graph.csr import row_ages


class UserTable(nn.Module):
    """A learned vector per user, ``[U, dim]``, optionally L2-normalised like the item
    outputs it is scored against (``v_u / ||v_u||``). Initialised ``N(0, 1/dim)``."""

    def __init__(self, num_users: int, dim: int, normalize: bool = True, sparse: bool = False):
        super().__init__()
        self.num_users, self.dim, self.normalize = num_users, dim, normalize
        self.emb = nn.Embedding(num_users, dim, sparse=sparse)  # sparse: gradients of the batch's rows only
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.emb.weight, std=1.0 / self.dim ** 0.5)

    def forward(self, index: Tensor | None = None) -> Tensor:
        """``[B, dim]`` vectors of users ``index`` (``[B]``), or ``[U, dim]`` of all."""
        u = self.emb.weight if index is None else self.emb(index)
        return F.normalize(u, dim=1) if self.normalize else u

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_users}, {self.dim}, normalize={self.normalize})"


def recency_weighted_mean(item_vectors: Tensor, indptr: np.ndarray, indices: np.ndarray,
                          timestamps: np.ndarray | None = None, half_life: float | None = 20.0) -> Tensor:
    """User vectors ``[U, d]``: ``Σ_i w_i z_i / Σ_i w_i`` over each user's items (CSR
    ``indptr [U+1]``, ``indices [E]``), ``w_i = 0.5^(a_i / half_life)`` with ``a_i`` the
    number of the user's interactions after ``i`` (by ``timestamps``, else CSR order;
    ``half_life=None``: plain mean). Users without items get a zero vector."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    n_users, e = indptr.shape[0] - 1, indices.shape[0]
    age = row_ages(indptr, timestamps)
    w = np.ones(e) if half_life is None else np.power(0.5, age / half_life)
    # one sparse [U, N] x dense [N, d] product: memory O(E + U d), never an [E, d] gather
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    weights = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, indices])),
                                      torch.from_numpy(w).to(item_vectors.dtype),
                                      size=(n_users, item_vectors.shape[0]), is_coalesced=False, check_invariants=True)
    out = torch.sparse.mm(weights, item_vectors)
    norm = torch.from_numpy(np.add.reduceat(np.r_[w, 0.0], np.minimum(indptr[:-1], e))
                            * (np.diff(indptr) > 0)).to(item_vectors.dtype)
    return out / norm.clamp_min(1e-12)[:, None]
