"""Bucket scheduling for partitioned training: PyTorch-BigGraph's lock server.

Partitioned training (PyTorch-BigGraph, Lerer et al. 2019, "PyTorch-BigGraph: A
Large-scale Graph Embedding System") splits the partitioned node types into ``P``
partitions and the edges into **buckets** ``(i, j)``: the edges whose source node lies in
source partition ``i`` and whose destination node lies in destination partition ``j``.
A trainer working on bucket ``(i, j)`` holds exactly the embeddings (and optimizer state)
of those partitions, so two trainers may work concurrently only on buckets that share no
partition. :class:`BucketScheduler` hands out the buckets of an epoch under that rule;
:class:`graphrec.train.partitioned.BucketCoordinator` holds it, as one Ray actor that
every trainer worker talks to (or an object in the trainer's process).

The rules follow PBG's ``LockServer`` (``torchbiggraph/bucket_scheduling.py``, commit
6fccd3f of facebookresearch/PyTorch-BigGraph) and its ``EmbeddingHolder`` /
``get_partitioned_types`` (``torchbiggraph/util.py``):

**Buckets.** An epoch consists of every ``(i, j)`` with ``0 <= i < P_src`` and
``0 <= j < P_dst``, each trained (committed) exactly once. A side whose node types are not
partitioned has ``P = 1``. With ``pairs`` (and ``same_entities``) the buckets are the
unordered pairs ``i < j`` instead: a trainer holds two partitions of every type, and
what it trains from them is the trainer's business (``graphrec.train.partitioned``).

**Partitions a bucket holds** (what collides). A side with one partition is unpartitioned:
its embeddings are shared by every bucket (as PBG's "unpartitioned" entity types, which
are not locked) and it holds nothing. Otherwise

- ``same_entities=False`` (sources and destinations are different node sets, e.g.
  user -> pin): bucket ``(i, j)`` holds ``{("src", i), ("dst", j)}``; buckets ``(0, 1)``
  and ``(1, 0)`` do not collide;
- ``same_entities=True`` (both sides are the same partitioned node set, e.g. a knowledge
  graph's entities; needs ``P_src == P_dst``): bucket ``(i, j)`` holds ``{("node", i),
  ("node", j)}``, so ``(i, i)`` holds one partition and ``(0, 1)`` collides with ``(1, 0)``
  and with every bucket touching partition 0 or 1 on either side.

A bucket is handed out only if none of its partitions is held by another worker. A
worker holds at most one bucket at a time (PBG's trainer: at most two partitions).

**Which bucket** (PBG's ``LockServer._pick_bucket``). Among the acquirable buckets, the
one with the least I/O to switch to from the worker's previous bucket: the cost is the
summed ``partition_cost`` of the symmetric difference of the two buckets' partitions
(partitions to write back plus partitions to load; with no previous bucket, the cost of
loading all of the new one's). A bucket sharing a partition with the previous one is
therefore always preferred to one sharing none, the transpose ``(j, i)`` of a
``same_entities`` bucket costs nothing, and from scratch a diagonal bucket ``(i, i)`` is
preferred there. PBG then takes the lexicographically smallest of the cheapest buckets
(its code notes a random choice would mix the edges better); here the tie is broken by a
generator seeded with ``(seed, epoch, acquisition number)``, so a run is deterministic
given the seed and the sequence of calls, and differs between epochs.

**First-epoch order** (PBG's ``distributed_tree_init_order``, ``LockServer.
_is_initialized``). In the first epoch of a job the partitions start from random
initialisation; to keep their embedding spaces aligned, a partition must first be trained
together with one that has already been trained. So once any bucket has been handed out
this epoch, a bucket is acquirable only if *all its source-side partitions* or *all its
destination-side partitions* are initialised (vacuously true for an unpartitioned side);
before that, any bucket is. PBG marks partitions initialised when a bucket is acquired
and never unmarks them; here the initialised partitions are those of the buckets
committed or currently held this epoch, which is the same set unless a bucket fails: a
failed bucket's partitions were never written, so they count as uninitialised again
(unless another committed bucket covers them). (PBG's config help also mentions
"partition 0 for bootstrapping"; its code, followed here, lets the first bucket be any.)
This rule never deadlocks: while buckets remain and no worker holds one, one of them is
acquirable (a remaining bucket ``(a, b)`` with neither side initialised has a remaining,
acquirable ``(i, b)`` for any initialised source partition ``i``, since a committed
``(i, b)`` would have initialised ``b``).

**Failures.** ``release(worker, bucket, done=False)`` (or :meth:`forget_worker` for a
worker known to be dead) returns a bucket to the pool; another worker trains it later. A
worker whose acquire finds nothing acquirable while buckets remain (pending, or held by
others that may still fail) gets :data:`WAIT` and asks again; ``None`` means every bucket
of the epoch is committed.

**Resume.** :meth:`BucketScheduler.state` is a dict of plain values (JSON-serialisable);
:meth:`BucketScheduler.from_state` rebuilds the scheduler. By default the buckets held at
snapshot time go back to the pool (their trainers' work was not committed), so a resumed
job continues from the last committed bucket of the epoch rather than its start.

The scheduler is plain Python (a few thousand buckets at most, ``P_src * P_dst``); the
hot loops are in the trainers.
"""

