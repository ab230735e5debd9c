"""Compact minibatch subgraphs for layer-wise GNNs over fixed-size neighbourhoods.

For ``K`` layers and a batch of target nodes, :func:`compact_blocks` returns the node
lists ``nodes[0] ⊇ … ⊇ nodes[K] = targets`` (each list starts with the next layer's
nodes, in order) and one :class:`Block` per layer whose ``neighbors`` index positions in
the layer's source list, so a model only sees a small re-indexed subgraph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Block:
    """One layer's neighbourhoods: ``neighbors`` int64 ``[n_dst, T]`` (positions in the
    layer's source nodes, ``-1`` = none) and ``weights`` float32 ``[n_dst, T]``
    (importance ``α``; each row sums to 1, or 0 without neighbours). The first
    ``n_dst`` source nodes are the destinations themselves."""

    neighbors: Tensor
    weights: Tensor

    @property
    def num_dst(self) -> int:
        return int(self.neighbors.shape[0])


def expand_layer(targets: np.ndarray, neighbors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sources, local)``: ``sources`` = ``targets`` followed by their distinct
    neighbours not among them (first-seen order); ``local [n, T]`` the position of each
    neighbour in ``sources`` (``-1`` kept)."""
    targets = np.asarray(targets, dtype=np.int64)
    n = targets.shape[0]
    valid = neighbors >= 0
    cand = np.concatenate([targets, neighbors[valid].astype(np.int64)])
    uniq, first, inv = np.unique(cand, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique values in first-occurrence order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    sources = uniq[order]
    pos = rank[inv]
    if not np.array_equal(pos[:n], np.arange(n)):
        raise ValueError("targets must be distinct")
    local = np.full(neighbors.shape, -1, dtype=np.int64)
    local[valid] = pos[n:]
    return sources, local


def compact_blocks(targets: np.ndarray, num_layers: int,
                   neighborhood: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
                   ) -> tuple[list[np.ndarray], list[Block]]:
    """Node lists ``[nodes_0, …, nodes_K]`` and blocks ``[block_0, …, block_{K-1}]``
    (``block_k`` maps layer ``k`` to ``k+1``) for distinct ``targets``.
    ``neighborhood(nodes) -> (neighbors [n, T] global ids, weights [n, T])``."""
    nodes = [np.asarray(targets, dtype=np.int64)]
    blocks: list[Block] = []
    for _ in range(num_layers):
        nbr, w = neighborhood(nodes[0])
        sources, local = expand_layer(nodes[0], nbr)
        blocks.insert(0, Block(torch.from_numpy(local), torch.from_numpy(np.asarray(w, dtype=np.float32))))
        nodes.insert(0, sources)
    return nodes, blocks
