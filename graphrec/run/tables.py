"""The embedding tables of a partitioned TwHIN run, in versioned storage.

A run trained with ``partitions: P > 1`` keeps its node tables where training left them:
``RUN_DIR/partitions`` (or any ``pyarrow.fs`` URI), a
:class:`~graphrec.run.storage.PartitionCheckpoints` whose arrays are

``type<k>/<p>/emb``   float32 ``[rows of partition p of node type k, dim]``: the embeddings
``type<k>/<p>/sum``   their Adagrad accumulators: the same shape, or ``[rows]`` under
                      ``optimizer: row_adagrad`` (one per row)
``relations/emb``     ``[relations, relation_dim]``; ``relations/sum`` likewise

(``k`` is the type's index in the partitioning's type order: names in storage are
``[A-Za-z0-9_-]``, type names come from data). Row ``r`` of partition ``p`` of type ``t``
is global node ``NodePartitioning.members(t, p)[r]``; a type that is not partitioned has
one partition, ``0``, in global order. Nothing ever holds a whole partitioned type in
memory except :meth:`PartitionTables.table`, meant for graphs that fit (evaluation);
:meth:`PartitionTables.chunks` streams a type partition by partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from graphrec.graph.partition import NodePartitioning
from graphrec.run.storage import FileEntry, Manifest, PartitionCheckpoints, RunStorage

PARTITION_TABLES_DIR = "partitions"
RELATIONS_EMB = "relations/emb"
RELATIONS_SUM = "relations/sum"


class PartitionTables:
    """A handle on a partitioned run's tables (see the module docstring). Cheap to make
    and picklable in spirit: every trainer worker opens its own on the same root.

    Args:
        root: local directory or ``pyarrow.fs`` URI of the tables.
        part: the node partitioning the tables follow.
        dim: embedding dimension.
        keep: committed versions that stay readable (>= 2 while workers read).
        verify_paths: file paths (as in a manifest) to check against their SHA-256 on their
            first read in this process; files written during this job are trusted (their
            writers hashed them as they streamed). ``None``: verify every read.
    """

    def __init__(self, root: str | Path, part: NodePartitioning, dim: int, keep: int = 2,
                 verify_paths: set[str] | None = None):
        self.part, self.dim = part, int(dim)
        self.ckpt = PartitionCheckpoints(RunStorage(root), prefix="", keep=keep)
        self._verify = None if verify_paths is None else set(verify_paths)

    def __repr__(self) -> str:
        return f"PartitionTables({self.ckpt.storage.uri!r}, dim={self.dim})"

    # ---- names

    def name(self, t: str, p: int, what: str) -> str:
        """Storage name of partition ``p`` of type ``t``; ``what``: ``emb`` | ``sum``."""
        return f"type{self.part.node_types.index(t)}/{p}/{what}"

    @property
    def head(self) -> Manifest:
        return self.ckpt.head()

    @property
    def meta(self) -> dict:
        return self.ckpt.head().meta

    # ---- creating (the driver)

    def initialise(self, init_scale: float, seed: int, relations: np.ndarray, meta: dict,
                   row_state: bool = False, fill=None, relations_state: np.ndarray | None = None) -> bool:
        """Commit version 1 (random tables ``N(0, init_scale²)`` seeded by ``(seed, type,
        partition)``, zero accumulators — one per row with ``row_state`` — and
        ``relations`` with ``relations_state``, default zeros) unless something is
        committed; returns whether it did. Partition by partition, so memory holds one at a
        time. ``fill(t, p, members, emb, state)``, when given, may overwrite rows of each
        partition's two arrays in place before they are written (a warm start:
        :class:`graphrec.train.warm_start.PartitionWarmStart`)."""
        if self.ckpt.head().version:
            return False
        with self.ckpt.transaction(meta=meta) as tx:
            for t in self.part.node_types:
                for p, size in enumerate(self.part.sizes(t)):
                    rng = np.random.default_rng([seed, zlib.crc32(t.encode()), p])
                    emb = rng.standard_normal((int(size), self.dim), dtype=np.float32)  # float32 throughout
                    emb *= np.float32(init_scale)
                    state = np.zeros(int(size) if row_state else (int(size), self.dim), np.float32)
                    if fill is not None:
                        fill(t, p, self.part.members(t, p), emb, state)
                    tx.write(self.name(t, p, "emb"), emb)
                    tx.write(self.name(t, p, "sum"), state)
                    del emb, state
            tx.write(RELATIONS_EMB, np.ascontiguousarray(relations, np.float32))
            tx.write(RELATIONS_SUM, np.zeros_like(relations, np.float32) if relations_state is None
                     else np.ascontiguousarray(relations_state, np.float32))
        return True

    # ---- reading

    def _check(self, entry_name: str, manifest: Manifest) -> bool:
        if self._verify is None:
            return True
        path = manifest.files[entry_name].path if entry_name in manifest.files else None
        if path in self._verify:
            self._verify.discard(path)
            return True
        return False

    def read_into(self, name: str, out: np.ndarray, manifest: Manifest | None = None) -> None:
        """Committed array ``name`` read straight into ``out`` (no second copy)."""
        m = manifest if manifest is not None else self.ckpt.head()
        self.ckpt.read_into(name, out, m, verify=self._check(name, m))

    def read(self, name: str, manifest: Manifest | None = None) -> np.ndarray:
        """Committed array ``name`` (read-only; memory-mapped when local)."""
        m = manifest if manifest is not None else self.ckpt.head()
        return self.ckpt.read(name, m, verify=self._check(name, m))

    def load(self, t: str, p: int, manifest: Manifest | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Partition ``p`` of type ``t``: ``(embeddings, accumulators)``, read-only."""
        m = manifest if manifest is not None else self.ckpt.head()
        return self.read(self.name(t, p, "emb"), m), self.read(self.name(t, p, "sum"), m)

    def chunks(self, t: str, manifest: Manifest | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(global ids [n], embeddings [n, dim])`` of type ``t``, one partition at a
        time (bounded memory: one partition)."""
        m = manifest if manifest is not None else self.ckpt.head()
        for p in range(self.part.parts(t)):
            yield self.part.members(t, p), self.read(self.name(t, p, "emb"), m)

    def table(self, t: str, manifest: Manifest | None = None) -> np.ndarray:
        """The whole embedding table of type ``t`` in global order, ``[N_t, dim]`` (for
        graphs that fit in memory)."""
        out = np.empty((int(self.part.sizes(t).sum()), self.dim), np.float32)
        for ids, emb in self.chunks(t, manifest):
            out[ids] = emb
        return out

    def fill(self, model, manifest: Manifest | None = None, relations: bool = True):
        """Copy every partition into its global rows of ``model`` (a
        :class:`~graphrec.models.twhin.TwHIN` over the whole graph; for graphs whose
        tables fit in memory) and, with ``relations``, the relation vectors; returns it."""
        m = manifest if manifest is not None else self.ckpt.head()
        with torch.no_grad():
            for t in model.node_types:
                table = model.node_embeddings(t).detach().numpy()  # a view of the parameter
                for ids, emb in self.chunks(t, m):
                    table[ids] = emb
            if relations:
                model.rel_emb.weight.detach().numpy()[:] = self.read(RELATIONS_EMB, m)
        return model

    # ---- writing (any worker) and committing (one process)

    def write(self, arrays: dict[str, np.ndarray], base: Manifest | None = None) -> list[FileEntry]:
        """Store new versions of ``{name: array}`` (not committed yet) after their
        versions in ``base`` (default: the head, read once)."""
        base = base if base is not None else self.ckpt.head()
        return [self.ckpt.write(name, arr, base) for name, arr in arrays.items()]

    def commit(self, entries: list[FileEntry], meta: dict) -> Manifest:
        """One commit of ``entries`` with ``meta`` (the committer only)."""
        return self.ckpt.commit(entries, meta)
