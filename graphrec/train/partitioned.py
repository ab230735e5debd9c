"""Partitioned TwHIN training, PyTorch-BigGraph style: buckets of partitions on one
process or on many Ray workers, tables in storage every worker can reach.

Node types with at least ``partition_min_nodes`` nodes are split into ``P`` partitions
(:mod:`graphrec.graph.partition`); edges are bucketed by ``(source partition, destination
partition)`` once, beside the store. Each partition's embedding table and Adagrad state
live in versioned storage (:class:`~graphrec.run.tables.PartitionTables`, ``RUN_DIR/
partitions``), so a worker holds only the partitions of its current bucket — at most two
of each partitioned type — plus the shared parameters.

**Roles** (PBG's lock server, trainers and parameter server):

* :class:`BucketCoordinator` — one per job (a Ray actor taking no CPU, or an object in
  this process): the :class:`~graphrec.train.buckets.BucketScheduler` that hands out
  buckets whose partitions no other worker holds; the shared parameters
  (:class:`SharedParameters`: relation vectors and the node types too small to
  partition); and the commits. It is the only process that commits, so the run state is
  owned by one place.
* :func:`bucket_worker_loop` — a trainer (``worker`` = its rank): acquire a bucket, read
  its partitions from storage straight into the local table, pull the shared
  parameters, train every relation's edges of the bucket, write the partitions back
  (new file versions, not yet visible), and report: the coordinator merges the shared
  update and commits the bucket's files with the resume position in one commit.
* :func:`train_partitioned` — the driver: initialises the tables, runs the epochs (one
  task per worker and epoch on Ray, re-launched when a worker dies: the dead worker's
  bucket goes back to the pool and another worker trains it), validates and
  early-stops, and finishes with the best epoch's tables as the head.

**Shared parameters**: a parameter server with asynchronous deltas (as PBG). A worker
pulls ``(version, values)`` before a bucket and pushes ``(new values, new − pulled)``
after it: when nobody pushed in between the server takes the new values (so one worker
is exactly sequential training), otherwise it adds the delta. Periodic all-reduce was
the alternative; it needs every worker at the same step, while buckets differ in size
and a worker may wait on the lock server, so workers would idle at each reduction
(benchmarks/RESULTS.md, "Partitioned TwHIN", measures the parameter server's cost).

**Buckets** (``partition_buckets``). ``blocks`` (default): PyTorch-BigGraph's buckets
``(i, j)``, each relation ``S -r-> D`` training its edges from partition ``i`` of ``S``
(``0`` when ``S`` is whole) to partition ``j`` of ``D`` once per epoch, a corrupted side's
candidates from that side's own partition. ``pairs``: a bucket is a pair of partitions
``{i, j}``, ``i < j``, holding both of every partitioned type; it trains the edges
between them once (blocks ``(i, j)`` and ``(j, i)``) and the edges within each (``(i,
i)``, ``(j, j)``) in every pair, and a side's candidates are drawn from both held
partitions of its type. Every positive is then contrasted with two of the P partitions,
each partition a candidate of a head's positives equally often — were the
within-partition blocks trained once, the head's own partition would be a candidate of
all its positives and the model would learn to score it down
(:meth:`BucketTrainer._blocks`). Pairs cost ``2 (P - 1) / P`` times the positives per
epoch and hold two partitions of a type that blocks would hold one of (a type only ever
on one side); they pay off under 1-N scoring of small types, where blocks contrast a
positive with ``1/P`` of its type (Kinships P=4, test MRR: blocks 0.82, pairs 0.84, P=1
0.88; benchmarks/RESULTS.md). Either way a worker needs no partition another worker
holds; candidates are drawn uniformly (every row when the held rows number at most
``negatives.exhaustive_max_nodes``), plus in-batch ones — the uniform or exhaustive ones
weighted by ``(N - 1) / (n - 1)`` where 1-N scoring over a type's ``N`` nodes becomes one
over the ``n`` held rows, so that a bucket's softmax estimates the whole type's
(``partition_logit_correction``, :meth:`BucketTrainer.logit_offsets`) — ``round(w_r · E)`` positives of
each block in batches of one relation or, with ``batches: types``, of every
relation between the same two node types (PBG's batches; each positive scored with its
own relation vector). Each bucket's negatives come from a generator seeded by ``(seed,
epoch, i, j)``, so with one worker a run is deterministic and a resumed one bitwise equal
to an uninterrupted one; with several, the order in which shared updates merge varies,
as in PBG.

**Regrouped partitions** (``partition_regroup: k``): the tables and edge buckets are those
of ``P·k`` storage partitions, and each epoch deals them into the ``P`` training
partitions anew (:meth:`~graphrec.graph.partition.NodePartitioning.groups`), so a bucket
holds ``k`` storage partitions of each side (the same rows, memory and I/O as one fixed
partition). A bucket's softmax over
partition ``g`` cannot see a score offset shared by every row of ``g`` (adding ``δ`` to
all of ``g``'s vectors moves every logit of a query by the same ``q·δ``), so with fixed
partitions the offsets between partitions are left to drift; dealt afresh, every two
storage partitions share a softmax in some epochs. ``k = 1`` is PyTorch-BigGraph's fixed
partitions.

**Resume**: the committed meta holds the epoch, the scheduler's state and the history;
``--resume`` continues after the last committed bucket. Writes of a bucket that was not
committed (a killed worker) are discarded. **Early stopping** validates the assembled
model on the split's validation triples (so it is for graphs whose tables fit in the
driver's memory), pins the best epoch's commit and makes it the head at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.graph.partition import EdgeBuckets, NodePartitioning, PartitionSpec
from graphrec.graph.store import GraphStore
from graphrec.models.twhin import TwHIN
from graphrec.run.config import TwHINConfig, parse_config
from graphrec.run.directory import twhin_model
from graphrec.run.storage import PINNED_KEY
from graphrec.run.tables import PARTITION_TABLES_DIR, RELATIONS_EMB, RELATIONS_SUM, PartitionTables
from graphrec.sampling import typed_negatives
from graphrec.train.buckets import WAIT, BucketScheduler
from graphrec.train.engine import inject_fault
from graphrec.train.twhin import (TwHINLoss, build_validation, evaluation_period, make_optimizers,
                                  resolve_validation_source, train_step)

log = logging.getLogger(__name__)

BUCKET_LOG = "buckets.jsonl"
POLL_S = 0.02  # a waiting worker asks the lock server again after this long


def check_partitioned(cfg: TwHINConfig, store: GraphStore, use_ray: bool) -> None:
    """Refuse what partitioned training does not do (one clear line each)."""
    if cfg.optimizer not in ("adagrad", "row_adagrad"):
        raise GraphrecError(f"partitions: {cfg.partitions} needs optimizer: adagrad or row_adagrad "
                            f"(got {cfg.optimizer})")
    if cfg.edge_weights:
        raise GraphrecError(f"partitions: {cfg.partitions} does not support edge_weights (buckets are drawn "
                            "uniformly)")
    if not use_ray and cfg.ray.workers > 1:
        raise GraphrecError(f"--workers {cfg.ray.workers} trains buckets on Ray workers: drop --no-ray "
                            "(or use --workers 1)")
    source = cfg.validation.source
    if source == "holdout" or (source == "auto" and cfg.holdout_fraction > 0 and
                                resolve_validation_source(cfg, store)[0] == "holdout"):
        raise GraphrecError(f"partitions: {cfg.partitions} validates on a split's valid triples only: train on "
                            "SPLIT/train (validation.source split or auto) or set validation.source: none")
    resolve_validation_source(cfg, store)


def partition_spec(cfg: TwHINConfig) -> PartitionSpec:
    """The partitioning of ``cfg``'s tables and edge buckets."""
    return PartitionSpec(cfg.partitions, cfg.partition_min_nodes, cfg.seed, cfg.partition_regroup)


