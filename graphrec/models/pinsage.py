"""PinSage (Ying et al., KDD 2018): graph convolutions over importance neighbourhoods.

Input ``h⁰_v`` of an item is a linear projection of its ID embedding (optional, see
:class:`PinSageInput`) and its feature embeddings (categorical, multi-categorical as a
mean bag, numeric as a linear map of standardised values plus a missing-value
indicator). Each of the ``K`` layers is the paper's CONVOLVE (Algorithm 1):

.. math::
    n_v = \\gamma\\big(\\{\\mathrm{ReLU}(Q h_u + q) : u \\in N(v)\\}, \\alpha\\big), \\qquad
    h_v \\leftarrow \\frac{\\mathrm{ReLU}(W [h_v \\,\\|\\, n_v] + w)}{\\|\\mathrm{ReLU}(W [h_v \\,\\|\\, n_v] + w)\\|_2}

with ``N(v)`` the top-T importance neighbourhood and ``α`` its L1-normalised visit
counts; ``γ`` is the importance-weighted mean (``pooling="importance"``), the plain
mean or the element-wise max over the neighbours (ablations). A final dense head gives
``z_v = G_2 \\mathrm{ReLU}(G_1 h^K_v + g)``, L2-normalised when ``normalize_output`` (the
paper) and then, with ``learned_norm``, scaled by a learned magnitude
``\\sigma(s^\\top h^K_v + b) \\in (0, 1)``: the dot product of two items becomes
``m_u m_v \\cos(z_u, z_v)``, so for a fixed query the ranking weighs the candidate's
magnitude (the model learns to give frequently engaged items a larger one, as
matrix-factorisation norms do) — still a plain dot product for retrieval.

Neighbourhoods arrive as a :class:`Block` per layer: ``neighbors [n_dst, T]`` are
positions in the layer's source nodes (``-1`` padding) and ``weights [n_dst, T]`` the
importance weights; the first ``n_dst`` source nodes are the destination nodes
themselves (so ``h_v`` of a destination is row ``v`` of the source features).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphrec.sampling.blocks import Block
from graphrec.sampling.features import FeatureSpec, NodeFeatures

POOLINGS = ("importance", "mean", "max")


class PinSageInput(nn.Module):
    """``h⁰ = Linear([id_emb(v) ‖ cat_emb ‖ bag_emb ‖ numeric])`` (``[n, hidden]``).

    The ID part is optional and may be absent per node: a row id ``-1`` (an item the model
    never saw) gives a zero ID vector, so the node is embedded from its features alone.
    ``id_dropout`` zeroes the ID vector of each training node with that probability,
    so the feature path is trained on its own (inductive use) while known nodes keep
    their learned ID component (hybrid)."""

    def __init__(self, num_nodes: int, spec: FeatureSpec, id_dim: int, feature_dim: int, out_dim: int,
                 sparse_ids: bool = False, id_dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        self.num_nodes, self.id_dim, self.feature_dim, self.id_dropout = num_nodes, id_dim, feature_dim, id_dropout
        self.spec = spec
        # sparse_ids: the ID table's gradient holds only the rows a batch used (SparseAdam)
        self.id_emb = nn.Embedding(num_nodes, id_dim, sparse=sparse_ids) if id_dim > 0 else None
        self.cat_emb = nn.ModuleList(nn.Embedding(max(n, 1), feature_dim) for n in spec.categorical.values())
        self.bag_emb = nn.ModuleList(nn.EmbeddingBag(max(n, 1), feature_dim, mode="mean") for n in spec.multi_categorical.values())
        n_num = 2 * len(spec.numeric)
        in_dim = id_dim + feature_dim * (len(self.cat_emb) + len(self.bag_emb)) + n_num
        if in_dim == 0:
            raise ValueError("PinSage needs an ID embedding (id_dim > 0) or node features")
        self.proj = nn.Linear(in_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.1)
        for e in self.cat_emb:
            nn.init.normal_(e.weight, std=0.1)
        for e in self.bag_emb:
            nn.init.normal_(e.weight, std=0.1)
        self.proj.reset_parameters()

    def forward(self, nodes: Tensor, feats: NodeFeatures | None) -> Tensor:
        """``nodes [n]``: ID-table rows (``-1``: no ID); ``feats``: their features."""
        parts = []
        if self.id_emb is not None:
            absent = nodes < 0
            if self.training and self.id_dropout > 0:
                absent = absent | (torch.rand(nodes.shape, device=nodes.device) < self.id_dropout)
            ids = self.id_emb(nodes.clamp_min(0))
            parts.append(ids * (~absent)[:, None].to(ids.dtype) if bool(absent.any()) else ids)
        if feats is not None:
            for j, emb in enumerate(self.cat_emb):
                parts.append(emb(feats.categorical[:, j]))
            for (codes, offsets), emb in zip(feats.bags, self.bag_emb, strict=True):
                parts.append(emb(codes, offsets))
            if self.spec.numeric:
                parts.append(feats.numeric)
        return self.proj(torch.cat(parts, dim=1))


class PinSageConv(nn.Module):
    r"""CONVOLVE: :math:`n_v = \gamma(\{\mathrm{ReLU}(Q h_u + q)\}, \alpha)`,
    :math:`h'_v = \mathrm{normalize}(\mathrm{ReLU}(W [h_v \| n_v] + w))`.

    ``forward(x_src [n_src, in], block) -> [n_dst, out]``; ``x_src[:n_dst]`` are the
    destination nodes' own inputs ``h_v``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, pooling: str = "importance", normalize: bool = True):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r} (choose from {POOLINGS})")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.pooling, self.normalize = pooling, normalize
        self.Q = nn.Linear(in_dim, hidden_dim)
        self.W = nn.Linear(in_dim + hidden_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.Q.weight, gain=nn.init.calculate_gain("relu"))
        nn.init.zeros_(self.Q.bias)
        nn.init.xavier_uniform_(self.W.weight, gain=nn.init.calculate_gain("relu"))
        nn.init.zeros_(self.W.bias)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_dim}, {self.out_dim}, hidden={self.hidden_dim}, "
                f"pooling={self.pooling!r})")

    def aggregate(self, messages: Tensor, block: Block) -> Tensor:
        """``γ``: pool ``messages [n_src, H]`` over each destination's neighbours ->
        ``[n_dst, H]`` (0 for a node without neighbours)."""
        nbr = block.neighbors
        valid = nbr >= 0
        gathered = messages[nbr.clamp_min(0)]  # [n_dst, T, H]
        if self.pooling == "max":
            gathered = gathered.masked_fill(~valid[..., None], float("-inf"))
            out = gathered.max(dim=1).values
            return torch.where(valid.any(1, keepdim=True), out, torch.zeros_like(out))
        if self.pooling == "importance":
            w = block.weights * valid
        else:
            w = valid.to(messages.dtype)
        w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        return torch.bmm(w[:, None, :], gathered)[:, 0]

    def message(self, x: Tensor) -> Tensor:
        """``ReLU(Q h_u + q)`` of every source node ``[n, hidden]`` (computed once per node,
        whatever the number of destinations that pool it)."""
        return F.relu(self.Q(x))

    def combine(self, x_dst: Tensor, messages: Tensor, block: Block) -> Tensor:
        """``normalize(ReLU(W [h_v ‖ γ(messages of N(v))] + w))``; ``block.neighbors``
        index rows of ``messages``, ``x_dst [n_dst, in]`` are the destinations' own inputs."""
        n_v = self.aggregate(messages, block)
        h = F.relu(self.W(torch.cat([x_dst, n_v], dim=1)))
        return F.normalize(h, dim=1) if self.normalize else h

    def forward(self, x_src: Tensor, block: Block) -> Tensor:
        return self.combine(x_src[: block.num_dst], self.message(x_src), block)