from __future__ import annotations

import enum
import operator
from typing import Any

import numpy as np

from graphrec.errors import GraphrecError

#: ``(source partition, destination partition)``.
Bucket = tuple[int, int]
#: A partition a bucket holds: ``("src", i)``, ``("dst", j)`` or, with ``same_entities``,
#: ``("node", i)``.
PartitionKey = tuple[str, int]

STATE_VERSION = 1


class Wait(enum.Enum):
    """Type of :data:`WAIT` (an enum, so it survives pickling through Ray as itself)."""

    WAIT = "wait"

    def __repr__(self) -> str:
        return "WAIT"

    __str__ = __repr__


#: Returned by :meth:`BucketScheduler.acquire` when buckets remain but none can be handed
#: to this worker now (their partitions are held, or the first-epoch order forbids them);
#: ask again after some other worker releases.
WAIT = Wait.WAIT


class SchedulerError(RuntimeError):
    """A worker broke the protocol (released a bucket it does not hold, acquired while
    holding one, acquired before :meth:`BucketScheduler.new_epoch`): a bug in the
    trainer, not in the user's input."""


class SchedulerStateError(GraphrecError):
    """A saved scheduler state cannot be restored (wrong version, bucket out of range,
    inconsistent fields)."""


class BucketScheduler:
    """Hands out the buckets ``(i, j)`` of each epoch to trainer workers so that no two
    held buckets share a partition (PyTorch-BigGraph's lock server; rules in the module
    docstring).

    Args:
        num_src_parts: ``P_src``, partitions of the source side (1: unpartitioned).
        num_dst_parts: ``P_dst``, partitions of the destination side (1: unpartitioned).
        seed: seeds the choice among equally cheap buckets.
        same_entities: both sides are the same partitioned node set, so source partition
            ``i`` and destination partition ``i`` are one partition (needs
            ``num_src_parts == num_dst_parts``).
        init_order: apply PBG's ``distributed_tree_init_order`` in the first epoch.
        partition_cost: I/O cost of loading one source / one destination partition (e.g.
            its average number of rows times the dimension); only their ratio matters.
            With ``same_entities`` both must be equal.

    Workers are integer ranks. Calls must be serialised (one at a time), as the
    coordinator's synchronous Ray actor does.
    """

    def __init__(
        self,
        num_src_parts: int,
        num_dst_parts: int,
        seed: int = 0,
        *,
        same_entities: bool = False,
        init_order: bool = True,
        partition_cost: tuple[float, float] = (1.0, 1.0),
        pairs: bool = False,
    ) -> None:
        p_src, p_dst = _positive_int(num_src_parts, "num_src_parts"), _positive_int(num_dst_parts, "num_dst_parts")
        if same_entities and p_src != p_dst:
            raise ValueError(f"same_entities needs as many source as destination partitions, got {p_src} and {p_dst}")
        costs = tuple(float(c) for c in partition_cost)
        if len(costs) != 2 or not all(np.isfinite(c) and c > 0 for c in costs):
            raise ValueError(f"partition_cost must be two positive finite numbers, got {partition_cost!r}")
        if same_entities and costs[0] != costs[1]:
            raise ValueError(f"same_entities needs one partition cost for both sides, got {costs}")
        if pairs and not (same_entities and p_src >= 2):
            raise ValueError("pairs needs same_entities and at least 2 partitions")
        self.num_src_parts = p_src
        self.num_dst_parts = p_dst
        self.seed = int(seed)
        self.same_entities = bool(same_entities)
        self.init_order = bool(init_order)
        self.partition_cost: tuple[float, float] = costs  # type: ignore[assignment]
        self.pairs = bool(pairs)
        self._buckets: list[Bucket] = [(i, j) for i in range(p_src) for j in range(p_dst) if not pairs or i < j]
        self._reset(epoch=None, init_order_active=False)

    # ------------------------------------------------------------------ rules

    @property
    def num_buckets(self) -> int:
        """``P_src * P_dst`` (``P (P - 1) / 2`` with ``pairs``), the buckets of one epoch."""
        return len(self._buckets)

    def buckets(self) -> list[Bucket]:
        """All buckets of an epoch, lexicographically."""
        return list(self._buckets)

    def src_partitions(self, bucket: Bucket) -> frozenset[PartitionKey]:
        """The partitions bucket ``(i, j)`` holds on the source side (empty if unpartitioned)."""
        if self.num_src_parts == 1:
            return frozenset()
        return frozenset({("node" if self.same_entities else "src", bucket[0])})

    def dst_partitions(self, bucket: Bucket) -> frozenset[PartitionKey]:
        """The partitions bucket ``(i, j)`` holds on the destination side (empty if unpartitioned)."""
        if self.num_dst_parts == 1:
            return frozenset()
        return frozenset({("node" if self.same_entities else "dst", bucket[1])})

    def partitions(self, bucket: Bucket) -> frozenset[PartitionKey]:
        """The partitions bucket ``(i, j)`` holds: no other worker may hold any of them."""
        return self.src_partitions(bucket) | self.dst_partitions(bucket)

    def switch_cost(self, bucket: Bucket, previous: Bucket | None) -> float:
        """I/O cost of moving from ``previous`` (None: nothing loaded) to ``bucket``: the
        summed ``partition_cost`` of the partitions to write back plus those to load."""
        new = self.partitions(bucket)
        old = self.partitions(previous) if previous is not None else frozenset()
        diff = new ^ old
        n_dst = sum(1 for side, _ in diff if side == "dst")
        return (len(diff) - n_dst) * self.partition_cost[0] + n_dst * self.partition_cost[1]

    def initialized_partitions(self) -> frozenset[PartitionKey] | None:
        """The partitions initialised this epoch under the first-epoch order (those of the
        committed and held buckets), or None when the order does not apply."""
        if not self._init_order_active:
            return None
        keys: set[PartitionKey] = set()
        for b in list(self._done) + list(self._held.values()):
            keys |= self.partitions(b)
        return frozenset(keys)

    # ------------------------------------------------------------------ epochs

    def new_epoch(self, epoch: int, *, first: bool | None = None) -> None:
        """Start epoch ``epoch``: every bucket becomes pending again. The first-epoch order
        applies (if ``init_order``) when ``first`` is true; by default when ``epoch == 0``
        (pass ``first=False`` for epoch 0 of a job that starts from trained embeddings)."""
        epoch = operator.index(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self._held:
            raise SchedulerError(f"new_epoch({epoch}) while workers hold buckets: {self._held_list()}")
        first = (epoch == 0) if first is None else bool(first)
        self._reset(epoch=epoch, init_order_active=self.init_order and first)

    def _reset(self, epoch: int | None, init_order_active: bool) -> None:
        self._epoch = epoch
        self._init_order_active = init_order_active
        self._done: dict[Bucket, int] = {}  # in commit order -> worker that committed it
        self._held: dict[int, Bucket] = {}
        self._acquisitions = 0
        self._affinity_hits = 0
        self._failures = 0
        self._waits = 0
        self._events: list[dict[str, Any]] = []

    @property
    def epoch(self) -> int | None:
        """The current epoch (None before the first :meth:`new_epoch`)."""
        return self._epoch

    def is_epoch_done(self) -> bool:
        """Whether every bucket of the current epoch is committed."""
        return self._epoch is not None and len(self._done) == len(self._buckets)

    def remaining(self) -> int:
        """Buckets of the epoch not committed yet (pending or held)."""
        return len(self._buckets) - len(self._done)

    def pending(self) -> list[Bucket]:
        """Buckets neither committed nor held, lexicographically."""
        held = set(self._held.values())
        return [b for b in self._buckets if b not in self._done and b not in held]

    def held(self) -> dict[int, Bucket]:
        """``{worker: bucket}`` currently held."""
        return dict(self._held)

    def done(self) -> list[Bucket]:
        """Committed buckets of the epoch, in commit order."""
        return list(self._done)

    # ------------------------------------------------------------------ protocol

    def acquirable(self, worker: int) -> list[Bucket]:
        """The buckets ``worker`` could be handed now: pending, sharing no partition with a
        bucket another worker holds, and allowed by the first-epoch order."""
        worker = _worker(worker)
        locked: set[PartitionKey] = set()
        for w, b in self._held.items():
            if w != worker:
                locked |= self.partitions(b)
        initialized = self.initialized_partitions()
        out = []
        for b in self.pending():
            if locked & self.partitions(b):
                continue
            if initialized and not (self.src_partitions(b) <= initialized or self.dst_partitions(b) <= initialized):
                continue
            out.append(b)
        return out

    def acquire(self, worker: int, previous_bucket: Bucket | None = None) -> Bucket | None | Wait:
        """Hand ``worker`` a bucket and lock its partitions.

        ``previous_bucket`` is the bucket whose partitions the worker still has in memory
        (None: nothing); the cheapest switch from it wins (module docstring). Returns the
        bucket, :data:`WAIT` if buckets remain but none is acquirable now, or None when the
        epoch is complete (every bucket committed).
        """
        worker = _worker(worker)
        if self._epoch is None:
            raise SchedulerError("acquire before new_epoch")
        if worker in self._held:
            raise SchedulerError(f"worker {worker} acquires while holding bucket {self._held[worker]}")
        prev = None if previous_bucket is None else self._bucket(previous_bucket)
        if self.is_epoch_done():
            return None
        candidates = self.acquirable(worker)
        if not candidates:
            self._waits += 1
            return WAIT
        costs = np.array([self.switch_cost(b, prev) for b in candidates])
        cheapest = np.flatnonzero(costs == costs.min())
        rng = np.random.default_rng([self.seed, self._epoch, self._acquisitions])
        bucket = candidates[int(cheapest[rng.integers(len(cheapest))])]
        self._acquisitions += 1
        shares = prev is not None and bool(self.partitions(bucket) & self.partitions(prev))
        self._affinity_hits += shares
        self._held[worker] = bucket
        self._log("acquire", worker, bucket)
        return bucket

    def release(self, worker: int, bucket: Bucket, done: bool = True) -> int:
        """Unlock ``bucket``'s partitions. ``done=True`` commits it (trained and written
        back); ``done=False`` returns it to the pool for any worker to train again (the
        worker failed mid-bucket). Returns the buckets left to commit this epoch."""
        worker, bucket = _worker(worker), self._bucket(bucket)
        if self._held.get(worker) != bucket:
            raise SchedulerError(
                f"worker {worker} releases bucket {bucket} but holds {self._held.get(worker)}")
        del self._held[worker]
        if done:
            self._done[bucket] = worker
        else:
            self._failures += 1
        self._log("done" if done else "failed", worker, bucket)
        return self.remaining()

    def forget_worker(self, worker: int) -> Bucket | None:
        """Return the bucket a dead worker holds (if any) to the pool, as
        ``release(worker, bucket, done=False)``; returns that bucket."""
        worker = _worker(worker)
        bucket = self._held.get(worker)
        if bucket is not None:
            self.release(worker, bucket, done=False)
        return bucket

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, Any]:
        """Counts for the current epoch: ``done_per_worker`` ({worker: buckets committed}),
        ``acquisitions``, ``affinity_hits`` (acquisitions that shared a partition with the
        worker's previous bucket), ``failures`` (buckets released not done), ``waits``
        (acquires answered :data:`WAIT`), ``done``/``remaining``/``buckets``."""
        per_worker: dict[int, int] = {}
        for w in self._done.values():
            per_worker[w] = per_worker.get(w, 0) + 1
        return {
            "epoch": self._epoch,
            "buckets": len(self._buckets),
            "done": len(self._done),
            "remaining": self.remaining(),
            "done_per_worker": dict(sorted(per_worker.items())),
            "acquisitions": self._acquisitions,
            "affinity_hits": self._affinity_hits,
            "failures": self._failures,
            "waits": self._waits,
        }

    def events(self) -> list[dict[str, Any]]:
        """The epoch's log, in order: ``{"seq", "event" ("acquire" | "done" | "failed"),
        "worker", "bucket", "held"}``, ``held`` being every held bucket after the event
        (``[[worker, i, j], ...]``), so concurrency can be read from it."""
        return [dict(e) for e in self._events]

    def _log(self, event: str, worker: int, bucket: Bucket) -> None:
        self._events.append({"seq": len(self._events), "event": event, "worker": worker,
                             "bucket": [bucket[0], bucket[1]], "held": self._held_list()})

    def _held_list(self) -> list[list[int]]:
        return [[w, b[0], b[1]] for w, b in sorted(self._held.items())]

    # ------------------------------------------------------------------ snapshots

    def state(self) -> dict[str, Any]:
        """The scheduler as plain values (ints, floats, bools, lists, dicts with string
        keys): a JSON-serialisable snapshot for :meth:`from_state`."""
        return {
            "version": STATE_VERSION,
            "num_src_parts": self.num_src_parts,
            "num_dst_parts": self.num_dst_parts,
            "seed": self.seed,
            "same_entities": self.same_entities,
            "init_order": self.init_order,
            "partition_cost": list(self.partition_cost),
            "pairs": self.pairs,
            "epoch": self._epoch,
            "init_order_active": self._init_order_active,
            "done": [[b[0], b[1], w] for b, w in self._done.items()],
            "held": self._held_list(),
            "acquisitions": self._acquisitions,
            "affinity_hits": self._affinity_hits,
            "failures": self._failures,
            "waits": self._waits,
            "events": self.events(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, requeue_held: bool = True) -> BucketScheduler:
        """Rebuild a scheduler from :meth:`state`. With ``requeue_held`` (default) the
        buckets held at snapshot time return to the pool, as after a whole-job restart
        (their work was not committed); with False they stay held by the same workers
        (e.g. the scheduler actor restarted while its workers live on)."""
        try:
            version = state["version"]
            if version != STATE_VERSION:
                raise SchedulerStateError(f"scheduler state: version {version!r}, expected {STATE_VERSION}")
            sched = cls(state["num_src_parts"], state["num_dst_parts"], state["seed"],
                        same_entities=state["same_entities"], init_order=state["init_order"],
                        partition_cost=tuple(state["partition_cost"]), pairs=bool(state.get("pairs", False)))
            epoch = state["epoch"]
            sched._reset(epoch=None if epoch is None else operator.index(epoch),
                         init_order_active=bool(state["init_order_active"]))
            for i, j, w in state["done"]:
                b = sched._bucket((i, j))
                if b in sched._done:
                    raise SchedulerStateError(f"scheduler state: 'done' lists bucket {b} twice")
                sched._done[b] = _worker(w)
            held = {}
            for w, i, j in state["held"]:
                b, w = sched._bucket((i, j)), _worker(w)
                if b in sched._done or b in held.values() or w in held:
                    raise SchedulerStateError(f"scheduler state: 'held' entry {[w, i, j]} conflicts")
                held[w] = b
            keys = [k for b in held.values() for k in sched.partitions(b)]
            if len(keys) != len(set(keys)):
                raise SchedulerStateError("scheduler state: 'held' buckets share partitions")
            if epoch is None and (held or sched._done):
                raise SchedulerStateError("scheduler state: buckets listed before any epoch")
            for name in ("acquisitions", "affinity_hits", "failures", "waits"):
                setattr(sched, f"_{name}", operator.index(state[name]))
            sched._events = [dict(e) for e in state.get("events", [])]
        except KeyError as e:
            raise SchedulerStateError(f"scheduler state: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise SchedulerStateError(f"scheduler state: {e}") from None
        if requeue_held:
            for w, b in held.items():
                sched._failures += 1
                sched._log("failed", w, b)  # logged as a failure: its work is lost
        else:
            sched._held = held
        return sched

    def restore(self, state: dict[str, Any], *, requeue_held: bool = True) -> None:
        """Replace this scheduler's configuration and progress by ``state`` (what
        :meth:`from_state` builds); for the Ray actor, which cannot be rebuilt in place."""
        self.__dict__.update(type(self).from_state(state, requeue_held=requeue_held).__dict__)

    # ------------------------------------------------------------------ helpers

    def _bucket(self, bucket) -> Bucket:
        try:
            i, j = (operator.index(x) for x in bucket)
        except (TypeError, ValueError):
            raise ValueError(f"a bucket is a pair of partition numbers, got {bucket!r}") from None
        if not (0 <= i < self.num_src_parts and 0 <= j < self.num_dst_parts):
            raise ValueError(f"bucket {(i, j)} out of range for {self.num_src_parts} x {self.num_dst_parts} partitions")
        if self.pairs and not i < j:
            raise ValueError(f"bucket {(i, j)} is not a pair i < j")
        return (i, j)

    def __repr__(self) -> str:
        return (f"BucketScheduler({self.num_src_parts} x {self.num_dst_parts}, same_entities={self.same_entities}, "
                f"pairs={self.pairs}, "
                f"epoch={self._epoch}, done={len(self._done)}/{len(self._buckets)}, held={self._held_list()})")


def _positive_int(value, name: str) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def _worker(worker) -> int:
    if isinstance(worker, bool):
        raise ValueError(f"a worker is an integer rank, got {worker!r}")
    try:
        return operator.index(worker)
    except TypeError:
        raise ValueError(f"a worker is an integer rank, got {worker!r}") from None
