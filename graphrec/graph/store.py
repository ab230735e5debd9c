"""The graph store: a directory of memory-mappable ``.npy`` arrays plus ``manifest.json``.

Layout::

    GRAPH_DIR/
      manifest.json                          schema, counts, dtypes, sha256 per array
      nodes/<type>/ids.npy                   original ids, int64        (integer ids)
      nodes/<type>/ids.offsets.npy           original ids, Arrow layout (string ids):
      nodes/<type>/ids.bytes.npy               int64 offsets [N+1] + utf-8 bytes
      nodes/<type>/features/<f>.npy          categorical: int32 codes [N] (0 = unknown)
                                             numeric: float32 [N] (NaN = missing)
      nodes/<type>/features/<f>.offsets.npy  multi_categorical / text: int64 [N+1]
      nodes/<type>/features/<f>.values.npy     and int32 codes
      nodes/<type>/features/<f>.vocab.json   code -> token (code 0 is "<unk>")
      relations/<src>__<rel>__<dst>/
        indptr.npy, indices.npy              CSR by source (int64)
        rev_indptr.npy, rev_indices.npy      CSR by destination (int64)
        rev_eid.npy                          forward-CSR position of each reversed edge
        weight.npy (float32), timestamp.npy (int64)   in forward-CSR order

Internal node ids are contiguous ``0..N-1`` per type, the row order of the node table
(followed by ids added from edges under ``missing_endpoints: add``). A reverse relation
(``reverse:`` in the schema) is a view over its base relation's arrays, not a copy.

Writing is atomic: everything goes to a temporary sibling directory renamed into place
at the end, so a failed build never leaves a partial graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graphrec import __version__
from graphrec.errors import StoreError
from graphrec.io import atomic_dir
from graphrec.graph.csr import expand_indptr

log = logging.getLogger(__name__)

FORMAT = "graphrec-graph-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

EdgeType = tuple[str, str, str]


def relation_key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


def parse_edge_type(text: str) -> EdgeType:
    """``"user:rated:item"`` -> ``("user", "rated", "item")``."""
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"relation {text!r} must be written src:name:dst")
    return tuple(parts)  # type: ignore[return-value]


# ---- writing --------------------------------------------------------------------------


def _sha256_array(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    flat = arr.reshape(-1) if arr.ndim else arr.reshape(1)
    step = max(1, (64 << 20) // max(1, arr.itemsize))
    for start in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[start : start + step]).data)
    return h.hexdigest()


class StoreWriter:
    """Writes a store's arrays one by one into a temporary directory (so large arrays can
    be freed as soon as they are on disk) and renames it into place on :meth:`finish`.

    >>> with StoreWriter(out) as w:
    ...     w.add_array("relations/k/indices.npy", indices)
    ...     w.finish(meta)
    """

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out)
        self.overwrite = overwrite
        self.files: dict[str, dict] = {}
        self._cm = None
        self.tmp: Path | None = None

    def __enter__(self) -> StoreWriter:
        self._cm = atomic_dir(self.out, overwrite=self.overwrite)
        self.tmp = self._cm.__enter__()
        self._finished = False
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self._finished:
            exc_type, exc = StoreError, StoreError("StoreWriter closed without finish()")
        return self._cm.__exit__(exc_type, exc, tb)

    def add_array(self, rel: str, arr: np.ndarray) -> None:
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr, allow_pickle=False)
        self.files[rel] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "sha256": _sha256_array(arr)}

    def add_json(self, rel: str, obj) -> None:
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, ensure_ascii=False))

    def finish(self, meta: dict) -> str:
        """Write the manifest; the directory is renamed into place when the block exits."""
        checksum = hashlib.sha256(
            "".join(f"{k}:{v['sha256']};" for k, v in sorted(self.files.items())).encode()
        ).hexdigest()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "builder_version": __version__,
            **meta,
            "files": dict(sorted(self.files.items())),
            "checksum": checksum,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        self._finished = True
        return checksum


def write_store(
    out: str | Path,
    arrays: Mapping[str, np.ndarray],
    meta: dict,
    json_files: Mapping[str, object] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a graph store atomically from ``arrays`` (relative path -> array; memory
    mapped inputs are streamed) and ``json_files``; ``meta`` becomes the manifest,
    completed with format, builder version, per-file dtype/shape/sha256 and checksum."""
    with StoreWriter(out, overwrite=overwrite) as w:
        for rel in sorted(arrays):
            w.add_array(rel, arrays[rel])
        for rel, obj in sorted((json_files or {}).items()):
            w.add_json(rel, obj)
        w.finish(meta)
    return Path(out)