class PinSage(nn.Module):
    r"""PinSage item encoder: input layer, ``K`` :class:`PinSageConv` layers, dense head.

    ``forward(nodes, feats, blocks) -> z [n_dst_K, out_dim]``: ``nodes`` are the layer-0
    node ids (``[n_0]``, local ids of the item type) with their ``feats``; ``blocks[k]``
    maps layer ``k`` to ``k+1`` (``blocks[k].num_dst`` = number of layer ``k+1`` nodes,
    each layer's destinations being the first rows of its sources).
    """

    def __init__(self, num_nodes: int, spec: FeatureSpec, dim: int = 128, hidden_dim: int = 128, num_layers: int = 2,
                 id_dim: int = 64, feature_dim: int = 16, pooling: str = "importance", normalize_output: bool = True,
                 learned_norm: bool = False, sparse_ids: bool = False, id_dropout: float = 0.0):
        super().__init__()
        if num_layers < 0:
            raise ValueError("num_layers must be >= 0")
        self.num_nodes, self.dim, self.hidden_dim, self.num_layers = num_nodes, dim, hidden_dim, num_layers
        if learned_norm and not normalize_output:
            raise ValueError("learned_norm scales the normalised output: it needs normalize_output")
        self.pooling, self.normalize_output, self.learned_norm = pooling, normalize_output, learned_norm
        self.input = PinSageInput(num_nodes, spec, id_dim, feature_dim, hidden_dim, sparse_ids=sparse_ids,
                                  id_dropout=id_dropout)
        self.convs = nn.ModuleList(PinSageConv(hidden_dim, hidden_dim, hidden_dim, pooling) for _ in range(num_layers))
        self.G1 = nn.Linear(hidden_dim, hidden_dim)
        self.G2 = nn.Linear(hidden_dim, dim)
        self.norm = nn.Linear(hidden_dim, 1) if learned_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.input.reset_parameters()
        for c in self.convs:
            c.reset_parameters()
        self.G1.reset_parameters()
        self.G2.reset_parameters()
        if self.norm is not None:
            self.norm.reset_parameters()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(nodes={self.num_nodes}, dim={self.dim}, hidden={self.hidden_dim}, "
                f"layers={self.num_layers}, pooling={self.pooling!r}{', learned_norm' if self.learned_norm else ''}"
                f"{f', id_dropout={self.input.id_dropout}' if self.input.id_dropout else ''})")

    def embed_input(self, nodes: Tensor, feats: NodeFeatures | None) -> Tensor:
        """Layer-0 representations ``h⁰`` ``[n, hidden]``."""
        return self.input(nodes, feats)

    def conv(self, k: int, x_src: Tensor, block: Block) -> Tensor:
        """Layer ``k`` (0-based) applied to source representations."""
        return self.convs[k](x_src, block)

    def head(self, h: Tensor) -> Tensor:
        """``z = G₂ ReLU(G₁ h + g)``, L2-normalised if ``normalize_output``, times
        ``σ(s·h + b)`` if ``learned_norm``."""
        z = self.G2(F.relu(self.G1(h)))
        if not self.normalize_output:
            return z
        z = F.normalize(z, dim=1)
        return z * torch.sigmoid(self.norm(h)) if self.norm is not None else z

    def forward(self, nodes: Tensor, feats: NodeFeatures | None, blocks: list[Block]) -> Tensor:
        if len(blocks) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} blocks, got {len(blocks)}")
        h = self.embed_input(nodes, feats)
        for k, block in enumerate(blocks):
            h = self.conv(k, h, block)
        return self.head(h)

    @torch.no_grad()
    def inference(self, features: Callable[[Tensor], NodeFeatures | None], neighbors, weights,
                  chunk: int = 8192) -> Tensor:
        """Embeddings ``[num_nodes, dim]`` of every node, layer by layer (in memory).

        Each layer is computed once for all nodes from the previous layer's outputs of
        their fixed importance neighbours (``neighbors [N, T]`` global ids, ``-1`` pad;
        ``weights [N, T]``), and each node's message ``ReLU(Q h_u + q)`` once per layer —
        never once per query as sampled minibatches do. ``features(nodes) ->
        NodeFeatures``. Peak memory is ``O(N · hidden)``; :mod:`graphrec.infer` shards
        the same computation to disk for graphs that do not fit.
        """
        n = self.num_nodes
        spans = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
        h = torch.cat([self.embed_input(torch.arange(lo, hi), features(torch.arange(lo, hi))) for lo, hi in spans])
        for conv in self.convs:
            m = torch.cat([conv.message(h[lo:hi]) for lo, hi in spans])
            h = torch.cat([conv.combine(h[lo:hi], m, Block(torch.from_numpy(np.array(neighbors[lo:hi], dtype=np.int64)),
                                                           torch.from_numpy(np.array(weights[lo:hi], dtype=np.float32))))
                           for lo, hi in spans])
        return torch.cat([self.head(h[lo:hi]) for lo, hi in spans])


