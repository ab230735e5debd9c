"""Partitioned TwHIN training, PyTorch-BigGraph style, in one process (out of core).

Node types with at least ``partition_min_nodes`` nodes are split into ``P`` partitions
(:mod:`graphrec.graph.partition`); edges are bucketed by ``(source partition, destination
partition)`` once, beside the store. Each partition's embedding table and Adagrad
state live in versioned storage (:class:`PartitionTables`), so the process holds only
the partitions of the current bucket — at most two of each partitioned type — plus the
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

Partition tables live in a :class:`~graphrec.run.storage.PartitionCheckpoints`
(``RUN_DIR/partitions``): every bucket's update is one versioned commit, so a killed
job resumes (``--resume``) after its last committed bucket. Limits of this stage
(issue 14 continues): one process (``--no-ray``; several Ray workers on disjoint
buckets, PBG's lock server as an actor, come next), the ``adagrad`` optimiser, no
per-edge weights, no early stopping. The finished run is assembled into the usual ``model.pt`` / ``run.json``, so
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
from graphrec.run.storage import PartitionCheckpoints, RunStorage
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
    """Embedding tables and Adagrad accumulators of every ``(type, partition)`` in a
    :class:`~graphrec.run.storage.PartitionCheckpoints` (``RUN_DIR/partitions`` or any
    ``pyarrow.fs`` URI): names ``<type>/<p>/emb`` and ``<type>/<p>/sum`` (float32
    ``[rows, dim]``), plus ``relations/emb``, ``relations/sum``. Every bucket's update is
    one commit (its partitions and the relation vectors together, with the resume
    position in ``meta``), so a crash never leaves a mixed state and a resumed job
    continues after the last committed bucket."""

    def __init__(self, root: str | Path, part: NodePartitioning, dim: int, init_scale: float, seed: int):
        self.part, self.dim = part, dim
        self.ckpt = PartitionCheckpoints(RunStorage(root), prefix="", keep=2)
        self._written: set[str] = set()  # names this process committed: re-reading them skips the hash
        self.ckpt.discard_uncommitted()  # writes of a killed job that never got committed
        if self.ckpt.head().version == 0:
            self._initialise(init_scale, seed)

    def name(self, t: str, p: int, what: str) -> str:
        # names by type index: checkpoint names are [A-Za-z0-9_-] paths, type names come from data
        return f"type{self.part.node_types.index(t)}/{p}/{what}"

    def _initialise(self, init_scale: float, seed: int) -> None:
        with self.ckpt.transaction(meta={"epoch": 0, "done": []}) as tx:
            for t in self.part.node_types:
                for p, size in enumerate(self.part.sizes(t)):
                    rng = np.random.default_rng([seed, zlib.crc32(t.encode()), p])
                    emb = rng.normal(0.0, init_scale, (int(size), self.dim)).astype(np.float32)
                    tx.write(self.name(t, p, "emb"), emb)
                    tx.write(self.name(t, p, "sum"), np.zeros_like(emb))

    def load(self, t: str, p: int) -> tuple[np.ndarray, np.ndarray]:
        """A partition's table and accumulator; files from another process (a resumed
        job's) are checked against their SHA-256, this process's own writes are not
        hashed again (every bucket re-reads the partitions the previous ones wrote)."""
        emb, acc = self.name(t, p, "emb"), self.name(t, p, "sum")
        return (self.ckpt.read(emb, verify=emb not in self._written),
                self.ckpt.read(acc, verify=acc not in self._written))

    @property
    def meta(self) -> dict:
        return self.ckpt.head().meta

    def commit(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        entries = [self.ckpt.write(name, arr) for name, arr in arrays.items()]
        self.ckpt.commit(entries, meta)
        self._written.update(arrays)


def _local_name(t: str, p: int) -> str:
    return f"{t}#{p}"


def train_partitioned(cfg: TwHINConfig, store: GraphStore, selected, run_dir: Path, progress: bool = False
                      ) -> tuple[TwHIN, dict]:
    """Train ``cfg`` with ``cfg.partitions`` partitions; returns the assembled model (all
    partitions in one :class:`TwHIN`) and the summary. Continues after the last
    committed bucket when ``RUN_DIR/partitions`` holds an unfinished run's state."""
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
    rel_state = rel_opt.state[rel_emb.weight]
    meta = tables.meta
    if "relations_step" in meta:  # resuming: the committed relation vectors and their Adagrad state
        with torch.no_grad():
            rel_emb.weight.copy_(torch.from_numpy(np.array(tables.ckpt.read("relations/emb"))))
        rel_state["sum"].copy_(torch.from_numpy(np.array(tables.ckpt.read("relations/sum"))))
        rel_state["step"].fill_(float(meta["relations_step"]))
    start_epoch = int(meta.get("epoch", 0))
    history = list(meta.get("history", []))
    starts = list(meta.get("starts", [])) + [start_epoch]
    resumed_buckets = len(meta.get("done", []))
    if resumed_buckets or start_epoch:
        log.info("resuming partitioned training at epoch %d after %d committed buckets", start_epoch, resumed_buckets)
    gen = torch.Generator()
    t_start = time.perf_counter()
    n_neg, n_all = cfg.negatives.uniform, cfg.negatives.exhaustive_max_nodes
    from graphrec.train.twhin import TwHINLoss, train_step  # the same loss and step as unpartitioned training

    for epoch in range(start_epoch, cfg.epochs):
        resumed = epoch == start_epoch and "scheduler" in meta
        if resumed:
            scheduler = BucketScheduler.from_state(meta["scheduler"])
            stats, prev = dict(meta["stats"]), (tuple(meta["previous"]) if meta.get("previous") else None)
        else:
            scheduler = BucketScheduler(grid, grid, seed=cfg.seed, same_entities=True)
            scheduler.new_epoch(epoch)
            stats, prev = {"loss_sum": 0.0, "steps": 0, "positives": 0, "seconds": 0.0}, None
        bar = tqdm(total=grid * grid, initial=len(meta.get("done", [])) if resumed else 0,
                   desc=f"epoch {epoch} buckets", disable=not progress, leave=False)
        done = list(meta.get("done", [])) if resumed else []
        while True:
            t_bucket = time.perf_counter()
            bucket = scheduler.acquire(0, prev)
            if bucket is None:
                break
            if bucket is WAIT:  # one worker never waits for itself
                raise RuntimeError("bucket scheduler asked the only worker to wait")
            i, j = bucket
            gen.manual_seed(cfg.seed * 1000003 + epoch * 7919 + i * grid + j)
            ls, st, pos, arrays = _train_bucket(cfg, tables, part, rel_buckets, weights, edge_types, rel_emb, rel_opt,
                                                i, j, epoch, gen, n_neg, n_all, TwHINLoss, train_step)
            scheduler.release(0, bucket, done=True)
            prev = bucket
            done.append([i, j])
            stats = {"loss_sum": stats["loss_sum"] + ls, "steps": stats["steps"] + st,
                     "positives": stats["positives"] + pos, "seconds": stats["seconds"] + time.perf_counter() - t_bucket}
            epoch_done = scheduler.is_epoch_done()
            if epoch_done:
                history.append({"epoch": epoch, "loss": stats["loss_sum"] / max(stats["steps"], 1),
                                "steps": stats["steps"], "positives_per_s": stats["positives"] / max(stats["seconds"], 1e-9),
                                "seconds": stats["seconds"], "workers": 1, "buckets": grid * grid})
            arrays["relations/emb"] = rel_emb.weight.detach().numpy()
            arrays["relations/sum"] = rel_state["sum"].numpy()
            # one commit: the bucket's partitions, the relation vectors and where to resume
            tables.commit(arrays, {"epoch": epoch + 1 if epoch_done else epoch,
                                   "done": [] if epoch_done else done, "history": history, "starts": starts,
                                   "relations_step": float(rel_state["step"]),
                                   **({} if epoch_done else {"scheduler": scheduler.state(), "stats": stats,
                                                             "previous": list(bucket)})})
            bar.update()
        bar.close()
        meta = {}
        h = history[-1]
        log.info("epoch %d: loss %.4f, %.0f positives/s over %d buckets", epoch, h["loss"], h["positives_per_s"],
                 grid * grid)
    model = assemble(cfg, store, part, tables, edge_types, rel_emb)
    summary = {"epochs_run": len(history), "stopped_early": False, "monitor": None, "best_epoch": None,
               "seconds": time.perf_counter() - t_start, "starts": starts, "world_size": 1, "history": history,
               "partitions": cfg.partitions, "buckets_dir": str(buckets.dir)}
    return model, summary


