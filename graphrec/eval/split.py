"""Per-user chronological split of an interaction relation.

For every source node (user) with at least ``min_interactions`` edges, its edges sorted
by (timestamp, original order) are cut into train / valid / test: the last
``max(1, round(n * f_test))`` go to test, the ``max(1, round(n * f_valid))`` before them
to valid, the rest (at least one) to train. Users with fewer interactions keep all of
them in train. A zero fraction gives an empty part.

The split directory holds ``train/`` — a complete graph store in which the relation
(and its reverse view) contains only train edges, so a model trained on it never sees
held-out edges — and ``valid.parquet`` / ``test.parquet`` with columns ``src``, ``dst``
(internal ids, valid in ``train/``), ``src_id``, ``dst_id`` (original ids),
``timestamp`` and ``weight`` where the relation has them, plus ``split.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from graphrec.errors import DataError, GraphrecError
from graphrec.graph.csr import build_csr, expand_indptr, reverse_csr
from graphrec.graph.store import EdgeType, GraphStore, relation_key, write_store
from graphrec.io import atomic_dir

log = logging.getLogger(__name__)

PARTS = ("train", "valid", "test")


def split_labels(indptr: np.ndarray, timestamps: np.ndarray, fractions, min_interactions: int) -> np.ndarray:
    """Label (0 train, 1 valid, 2 test) of every edge of a CSR grouped by user (int8 ``[E]``)."""
    f_train, f_valid, f_test = fractions
    deg = np.diff(indptr)
    n_edges = int(indptr[-1])
    src = expand_indptr(indptr)
    # order by user, then time, then original position (stable tie-break)
    order = np.lexsort((np.arange(n_edges), timestamps, src))
    pos = np.empty(n_edges, dtype=np.int64)
    pos[order] = np.arange(n_edges) - indptr[src[order]]
    n_test = np.where(f_test > 0, np.maximum(1, np.rint(deg * f_test)), 0).astype(np.int64)
    n_valid = np.where(f_valid > 0, np.maximum(1, np.rint(deg * f_valid)), 0).astype(np.int64)
    eligible = (deg >= min_interactions) & (deg - n_test - n_valid >= 1)
    d, nt, nv, el = deg[src], n_test[src], n_valid[src], eligible[src]
    labels = np.zeros(n_edges, dtype=np.int8)
    labels[el & (pos >= d - nt - nv)] = 1
    labels[el & (pos >= d - nt)] = 2
    return labels


@dataclass
class SplitResult:
    path: Path
    train: GraphStore
    relation: EdgeType
    counts: dict


def chronological_split(
    store: GraphStore,
    relation: EdgeType,
    fractions=(0.8, 0.1, 0.1),
    min_interactions: int = 3,
    out: str | Path = "split",
    overwrite: bool = False,
) -> SplitResult:
    """Split ``relation`` of ``store`` per user by time and write the split directory."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise GraphrecError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if fractions[0] <= 0:
        raise GraphrecError("the train fraction must be positive")
    rel = store.relation(relation)
    if rel.is_reverse:
        raise GraphrecError(f"{':'.join(relation)} is a reverse view; split its base relation instead")
    if "timestamp" not in rel.attr_names:
        raise DataError(f"relation {':'.join(relation)} has no timestamp column; a chronological split needs one (schema: timestamp: COLUMN)")
    indptr = np.asarray(rel.indptr)
    ts = np.asarray(rel.edge_attr("timestamp"))
    labels = split_labels(indptr, ts, fractions, min_interactions)
    src, dst = rel.coo()
    deg = np.diff(indptr)
    held_users = np.bincount(src[labels > 0], minlength=rel.num_src) > 0
    counts = {
        "train": int((labels == 0).sum()),
        "valid": int((labels == 1).sum()),
        "test": int((labels == 2).sum()),
        "users_split": int(held_users.sum()),
        "users_train_only": int(((deg > 0) & ~held_users).sum()),
    }
    key = relation_key(relation)
    base = f"relations/{key}"
    train = labels == 0
    t_indptr, t_indices, perm = build_csr(src[train], dst[train], rel.num_src, rel.num_dst)
    r_indptr, r_indices, r_eid = reverse_csr(t_indptr, t_indices, rel.num_dst)
    arrays = {k: v for k, v in store.arrays().items() if not k.startswith(base + "/")}
    arrays.update({f"{base}/indptr.npy": t_indptr, f"{base}/indices.npy": t_indices,
                   f"{base}/rev_indptr.npy": r_indptr, f"{base}/rev_indices.npy": r_indices,
                   f"{base}/rev_eid.npy": r_eid})
    for a in rel.attr_names:
        arrays[f"{base}/{a}.npy"] = np.asarray(rel.edge_attr(a))[train][perm]
    meta = {k: v for k, v in store.manifest.items() if k not in ("files", "checksum", "format", "format_version", "builder_version")}
    meta["relations"] = [dict(r, num_edges=counts["train"]) if (r["key"] == key or r.get("base") == key) else r
                         for r in store.manifest["relations"]]
    info = {"source_graph": str(store.path), "source_checksum": store.checksum, "relation": list(relation),
            "fractions": list(fractions), "min_interactions": min_interactions, "counts": counts}
    meta["split"] = info
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_store(tmp / "train", arrays, meta, store.json_files())
        for code, part in ((1, "valid"), (2, "test")):
            sel = labels == code
            cols = {"src": src[sel], "dst": np.asarray(dst)[sel],
                    "src_id": pa.array(store.original_ids(relation[0], src[sel])),
                    "dst_id": pa.array(store.original_ids(relation[2], np.asarray(dst)[sel]))}
            for a in rel.attr_names:
                cols[a] = np.asarray(rel.edge_attr(a))[sel]
            pq.write_table(pa.table(cols), tmp / f"{part}.parquet")
        train_store = GraphStore(tmp / "train")
        info["train_checksum"] = train_store.checksum
        (tmp / "split.json").write_text(json.dumps(info, indent=1))
    log.info("split %s: %s", ":".join(relation), counts)
    return SplitResult(out, GraphStore(out / "train"), tuple(relation), counts)


