"""Node partitions and edge buckets for partitioned (PyTorch-BigGraph-style) training.

**Assignment.** A node type with at least ``min_nodes`` (and at least ``P``) nodes is
split into ``P`` partitions; smaller types stay whole (one partition, shared by every
bucket). With ``regroup = k > 1`` a type of at least ``P·k`` (and ``min_nodes``) nodes is
stored as ``P·k`` partitions instead, dealt into the ``P`` training partitions afresh
every epoch (:meth:`NodePartitioning.groups`). The
assignment is a seeded uniform permutation of the type's ids cut into contiguous
chunks of sizes ``⌈N/p⌉`` or ``⌊N/p⌋`` (``p`` storage partitions; balanced to one node)::

    perm  = default_rng([seed, crc32(type)]).permutation(N)
    part[perm[k]]   = k // chunk-boundaries        (which partition)
    offset[perm[k]] = k - start of its partition   (row within the partition's table)

Global node ids (and therefore the store's id maps to original ids) never change: a
partition's embedding table row ``r`` belongs to node ``members(type, p)[r]``.

**Buckets.** Each base relation's edges are grouped by ``(source partition,
destination partition)`` once and written as memory-mappable arrays beside the store
(``STORE/partitions/<key>/``, reused by every run with the same ``P``, ``min_nodes`` and
``seed``; checksummed; built atomically, so two runs never collide)::

    <relation_key>/bucket_ptr.npy   int64 [P_src·P_dst + 1]  bucket b = i·P_dst + j spans [ptr[b], ptr[b+1])
    <relation_key>/src.npy          int32|int64 [E]           source row within its partition
    <relation_key>/dst.npy          int32|int64 [E]           destination row within its partition
    <relation_key>/edge.npy         int64 [E]                 the edge's position in the store's CSR order
                                                               (for edge weights and attributes)

Grouping is one stable counting sort per relation (numpy's radix sort on the bucket
key), no Python loop over edges.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore, relation_key
from graphrec.io import atomic_dir, sha256_file

PARTITIONS_DIR = "partitions"
FORMAT = "graphrec-partitions"


@dataclass(frozen=True)
class PartitionSpec:
    """``num_partitions`` P for node types of at least ``min_nodes`` nodes (0: every
    type), seeded by ``seed``; each of them ``regroup`` storage partitions where the type
    has at least ``P × regroup`` nodes (:meth:`NodePartitioning.groups`)."""

    num_partitions: int
    min_nodes: int = 0
    seed: int = 0
    regroup: int = 1

    def __post_init__(self):
        if self.num_partitions < 1:
            raise GraphrecError(f"partitions must be >= 1, got {self.num_partitions}")
        if self.min_nodes < 0:
            raise GraphrecError(f"partition_min_nodes must be >= 0, got {self.min_nodes}")
        if self.regroup < 1:
            raise GraphrecError(f"partition_regroup must be >= 1, got {self.regroup}")

    @property
    def key(self) -> str:
        tail = f"-regroup{self.regroup}" if self.regroup > 1 else ""
        return f"P{self.num_partitions}-min{self.min_nodes}-seed{self.seed}{tail}"


class NodePartitioning:
    """The partition of every node: ``parts(type)`` (P_type storage partitions: ``P·k``,
    ``P`` or 1), ``part(type)`` int16/int32 ``[N]``, ``offset(type)`` int64 ``[N]`` (row
    within the partition), ``sizes(type)`` ``[P_type]``, ``members(type, p)`` (global
    ids of partition ``p``, in row order) and ``groups(type, epoch)`` (the storage
    partitions of each training partition in an epoch)."""

    def __init__(self, num_nodes: dict[str, int], spec: PartitionSpec):
        self.spec = spec
        self._perm: dict[str, np.ndarray] = {}
        self._bounds: dict[str, np.ndarray] = {}
        self._part: dict[str, np.ndarray] = {}  # part(t) / offset(t), computed once per type
        self._offset: dict[str, np.ndarray] = {}
        for t, n in num_nodes.items():
            # a type smaller than P stays whole too: every partitioned type has exactly P
            # training partitions (one bucket grid; P·k stored ones where it has P·k nodes),
            # none of them empty
            big, k = spec.num_partitions, spec.regroup
            p = big * k if k > 1 and n >= max(spec.min_nodes, big * k) else \
                big if n >= max(spec.min_nodes, big) else 1
            perm = np.random.default_rng([spec.seed, zlib.crc32(t.encode())]).permutation(n) if p > 1 \
                else np.arange(n)
            # sizes ceil(n/p) for the first n % p partitions, floor(n/p) for the rest
            sizes = np.full(p, n // p, dtype=np.int64)
            sizes[: n % p] += 1
            self._perm[t], self._bounds[t] = perm, np.r_[0, np.cumsum(sizes)]

    @property
    def node_types(self) -> list[str]:
        return list(self._perm)

    def parts(self, node_type: str) -> int:
        return int(self._bounds[node_type].shape[0] - 1)

    def is_partitioned(self, node_type: str) -> bool:
        return self.parts(node_type) > 1

    def groups(self, node_type: str, epoch: int) -> np.ndarray:
        """``[G, k]`` int64: the storage partitions making up each of ``node_type``'s ``G``
        training partitions in ``epoch`` (``G = P``, or 1 for a whole type: ``[[0]]``).

        Stored as ``P`` partitions (``regroup`` 1, or fewer than ``P·k`` nodes), training
        partition ``g`` is storage partition ``g`` every epoch (PyTorch-BigGraph's fixed
        partitions). Stored as ``P·k``, they are dealt into ``P`` groups of ``k`` by a
        permutation seeded by ``(seed, epoch, crc32(type))``: a softmax over one partition
        is invariant to a score offset shared by all its rows (adding ``δ`` to each of its
        vectors moves every logit of a query ``q`` by the same ``q·δ``), so fixed
        partitions leave the offsets between partitions unconstrained; dealt afresh, any
        two storage partitions share candidates in some epochs."""
        n = self.parts(node_type)
        if n == self.spec.num_partitions * self.spec.regroup and self.spec.regroup > 1:
            perm = np.random.default_rng([self.spec.seed, epoch, zlib.crc32(node_type.encode())]).permutation(n)
            return np.sort(perm.reshape(self.spec.num_partitions, self.spec.regroup), axis=1)
        return np.arange(n, dtype=np.int64).reshape(n, 1)

    def sizes(self, node_type: str) -> np.ndarray:
        return np.diff(self._bounds[node_type])

    def members(self, node_type: str, p: int) -> np.ndarray:
        b = self._bounds[node_type]
        return self._perm[node_type][b[p] : b[p + 1]]

    def part(self, node_type: str) -> np.ndarray:
        if node_type in self._part:
            return self._part[node_type]
        perm, b = self._perm[node_type], self._bounds[node_type]
        dtype = np.int16 if len(b) - 1 < np.iinfo(np.int16).max else np.int32
        out = np.empty(perm.shape[0], dtype=dtype)
        out[perm] = np.repeat(np.arange(len(b) - 1, dtype=dtype), np.diff(b))
        self._part[node_type] = out
        return out

    def offset(self, node_type: str) -> np.ndarray:
        if node_type in self._offset:
            return self._offset[node_type]
        perm, b = self._perm[node_type], self._bounds[node_type]
        out = np.empty(perm.shape[0], dtype=np.int64)
        out[perm] = np.arange(perm.shape[0], dtype=np.int64) - np.repeat(b[:-1], np.diff(b))
        self._offset[node_type] = out
        return out


@dataclass
class RelationBuckets:
    """The bucketed edges of one relation (memory-mapped): bucket ``(i, j)`` holds
    ``src[lo:hi]``, ``dst[lo:hi]``, ``edge[lo:hi]`` with ``lo, hi = span(i, j)``."""

    edge_type: tuple[str, str, str]
    src_parts: int
    dst_parts: int
    bucket_ptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    edge: np.ndarray

    def span(self, i: int, j: int) -> tuple[int, int]:
        b = i * self.dst_parts + j
        return int(self.bucket_ptr[b]), int(self.bucket_ptr[b + 1])

    def bucket(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.span(i, j)
        return self.src[lo:hi], self.dst[lo:hi], self.edge[lo:hi]

    def sizes(self) -> np.ndarray:
        """``[P_src, P_dst]`` edges per bucket."""
        return np.diff(self.bucket_ptr).reshape(self.src_parts, self.dst_parts)


class ReversedRelationBuckets(RelationBuckets):
    """The buckets of a reverse view (``dst -> src``) of a base relation, without storing
    them twice: bucket ``(i, j)`` is the base's bucket ``(j, i)`` with its endpoints
    swapped (``edge`` ids are the base's)."""

    def __init__(self, edge_type, base: RelationBuckets):
        super().__init__(tuple(edge_type), base.dst_parts, base.src_parts, base.bucket_ptr, base.dst, base.src,
                         base.edge)
        self.base = base

    def span(self, i: int, j: int) -> tuple[int, int]:
        return self.base.span(j, i)

    def bucket(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src, dst, edge = self.base.bucket(j, i)
        return dst, src, edge

    def sizes(self) -> np.ndarray:
        return self.base.sizes().T


def _bucket_relation(rel, part: NodePartitioning) -> dict[str, np.ndarray]:
    src_t, _, dst_t = rel.edge_type
    s, d = rel.coo()
    ps, pd = part.parts(src_t), part.parts(dst_t)
    key_dtype = np.int16 if ps * pd < np.iinfo(np.int16).max else np.int32 if ps * pd < 2**31 else np.int64
    key = part.part(src_t)[s].astype(key_dtype) * key_dtype(pd) + part.part(dst_t)[d].astype(key_dtype)
    order = np.argsort(key, kind="stable")  # radix sort for small integer keys
    counts = np.bincount(key, minlength=ps * pd)
    s_off, d_off = part.offset(src_t), part.offset(dst_t)
    row_dtype = lambda t: np.int32 if part.sizes(t).max(initial=0) < 2**31 else np.int64  # noqa: E731
    return {"bucket_ptr": np.r_[0, np.cumsum(counts)].astype(np.int64),
            "src": s_off[s[order]].astype(row_dtype(src_t)),
            "dst": d_off[d[order]].astype(row_dtype(dst_t)),
            "edge": order.astype(np.int64)}


class EdgeBuckets:
    """Bucketed edges of every base relation of a store for one :class:`PartitionSpec`,
    built once (:meth:`build`) and reused: ``relation(edge_type) -> RelationBuckets``."""

    def __init__(self, store: GraphStore, spec: PartitionSpec, directory: Path, verify: bool = False):
        self.store, self.spec, self.dir = store, spec, Path(directory)
        self.partitioning = NodePartitioning({t: store.num_nodes(t) for t in store.node_types}, spec)
        try:
            self.manifest = json.loads((self.dir / "manifest.json").read_text())
        except (OSError, ValueError) as err:
            raise GraphrecError(f"{self.dir}: not a bucket directory ({err})") from None
        if self.manifest.get("store_checksum") != store.checksum or self.manifest.get("spec") != spec.key:
            raise GraphrecError(f"{self.dir}: buckets of another graph or partitioning")
        for rel_path, entry in self.manifest["files"].items():
            path = self.dir / rel_path
            if not path.is_file() or path.stat().st_size != entry["bytes"]:
                raise GraphrecError(f"{path}: missing or truncated (rebuild with `graphrec partition --rebuild`)")
            if verify and sha256_file(path) != entry["sha256"]:
                raise GraphrecError(f"{path}: fails its sha256 checksum")

    @classmethod
    def open_or_build(cls, store: GraphStore, spec: PartitionSpec, directory: str | Path | None = None,
                      rebuild: bool = False) -> EdgeBuckets:
        """The buckets of ``store`` for ``spec`` under ``directory`` (default
        ``STORE/partitions/<spec.key>``): opened when present and valid, else built."""
        d = Path(directory) if directory is not None else Path(store.path) / PARTITIONS_DIR / spec.key
        if d.is_dir() and not rebuild:
            try:
                return cls(store, spec, d)
            except GraphrecError:
                pass  # stale or damaged: rebuilt below
        cls.build(store, spec, d)
        return cls(store, spec, d)

    @staticmethod
    def build(store: GraphStore, spec: PartitionSpec, directory: Path) -> None:
        part = NodePartitioning({t: store.num_nodes(t) for t in store.node_types}, spec)
        with atomic_dir(directory, overwrite=True, kind="partitions") as tmp:
            files, relations = {}, []
            for rel in store.relations():
                if rel.is_reverse:
                    continue  # a reverse view's buckets are its base's with (i, j) swapped
                key = relation_key(rel.edge_type)
                (tmp / key).mkdir()
                for name, arr in _bucket_relation(rel, part).items():
                    path = tmp / key / f"{name}.npy"
                    np.save(path, arr, allow_pickle=False)
                    files[f"{key}/{name}.npy"] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
                relations.append({"edge_type": list(rel.edge_type), "key": key,
                                  "src_parts": part.parts(rel.edge_type[0]),
                                  "dst_parts": part.parts(rel.edge_type[2])})
            manifest = {"format": FORMAT, "format_version": 1, "spec": spec.key,
                        "num_partitions": spec.num_partitions, "min_nodes": spec.min_nodes, "seed": spec.seed,
                        "regroup": spec.regroup,
                        "store_checksum": store.checksum,
                        "node_parts": {t: part.parts(t) for t in part.node_types},
                        "relations": relations, "files": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))

    def relation(self, edge_type) -> RelationBuckets:
        """The buckets of ``edge_type`` (a reverse view's: its base's, transposed)."""
        edge_type = tuple(edge_type)
        entry = next((r for r in self.manifest["relations"] if tuple(r["edge_type"]) == edge_type), None)
        if entry is None and edge_type in {tuple(r.edge_type) for r in self.store.relations()}:
            rel = self.store.relation(edge_type)
            if rel.is_reverse:
                base = next((r for r in self.manifest["relations"] if r["key"] == rel.base_key), None)
                if base is not None:
                    return ReversedRelationBuckets(edge_type, self.relation(tuple(base["edge_type"])))
        if entry is None:
            raise GraphrecError(f"{self.dir}: no buckets for relation {':'.join(edge_type)} (base relations: "
                                f"{[':'.join(r['edge_type']) for r in self.manifest['relations']]})")
        arrs = {n: np.load(self.dir / entry["key"] / f"{n}.npy", mmap_mode="r") for n in ("bucket_ptr", "src", "dst",
                                                                                            "edge")}
        return RelationBuckets(edge_type, entry["src_parts"], entry["dst_parts"], **arrs)