def _train_bucket(cfg, tables, part, rel_buckets, weights, edge_types, rel_emb, rel_opt, i, j, epoch, gen,
                  n_neg, n_all, loss_cls, train_step) -> tuple[float, int, int, dict]:
    """Train every relation's edges of bucket ``(i, j)``; returns ``(loss sum, steps,
    positives, {checkpoint name: array})`` of the partitions it updated."""
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
        return 0.0, 0, 0, {}
    held = {lt: tables.load(t, p) for lt, (t, p) in local_types.items()}
    torch.manual_seed(cfg.seed)
    model = TwHIN({lt: held[lt][0].shape[0] for lt in local_types}, local_ets, dim=int(cfg.dim), score=cfg.score,
                  p_norm=cfg.p_norm, init_scale=cfg.init_scale, sparse=True, max_norm=cfg.max_norm)
    model.rel_emb = rel_emb  # shared: the local edge types keep the global relation order
    with torch.no_grad():
        for lt, (emb, _) in held.items():
            model.node_embeddings(lt).copy_(torch.from_numpy(np.array(emb)))
    node_opt = torch.optim.Adagrad(model.node_emb.parameters(), lr=cfg.lr)
    acc = node_opt.state[model.node_emb.weight]["sum"]
    for lt, (_, ssum) in held.items():
        lo = model.offsets[lt]
        acc[lo : lo + held[lt][1].shape[0]].copy_(torch.from_numpy(np.array(ssum)))
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
    arrays = {}
    with torch.no_grad():  # the partitions (and their optimizer state) to write back
        for lt, (emb, _) in held.items():
            t, p = local_types[lt]
            lo, n = model.offsets[lt], emb.shape[0]
            arrays[tables.name(t, p, "emb")] = model.node_emb.weight[lo : lo + n].numpy()
            arrays[tables.name(t, p, "sum")] = acc[lo : lo + n].numpy()
    return loss_sum, len(batches), int(sum(h.shape[0] for _, h, _ in batches)), arrays


def assemble(cfg: TwHINConfig, store: GraphStore, part: NodePartitioning, tables: PartitionTables, edge_types,
             rel_emb) -> TwHIN:
    """One :class:`TwHIN` holding every partition at its global rows (for ``model.pt``)."""
    model = twhin_model(cfg, {t: store.num_nodes(t) for t in store.node_types}, edge_types, sparse=True)
    with torch.no_grad():
        for t in part.node_types:
            table = model.node_embeddings(t)
            for p in range(part.parts(t)):
                emb, _ = tables.load(t, p)
                table[torch.from_numpy(part.members(t, p))] = torch.from_numpy(np.array(emb))
        model.rel_emb.weight.copy_(rel_emb.weight)
    return model