def max_margin_loss(zq: Tensor, zp: Tensor, z_shared: Tensor, z_hard: Tensor | None = None, margin: float = 0.1,
                    shared_mask: Tensor | None = None) -> Tensor:
    r"""PinSage's max-margin ranking loss, averaged over queries and their negatives:
    :math:`\max(0, z_q \cdot z_n - z_q \cdot z_p + \Delta)`.

    ``zq, zp``: ``[B, d]``; ``z_shared``: ``[S, d]`` negatives shared by the batch (one
    matmul); ``z_hard``: ``[B, H, d]`` per-query hard negatives; ``shared_mask``: bool
    ``[B, S]``, False where a shared negative must not count for a query (it is that
    query's positive or the query itself).
    """
    pos = (zq * zp).sum(-1, keepdim=True)  # [B, 1]
    neg = zq @ z_shared.T  # [B, S]
    terms = F.relu(neg - pos + margin)
    w = torch.ones_like(terms) if shared_mask is None else shared_mask.to(terms.dtype)
    total, count = (terms * w).sum(1), w.sum(1)
    if z_hard is not None and z_hard.shape[1] > 0:
        hard = torch.einsum("bd,bhd->bh", zq, z_hard)
        total = total + F.relu(hard - pos + margin).sum(1)
        count = count + hard.shape[1]
    return (total / count.clamp_min(1.0)).mean()