def bucket_grid(part: NodePartitioning, edge_types) -> int:
    """The side of the bucket grid: the training partitions P of the partitioned types
    among ``edge_types``' endpoints (1 when none is partitioned)."""
    return max([part.groups(t, 0).shape[0] for s, _, d in edge_types for t in (s, d)] + [1])


# ---------------------------------------------------------------- shared parameters


class SharedParameters:
    """The parameter server's state: ``{name: float32 array}`` (relation vectors, the
    tables of unpartitioned types, their accumulators) and a version bumped by every
    push. See the module docstring for the merge rule."""

    def __init__(self, arrays: dict[str, np.ndarray], relation_steps: float = 0.0):
        self.arrays = {k: np.array(v, np.float32) for k, v in arrays.items()}
        self.version = 0
        self.relation_steps = float(relation_steps)
        self.merged = 0  # pushes that found another push since their pull (summed as deltas)

    def pull(self) -> tuple[int, dict[str, np.ndarray], float]:
        return self.version, {k: v.copy() for k, v in self.arrays.items()}, self.relation_steps

    def push(self, base_version: int, new: dict[str, np.ndarray], delta: dict[str, np.ndarray],
             relation_steps: float) -> None:
        if base_version == self.version:
            for k, v in new.items():
                self.arrays[k] = np.array(v, np.float32)
        else:
            self.merged += 1
            for k, d in delta.items():
                self.arrays[k] += d
        self.relation_steps += relation_steps
        self.version += 1


# ---------------------------------------------------------------- the coordinator


def _shared_names(tables: PartitionTables, part: NodePartitioning, edge_types) -> list[str]:
    types = sorted({t for s, _, d in edge_types for t in (s, d) if not part.is_partitioned(t)})
    return [RELATIONS_EMB, RELATIONS_SUM] + [tables.name(t, 0, w) for t in types for w in ("emb", "sum")]


