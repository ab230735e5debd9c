"""Graph surgery: a store without some nodes of one type.

:func:`drop_nodes` returns the arrays and manifest of a copy of a store in which the
nodes of ``node_type`` with ``keep[v] == False`` no longer exist: their ids and feature
rows are gone, every relation with that type at either end loses the edges that touch
them, and the kept nodes are renumbered in their old order
(``new_id = cumsum(keep)[old_id] − 1``). Everything else is shared with the source store
(memory-mapped arrays, vocabularies unchanged), so the copy is written with
:func:`graphrec.graph.store.write_store` in bounded memory. Vectorised throughout: a
cumulative sum for the renumbering and one CSR rebuild per touched relation.
"""

from __future__ import annotations

import copy

import numpy as np

from graphrec.graph.csr import build_csr, reverse_csr
from graphrec.graph.store import GraphStore


def renumbering(keep: np.ndarray) -> np.ndarray:
    """``new_id [N]`` int64: the kept nodes' new ids (their rank among kept nodes), ``-1``
    for dropped ones."""
    keep = np.asarray(keep, dtype=bool)
    new = np.cumsum(keep, dtype=np.int64) - 1
    new[~keep] = -1
    return new


def _take_rows(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ragged rows ``rows`` of ``(offsets [N+1], values [nnz])`` as a new pair."""
    lo, hi = offsets[rows], offsets[rows + 1]
    lens = hi - lo
    out_off = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lens, out=out_off[1:])
    pos = np.repeat(lo - out_off[:-1], lens) + np.arange(int(out_off[-1]), dtype=np.int64)
    return out_off, np.asarray(values)[pos]


def drop_nodes(store: GraphStore, node_type: str, keep: np.ndarray) -> tuple[dict[str, np.ndarray], dict, dict]:
    """``(arrays, meta, json_files)`` of ``store`` without the nodes of ``node_type`` whose
    ``keep`` (bool ``[N]``) is False; see the module docstring."""
    n = store.num_nodes(node_type)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (n,):
        raise ValueError(f"keep must be a bool array of {n} {node_type} nodes, got shape {keep.shape}")
    new_id = renumbering(keep)
    rows = np.flatnonzero(keep)
    arrays = dict(store.arrays())
    meta = copy.deepcopy(store.meta())  # (store.meta() shares its nested dicts with the open store)
    entry = meta["node_types"][node_type]
    node_dir = entry.get("dir") or f"nodes/{node_type}"
    # ids: int64 array, or string offsets + bytes
    if entry["id_dtype"] == "int64":
        arrays[f"{node_dir}/ids.npy"] = np.asarray(arrays[f"{node_dir}/ids.npy"])[rows]
    else:
        off, data = _take_rows(np.asarray(arrays[f"{node_dir}/ids.offsets.npy"]),
                               np.asarray(arrays[f"{node_dir}/ids.bytes.npy"]), rows)
        arrays[f"{node_dir}/ids.offsets.npy"], arrays[f"{node_dir}/ids.bytes.npy"] = off, data
    for name, info in entry.get("features", {}).items():
        stem = info.get("path") or f"{node_dir}/features/{name}"
        if info["kind"] in ("categorical", "numeric"):
            arrays[f"{stem}.npy"] = np.asarray(arrays[f"{stem}.npy"])[rows]
        else:
            off, vals = _take_rows(np.asarray(arrays[f"{stem}.offsets.npy"]), np.asarray(arrays[f"{stem}.values.npy"]),
                                   rows)
            arrays[f"{stem}.offsets.npy"], arrays[f"{stem}.values.npy"] = off, vals
    entry["count"] = int(rows.shape[0])
    if "added_from_edges" in entry:  # nodes known only from edges: their share of the kept ones is not tracked
        entry["added_from_edges"] = min(int(entry["added_from_edges"]), int(rows.shape[0]))
    counts = {}
    for r in meta["relations"]:
        if r.get("base") is not None or node_type not in (r["src"], r["dst"]):
            continue
        rel = store.relation((r["src"], r["name"], r["dst"]))
        src, dst = rel.coo()
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        ok = np.ones(src.shape[0], dtype=bool)
        if r["src"] == node_type:
            ok &= keep[src]
            src = new_id[src]
        if r["dst"] == node_type:
            ok &= keep[dst]
            dst = new_id[dst]
        n_src = store.num_nodes(r["src"]) if r["src"] != node_type else int(rows.shape[0])
        n_dst = store.num_nodes(r["dst"]) if r["dst"] != node_type else int(rows.shape[0])
        indptr, indices, perm = build_csr(src[ok], dst[ok], n_src, n_dst)
        r_indptr, r_indices, r_eid = reverse_csr(indptr, indices, n_dst)
        base = f"relations/{r['key']}"
        arrays.update({f"{base}/indptr.npy": indptr, f"{base}/indices.npy": indices,
                       f"{base}/rev_indptr.npy": r_indptr, f"{base}/rev_indices.npy": r_indices,
                       f"{base}/rev_eid.npy": r_eid})
        for a in rel.attr_names:
            arrays[f"{base}/{a}.npy"] = np.asarray(rel.edge_attr(a))[ok][perm]
        counts[r["key"]] = int(ok.sum())
    for r in meta["relations"]:
        key = r.get("base") or r["key"]
        if key in counts:
            r["num_edges"] = counts[key]
    return arrays, meta, store.json_files()
