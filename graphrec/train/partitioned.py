"""Partitioned TwHIN training, PyTorch-BigGraph style, in one process (out of core).

Node types with at least ``partition_min_nodes`` nodes are split into ``P`` partitions
(:mod:`graphrec.graph.partition`); edges are bucketed by ``(source partition, destination
partition)`` once, beside the store. Each partition's embedding table and Adagrad
state live in memory-mapped files of the run directory
(``RUN_DIR/partitions/<type>.<p>.{emb,sum}.npy``), so the process holds only the
partitions of the current bucket — at most two of each partitioned type — plus the
unpartitioned (small) types and the relation vectors, which every bucket shares.

An epoch trains every bucket ``(i, j)`` once, in the order of
:class:`~graphrec.train.buckets.BucketScheduler` (PBG's lock-server order: the first
epoch initialises partitions along a tree, later buckets prefer sharing a partition
with the previous one). In bucket ``(i, j)`` each relation ``S -r-> D`` trains on its
edges whose source lies in partition ``i`` of ``S`` (``0`` when ``S`` is whole) and
destination in partition ``j`` of ``D``, ``round(w_r · E_bucket)`` positives in batches
of one relation, against uniform negatives drawn from the held partitions (plus
in-batch ones), so a bucket never touches another partition. After a bucket its
partitions are written back.

Limits of this first stage (issue 14 continues): one process (``--no-ray``; several
Ray workers on disjoint buckets, PBG's lock server as an actor, come next), the
``adagrad`` optimiser, no per-edge weights, no early stopping, and resuming restarts
the epoch. The finished run is assembled into the usual ``model.pt`` / ``run.json``, so
``graphrec export`` and ``evaluate`` read it like any other run.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.graph.partition import EdgeBuckets, NodePartitioning, PartitionSpec
from graphrec.graph.store import GraphStore
from graphrec.models.twhin import TwHIN
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import twhin_model
from graphrec.sampling import typed_negatives
from graphrec.train.buckets import WAIT, BucketScheduler

log = logging.getLogger(__name__)

PARTITION_TABLES_DIR = "partitions"


def check_partitioned(cfg: TwHINConfig, world: int) -> None:
    """Refuse what partitioned training does not do yet (one clear line each)."""
    if world > 1:
        raise GraphrecError(f"partitions: {cfg.partitions} trains in one process for now; run it with --no-ray "
                            "(multi-worker bucket scheduling is issue 14's next stage)")
    if cfg.optimizer != "adagrad":
        raise GraphrecError(f"partitions: {cfg.partitions} needs optimizer: adagrad (got {cfg.optimizer})")
    if cfg.edge_weights:
        raise GraphrecError("partitions > 1 does not support edge_weights yet")
    if cfg.validation.source != "none" or cfg.holdout_fraction > 0:
        raise GraphrecError("partitions > 1 does not early-stop yet: set validation.source: none and "
                            "holdout_fraction: 0")


class PartitionTables:
    """Embedding tables and Adagrad accumulators of every ``(type, partition)``, as
    memory-mapped float32 ``.npy`` files under ``directory``."""

    def __init__(self, directory: Path, part: NodePartitioning, dim: int, init_scale: float, seed: int):
        self.dir, self.part, self.dim = Path(directory), part, dim
        self.dir.mkdir(parents=True, exist_ok=True)
        for t in part.node_types:
            for p, size in enumerate(part.sizes(t)):
                emb = self.dir / f"{t}.{p}.emb.npy"
                if emb.exists():
                    continue
                rng = np.random.default_rng([seed, zlib.crc32(t.encode()), p])
                table = np.lib.format.open_memmap(emb, mode="w+", dtype=np.float32, shape=(int(size), dim))
                for lo in range(0, int(size), 1 << 16):  # bounded memory however big the partition
                    n = min(1 << 16, int(size) - lo)
                    table[lo : lo + n] = rng.normal(0.0, init_scale, (n, dim)).astype(np.float32)
                table.flush()
                np.lib.format.open_memmap(self.dir / f"{t}.{p}.sum.npy", mode="w+", dtype=np.float32,
                                          shape=(int(size), dim)).flush()

    def load(self, t: str, p: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.load(self.dir / f"{t}.{p}.emb.npy", mmap_mode="r+"),
                np.load(self.dir / f"{t}.{p}.sum.npy", mmap_mode="r+"))


def _local_name(t: str, p: int) -> str:
    return f"{t}#{p}"


def train_partitioned(cfg: TwHINConfig, store: GraphStore, selected, run_dir: Path, progress: bool = False
                      ) -> tuple[TwHIN, dict]:
    """Train ``cfg`` with ``cfg.partitions`` partitions; returns the assembled model (all
    partitions in one :class:`TwHIN`) and the summary."""
    edge_types = [et for et, _ in selected]
    weights = {et: w for et, w in selected}
    spec = PartitionSpec(cfg.partitions, cfg.partition_min_nodes, cfg.seed)
    t0 = time.perf_counter()
    buckets = EdgeBuckets.open_or_build(store, spec)
    part = buckets.partitioning
    log.info("partitions: %s; edge buckets in %.1fs (%s)", ", ".join(f"{t} {part.parts(t)}" for t in part.node_types),
             time.perf_counter() - t0, buckets.dir)
    rel_buckets = {et: buckets.relation(et) for et in edge_types}
    grid = max([part.parts(t) for et in edge_types for t in (et[0], et[2])] + [1])
    tables = PartitionTables(Path(run_dir) / PARTITION_TABLES_DIR, part, int(cfg.dim),
                             1.0 / float(cfg.dim) ** 0.5 if cfg.init_scale is None else cfg.init_scale, cfg.seed)

    # relation vectors: one table shared by every bucket (a template model initialises them)
    template = twhin_model(cfg, {t: 1 for t in part.node_types}, edge_types, sparse=True)
    rel_emb = template.rel_emb
    rel_opt = torch.optim.Adagrad(rel_emb.parameters(), lr=cfg.relation_lr or cfg.lr)
    gen = torch.Generator()
    history, t_start = [], time.perf_counter()
    n_neg, n_all = cfg.negatives.uniform, cfg.negatives.exhaustive_max_nodes
    from graphrec.train.twhin import TwHINLoss, train_step  # the same loss and step as unpartitioned training

    for epoch in range(cfg.epochs):
        scheduler = BucketScheduler(grid, grid, seed=cfg.seed, same_entities=True)
        scheduler.new_epoch(epoch)
        t_epoch, loss_sum, steps, positives, prev = time.perf_counter(), 0.0, 0, 0, None
        bar = tqdm(total=grid * grid, desc=f"epoch {epoch} buckets", disable=not progress, leave=False)
        while True:
            bucket = scheduler.acquire(0, prev)
            if bucket is None:
                break
            if bucket is WAIT:  # one worker never waits for itself
                raise RuntimeError("bucket scheduler asked the only worker to wait")
            i, j = bucket
            gen.manual_seed(cfg.seed * 1000003 + epoch * 7919 + i * grid + j)
            ls, st, pos = _train_bucket(cfg, tables, part, rel_buckets, weights, edge_types, rel_emb, rel_opt,
                                        i, j, epoch, gen, n_neg, n_all, TwHINLoss, train_step)
            loss_sum, steps, positives = loss_sum + ls, steps + st, positives + pos
            scheduler.release(0, bucket, done=True)
            prev = bucket
            bar.update()
        bar.close()
        dt = time.perf_counter() - t_epoch
        metrics = {"epoch": epoch, "loss": loss_sum / max(steps, 1), "steps": steps,
                   "positives_per_s": positives / max(dt, 1e-9), "seconds": dt, "workers": 1,
                   "buckets": grid * grid}
        history.append(metrics)
        log.info("epoch %d: loss %.4f, %.0f positives/s over %d buckets", epoch, metrics["loss"],
                 metrics["positives_per_s"], grid * grid)
    model = assemble(cfg, store, part, tables, edge_types, rel_emb)
    summary = {"epochs_run": len(history), "stopped_early": False, "monitor": None, "best_epoch": None,
               "seconds": time.perf_counter() - t_start, "starts": [0], "world_size": 1, "history": history,
               "partitions": cfg.partitions, "buckets_dir": str(buckets.dir)}
    return model, summary


def _train_bucket(cfg, tables, part, rel_buckets, weights, edge_types, rel_emb, rel_opt, i, j, epoch, gen,
                  n_neg, n_all, loss_cls, train_step) -> tuple[float, int, int]:
    """Train every relation's edges of bucket ``(i, j)``; write the partitions back."""
    local_types: dict[str, tuple[str, int]] = {}
    local_ets, work = [], []
    for r, et in enumerate(edge_types):
        src_t, name, dst_t = et
        pi = i if part.is_partitioned(src_t) else 0
        pj = j if part.is_partitioned(dst_t) else 0
        ls, ld = _local_name(src_t, pi), _local_name(dst_t, pj)
        local_types[ls], local_types[ld] = (src_t, pi), (dst_t, pj)
        local_ets.append((ls, name, ld))
        rb = rel_buckets[et]
        # edges of unpartitioned sides sit in partition 0 only: bucket (i, j) owns them iff i (j) is 0
        if (pi != i and i != 0) or (pj != j and j != 0):
            continue
        src, dst, _ = rb.bucket(pi, pj)
        if src.shape[0]:
            work.append((r, np.asarray(src, np.int64), np.asarray(dst, np.int64)))
    if not work:
        return 0.0, 0, 0
    held = {lt: tables.load(t, p) for lt, (t, p) in local_types.items()}
    torch.manual_seed(cfg.seed)
    model = TwHIN({lt: held[lt][0].shape[0] for lt in local_types}, local_ets, dim=int(cfg.dim), score=cfg.score,
                  p_norm=cfg.p_norm, init_scale=cfg.init_scale, sparse=True, max_norm=cfg.max_norm)
    model.rel_emb = rel_emb  # shared: the local edge types keep the global relation order
    with torch.no_grad():
        for lt, (emb, _) in held.items():
            model.node_embeddings(lt).copy_(torch.from_numpy(np.asarray(emb)))
    node_opt = torch.optim.Adagrad(model.node_emb.parameters(), lr=cfg.lr)
    acc = node_opt.state[model.node_emb.weight]["sum"]
    for lt, (_, ssum) in held.items():
        lo = model.offsets[lt]
        acc[lo : lo + held[lt][1].shape[0]].copy_(torch.from_numpy(np.asarray(ssum)))
    loss_module = loss_cls(model, cfg)
    # this bucket's positives: round(w · E) of each relation, batches of one relation, shuffled
    rng = np.random.default_rng([cfg.seed, epoch, i, j])
    batches = []
    for r, src, dst in work:
        need = int(round(weights[edge_types[r]] * src.shape[0]))
        if need == 0:
            continue
        reps = -(-need // src.shape[0])
        order = np.concatenate([rng.permutation(src.shape[0]) for _ in range(reps)])[:need]
        for lo in range(0, need, cfg.batch_size):
            sel = order[lo : lo + cfg.batch_size]
            batches.append((r, src[sel], dst[sel]))
    rng.shuffle(batches)
    loss_sum = 0.0
    for r, heads, tails in batches:
        ls, _, ld = local_ets[r]
        neg_t = typed_negatives(model.num_nodes[ld], n_neg, gen, n_all)
        neg_h = typed_negatives(model.num_nodes[ls], n_neg, gen, n_all)
        loss_sum += train_step(loss_module, [node_opt, rel_opt], r, torch.from_numpy(heads),
                               torch.from_numpy(tails), neg_t, neg_h)
    with torch.no_grad():  # write the partitions (and their optimizer state) back
        for lt, (emb, ssum) in held.items():
            lo, n = model.offsets[lt], emb.shape[0]
            emb[:] = model.node_emb.weight[lo : lo + n].numpy()
            ssum[:] = acc[lo : lo + n].numpy()
            emb.flush()
            ssum.flush()
    return loss_sum, len(batches), int(sum(h.shape[0] for _, h, _ in batches))


def assemble(cfg: TwHINConfig, store: GraphStore, part: NodePartitioning, tables: PartitionTables, edge_types,
             rel_emb) -> TwHIN:
    """One :class:`TwHIN` holding every partition at its global rows (for ``model.pt``)."""
    model = twhin_model(cfg, {t: store.num_nodes(t) for t in store.node_types}, edge_types, sparse=True)
    with torch.no_grad():
        for t in part.node_types:
            table = model.node_embeddings(t)
            for p in range(part.parts(t)):
                emb, _ = tables.load(t, p)
                table[torch.from_numpy(part.members(t, p))] = torch.from_numpy(np.asarray(emb))
        model.rel_emb.weight.copy_(rel_emb.weight)
    return model