class BucketCoordinator:
    """Lock server, parameter server and committer of one partitioned job (module
    docstring). Methods take and return small plain values (and the shared arrays), so
    the same object serves in-process and as a Ray actor."""

    def __init__(self, tables_root: str, spec: dict, num_nodes: dict[str, int], dim: int, edge_types: list,
                 grid: int, seed: int, keep: int = 2, pairs: bool = False):
        self.part = NodePartitioning(num_nodes, PartitionSpec(**spec))
        self.tables = PartitionTables(tables_root, self.part, dim, keep=keep)
        self.edge_types = [tuple(e) for e in edge_types]
        self.grid, self.seed, self.pairs = grid, seed, bool(pairs)
        meta = self.tables.meta
        self.meta = dict(meta)
        self.names = _shared_names(self.tables, self.part, self.edge_types)
        self.shared = SharedParameters({n: self.tables.read(n) for n in self.names}, meta.get("relations_step", 0.0))
        self.scheduler: BucketScheduler | None = None
        self.previous: dict[int, tuple[int, int]] = {}
        self.stats = dict(meta.get("stats") or _zero_stats())
        self.log: list[dict] = []
        self._acquired_at: dict[int, float] = {}
        if "scheduler" in meta:  # resuming inside an epoch: held buckets go back to the pool
            self.scheduler = BucketScheduler.from_state(meta["scheduler"])
            self.previous = {int(w): tuple(b) for w, b in (meta.get("previous") or {}).items()}

    # -- epochs

    def begin_epoch(self, epoch: int) -> int:
        """Start ``epoch`` (or continue it after a resume); returns the buckets committed so far."""
        if self.scheduler is not None and self.scheduler.epoch == epoch:
            return len(self.scheduler.done())
        self.scheduler = BucketScheduler(self.grid, self.grid, seed=self.seed, same_entities=True,
                                         pairs=self.pairs and self.grid > 1)
        self.scheduler.new_epoch(epoch)
        self.previous, self.stats = {}, _zero_stats()
        return 0

    def epoch_done(self) -> bool:
        return self.scheduler is not None and self.scheduler.is_epoch_done()

    def progress(self) -> tuple[int, int]:
        return len(self.scheduler.done()), self.scheduler.num_buckets

    def epoch_stats(self) -> dict:
        return dict(self.stats)

    # -- the lock server

    def acquire(self, worker: int):
        """A bucket ``(i, j)`` for ``worker``, :data:`WAIT`, or ``None`` (epoch done)."""
        got = self.scheduler.acquire(worker, self.previous.get(worker))
        if isinstance(got, tuple):
            self._acquired_at[worker] = time.time()
        return got

    def fail(self, worker: int):
        """``worker`` died: its bucket (if any) goes back to the pool; returns it."""
        return self.scheduler.forget_worker(worker)

    # -- the parameter server

    def pull(self):
        return self.shared.pull()

    # -- commits

    def finish(self, worker: int, bucket, entries: list, shared_version: int, new: dict, delta: dict,
               relation_steps: float, stats: dict) -> bool:
        """``worker`` trained ``bucket``: merge its shared update and commit its
        partitions' new files with the shared state and the resume position (one
        commit). ``False`` (nothing done) when ``worker`` no longer holds ``bucket``
        (it was declared dead and the bucket handed to another)."""
        bucket = tuple(bucket)
        if self.scheduler.held().get(worker) != bucket:
            log.warning("worker %d reported bucket %s it no longer holds; ignored", worker, bucket)
            return False
        self.shared.push(shared_version, new, delta, relation_steps)
        self.scheduler.release(worker, bucket, done=True)
        self.previous[worker] = bucket
        for k in ("loss_sum", "steps", "positives"):
            self.stats[k] += stats[k]
        shared_entries = self.tables.write(self.shared.arrays)
        epoch_done = self.scheduler.is_epoch_done()
        meta = {**self.meta, "relations_step": self.shared.relation_steps, "stats": self.stats,
                "epoch": self.scheduler.epoch}
        if epoch_done:
            meta["epoch_trained"] = self.scheduler.epoch
            for k in ("scheduler", "previous"):
                meta.pop(k, None)
        else:
            meta["scheduler"] = self.scheduler.state()
            meta["previous"] = {str(w): list(b) for w, b in self.previous.items()}
        self.tables.commit(list(entries) + shared_entries, meta)
        self.meta = meta
        self.log.append({"epoch": self.scheduler.epoch, "worker": worker, "bucket": list(bucket),
                         "start": self._acquired_at.pop(worker, None), "end": time.time(),
                         "node": stats.get("node"), "positives": stats["positives"],
                         **{k: round(v, 4) for k, v in (stats.get("timings") or {}).items() if v is not None}})
        return True

    def end_epoch(self, updates: dict, pin: bool = False) -> int:
        """Commit the epoch's record (``updates`` to the meta: next epoch, history, best);
        ``pin``: keep this commit readable, as ``best["version"]`` (the best epoch so far);
        returns its version."""
        head = self.tables.head.version + 1
        meta = {k: v for k, v in self.meta.items() if k not in ("scheduler", "previous", "stats")}
        meta.update(updates)
        if pin:
            meta["best"] = {**meta["best"], "version": head}
            meta[PINNED_KEY] = [head]
        self.tables.commit([], meta)
        self.meta = meta
        self.scheduler = None
        return head

    def rollback(self, version: int) -> int:
        """Make committed ``version`` (the best epoch's) the head again."""
        return self.tables.ckpt.rollback(version, {**self.meta, PINNED_KEY: []}).version

    def bucket_log(self) -> list[dict]:
        return list(self.log)

    def merged_pushes(self) -> int:
        return self.shared.merged


def _zero_stats() -> dict:
    return {"loss_sum": 0.0, "steps": 0, "positives": 0}


class _InProcess:
    """Calls a coordinator living in this process."""

    def __init__(self, coordinator: BucketCoordinator):
        self.c = coordinator

    def __call__(self, method: str, *args):
        return getattr(self.c, method)(*args)


class _OnRay:
    """Calls a coordinator actor."""

    def __init__(self, handle):
        self.h = handle

    def __call__(self, method: str, *args):
        import ray

        return ray.get(getattr(self.h, method).remote(*args))


# ---------------------------------------------------------------- a trainer worker


