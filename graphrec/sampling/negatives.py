"""Negative sampling that respects node types."""

from __future__ import annotations

import torch


def uniform_typed_negatives(num_nodes: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` local ids drawn uniformly from a node type of ``num_nodes`` nodes
    (int64 ``[count]``). Corrupting a relation ``(S, r, T)`` draws tails with
    ``num_nodes = N_T`` and heads with ``N_S``, so negatives never cross types."""
    if num_nodes <= 0:
        raise ValueError("cannot sample negatives from an empty node type")
    return torch.randint(num_nodes, (count,), generator=generator)


def typed_negatives(num_nodes: int, count: int, generator: torch.Generator | None = None,
                    exhaustive_max_nodes: int = 0) -> torch.Tensor | None:
    """Shared negatives of one side of a batch: every node of the type (``arange(N)``,
    an exact softmax over the type) when ``N <= exhaustive_max_nodes``, else ``count``
    uniform ids; ``None`` when ``count == 0`` and the type is not exhaustive."""
    if 0 < num_nodes <= exhaustive_max_nodes:
        return torch.arange(num_nodes)
    if count <= 0:
        return None
    return uniform_typed_negatives(num_nodes, count, generator)
