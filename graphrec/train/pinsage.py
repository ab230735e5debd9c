"""PinSage training: ``train_loop_per_worker(config)`` runs single-process or as one of
N Ray Train workers (:mod:`graphrec.train.ray_runner` wraps it). The loop builds the
positives, neighbourhoods, negatives, model and optimizer, then composes them with
:class:`~graphrec.train.engine.Trainer` (setup, resume, checkpoints, early stopping,
reporting — the same for every model).

Per epoch, a ``DataLoader`` over :class:`~graphrec.sampling.PinSageBatches` prepares
whole minibatches (co-engagement pairs, shared uniform negatives, curriculum PPR hard
negatives, the re-indexed K-layer neighbourhood subgraph and its features) in
``loader_workers`` background processes while this process trains on the current one
(producer–consumer). Every training worker takes its own shard of the batches;
``DistributedDataParallel`` (gloo) all-reduces the gradients — of the item-ID and user
tables only the rows the batch used (sparse gradients, SparseAdam; the rest Adam), so a
step's cost and traffic do not grow with the catalogue. The learning rate warms up
linearly over ``warmup_steps``. Early stopping watches item→item HitRate@10 of held-out
co-engagement pairs, computed with layer-wise full-catalogue inference.

``config`` keys: ``pinsage`` (a :class:`~graphrec.run.config.PinSageConfig` or its dict),
``graph``, ``out``, ``reporter`` (``local`` | ``ray``), ``progress``.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore, parse_edge_type
from graphrec.io import write_npy
from graphrec.models.pinsage import PinSage, max_margin_loss
from graphrec.models.users import UserTable, recency_weighted_mean
from graphrec.run.config import PinSageConfig, parse_config
from graphrec.run.directory import (ITEM_VECTORS, NEIGHBORHOODS_DIR, USER_VECTORS, fixed_neighborhoods,
                                    pinsage_features, pinsage_model, pinsage_sampler, write_run)
from graphrec.run.directory import check_pinsage_graph as check_config  # noqa: F401  (the trainer registry's hook)
from graphrec.sampling import (CoEngagement, PinSageBatch, PinSageBatches, PPRHardNegatives, collate_identity,
                               walk_neighborhood)
from graphrec.sampling.features import FeatureSpec, NodeFeatureTable
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, Step
from graphrec.train.engine import Trainer, worker_context

log = logging.getLogger(__name__)


def side_metapaths(store: GraphStore, cfg: PinSageConfig) -> list[tuple[list[str], float]]:
    """The metapaths that never walk the interaction relation (nor a reverse view of it):
    the only ones an item without interactions can leave by."""
    inter = store.relation(parse_edge_type(cfg.interactions)).base_key
    return [(m.path, m.weight) for m in cfg.walks.metapaths
            if all(store.relation(Step.parse(r).edge_type).base_key != inter for r in m.path)]


def side_neighborhoods(store: GraphStore, cfg: PinSageConfig) -> ImportanceNeighborhoods:
    """Importance neighbourhoods of every item over :func:`side_metapaths` (what an item
    nobody interacted with has; empty rows without such metapaths), ``top_t`` wide."""
    w, n = cfg.walks, store.num_nodes(cfg.item_type)
    paths = side_metapaths(store, cfg)
    if not paths:
        return ImportanceNeighborhoods(np.full((n, w.top_t), -1, np.int64), np.zeros((n, w.top_t), np.float32))
    return fixed_neighborhoods(RandomWalkSampler(store, paths, w.restart_prob), cfg, stream=103)


def hard_negatives_for_epoch(cfg: PinSageConfig, epoch: int) -> int:
    """Hard negatives per query in ``epoch`` (0-based): the curriculum adds one per
    epoch after a first epoch without any."""
    h = cfg.negatives.hard
    return min(epoch, h.max_per_query) if h.schedule == "curriculum" else h.max_per_query


def positive_pairs(rel, timestamps, cfg: PinSageConfig):
    """Co-engagement positives: ``(pairs_of_epoch(epoch) -> (query, pos), held-out
    (query, pos) for early stopping, training pairs per epoch)``.

    ``all``: every pair within the window, a fixed ``holdout_fraction`` of them held
    out. ``per_interaction``: each epoch draws ``per_interaction`` partners per
    interaction afresh (seeded by ``(seed, epoch)``); a ``holdout_fraction`` of the
    interactions are never queries in training and give the held-out pairs."""
    p = cfg.positives
    eng = CoEngagement(rel.indptr, rel.indices, timestamps, p.window, p.max_gap)
    if eng.num_interactions == 0:
        raise GraphrecError(f"{cfg.interactions}: the interaction relation is empty")
    if p.sampling == "all":
        query, pos = eng.all_pairs()
        if query.shape[0] == 0:
            raise GraphrecError(f"{cfg.interactions}: no co-engagement pairs (window {p.window}, max_gap {p.max_gap})")
        perm = np.random.default_rng([cfg.seed, 7]).permutation(query.shape[0])
        n_hold = min(int(round(cfg.holdout_fraction * query.shape[0])), 20000)
        hold, keep = perm[:n_hold], perm[n_hold:]
        query_t, pos_t = query[keep], pos[keep]
        return (lambda epoch: (query_t, pos_t)), (query[hold], pos[hold]), int(keep.shape[0])
    perm = np.random.default_rng([cfg.seed, 7]).permutation(eng.num_interactions)
    n_hold = min(int(round(cfg.holdout_fraction * eng.num_interactions)), 20000)
    held, train_q = perm[:n_hold], np.sort(perm[n_hold:])
    held_pairs = eng.sample(np.random.default_rng([cfg.seed, 8]), 1, queries=held)

    def pairs_of_epoch(epoch: int):
        q, x = eng.sample(np.random.default_rng([cfg.seed, epoch, 11]), p.per_interaction, queries=train_q)
        if q.shape[0] == 0:
            raise GraphrecError(f"{cfg.interactions}: no co-engagement pairs (window {p.window}, max_gap {p.max_gap})")
        return q, x

    return pairs_of_epoch, held_pairs, int(train_q.shape[0] * p.per_interaction)


class PinSageLoss(nn.Module):
    """``forward(batch) -> loss`` so that DDP sees the training computation as the
    module's forward; holds everything trained (the item encoder and, for learned user
    vectors, the :class:`~graphrec.models.users.UserTable`).

    Loss: the max-margin loss of the batch's item pairs, plus ``user_weight`` times the
    same loss of (user vector, engaged item) pairs against the shared negatives when
    ``num_users`` is given (user vectors L2-normalised like the item outputs)."""

    def __init__(self, model: PinSage, margin: float, num_users: int = 0, user_weight: float = 1.0,
                 sparse_users: bool = False):
        super().__init__()
        self.model, self.margin, self.user_weight = model, margin, user_weight
        self.users = (UserTable(num_users, model.dim, normalize=model.normalize_output, sparse=sparse_users)
                      if num_users > 0 else None)

    def forward(self, batch: PinSageBatch):
        z = self.model(batch.nodes if batch.id_rows is None else batch.id_rows, batch.feats, batch.blocks)
        hard = z[batch.hard] if batch.hard.shape[1] > 0 else None
        loss = max_margin_loss(z[batch.query], z[batch.pos], z[batch.shared], hard, self.margin, batch.shared_mask)
        if self.users is not None and batch.users is not None and batch.users.numel() > 0:
            loss = loss + self.user_weight * max_margin_loss(self.users(batch.users), z[batch.user_pos],
                                                             z[batch.shared], None, self.margin, batch.user_mask)
        return loss


def item_embeddings(model: PinSage, features: NodeFeatureTable | None, nbh: ImportanceNeighborhoods) -> torch.Tensor:
    """``[N, dim]`` embeddings of every item with the fixed neighbourhoods ``nbh``."""
    model.eval()
    try:
        return model.inference(lambda nodes: features.gather(nodes.numpy()) if features is not None else None,
                               nbh.neighbors, nbh.weights)
    finally:
        model.train()


def pair_hit_rate(emb: torch.Tensor, query: np.ndarray, pos: np.ndarray, k: int = 10, query_block: int = 256,
                  candidate_block: int = 65_536) -> tuple[float, float]:
    """HitRate@k and MRR of ``pos`` among all items ranked by ``emb[query] · emb`` (the
    query itself excluded): ``rank = 1 + #{i ∉ {query, pos}: emb[q]·emb[i] > emb[q]·emb[pos]}``,
    counted over blocks of ``query_block × candidate_block`` scores, so memory stays at
    one block whatever the catalogue size (no ``[Q, N]`` matrix)."""
    hits, rr, n = 0.0, 0.0, query.shape[0]
    num_items = emb.shape[0]
    for lo in range(0, n, query_block):
        q = torch.from_numpy(np.asarray(query[lo : lo + query_block], dtype=np.int64))
        p = torch.from_numpy(np.asarray(pos[lo : lo + query_block], dtype=np.int64))
        zq = emb[q]
        target = (zq * emb[p]).sum(1, keepdim=True)  # [b, 1]
        target[p == q] = float("-inf")  # (a pair of an item with itself: ranked last, as the query is excluded)
        above = torch.zeros(q.shape[0], dtype=torch.int64)
        for c in range(0, num_items, candidate_block):
            s = zq @ emb[c : c + candidate_block].T  # [b, block]
            for own in (q, p):  # neither the query nor the positive counts as ranked above the positive
                inside = (own >= c) & (own < c + s.shape[1])
                s[inside.nonzero().squeeze(1), own[inside] - c] = float("-inf")
            above += (s > target).sum(1)
        rank = 1 + above
        hits += float((rank <= k).sum())
        rr += float((1.0 / rank.double()).sum())
    return hits / max(n, 1), rr / max(n, 1)


def make_optimizers(trainable: nn.Module, cfg: PinSageConfig) -> list[torch.optim.Optimizer]:
    """Adam for the dense parameters (with ``weight_decay``) and SparseAdam for the tables
    with sparse gradients (item IDs, learned users): a step updates and, on several
    workers, all-reduces only the rows its batch used, never ``N × d``."""
    sparse = [m.weight for m in trainable.modules() if isinstance(m, nn.Embedding) and m.sparse]
    ids = {id(p) for p in sparse}
    dense = [p for p in trainable.parameters() if id(p) not in ids]
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=cfg.sparse_lr or cfg.lr))
    return opts


def train_loop_per_worker(config: dict) -> dict:
    """Train PinSage on the graph store ``config["graph"]``; see the module docstring."""
    ctx = worker_context(config, "pinsage", lambda d: parse_config(d, PinSageConfig))
    cfg, store, rank, world = ctx.cfg, ctx.store, ctx.rank, ctx.world
    rel = store.relation(parse_edge_type(cfg.interactions))
    n_items = store.num_nodes(cfg.item_type)
    sampler = pinsage_sampler(store, cfg)
    features = pinsage_features(store, cfg)
    spec = features.spec if features is not None else FeatureSpec()

    ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else None
    pairs_of_epoch, (vq, vp), n_train_pairs = positive_pairs(rel, ts, cfg)
    n_hold = int(vq.shape[0])

    t0 = time.perf_counter()
    nbh = fixed_neighborhoods(sampler, cfg)
    t_walk = time.perf_counter() - t0
    hard = None
    if cfg.negatives.hard.max_per_query > 0:
        h = cfg.negatives.hard
        hard = PPRHardNegatives(store, sampler, band=h.band, alpha=h.alpha, method=h.method, mc_walks=h.mc_walks,
                                mc_length=h.mc_length, ranks=h.band_ranks)
        if hard.method == "power":
            hard.band_table()  # once, before the loader workers fork
        else:  # how much of the band the walks rank (the rest: uniform among the unvisited, tied at 0 visits)
            probe = np.random.default_rng([cfg.seed, 107])
            hard_coverage = hard.coverage(probe.choice(n_items, size=min(n_items, 256), replace=False), probe)
            if rank == 0:
                (log.warning if hard_coverage < 0.5 else log.info)(
                    "hard negatives: the Monte-Carlo walks rank %.0f%% of the PPR band [%d, %d) (the rest are drawn "
                    "among the items they never visit); raise negatives.hard.mc_walks or use band_ranks",
                    100 * hard_coverage, hard.lo, hard.hi)
    if rank == 0:
        log.info("%d items, %d training pairs, %d held out; neighbourhoods in %.1fs; %s", n_items, n_train_pairs,
                 n_hold, t_walk, hard)

    model = pinsage_model(cfg, n_items, spec, sparse_ids=True)
    learned_users = cfg.user_vectors.kind == "learned"
    trainable = PinSageLoss(model, cfg.margin, num_users=rel.num_src if learned_users else 0,
                            user_weight=cfg.user_vectors.loss_weight, sparse_users=True)
    loss_module: nn.Module = trainable
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    opts = make_optimizers(trainable, cfg)
    warm = max(cfg.warmup_steps, 1)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: min(1.0, (step + 1) / warm)) for o in opts]
    trainer = Trainer(ctx, {"model": trainable}, opts, scheds, epochs=cfg.epochs, patience=cfg.patience,
                      monitor="valid_hr@10" if n_hold > 0 else None, seed=cfg.seed,
                      checkpoint_every_steps=cfg.checkpoints.every_steps, keep_checkpoints=cfg.checkpoints.keep,
                      items_name="pairs")

    if cfg.walks.refresh == "fixed":
        neighborhood = nbh
    else:  # walked afresh for each minibatch, from the batch's own generator
        w = cfg.walks
        neighborhood = functools.partial(walk_neighborhood, sampler, w.top_t, w.num_walks, w.walk_length)
    cold = None
    if cfg.cold_simulation > 0:
        t1 = time.perf_counter()
        cold = (cfg.cold_simulation, side_neighborhoods(store, cfg))
        if rank == 0:
            log.info("cold-start simulation: %.0f%% of the items each epoch; side neighbourhoods in %.1fs",
                     100 * cfg.cold_simulation, time.perf_counter() - t1)
    interactions = None
    if learned_users:
        u, i = rel.coo()
        interactions = (u.astype(np.int64), np.asarray(i, dtype=np.int64))

    @functools.lru_cache(maxsize=2)
    def epoch_batches(epoch: int, start: int = 0) -> PinSageBatches:
        query, pos = pairs_of_epoch(epoch)
        n_hard = hard_negatives_for_epoch(cfg, epoch) if hard is not None else 0
        return PinSageBatches(query, pos, n_items, cfg.batch_size, cfg.num_layers, neighborhood, features,
                              cfg.negatives.shared, hard, n_hard, epoch, seed=cfg.seed, rank=rank, world=world,
                              interactions=interactions, start=start, cold=cold)

    if len(epoch_batches(0, 0)) == 0:
        raise GraphrecError(f"{cfg.interactions}: {n_train_pairs} training pairs make fewer batches of "
                            f"{cfg.batch_size} than there are workers ({world}); lower batch_size or the workers")

    def batches(epoch: int, start: int) -> DataLoader:
        return DataLoader(epoch_batches(epoch, start), batch_size=None, collate_fn=collate_identity,
                          num_workers=cfg.loader_workers, prefetch_factor=4 if cfg.loader_workers > 0 else None)

    def step(batch: PinSageBatch) -> tuple[float, int]:
        loss = loss_module(batch)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o, sc in zip(opts, scheds, strict=True):
            o.step()
            sc.step()
        return float(loss.detach()), cfg.batch_size

    def validate(epoch: int) -> dict | None:
        if n_hold == 0:
            return None
        hr, mrr = pair_hit_rate(item_embeddings(model, features, nbh), vq, vp)
        return {"valid_hr@10": hr, "valid_mrr": mrr}

    def epoch_metrics(epoch: int) -> dict:
        return {"hard_negatives": hard_negatives_for_epoch(cfg, epoch) if hard is not None else 0,
                "lr": scheds[0].get_last_lr()[0]}

    summary = trainer.fit(batches, step, lambda epoch: len(epoch_batches(epoch, 0)), validate, epoch_metrics)
    summary.update({"neighborhood_seconds": t_walk, "train_pairs": n_train_pairs, "heldout_pairs": n_hold})
    if hard is not None:
        summary["hard_negatives"] = {"ranks": [hard.lo, hard.hi], "method": hard.method,
                                     "band_coverage": 1.0 if hard.method == "power" else hard_coverage}
    if rank == 0:
        items = item_embeddings(model, features, nbh)
        if learned_users:
            with torch.no_grad():  # users without a train interaction get no vector (zeros)
                users = trainable.users() * torch.from_numpy(np.diff(np.asarray(rel.indptr)) > 0)[:, None]
        else:
            users = recency_weighted_mean(items, rel.indptr, rel.indices, ts, cfg.user_vectors.half_life)
        nbh.save(ctx.run_dir / NEIGHBORHOODS_DIR)
        write_npy(ctx.run_dir / ITEM_VECTORS, items.numpy().astype(np.float32))
        write_npy(ctx.run_dir / USER_VECTORS, users.numpy().astype(np.float32))
        write_run(ctx.run_dir, "pinsage", cfg, store, model.state_dict(), summary, item_type=cfg.item_type,
                  user_type=parse_edge_type(cfg.interactions)[0], num_items=model.num_nodes,
                  num_users=int(users.shape[0]), feature_spec=spec.to_dict())
    return summary