# ---- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """A node feature: ``kind`` and its arrays (memory-mapped).

    categorical: ``codes`` int32 ``[N]``; numeric: ``values`` float32 ``[N]``;
    multi_categorical/text: ``offsets`` int64 ``[N+1]`` and ``codes`` int32 ``[nnz]``.
    ``vocab[c]`` is the token of code ``c`` (``vocab[0] == "<unk>"``).
    """

    name: str
    kind: str
    codes: np.ndarray | None = None
    values: np.ndarray | None = None
    offsets: np.ndarray | None = None
    vocab: list[str] | None = None

    def __repr__(self) -> str:
        n = len(self.values if self.values is not None else (self.offsets[:-1] if self.offsets is not None else self.codes))
        vocab = f", vocab={len(self.vocab)}" if self.vocab is not None else ""
        return f"Feature({self.name!r}, kind={self.kind!r}, nodes={n}{vocab})"

    @property
    def num_categories(self) -> int:
        return len(self.vocab) if self.vocab is not None else 0


class RelationView:
    """One relation type ``(src, name, dst)`` of a store, as CSR in both directions.

    ``indptr``/``indices``: neighbours by source (``[num_src + 1]``, ``[E]``);
    ``rev_indptr``/``rev_indices``: by destination. Edge attributes are returned in
    forward-CSR order. A reverse relation is a view over the base relation's arrays.
    """

    def __init__(self, store: GraphStore, entry: dict):
        self.store = store
        self.edge_type: EdgeType = (entry["src"], entry["name"], entry["dst"])
        self.base_key: str = entry.get("base") or entry["key"]
        self.is_reverse: bool = entry.get("base") is not None
        self.num_edges: int = entry["num_edges"]
        self.attr_names: list[str] = list(entry.get("attrs", []))

    def __repr__(self) -> str:
        s, r, d = self.edge_type
        rev = ", reverse view" if self.is_reverse else ""
        return f"RelationView({s} -{r}-> {d}, edges={self.num_edges}{rev})"

    def _arr(self, name: str) -> np.ndarray:
        return self.store.array(f"relations/{self.base_key}/{name}.npy")

    @property
    def src_type(self) -> str:
        return self.edge_type[0]

    @property
    def dst_type(self) -> str:
        return self.edge_type[2]

    @property
    def num_src(self) -> int:
        return self.store.num_nodes(self.src_type)

    @property
    def num_dst(self) -> int:
        return self.store.num_nodes(self.dst_type)

    @property
    def indptr(self) -> np.ndarray:
        return self._arr("rev_indptr" if self.is_reverse else "indptr")

    @property
    def indices(self) -> np.ndarray:
        return self._arr("rev_indices" if self.is_reverse else "indices")

    @property
    def rev_indptr(self) -> np.ndarray:
        return self._arr("indptr" if self.is_reverse else "rev_indptr")

    @property
    def rev_indices(self) -> np.ndarray:
        return self._arr("indices" if self.is_reverse else "rev_indices")

    def edge_attr(self, name: str) -> np.ndarray:
        """Edge attribute (``weight`` float32, ``timestamp`` int64) in forward-CSR order."""
        if name not in self.attr_names:
            raise KeyError(f"relation {':'.join(self.edge_type)} has no edge attribute {name!r} (has {self.attr_names})")
        base = self._arr(name)
        return base[self._arr("rev_eid")] if self.is_reverse else base

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` int64 arrays ``[E]`` in forward-CSR order."""
        return expand_indptr(self.indptr), np.asarray(self.indices)

    def out_degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def in_degree(self) -> np.ndarray:
        return np.diff(self.rev_indptr)