class BucketTrainer:
    """What one worker needs to train buckets: the graph's edge buckets, the tables'
    storage and the config (``job``: see :func:`train_partitioned`)."""

    def __init__(self, job: dict):
        self.cfg: TwHINConfig = parse_config(job["config"], TwHINConfig, origin="partitioned job")
        cfg = self.cfg
        store = GraphStore(job["graph"])
        buckets = EdgeBuckets.open_or_build(store, partition_spec(cfg))
        self.part = buckets.partitioning
        self.edge_types = [tuple(e) for e in job["edge_types"]]
        self.weights = [float(w) for w in job["weights"]]
        self.rel_buckets = [buckets.relation(et) for et in self.edge_types]
        self.tables = PartitionTables(job["tables"], self.part, int(cfg.dim),
                                      verify_paths=set(job.get("verify_paths") or []))
        self.shared_types = sorted({t for s, _, d in self.edge_types for t in (s, d)
                                    if not self.part.is_partitioned(t)})
        self.grid = bucket_grid(self.part, self.edge_types)
        self.pairs = cfg.partition_buckets == "pairs" and self.grid > 1
        self.head = None  # the commit record the current bucket was read from
        self.frozen: dict[str, np.ndarray] | None = None  # freeze_existing: carried nodes, per type
        if cfg.freeze_existing:
            from graphrec.run.directory import open_run
            from graphrec.train.warm_start import matched_rows

            previous = open_run(cfg.init_from, expect="twhin").store
            self.frozen = {t: matched_rows(store, previous, t) >= 0 for t in self.part.node_types}
        self._groups: dict[tuple[str, int], np.ndarray] = {}  # a trainer lives for one epoch's task

    def group(self, t: str, g: int, epoch: int) -> tuple[int, ...]:
        """The storage partitions of training partition ``g`` of type ``t`` in ``epoch``
        (:meth:`NodePartitioning.groups`; ``(0,)`` for a whole type)."""
        if (t, epoch) not in self._groups:
            self._groups[(t, epoch)] = self.part.groups(t, epoch)
        return tuple(int(p) for p in self._groups[(t, epoch)][g])

    def local_types(self, i: int, j: int, epoch: int = 0) -> dict[str, tuple[str, tuple[int, ...]]]:
        """The local node types of bucket ``(i, j)`` in ``epoch``: ``name -> (type,
        storage partitions)``, the type's rows of those partitions, in that order, making
        one local table. Training partition ``g`` of a type is the storage partitions
        :meth:`group` deals it in ``epoch`` (storage partition ``g`` with
        ``partition_regroup: 1``).

        * ``pairs``: ``"type#i+j"`` -> ``(type, (i, j))`` for every partitioned type, so
          both held partitions are the candidates of either side.
        * ``blocks``: ``"type#p"`` -> ``(type, (p,))``, partition ``i`` of every source type
          and ``j`` of every destination type. A type that is the source of one relation
          and the destination of another has two local types (``i != j``) and its
          negatives come from the side's own partition, as in PyTorch-BigGraph: were a
          side's candidates drawn from both held partitions, every positive of the bucket
          would have its tail in partition ``j`` while bucket ``(j, j)`` offers only ``j``,
          and the model would learn the partition, not the relation (Kinships P=2: test
          MRR 0.51 instead of 0.85). Pairs avoid that by training ``(j, j)`` in every pair.

        A type that is not partitioned is ``"type#0"`` -> ``(type, (0,))`` either way."""
        out = {}
        for s, _, d in self.edge_types:
            for t, p in ((s, i), (d, j)):
                if not self.part.is_partitioned(t):
                    out[f"{t}#0"] = (t, (0,))
                elif self.pairs:
                    out[f"{t}#{i}+{j}"] = (t, self.group(t, i, epoch) + self.group(t, j, epoch))
                else:
                    out[f"{t}#{p}"] = (t, self.group(t, p, epoch))
        return out

    def _local_type(self, t: str, p: int, local: dict) -> tuple[str, int]:
        """The local type holding partition ``p`` of ``t`` in this bucket and the row
        offset of that partition in it."""
        for lt, (tt, parts) in local.items():
            if tt == t and p in parts:
                k = parts.index(p)
                return lt, int(sum(int(self.part.sizes(t)[q]) for q in parts[:k]))
        raise KeyError((t, p))

    def train(self, bucket, epoch: int, shared: dict[str, np.ndarray], relation_steps: float):
        """Train bucket ``(i, j)``; returns ``(partition arrays {name: array}, new shared
        arrays, loss sum, steps, positives)``."""
        cfg = self.cfg
        t_read = time.perf_counter()
        i, j = bucket
        local = self.local_types(i, j, epoch)
        rows = {lt: int(sum(int(self.part.sizes(t)[p]) for p in parts)) for lt, (t, parts) in local.items()}
        batches, local_ets = self._batches(i, j, epoch, local)
        with torch.device("meta"):  # no random initialisation: every row is read in below
            model = TwHIN(rows, local_ets, dim=int(cfg.dim), score=cfg.score, p_norm=cfg.p_norm,
                          init_scale=cfg.init_scale, sparse=True, max_norm=cfg.max_norm)
        model.to_empty(device="cpu")
        node_opt, rel_opt = make_optimizers(model, cfg)  # state["sum"] of either Adagrad is what storage holds
        weight = model.node_emb.weight.detach()
        acc = node_opt.state[model.node_emb.weight]["sum"]
        rel_state = rel_opt.state[model.rel_emb.weight]
        # one read of the commit record per bucket: the bucket's partitions are locked to this
        # worker, so their entries cannot change before it writes them back (self.head)
        head = self.head = self.tables.head
        with torch.no_grad():
            for lt, lo, t, p, n in self._slices(local, model.offsets):
                if t in self.shared_types:  # numpy assignment: arrays from Ray are read-only
                    weight[lo : lo + n].numpy()[:] = shared[self.tables.name(t, 0, "emb")]
                    acc[lo : lo + n].numpy()[:] = shared[self.tables.name(t, 0, "sum")]
                else:  # straight from storage into the table: no second copy
                    self.tables.read_into(self.tables.name(t, p, "emb"), weight[lo : lo + n].numpy(), head)
                    self.tables.read_into(self.tables.name(t, p, "sum"), acc[lo : lo + n].numpy(), head)
            model.rel_emb.weight.detach().numpy()[:] = shared[RELATIONS_EMB]
            rel_state["sum"].numpy()[:] = shared[RELATIONS_SUM]
            rel_state["step"].fill_(relation_steps)
        if self.frozen is not None:  # the earlier run's nodes keep their vectors (freeze_existing)
            from graphrec.train.warm_start import freeze_rows

            frozen = torch.zeros(weight.shape[0], dtype=torch.bool)
            for lt, lo, t, p, n in self._slices(local, model.offsets):
                frozen[lo : lo + n] = torch.from_numpy(self.frozen[t][self.part.members(t, p)])
            freeze_rows(model.node_emb.weight, frozen)
        self.timings = {"read_s": time.perf_counter() - t_read}
        t_train = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 1000003 + epoch * 7919 + i * self.part.spec.num_partitions + j)
        n_neg, n_all = cfg.negatives.uniform, cfg.negatives.exhaustive_max_nodes
        loss_module = TwHINLoss(model, cfg, self.logit_offsets(local, rows))
        loss_sum = 0.0
        for r, heads, tails, rels in batches:
            ls, _, ld = local_ets[r]
            neg_t = typed_negatives(model.num_nodes[ld], n_neg, gen, n_all)
            neg_h = typed_negatives(model.num_nodes[ls], n_neg, gen, n_all)
            loss_sum += train_step(loss_module, [node_opt, rel_opt], r, torch.from_numpy(heads),
                                   torch.from_numpy(tails), neg_t, neg_h,
                                   None if rels is None else torch.from_numpy(rels))
        arrays = {}
        new = {RELATIONS_EMB: model.rel_emb.weight.detach().numpy().copy(), RELATIONS_SUM: rel_state["sum"].numpy().copy()}
        for lt, lo, t, p, n in self._slices(local, model.offsets):
            if t in self.shared_types:
                new[self.tables.name(t, 0, "emb")] = weight[lo : lo + n].numpy().copy()
                new[self.tables.name(t, 0, "sum")] = acc[lo : lo + n].numpy().copy()
            else:  # row slices of a C-contiguous table: contiguous views, written without a copy
                arrays[self.tables.name(t, p, "emb")] = weight[lo : lo + n].numpy()
                arrays[self.tables.name(t, p, "sum")] = acc[lo : lo + n].numpy()
        positives = int(sum(b[1].shape[0] for b in batches))
        self.timings["train_s"] = time.perf_counter() - t_train
        return arrays, new, loss_sum, len(batches), positives

    def logit_offsets(self, local: dict, rows: dict[str, int]) -> dict[str, float]:
        """``{local type: log(k_1 / k_P)}`` (``partition_logit_correction``): ``k_1`` the
        candidates a corrupted side of that type is scored against at P = 1 (its ``N - 1``
        other nodes under 1-N scoring, else ``negatives.uniform``), ``k_P`` in this bucket
        (the held rows' ``n - 1``, else ``negatives.uniform``). Under 1-N scoring at P = 1
        a positive's softmax sums over ``N - 1`` negatives, in a bucket over the ``n - 1``
        of its held partitions, ``(n - 1) / (N - 1)`` of them in expectation (partitions
        are a seeded uniform assignment): weighing each by ``(N - 1) / (n - 1)`` makes the
        bucket's normaliser an unbiased estimate of P = 1's. Types whose candidates are
        sampled at both P (``k_1 = k_P``) get no entry."""
        if not self.cfg.partition_logit_correction:
            return {}
        neg = self.cfg.negatives

        def candidates(n: int) -> int:
            return n - 1 if 0 < n <= neg.exhaustive_max_nodes else neg.uniform

        out = {}
        for lt, (t, _) in local.items():
            k1, kp = candidates(int(self.part.sizes(t).sum())), candidates(rows[lt])
            if k1 > 0 and kp > 0 and k1 != kp:
                out[lt] = float(np.log(k1 / kp))
        return out

    def _slices(self, local: dict, offsets: dict):
        """``(local type, first row in the model's table, type, partition, rows)`` for every
        partition the bucket holds."""
        for lt, (t, parts) in local.items():
            lo = int(offsets[lt])
            for p in parts:
                n = int(self.part.sizes(t)[p])
                yield lt, lo, t, p, n
                lo += n

    def _blocks(self, i: int, j: int, r: int, epoch: int = 0) -> list[tuple[int, int, float]]:
        """``(source storage partition, destination storage partition, share)`` of relation
        ``r``'s edge blocks that bucket ``(i, j)`` trains in ``epoch``, ``share`` the
        fraction of the block's ``round(w · E)`` positives it takes: the blocks below
        between training partitions, each expanded into the blocks between their storage
        partitions (:meth:`group`).

        ``blocks``: the block ``(i, j)`` (partition 0 for a whole side; a whole side's
        edges belong to the buckets whose index on that side is 0). ``pairs`` (``i < j``):
        the blocks between the two partitions once, ``(i, j)`` and ``(j, i)``, and the
        blocks within each, ``(i, i)`` and ``(j, j)``, in every pair, so that a pair sees
        the positives that lie in either of its partitions equally: a positive is then
        contrasted with a uniform two of the ``P`` partitions and no partition is favoured
        (with blocks within partitions trained once, the head's own partition would be a
        candidate of all its positives and the others of 1/(P-1) of its within-partition
        ones; Kinships P=4: test MRR 0.81 against 0.85). An edge with one partitioned end
        in ``a`` lies in the ``P - 1`` pairs of ``a`` and each takes ``2/P`` of it; an
        edge with none is split over the ``P (P - 1) / 2`` pairs: every relation keeps
        ``2 (P - 1) / P`` times its positives per epoch, as its both-partitioned peers."""
        s, _, d = self.edge_types[r]
        ps, pd = self.part.is_partitioned(s), self.part.is_partitioned(d)
        if not self.pairs:
            pi, pj = (i if ps else 0), (j if pd else 0)
            # edges of an unpartitioned side sit in its partition 0: bucket (i, j) owns them iff i (j) is 0
            blocks = [] if (pi != i and i != 0) or (pj != j and j != 0) else [(pi, pj, 1.0)]
        else:
            p = self.grid
            if ps and pd:
                blocks = [(i, j, 1.0), (j, i, 1.0), (i, i, 1.0), (j, j, 1.0)]
            elif ps:
                blocks = [(i, 0, 2.0 / p), (j, 0, 2.0 / p)]
            elif pd:
                blocks = [(0, i, 2.0 / p), (0, j, 2.0 / p)]
            else:
                blocks = [(0, 0, 4.0 / p**2)]
        return [(a, b, share) for gi, gj, share in blocks
                for a in self.group(s, gi, epoch) for b in self.group(d, gj, epoch)]

    def _batches(self, i: int, j: int, epoch: int, local: dict) -> tuple[list, list]:
        """This bucket's positives and its local relations ``[(src local type, name, dst
        local type)]``: ``round(share · w · E)`` of each block's edges (:meth:`_blocks`;
        rows of the bucket's local tables) in batches ``(relation, heads, tails,
        relations or None)`` — of one relation, or with ``batches: types`` of
        every relation between the same local types (``relations``: ``[B]`` each
        positive's) — shuffled (seeded by ``(seed, epoch, i, j)``)."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch, i, j])
        batches, local_ets = [], []
        groups: dict[tuple[str, str], list] = {}  # (src, dst local type) -> [(relation, src, dst)]
        for r, (s, name, d) in enumerate(self.edge_types):
            blocks = self._blocks(i, j, r, epoch)
            if not blocks:  # the relation still has a (never used) local relation: ids stay stable
                ls, _ = self._local_type(s, self.group(s, i if self.part.is_partitioned(s) else 0, epoch)[0], local)
                ld, _ = self._local_type(d, self.group(d, j if self.part.is_partitioned(d) else 0, epoch)[0], local)
                local_ets.append((ls, name, ld))
                continue
            srcs, dsts = [], []
            for pi, pj, share in blocks:
                ls, off_s = self._local_type(s, pi, local)
                ld, off_d = self._local_type(d, pj, local)
                src, dst, _ = self.rel_buckets[r].bucket(pi, pj)
                need = int(round(share * self.weights[r] * src.shape[0]))
                if need == 0:
                    continue
                reps = -(-need // src.shape[0])
                sel = np.concatenate([rng.permutation(src.shape[0]) for _ in range(reps)])[:need]
                srcs.append(np.asarray(src, np.int64)[sel] + off_s)
                dsts.append(np.asarray(dst, np.int64)[sel] + off_d)
            local_ets.append((ls, name, ld))  # one local relation: pairs hold one local type per type
            if srcs:
                key = (ls, ld) if cfg.batches == "types" else (r,)
                groups.setdefault(key, []).append((r, np.concatenate(srcs), np.concatenate(dsts)))
        for members in groups.values():
            src = np.concatenate([m[1] for m in members])
            dst = np.concatenate([m[2] for m in members])
            rel = np.concatenate([np.full(m[1].shape[0], m[0], np.int64) for m in members])
            mixed = len(members) > 1
            order = rng.permutation(src.shape[0])
            for lo in range(0, src.shape[0], cfg.batch_size):
                sel = order[lo : lo + cfg.batch_size]
                batches.append((members[0][0], src[sel], dst[sel], rel[sel] if mixed else None))
        rng.shuffle(batches)
        return batches, local_ets


def bucket_worker_loop(worker: int, coordinator, job: dict) -> dict:
    """One trainer: train buckets from ``coordinator`` (a :class:`BucketCoordinator`, or
    its Ray actor handle) until the epoch has none left; returns this worker's counts.
    Runs the same in this process and as a Ray task."""
    call = _OnRay(coordinator) if not isinstance(coordinator, BucketCoordinator) else _InProcess(coordinator)
    threads = job.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    trainer = BucketTrainer(job)
    node = _node_id()
    epoch = int(job["epoch"])
    trained = 0
    finish_s = None  # the previous commit's round trip (this one's is measured after it)
    while True:
        bucket = call("acquire", worker)
        if bucket is None:
            return {"worker": worker, "buckets": trained, "node": node}
        if bucket is WAIT:
            time.sleep(POLL_S)
            continue
        t0 = time.perf_counter()
        version, shared, steps = call("pull")
        pull_s = time.perf_counter() - t0
        arrays, new, loss_sum, n_steps, positives = trainer.train(bucket, epoch, shared, steps)
        t1 = time.perf_counter()
        entries = trainer.tables.write(arrays, base=trainer.head)
        del arrays
        write_s = time.perf_counter() - t1
        inject_fault(epoch, trained, worker)  # tests: die after writing, before the commit
        delta = {k: v - shared[k] for k, v in new.items()}
        t2 = time.perf_counter()
        call("finish", worker, bucket, entries, version, new, delta, float(n_steps),
             {"loss_sum": loss_sum, "steps": n_steps, "positives": positives, "node": node,
              "timings": {**trainer.timings, "write_s": write_s, "pull_s": pull_s,
                          "finish_s_previous": finish_s}})
        finish_s = time.perf_counter() - t2
        trained += 1


def _node_id() -> str | None:
    ray = sys.modules.get("ray")  # never imported just to learn that Ray is not running
    if ray is None:
        return None
    try:
        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - the node id is only for the bucket log
        return None
    return None


# ---------------------------------------------------------------- the driver


def _crash_errors():
    """Ray errors meaning a worker process or node died (retry the bucket elsewhere),
    as opposed to an exception raised by the training code (re-raised)."""
    import ray.exceptions as rex

    return tuple(getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                            "OwnerDiedError", "LocalRayletDiedError") if hasattr(rex, n))


def tables_location(cfg: TwHINConfig, run_dir: str | Path) -> str:
    """Where ``cfg``'s partitioned run in ``run_dir`` keeps its tables: ``partition_storage``
    (a directory or pyarrow.fs URI) or ``RUN_DIR/partitions``."""
    return cfg.partition_storage or str(Path(run_dir) / PARTITION_TABLES_DIR)


def train_partitioned(cfg: TwHINConfig, store: GraphStore, selected, run_dir: Path, use_ray: bool = False,
                      progress: bool = False) -> tuple[PartitionTables, dict]:
    """Train ``cfg`` with ``cfg.partitions`` partitions on ``cfg.ray.workers`` Ray workers
    (``use_ray``) or in this process; returns the tables (their head is the trained —
    or best — state) and the summary. Continues after the last committed bucket when
    ``RUN_DIR/partitions`` holds an unfinished run's state."""
    edge_types = [tuple(et) for et, _ in selected]
    spec = partition_spec(cfg)
    t0 = time.perf_counter()
    buckets = EdgeBuckets.open_or_build(store, spec)
    part = buckets.partitioning
    log.info("partitions: %s; edge buckets in %.1fs (%s)", ", ".join(f"{t} {part.parts(t)}" for t in part.node_types),
             time.perf_counter() - t0, buckets.dir)
    grid = bucket_grid(part, edge_types)
    root = tables_location(cfg, run_dir)
    tables = PartitionTables(root, part, int(cfg.dim))
    tables.ckpt.discard_uncommitted()  # writes of a killed job that never got committed
    template = twhin_model(cfg, {t: 1 for t in part.node_types}, edge_types, sparse=True)
    relations = template.rel_emb.weight.detach().numpy().copy()
    relations_state = np.zeros_like(relations)
    warm, meta0 = None, {"epoch": 0}
    if cfg.init_from is not None and not tables.head.version:  # a warm start fills the first commit
        from graphrec.run.directory import open_run
        from graphrec.train.warm_start import PartitionWarmStart

        warm = PartitionWarmStart(store, open_run(cfg.init_from, expect="twhin"), cfg.optimizer,
                                  cfg.carry_optimizer_state)
        warm.relations(edge_types, relations, relations_state)
        meta0["warm_start"] = {**warm.counts, "optimizer": warm.optimizer}
        c = warm.counts
        log.info("warm start from %s: %d nodes carried over%s, %d from their neighbours, %d random; %d relations",
                 cfg.init_from, c["carried"], " (frozen)" if cfg.freeze_existing else "", c["from_neighbours"],
                 c["random"], c["relations"])
        (log.info if warm.optimizer.startswith(("carried", "fresh (carry")) else log.warning)(
            "warm start: optimizer state %s", warm.optimizer)
    tables.initialise(1.0 / float(cfg.dim) ** 0.5 if cfg.init_scale is None else cfg.init_scale, cfg.seed,
                      relations, meta=meta0, row_state=cfg.optimizer == "row_adagrad", fill=warm,
                      relations_state=relations_state)
    del warm
    head = tables.head
    meta = head.meta
    workers = cfg.ray.workers if use_ray else 1
    history = list(meta.get("history", []))
    start_epoch = int(meta.get("epoch", 0))
    starts = list(meta.get("starts", [])) + [int(meta.get("epoch", 0))]
    if head.version > 1:
        log.info("resuming partitioned training at epoch %d (commit %d)", int(meta.get("epoch", 0)), head.version)

    source, split = resolve_validation_source(cfg, store)
    validation = build_validation(cfg, store, edge_types, source, split, None) if source == "split" else None
    positives_per_epoch = sum(int(round(w * store.relation(et).num_edges)) for et, w in selected)
    every = evaluation_period(cfg, positives_per_epoch) if validation is not None else None
    best = meta.get("best")
    bad = int(meta.get("bad_evaluations", 0))

    job = {"config": cfg.model_dump(mode="json"), "graph": str(Path(store.path).resolve()), "tables": root,
           "edge_types": [list(et) for et in edge_types], "weights": [w for _, w in selected],
           "verify_paths": sorted(e.path for e in head.files.values()) if head.version > 1 else [],
           "threads": cfg.threads or (cfg.ray.cpus_per_worker if use_ray else None), "cpus": cfg.ray.cpus_per_worker}
    args = (root, dataclasses.asdict(spec),
            {t: store.num_nodes(t) for t in store.node_types}, int(cfg.dim), [list(e) for e in edge_types], grid,
            cfg.seed, 2, cfg.partition_buckets == "pairs")
    num_buckets = grid * (grid - 1) // 2 if cfg.partition_buckets == "pairs" and grid > 1 else grid * grid
    t_start = time.perf_counter()
    bucket_log: list[dict] = []
    merged = 0
    if use_ray:
        import ray

        from graphrec.ray_env import init_ray

        started = init_ray(cfg.ray.address, workers * cfg.ray.cpus_per_worker, cfg.ray.object_store_mb)
        coordinator = ray.remote(BucketCoordinator).options(num_cpus=0).remote(*args)
        call = _OnRay(coordinator)
    else:
        started = False
        coordinator = BucketCoordinator(*args)
        call = _InProcess(coordinator)
    stopped_early = False
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.perf_counter()
            # (a job killed between an epoch's last bucket and its record has nothing left to train)
            if not (meta.get("epoch_trained") == epoch and "scheduler" not in meta):
                done0 = call("begin_epoch", epoch)
                _run_epoch(call, coordinator, job, epoch, workers, use_ray, cfg.ray.max_failures, num_buckets,
                           done0, progress)
            meta = {}
            stats = call("epoch_stats")
            seconds = time.perf_counter() - t_epoch
            record = {"epoch": epoch, "loss": stats["loss_sum"] / max(stats["steps"], 1), "steps": stats["steps"],
                      "positives_per_s": stats["positives"] / max(seconds, 1e-9), "seconds": seconds,
                      "workers": workers, "buckets": num_buckets}
            pin = False
            if validation is not None and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
                model = assemble(cfg, store, tables, edge_types)
                record["valid_mrr"] = float(validation.mrr(model))
                del model
                if best is None or record["valid_mrr"] > best["valid_mrr"]:
                    best, bad, pin = {"epoch": epoch, "valid_mrr": record["valid_mrr"]}, 0, True
                else:
                    bad += 1
            history.append(record)
            log.info("epoch %d: loss %.4f, %.0f positives/s on %d worker(s) over %d buckets%s", epoch, record["loss"],
                     record["positives_per_s"], workers, num_buckets,
                     f", valid MRR {record['valid_mrr']:.4f}" if "valid_mrr" in record else "")
            stop = validation is not None and bad >= cfg.patience
            updates = {"epoch": epoch + 1, "history": history, "starts": starts, "bad_evaluations": bad,
                       "best": best}
            version = call("end_epoch", updates, pin)
            if pin:
                best["version"] = version
            if stop:
                stopped_early = True
                log.info("early stop after epoch %d: no better valid MRR for %d evaluations (best %.4f at epoch %d)",
                         epoch, bad, best["valid_mrr"], best["epoch"])
                break
        if best is not None and best.get("version") and best["epoch"] != history[-1]["epoch"]:
            call("rollback", best["version"])
        bucket_log = call("bucket_log")
        merged = call("merged_pushes")
    finally:
        if use_ray:
            import ray

            ray.kill(coordinator)
            if started:
                ray.shutdown()
    summary = {"epochs_run": len(history), "stopped_early": stopped_early,
               "monitor": "valid_mrr" if validation is not None else None,
               "best_epoch": best["epoch"] if best else None, "best_valid_mrr": best["valid_mrr"] if best else None,
               "seconds": time.perf_counter() - t_start, "starts": starts, "world_size": workers, "history": history,
               "partitions": cfg.partitions, "buckets_dir": str(buckets.dir), "shared_pushes_merged": merged,
               "validation": None if validation is None else
               {"source": "split", "metric": "filtered_mrr", "triples": validation.num_triples, "every_epochs": every}}
    if cfg.init_from is not None:
        from graphrec.run.directory import open_run
        from graphrec.train.warm_start import NodeVectors, drift_report

        previous = open_run(cfg.init_from, expect="twhin")
        summary["warm_start"] = {"from": str(cfg.init_from), "frozen": cfg.freeze_existing,
                                 "init": tables.meta.get("warm_start"),
                                 # this job wrote (and hashed) the tables: read them without hashing again
                                 "drift": drift_report(NodeVectors((PartitionTables(root, part, int(cfg.dim),
                                                                                    verify_paths=set()), tables.head)),
                                                       store, previous, previous.store, seed=cfg.seed)}
    _append_bucket_log(Path(run_dir) / BUCKET_LOG, bucket_log)
    return tables, summary