@dataclass
class Split:
    """A split directory opened for evaluation: the train store and held-out edges."""

    path: Path
    train: GraphStore
    relation: EdgeType
    info: dict

    def heldout(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` internal ids (int64) of the ``valid`` or ``test`` edges."""
        if part not in ("valid", "test"):
            raise ValueError("part must be 'valid' or 'test'")
        t = pq.read_table(self.path / f"{part}.parquet", columns=["src", "dst"])
        return t.column("src").to_numpy(), t.column("dst").to_numpy()

    def heldout_csr(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Held-out items per user as CSR ``(indptr [U+1], items)``."""
        src, dst = self.heldout(part)
        indptr, indices, _ = build_csr(src, dst, self.train.num_nodes(self.relation[0]), self.train.num_nodes(self.relation[2]))
        return indptr, indices

    def seen_csr(self, include_valid: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Items each user interacted with in train (and valid): CSR ``(indptr, items)``,
        for masking already-seen items when ranking."""
        rel = self.train.relation(self.relation)
        src, dst = rel.coo()
        if include_valid:
            vs, vd = self.heldout("valid")
            src, dst = np.concatenate([src, vs]), np.concatenate([dst, vd])
        indptr, indices, _ = build_csr(src, dst, rel.num_src, rel.num_dst)
        return indptr, indices


def load_split(path: str | Path) -> Split:
    path = Path(path)
    if not (path / "split.json").is_file():
        raise GraphrecError(f"{path}: not a split directory (no split.json); create one with `graphrec split`")
    info = json.loads((path / "split.json").read_text())
    return Split(path, GraphStore(path / "train"), tuple(info["relation"]), info)