class GraphStore:
    """A built heterogeneous graph, loaded lazily (every array is ``np.load(mmap_mode)``).

    The default ``mmap_mode="c"`` (copy-on-write) gives writable arrays that torch can
    wrap without copying; writes stay private to the process and never reach the files.

    >>> g = GraphStore("out/ml100k")
    >>> g.num_nodes("user"), g.relation(("user", "rated", "item")).num_edges
    (943, 100000)
    """

    def __init__(self, path: str | Path, verify: bool = False, mmap_mode: str = "c"):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise StoreError(f"{self.path}: not a graph store (no {MANIFEST}); build one with `graphrec build`")
        try:
            self.manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as err:
            raise StoreError(f"{mf}: corrupt manifest: {err}") from None
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{mf}: not a graphrec graph store manifest")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{mf}: store format version {self.manifest.get('format_version')} is not supported "
                f"(this graphrec reads version {FORMAT_VERSION}); rebuild the graph"
            )
        self.mmap_mode = mmap_mode
        self._arrays: dict[str, np.ndarray] = {}
        self._id_arrays: dict[str, pa.Array] = {}
        self._relations = {(r["src"], r["name"], r["dst"]): r for r in self.manifest["relations"]}
        if verify:
            self.verify()

    def __repr__(self) -> str:
        nodes = ", ".join(f"{t}={self.num_nodes(t)}" for t in self.node_types)
        return f"GraphStore({str(self.path)!r}, nodes: {nodes}, relations={len(self.edge_types)}, edges={self.num_edges()})"

    # ---- metadata ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    @property
    def checksum(self) -> str:
        return self.manifest["checksum"]

    @property
    def node_types(self) -> list[str]:
        return list(self.manifest["node_types"])

    @property
    def edge_types(self) -> list[EdgeType]:
        return list(self._relations)

    def num_nodes(self, node_type: str) -> int:
        return int(self._node_entry(node_type)["count"])

    def num_edges(self, edge_type: EdgeType | None = None) -> int:
        if edge_type is None:
            return sum(r["num_edges"] for r in self._relations.values())
        return int(self._rel_entry(edge_type)["num_edges"])

    def _node_entry(self, node_type: str) -> dict:
        try:
            return self.manifest["node_types"][node_type]
        except KeyError:
            raise KeyError(f"unknown node type {node_type!r} (store has {self.node_types})") from None

    def _rel_entry(self, edge_type) -> dict:
        if isinstance(edge_type, str):
            edge_type = parse_edge_type(edge_type)
        try:
            return self._relations[tuple(edge_type)]
        except KeyError:
            known = [":".join(e) for e in self.edge_types]
            raise KeyError(f"unknown relation {':'.join(edge_type)!r} (store has {known})") from None

    # ---- arrays -----------------------------------------------------------------------
    def array(self, relpath: str) -> np.ndarray:
        """A stored array by relative path, memory-mapped on first access."""
        arr = self._arrays.get(relpath)
        if arr is None:
            if relpath not in self.manifest["files"]:
                raise StoreError(f"{self.path}: {relpath} is not listed in the manifest")
            p = self.path / relpath
            if not p.is_file():
                raise StoreError(f"{self.path}: {relpath} is missing (store incomplete or moved)")
            arr = np.load(p, mmap_mode=self.mmap_mode, allow_pickle=False)
            self._arrays[relpath] = arr
        return arr

    def arrays(self) -> dict[str, np.ndarray]:
        """All arrays by relative path (memory-mapped)."""
        return {rel: self.array(rel) for rel in self.manifest["files"]}

    def json_files(self) -> dict[str, object]:
        out = {}
        for p in self.path.rglob("*.json"):
            rel = p.relative_to(self.path).as_posix()
            if rel != MANIFEST:
                out[rel] = json.loads(p.read_text())
        return out

    def verify(self) -> None:
        """Recompute every array's sha256 and compare with the manifest."""
        for rel, info in self.manifest["files"].items():
            arr = self.array(rel)
            if str(arr.dtype) != info["dtype"] or list(arr.shape) != info["shape"]:
                raise StoreError(f"{self.path}: {rel} has dtype/shape {arr.dtype}{arr.shape}, manifest says {info['dtype']}{info['shape']}")
            if _sha256_array(arr) != info["sha256"]:
                raise StoreError(f"{self.path}: {rel} fails its checksum (file changed or corrupt)")

    # ---- nodes ------------------------------------------------------------------------
    def node_ids(self, node_type: str) -> pa.Array:
        """Original ids of ``node_type`` in internal-id order: an Arrow ``int64`` or
        ``large_string`` array built zero-copy over the memory-mapped files."""
        if node_type in self._id_arrays:
            return self._id_arrays[node_type]
        entry = self._node_entry(node_type)
        base = f"nodes/{node_type}/ids"
        if entry["id_dtype"] == "int64":
            arr = pa.array(np.asarray(self.array(f"{base}.npy")))
        else:
            offsets = np.asarray(self.array(f"{base}.offsets.npy"))
            data = np.asarray(self.array(f"{base}.bytes.npy"))
            arr = pa.LargeStringArray.from_buffers(
                len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data)
            )
        self._id_arrays[node_type] = arr
        return arr

    def original_ids(self, node_type: str, index=None) -> np.ndarray:
        """Original ids for internal ids ``index`` (all when None) as a numpy array
        (int64, or object strings)."""
        ids = self.node_ids(node_type)
        if index is not None:
            ids = ids.take(pa.array(np.asarray(index, dtype=np.int64)))
        return ids.to_numpy(zero_copy_only=False)

    def lookup(self, node_type: str, original_ids) -> np.ndarray:
        """Internal ids (int64) of ``original_ids``; ``-1`` where an id is unknown."""
        ids = self.node_ids(node_type)
        query = pa.array(original_ids) if not isinstance(original_ids, (pa.Array, pa.ChunkedArray)) else original_ids
        try:
            query = query.cast(ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TypeError(f"{node_type} ids are {ids.type}; cannot look up values of type {query.type}") from None
        idx = pc.index_in(query, value_set=ids).fill_null(-1)
        return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)

    def feature_names(self, node_type: str) -> list[str]:
        return list(self._node_entry(node_type).get("features", {}))

    def feature(self, node_type: str, name: str) -> Feature:
        entry = self._node_entry(node_type).get("features", {})
        if name not in entry:
            raise KeyError(f"node type {node_type!r} has no feature {name!r} (has {list(entry)})")
        info = entry[name]
        base = f"nodes/{node_type}/features/{name}"
        kind = info["kind"]
        vocab = None
        if kind != "numeric":
            vocab = json.loads((self.path / f"{base}.vocab.json").read_text())
        if kind == "numeric":
            return Feature(name, kind, values=self.array(f"{base}.npy"))
        if kind == "categorical":
            return Feature(name, kind, codes=self.array(f"{base}.npy"), vocab=vocab)
        return Feature(
            name, kind, codes=self.array(f"{base}.values.npy"), offsets=self.array(f"{base}.offsets.npy"), vocab=vocab
        )

    # ---- relations --------------------------------------------------------------------
    def relation(self, edge_type: EdgeType | str) -> RelationView:
        return RelationView(self, self._rel_entry(edge_type))

    def relations(self) -> list[RelationView]:
        return [self.relation(et) for et in self.edge_types]

    def relation_entry(self, edge_type) -> dict:
        return dict(self._rel_entry(edge_type))

    # ---- persistence and conversions -----------------------------------------------
    def save(self, out: str | Path, overwrite: bool = False) -> GraphStore:
        """Copy this store to ``out`` (atomically; checksums recomputed) and open it."""
        meta = {k: v for k, v in self.manifest.items() if k not in ("files", "checksum", "format", "format_version", "builder_version")}
        write_store(out, self.arrays(), meta, self.json_files(), overwrite=overwrite)
        return GraphStore(out)

    def equals(self, other: GraphStore) -> bool:
        """Same node types, relations and identical array contents."""
        if self.manifest["node_types"] != other.manifest["node_types"]:
            return False
        if self.manifest["relations"] != other.manifest["relations"]:
            return False
        if set(self.manifest["files"]) != set(other.manifest["files"]):
            return False
        return all(self.manifest["files"][k]["sha256"] == other.manifest["files"][k]["sha256"] for k in self.manifest["files"])

    def to_pyg(self, **kwargs):
        from graphrec.graph.convert import to_pyg

        return to_pyg(self, **kwargs)

    def to_networkx(self, **kwargs):
        from graphrec.graph.convert import to_networkx

        return to_networkx(self, **kwargs)

    def to_dgl(self, **kwargs):
        from graphrec.graph.convert import to_dgl

        return to_dgl(self, **kwargs)