def _append_bucket_log(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _run_epoch(call, coordinator, job: dict, epoch: int, workers: int, use_ray: bool, max_failures: int,
               num_buckets: int, done0: int, progress: bool) -> None:
    """Train the rest of ``epoch``'s buckets on ``workers`` workers."""
    job = {**job, "epoch": epoch}
    bar = tqdm(total=num_buckets, initial=done0, desc=f"epoch {epoch} buckets", disable=not progress, leave=False)
    try:
        if not use_ray:
            bucket_worker_loop(0, coordinator, job)
            return
        import ray

        task = ray.remote(bucket_worker_loop).options(num_cpus=job["cpus"], max_retries=0,
                                                     scheduling_strategy="SPREAD")
        running = {task.remote(w, coordinator, job): w for w in range(workers)}
        failures = 0
        crash = _crash_errors()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            if progress:
                bar.n = call("progress")[0]
                bar.refresh()
            for ref in ready:
                w = running.pop(ref)
                try:
                    ray.get(ref)
                except crash as err:
                    failures += 1
                    lost = call("fail", w)
                    if failures > max_failures:
                        raise GraphrecError(f"partitioned training: worker {w} died ({type(err).__name__}) and "
                                            f"ray.max_failures={max_failures} is spent; --resume continues after the "
                                            "last committed bucket") from None
                    log.warning("worker %d died in epoch %d (%s); bucket %s goes back to the pool, worker restarted",
                                w, epoch, type(err).__name__, lost)
                    running[task.remote(w, coordinator, job)] = w
                except ray.exceptions.RayTaskError as err:
                    raise err.as_instanceof_cause() from None
    finally:
        bar.close()


def assemble(cfg: TwHINConfig, store: GraphStore, tables: PartitionTables, edge_types) -> TwHIN:
    """One :class:`TwHIN` holding every partition at its global rows (graphs that fit)."""
    return tables.fill(twhin_model(cfg, {t: store.num_nodes(t) for t in store.node_types}, edge_types, sparse=True))


def run_partitioned(cfg: TwHINConfig, graph: str | Path, run_dir: str | Path, use_ray: bool,
                    progress: bool = False) -> dict:
    """Train and finish a partitioned run in ``run_dir`` (``run.json`` last); returns the summary.

    The node tables stay in ``RUN_DIR/partitions`` (or ``partition_storage``) at their committed head (never
    assembled: they need not fit in memory); ``model.pt`` holds only the relation vectors
    (``{"rel_emb.weight": [R, d_r]}``) and run.json records the partitioning and pins the
    tables' commit (:func:`graphrec.run.directory.write_run`)."""
    from graphrec.run.directory import RELATIONS_STATE, write_run
    from graphrec.train.twhin import resolve_auto, select_relations

    store = GraphStore(graph)
    if cfg.threads and not use_ray:
        torch.set_num_threads(cfg.threads)
    selected = select_relations(store, cfg)
    cfg = resolve_auto(cfg, store, [et for et, _ in selected])
    tables, summary = train_partitioned(cfg, store, selected, Path(run_dir), use_ray=use_ray, progress=progress)
    relations = torch.from_numpy(np.array(tables.read(RELATIONS_EMB, tables.head), dtype=np.float32))
    write_run(run_dir, "twhin", cfg, store, {RELATIONS_STATE: relations}, summary, tables=tables,
              num_nodes={t: store.num_nodes(t) for t in store.node_types},
              edge_types=[list(et) for et, _ in selected],
              relation_weights={":".join(et): w for et, w in selected})
    return summary


__all__ = ["BucketCoordinator", "BucketTrainer", "SharedParameters", "bucket_worker_loop", "train_partitioned",
           "partition_spec", "run_partitioned", "check_partitioned", "assemble", "tables_location", "PARTITION_TABLES_DIR"]
