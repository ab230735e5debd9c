"""TwHIN: heterogeneous knowledge-graph embeddings (El-Kishky et al., KDD 2022).

Every node of every type and every relation type gets a vector; an edge
``(s, r, t)`` is scored by a selectable function (:mod:`graphrec.models.scores`).

Layout: **one node table with type offsets**. Node ``i`` of type ``T`` is row
``offset[T] + i`` of ``node_emb`` (``nn.Embedding(sum_T N_T, dim, sparse=True)``), so one
embedding call per step gathers heads, tails and negatives of any types and produces a
single sparse gradient (cheap to all-reduce across workers). Relation vectors are a small
dense ``nn.Embedding(R, relation_dim)``. Type safety comes from the relation: a relation
``(S, r, T)`` only ever indexes rows of ``S`` for heads and of ``T`` for tails.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphrec.models.losses import LOSSES
from graphrec.models.scores import make_score

REGULARIZERS = ("l2", "n3")
"""Regularisers of :meth:`TwHIN.loss` (``TwHINConfig.regularizer``)."""


class TwHIN(nn.Module):
    r"""Typed knowledge-graph embedding model.

    Args:
        num_nodes: node count per node type, ``{"user": 943, ...}`` (order defines offsets).
        edge_types: relation types ``(src, name, dst)`` (order defines relation ids).
        dim: embedding dimension (even for ``complex``/``rotate``).
        score: a name in :data:`graphrec.models.scores.SCORES` (``translation_dot``,
            ``transe``, ``distmult``, ``complex``, ``rotate``).
        p_norm: norm of ``transe`` (1 or 2).
        init_scale: std of the normal initialisation (default ``1/sqrt(dim)``).
        sparse: sparse gradients for the node table (for SparseAdam/Adagrad).
        max_norm: optional renormalisation of looked-up node rows (TransE-style constraint).
    """

    def __init__(self, num_nodes: dict[str, int], edge_types: list[tuple[str, str, str]], dim: int = 100,
                 score: str = "translation_dot", p_norm: int = 2, init_scale: float | None = None,
                 sparse: bool = True, max_norm: float | None = None):
        super().__init__()
        self.score_fn = make_score(score, p_norm)
        if self.score_fn.complex_valued and dim % 2:
            raise ValueError(f"{score} needs an even dim (complex halves), got {dim}")
        self.num_nodes = dict(num_nodes)
        self.node_types = list(num_nodes)
        offsets, total = {}, 0
        for t in self.node_types:
            offsets[t] = total
            total += int(num_nodes[t])
        self.offsets = offsets
        self.edge_types = [tuple(e) for e in edge_types]
        for s, _, d in self.edge_types:
            for t in (s, d):
                if t not in offsets:
                    raise ValueError(f"relation type uses node type {t!r} missing from num_nodes")
        self._rel_index = {et: i for i, et in enumerate(self.edge_types)}
        self.dim = dim
        self.score_name = score
        self.init_scale = init_scale if init_scale is not None else 1.0 / math.sqrt(dim)
        self.node_emb = nn.Embedding(total, dim, sparse=sparse, max_norm=max_norm)
        self.rel_emb = nn.Embedding(len(self.edge_types), self.score_fn.relation_dim(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.node_emb.weight, std=self.init_scale)
        self.score_fn.reset_relations(self.rel_emb.weight, self.init_scale)

    def __repr__(self) -> str:
        nodes = ", ".join(f"{t}={n}" for t, n in self.num_nodes.items())
        return (f"{type(self).__name__}(nodes: {nodes}; relations={len(self.edge_types)}, dim={self.dim}, "
                f"score={self.score_fn!r})")

    # ---- indexing -----------------------------------------------------------------
    def rel_index(self, edge_type) -> int:
        try:
            return self._rel_index[tuple(edge_type)]
        except KeyError:
            raise KeyError(f"relation {':'.join(edge_type)} is not part of this model") from None

    def global_ids(self, node_type: str, index: Tensor) -> Tensor:
        return index + self.offsets[node_type]

    def embed(self, node_type: str, index: Tensor) -> Tensor:
        """Embeddings ``[B, dim]`` of local ``index`` of ``node_type``."""
        return self.node_emb(self.global_ids(node_type, index))

    def node_embeddings(self, node_type: str) -> Tensor:
        """All embeddings of ``node_type``, ``[N_T, dim]`` (a view of the table)."""
        lo = self.offsets[node_type]
        return self.node_emb.weight[lo : lo + self.num_nodes[node_type]]

    def relation_embedding(self, edge_type) -> Tensor:
        return self.rel_emb.weight[self.rel_index(edge_type)]

    # ---- scoring ------------------------------------------------------------------
    def forward(self, edge_type, head: Tensor, tail: Tensor) -> Tensor:
        """Scores ``[B]`` of edges ``head[i] -r-> tail[i]`` (local ids of the relation's types)."""
        s, _, d = edge_type
        r = self.relation_embedding(edge_type)
        return self.score_fn.pair(self.embed(s, head), r, self.embed(d, tail))

    def score_tails(self, edge_type, head: Tensor, candidates: Tensor | None = None) -> Tensor:
        """``[B, N]`` scores of each head against ``candidates`` (default: every node of
        the relation's destination type)."""
        s, _, d = edge_type
        T = self.node_embeddings(d) if candidates is None else self.embed(d, candidates)
        return self.score_fn.tails(self.embed(s, head), self.relation_embedding(edge_type), T)

    def score_heads(self, edge_type, tail: Tensor, candidates: Tensor | None = None) -> Tensor:
        """``[B, N]`` scores of ``candidates`` heads (default: every source-type node) per tail."""
        s, _, d = edge_type
        H = self.node_embeddings(s) if candidates is None else self.embed(s, candidates)
        return self.score_fn.heads(H, self.relation_embedding(edge_type), self.embed(d, tail))

    # ---- training -----------------------------------------------------------------
    def loss(self, edge_type, head: Tensor, tail: Tensor, neg_tails: Tensor | None = None,
             neg_heads: Tensor | None = None, in_batch: bool = True, loss: str = "softmax",
             margin: float = 1.0, corrupt: str = "both", chunk_size: int = 0,
             regularization: float = 0.0, regularizer: str = "l2", relations: Tensor | None = None,
             neg_offset: tuple[float, float] = (0.0, 0.0)) -> Tensor:
        r"""Loss of a chunk of positives of one relation against shared negatives.

        ``head``/``tail``: ``[B]`` local ids. Tail-side negatives for every positive are
        the other positives' tails (``in_batch``) plus ``neg_tails`` (``[U]`` ids of the
        destination type, shared by the chunk; a shared negative equal to a positive's own
        tail is masked for that positive); head side likewise. All are scored with one
        matmul per side. ``loss`` names a function of :data:`graphrec.models.losses.LOSSES`
        of the positive ``p`` and its negatives ``n_j`` (``margin`` = its ``γ``):
        ``softmax``: :math:`-\log \frac{e^p}{e^p + \sum_j e^{n_j}}`;
        ``softplus``: :math:`\mathrm{sp}(-p) + \mathrm{mean}_j\, \mathrm{sp}(n_j)`;
        ``margin``: :math:`\mathrm{mean}_j \max(0, \gamma - p + n_j)`.
        ``corrupt`` (``both`` | ``tail`` | ``head``) picks the sides; the loss is their mean.
        ``chunk_size`` > 0 limits in-batch negatives to chunks of that many positives
        (PyTorch-BigGraph's chunking: ``B·C`` instead of ``B²`` scores).
        ``relations``: ``[B]`` relation indices (:meth:`rel_index`) when the positives
        belong to several relations between ``edge_type``'s two node types; each is then
        scored with its own relation vector (``r: [B, d_r]``) against the same candidates.
        ``neg_offset``: ``(tail, head)`` log-weights ``c`` added to the scores of that
        side's ``neg_tails``/``neg_heads`` candidates (not the in-batch ones, nor a
        candidate equal to the positive's own node): the softmax then counts each of the
        ``k`` candidates ``e^c`` times, an estimate of a softmax over ``e^c · k`` of them
        (partitioned training's correction, ``c = log(k_1 / k_P)``).
        ``regularization`` = λ adds, with ``regularizer``

        * ``l2``: ``λ · mean_rows ‖θ‖²`` over every node row the batch looked up
          (positives and negatives; an L2 penalty applied lazily, only to rows that get
          a gradient);
        * ``n3``: ``λ / B · Σ_i Σ_k (|h_ik|³ + |r_k|³ + |t_ik|³)`` over the ``B`` positive
          triples only, ``|·|`` the modulus of each coordinate the score multiplies
          (complex moduli for ``complex``/``rotate``; RotatE phases are left out) — the
          weighted nuclear 3-norm of Lacroix et al. (2018), which penalises rare
          entities less than an L2 over looked-up rows does.
        """
        loss_fn = LOSSES.get(loss)
        if regularizer not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {regularizer!r} (choose from {REGULARIZERS})")
        s, _, d = edge_type
        b = head.shape[0]
        parts = [self.global_ids(s, head), self.global_ids(d, tail)]
        if neg_tails is not None:
            parts.append(self.global_ids(d, neg_tails))
        if neg_heads is not None:
            parts.append(self.global_ids(s, neg_heads))
        emb = self.node_emb(torch.cat(parts))  # one lookup -> one sparse gradient
        h, t = emb[:b], emb[b : 2 * b]
        pos_ = 2 * b
        nt = nh = None
        if neg_tails is not None:
            nt, pos_ = emb[pos_ : pos_ + neg_tails.shape[0]], pos_ + neg_tails.shape[0]
        if neg_heads is not None:
            nh = emb[pos_ : pos_ + neg_heads.shape[0]]
        r = self.relation_embedding(edge_type) if relations is None else self.rel_emb.weight[relations]
        pos = self.score_fn.pair(h, r, t)
        losses = []
        if corrupt not in ("both", "tail", "head"):
            raise ValueError(f"corrupt must be both, tail or head, got {corrupt!r}")
        sides = [x for x in (("tail", nt, neg_tails, tail), ("head", nh, neg_heads, head)) if corrupt in ("both", x[0])]
        for side, uniform, uniform_ids, true_ids in sides:
            n_type = self.num_nodes[d if side == "tail" else s]
            if uniform is not None and loss == "softmax" and not (in_batch and b > 1) \
                    and _is_every_node(uniform_ids, n_type):
                # 1-N scoring: the candidates are every node of the type in id order, so the
                # loss is a plain cross-entropy over the [B, N] scores (no mask, no concat)
                full = self.score_fn.tails(h, r, uniform) if side == "tail" else self.score_fn.heads(uniform, r, t)
                offset = neg_offset[0 if side == "tail" else 1]
                if offset:  # every candidate but the positive's own node
                    full = full + offset
                    full[torch.arange(b), true_ids] -= offset
                losses.append(F.cross_entropy(full, true_ids))
                continue
            negs, masks = [], []
            if in_batch and b > 1:
                neg, valid = self._in_batch_scores(side, h, r, t, chunk_size)
                negs.append(neg)
                masks.append(valid)
            if uniform is not None:
                negs.append((self.score_fn.tails(h, r, uniform) if side == "tail" else self.score_fn.heads(uniform, r, t))
                            + neg_offset[0 if side == "tail" else 1])
                masks.append(uniform_ids[None, :] != true_ids[:, None])  # a positive is no negative of itself
            if not negs:
                continue
            losses.append(loss_fn(pos, torch.cat(negs, dim=1), torch.cat(masks, dim=1), margin))
        if not losses:
            raise ValueError("no negatives: enable in_batch (with batch > 1) or pass neg_tails/neg_heads")
        out = torch.stack(losses).mean()
        if regularization > 0:
            if regularizer == "l2":
                out = out + regularization * (emb * emb).sum(-1).mean()
            else:
                out = out + regularization * self.n3(h, r, t)
        return out

    def n3(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """N3 penalty of a batch of positives (``h, t: [B, dim]``, ``r: [relation_dim]``):
        ``1/B · Σ_i Σ_k (|h_ik|³ + |r_k|³ + |t_ik|³)`` (the relation counted once per
        triple), a scalar."""
        fn = self.score_fn
        total = fn.node_moduli(h).pow(3).sum() + fn.node_moduli(t).pow(3).sum()
        rm = fn.relation_moduli(r)
        if rm is not None:  # one relation for the batch ([d_r]) or one per triple ([B, d_r])
            total = total + (h.shape[0] if r.dim() == 1 else 1) * rm.pow(3).sum()
        return total / max(h.shape[0], 1)

    def _in_batch_scores(self, side: str, h: Tensor, r: Tensor, t: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
        """Scores ``[B, C]`` of every positive against the other positives of its chunk
        (``C = chunk`` or the whole batch) and the validity mask (self and padding off)."""
        b = h.shape[0]
        c = b if chunk <= 0 or chunk >= b else chunk
        if c == b:
            neg = self.score_fn.tails(h, r, t) if side == "tail" else self.score_fn.heads(h, r, t)
            return neg, ~torch.eye(b, dtype=torch.bool)
        n = -(-b // c)
        pad = n * c - b  # a ragged last chunk is padded; its padding is masked below
        hc = F.pad(h, (0, 0, 0, pad)).view(n, c, -1)
        tc = F.pad(t, (0, 0, 0, pad)).view(n, c, -1)
        if r.dim() == 2:  # a relation per positive: chunked alongside
            r = F.pad(r, (0, 0, 0, pad)).view(n, c, -1)
        fn = self.score_fn
        blk = fn.chunk_tails(hc, r, tc) if side == "tail" else fn.chunk_heads(hc, r, tc)  # [n, c, c]
        neg = blk.reshape(n * c, c)[:b]
        row = torch.arange(b)
        col = torch.arange(c)
        valid = (col[None, :] != (row % c)[:, None]) & ((row // c * c)[:, None] + col[None, :] < b)
        return neg, valid

    # ---- export -------------------------------------------------------------------
    @torch.no_grad()
    def retrieval_vectors(self, edge_type) -> tuple[Tensor, Tensor]:
        """``(query [N_src, d'], candidate [N_dst, d'])`` such that ``query @ candidate.T``
        orders the destination nodes of every source exactly as the model's score does.
        Raises ``ValueError`` for score functions without an exact inner-product form.
        Row-wise (``score_fn.retrieval_queries`` / ``retrieval_candidates``): an export
        computes the same vectors a chunk of rows at a time, without the whole model."""
        s, _, d = edge_type
        return self.score_fn.retrieval(self.node_embeddings(s), self.relation_embedding(edge_type),
                                       self.node_embeddings(d))


def _is_every_node(ids: Tensor | None, n: int) -> bool:
    """True when ``ids`` is ``arange(n)``: every node of a type of ``n`` nodes, in id order
    (``n`` ids strictly increasing from 0 to ``n − 1``)."""
    if ids is None or n == 0 or ids.numel() != n:
        return False
    return int(ids[0]) == 0 and int(ids[-1]) == n - 1 and (n == 1 or bool((ids[1:] > ids[:-1]).all()))

