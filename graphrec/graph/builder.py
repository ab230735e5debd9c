"""Building a graph store from tables and a schema.

Steps, all vectorised (Arrow compute / numpy), nothing per node or edge in Python:

1. node tables: ids normalised (integers -> int64, strings -> large_string), nulls and
   duplicates rejected, features encoded (:mod:`graphrec.graph.features`);
2. relation tables, one at a time: the needed columns are read (in record batches,
   collected into one Arrow table, so one relation table's columns are in memory at a
   time), endpoint ids mapped to internal ids by a direct-address or hash lookup
   (:class:`graphrec.graph.ids.IdIndex`), unknown endpoints handled by the relation's
   policy (``error`` / ``drop`` / ``add``), then CSR in both directions
   (:mod:`graphrec.graph.csr`) written to disk before the next table is read;
3. node ids and features written last (``add`` may have appended nodes), then the
   manifest, and the temporary directory renamed into place.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from graphrec.errors import DataError, format_rows
from graphrec.graph.csr import build_csr, reverse_csr, stable_order
from graphrec.graph.ids import IdIndex
from graphrec.graph.features import encode_feature, pad_feature, to_numeric
from graphrec.graph.schema import GraphSchema, Relation
from graphrec.graph.sources import Table
from graphrec.graph.store import GraphStore, StoreWriter, path_component, relation_key

log = logging.getLogger(__name__)

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def normalize_ids(col: pa.ChunkedArray | pa.Array, where: str) -> pa.ChunkedArray:
    """Ids as int64 (integer columns) or large_string (string columns).

    Raises a :class:`DataError` naming ``where`` for null/NaN ids and other types.
    """
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if col.null_count:
        bad = np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))
        raise DataError(f"{where}: {col.null_count} null/empty ids, first at {format_rows(bad)}")
    if pa.types.is_integer(t):
        return col.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.large_string())
    if pa.types.is_floating(t):
        f = col.to_numpy()
        nan = np.flatnonzero(np.isnan(f))
        if nan.size:
            raise DataError(f"{where}: {nan.size} NaN ids, first at {format_rows(nan)}")
        frac = np.flatnonzero(~np.isfinite(f) | (f != np.floor(f)) | (np.abs(f) >= 2.0**63))
        if frac.size:
            raise DataError(
                f"{where}: ids must be integers or strings, found non-integer numbers at "
                f"{format_rows(frac, f[frac[:5]].tolist())}"
            )
        return pa.chunked_array([pa.array(f.astype(np.int64))])
    raise DataError(f"{where}: ids must be integers or strings, found column type {t}")


@dataclass
class _NodeState:
    """Ids of one node type during a build: the table's ids plus ids added from edges."""

    name: str
    ids: pa.ChunkedArray | None  # None until a table or an edge defines the id type
    origin: str  # where the ids come from, for messages
    features: dict = field(default_factory=dict)  # name -> (kind, arrays, vocab, column)
    added: list = field(default_factory=list)  # arrays of ids appended under `add`
    _index: IdIndex | None = field(default=None, repr=False)
    _index_count: int = field(default=-1, repr=False)

    @property
    def count(self) -> int:
        n = len(self.ids) if self.ids is not None else 0
        return n + sum(len(a) for a in self.added)

    def all_ids(self) -> pa.ChunkedArray:
        chunks = ([*self.ids.chunks] if self.ids is not None else []) + list(self.added)
        return pa.chunked_array(chunks, type=self.id_type)

    def index(self) -> IdIndex:
        """Lookup over the current ids (cached until ids are added)."""
        if self._index is None or self._index_count != self.count:
            self._index = IdIndex(self.all_ids()) if self.count else IdIndex(pa.array([], pa.int64()))
            self._index_count = self.count
        return self._index

    @property
    def id_type(self):
        if self.ids is not None:
            return self.ids.type
        return self.added[0].type if self.added else None


def _read_nodes(name: str, spec, data_dir, progress: bool) -> _NodeState:
    table = Table(spec.source, data_dir)
    feat_cols = {f: (fs.column or f) for f, fs in spec.features.items()}
    table.require([spec.id], what=f"node type {name!r} (id)")
    for f, c in feat_cols.items():
        table.require([c], what=f"node type {name!r} feature {f!r}")
    cols = list(dict.fromkeys([spec.id, *feat_cols.values()]))
    with tqdm(desc=f"read {name}", unit="rows", disable=not progress, leave=False) as bar:
        data = table.read(cols, progress=bar)
    ids = normalize_ids(data.column(spec.id), f"{table.path}: column {spec.id!r}")
    _check_unique(ids, f"{table.path}: column {spec.id!r}")
    state = _NodeState(name, ids, origin=f"{table.path} column {spec.id!r}")
    for f, fs in spec.features.items():
        col = feat_cols[f]
        arrays, vocab = encode_feature(data.column(col), fs, f"{table.path}: column {col!r}")
        state.features[f] = (fs.kind, arrays, vocab, col)
    return state


def _check_unique(ids: pa.ChunkedArray, where: str) -> None:
    n = len(ids)
    if pc.count_distinct(ids).as_py() == n:
        return
    rows = pa.array(np.arange(n, dtype=np.int64))
    g = pa.table({"id": ids, "row": pa.chunked_array([rows])}).group_by("id", use_threads=False).aggregate(
        [("row", "count"), ("row", "min"), ("row", "list")]
    )
    dup = g.filter(pc.greater(g.column("row_count"), 1)).sort_by("row_min")
    examples = []
    for rec in dup.slice(0, 3).to_pylist():
        rws = ", ".join(str(r + 1) for r in rec["row_list"][:4])
        examples.append(f"{rec['id']!r} at data rows {rws}")
    raise DataError(f"{where}: {dup.num_rows} duplicate node ids: " + "; ".join(examples))


def _check_id_type(values: pa.ChunkedArray, node: _NodeState, where: str) -> None:
    if node.id_type is not None and values.type != node.id_type:
        kind = lambda t: "integer" if pa.types.is_integer(t) else "string"  # noqa: E731
        raise DataError(
            f"{where}: ids are {kind(values.type)}s but node type {node.name!r} has "
            f"{kind(node.id_type)} ids (from {node.origin}); make the column types agree"
        )


def _resolve_missing(values: pa.ChunkedArray, out: np.ndarray, node: _NodeState, snapshot: int,
                     policy: str, where: str, rel_label: str) -> np.ndarray:
    """Apply the missing-endpoint policy to ``out`` (``-1`` = unknown) in place.

    ``snapshot`` is the node count the lookup ran against: ids appended since (by the
    other endpoint of the same relation) are looked up first.
    """
    miss = out < 0
    if not miss.any():
        return out
    if node.count > snapshot:
        later = pa.chunked_array(node.all_ids().slice(snapshot).chunks, type=node.id_type)
        pos = np.flatnonzero(miss)
        found = IdIndex(later).lookup(values.take(pa.array(pos)))
        hit = found >= 0
        out[pos[hit]] = found[hit] + snapshot
        miss = out < 0
        if not miss.any():
            return out
    bad = np.flatnonzero(miss)
    if policy == "error":
        vals = values.take(pa.array(bad[:5])).to_pylist()
        raise DataError(
            f"{where}: {bad.size} edges of relation {rel_label!r} point to {node.name!r} ids absent "
            f"from {node.origin}: {format_rows(bad, vals)} "
            "(set missing_endpoints: drop or add in the schema to accept them)"
        )
    if policy == "drop":
        log.warning("%s: dropped %d edges of %r whose %s id is unknown", where, bad.size, rel_label, node.name)
        return out
    # add: append the new ids in first-appearance order, then map the missing positions
    missing_values = values.take(pa.array(bad))
    new_ids = pc.unique(missing_values)
    new_ids = new_ids.combine_chunks() if isinstance(new_ids, pa.ChunkedArray) else new_ids
    n_before = node.count
    if node.ids is None and not node.origin:
        node.origin = where
    node.added.append(new_ids)
    out[bad] = IdIndex(new_ids).lookup(missing_values) + n_before
    log.info("%s: added %d %r nodes from relation %r", where, len(new_ids), node.name, rel_label)
    return out


def _map_endpoints(ends, nodes: dict, policy: str, rel_label: str):
    """Map ``[(values, node_type, where), ...]`` (src, dst) to internal ids (int64,
    ``-1`` = dropped). The two hash/table lookups run in two threads."""
    for values, t, where in ends:
        _check_id_type(values, nodes[t], where)
    snapshots = [nodes[t].count for _, t, _ in ends]
    indexes = [nodes[t].index() for _, t, _ in ends]
    with ThreadPoolExecutor(max_workers=len(ends)) as pool:
        outs = list(pool.map(lambda i: indexes[i].lookup(ends[i][0]), range(len(ends))))
    for (values, t, where), out, snap in zip(ends, outs, snapshots, strict=True):
        _resolve_missing(values, out, nodes[t], snap, policy, where, rel_label)
    return outs


def _explode(data: pa.Table, column: str, sep: str, where: str) -> pa.Table:
    """One row per token of the multi-valued ``column`` (split on ``sep``; ``" "`` means
    any whitespace), other columns repeated; empty and null tokens are dropped."""
    col = data.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DataError(f"{where}: a multi-valued endpoint (sep) needs a string column, found {col.type}")
    lists = pc.utf8_split_whitespace(col) if sep == " " else pc.split_pattern(col, sep)
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    parent = pc.list_parent_indices(lists)
    tokens = pc.list_flatten(lists)
    keep = pc.and_(pc.is_valid(tokens), pc.not_equal(pc.utf8_length(tokens), 0))
    parent, tokens = parent.filter(keep), tokens.filter(keep)
    out = data.take(parent)
    return out.set_column(out.schema.get_field_index(column), column, tokens)


def _timestamps(col: pa.ChunkedArray, where: str) -> np.ndarray:
    t = col.type
    if col.null_count:
        bad = np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))
        raise DataError(f"{where}: {col.null_count} missing timestamps, first at {format_rows(bad)}")
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return col.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(t):
        return col.cast(pa.int64()).to_numpy()
    x = to_numeric(col, where)
    return np.floor(x).astype(np.int64)


@dataclass
class _RelOut:
    """A built relation held until the end (indptrs need the final node counts)."""

    edge_type: tuple
    num_edges: int
    indptr: np.ndarray
    rev_indptr: np.ndarray
    attrs: list
    reverse_name: str | None


def _data_name_ok(name: str) -> bool:
    """A relation name read from a table (``name_column``): any non-empty text without
    ``:`` or control characters. It is stored under an encoded directory name
    (:func:`graphrec.graph.store.relation_key`), so ``/``, ``..`` or ``__`` are harmless."""
    return bool(name) and ":" not in name and not _CONTROL_RE.search(name)


def _build_relation(rel: Relation, schema: GraphSchema, nodes: dict, data_dir, writer: StoreWriter, progress: bool,
                    seen: set):
    table = Table(rel.source, data_dir)
    label = rel.label
    what = f"relation {label!r}"
    table.require([rel.src.column], what=f"{what} (src)")
    table.require([rel.dst.column], what=f"{what} (dst)")
    table.require([rel.name_column, rel.weight, rel.timestamp], what=what)
    cols = [c for c in (rel.src.column, rel.dst.column, rel.name_column, rel.weight, rel.timestamp) if c]
    t0 = time.perf_counter()
    with tqdm(desc=f"read {label}", unit="rows", disable=not progress, leave=False) as bar:
        data = table.read(cols, progress=bar)
    for side in (rel.src, rel.dst):
        if side.sep is not None:
            data = _explode(data, side.column, side.sep, f"{table.path}: column {side.column!r}")
    ends = []
    for side in (rel.src, rel.dst):
        where = f"{table.path}: column {side.column!r}"
        ends.append((normalize_ids(data.column(side.column), where), side.type, where))
    src, dst = _map_endpoints(ends, nodes, schema.policy(rel), label)
    keep = (src >= 0) & (dst >= 0)
    attrs = {}
    if rel.weight:
        attrs["weight"] = to_numeric(data.column(rel.weight), f"{table.path}: column {rel.weight!r}").astype(np.float32)
        nan = np.flatnonzero(np.isnan(attrs["weight"]))
        if nan.size:
            raise DataError(f"{table.path}: column {rel.weight!r}: {nan.size} missing weights, first at {format_rows(nan)}")
    if rel.timestamp:
        attrs["timestamp"] = _timestamps(data.column(rel.timestamp), f"{table.path}: column {rel.timestamp!r}")
    # split by relation name (one relation for `name`, one per value for `name_column`)
    if rel.name_column:
        names_col = data.column(rel.name_column)
        if names_col.null_count:
            bad = np.flatnonzero(pc.is_null(names_col).to_numpy(zero_copy_only=False))
            raise DataError(f"{table.path}: column {rel.name_column!r}: {names_col.null_count} missing relation names, first at {format_rows(bad)}")
        names_col = names_col.cast(pa.large_string())
        names = pc.unique(names_col)
        names = names.take(pc.array_sort_indices(names))
        codes = np.asarray(pc.index_in(names_col, value_set=names).to_numpy(), dtype=np.int64)
        name_list = names.to_pylist()
        bad_names = [n for n in name_list if not _data_name_ok(n)]
        if bad_names:
            raise DataError(f"{table.path}: column {rel.name_column!r}: relation names must be non-empty, without "
                            f"':' (it separates src:name:dst) or control characters; found {bad_names[:5]}")
    else:
        codes = np.zeros(len(src), dtype=np.int64)
        name_list = [rel.name]
    del data
    if not keep.all():
        src, dst, codes = src[keep], dst[keep], codes[keep]
        attrs = {k: v[keep] for k, v in attrs.items()}
    order = stable_order(codes, len(name_list)) if len(name_list) > 1 else None
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(name_list)))])
    outs = []
    for r, name in enumerate(name_list):
        sel = slice(bounds[r], bounds[r + 1])
        if order is not None:
            pick = order[sel]
            s, d, a = src[pick], dst[pick], {k: v[pick] for k, v in attrs.items()}
        else:
            s, d, a = src, dst, attrs
        et = (rel.src.type, name, rel.dst.type)
        rev_name = rel.reverse_name(name)
        for t in [et] + ([(rel.dst.type, rev_name, rel.src.type)] if rev_name else []):
            if t in seen:
                raise DataError(f"relation {':'.join(t)} is defined twice (in the schema or by {table.path})")
            seen.add(t)
        outs.append(_write_relation(et, s, d, a, nodes, writer, rev_name))
    dt = time.perf_counter() - t0
    n = int(len(src))
    log.info("%s: %d edges in %.2fs (%.0f edges/s)", what, n, dt, n / max(dt, 1e-9))
    return outs


def _write_relation(et, src, dst, attrs, nodes, writer: StoreWriter, reverse_name):
    key = relation_key(et)
    src_type, _, dst_type = et
    n_src, n_dst = nodes[src_type].count, nodes[dst_type].count
    indptr, indices, perm = build_csr(src, dst, n_src, n_dst)
    rev_indptr, rev_indices, rev_eid = reverse_csr(indptr, indices, n_dst)
    base = f"relations/{key}"
    writer.add_array(f"{base}/indices.npy", indices)
    writer.add_array(f"{base}/rev_indices.npy", rev_indices)
    writer.add_array(f"{base}/rev_eid.npy", rev_eid)
    for name, values in attrs.items():
        writer.add_array(f"{base}/{name}.npy", values[perm])
    return _RelOut(et, int(indices.shape[0]), indptr, rev_indptr, sorted(attrs), reverse_name)


def _pad_indptr(indptr: np.ndarray, n: int) -> np.ndarray:
    extra = n + 1 - indptr.shape[0]
    return indptr if extra == 0 else np.concatenate([indptr, np.full(extra, indptr[-1], np.int64)])


def _write_ids(writer: StoreWriter, node: _NodeState, node_dir: str) -> str:
    ids = node.all_ids().combine_chunks()
    base = f"{node_dir}/ids"
    if pa.types.is_integer(ids.type):
        writer.add_array(f"{base}.npy", np.asarray(ids.to_numpy(zero_copy_only=False), dtype=np.int64))
        return "int64"
    ids = ids.cast(pa.large_string())
    _, offsets_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[ids.offset : ids.offset + len(ids) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    writer.add_array(f"{base}.offsets.npy", offsets - offsets[0])
    writer.add_array(f"{base}.bytes.npy", data)
    return "string"


def build_graph(
    schema: GraphSchema,
    out: str | Path,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> GraphStore:
    """Build the graph described by ``schema`` into the store directory ``out``.

    Table paths are resolved against ``data_dir`` when relative. The store appears at
    ``out`` only when complete; any error leaves nothing behind (and an existing ``out``
    untouched).
    """
    t0 = time.perf_counter()
    nodes: dict[str, _NodeState] = {}
    for name, spec in schema.nodes.items():
        if spec.source is None:
            nodes[name] = _NodeState(name, None, origin="")
        else:
            nodes[name] = _read_nodes(name, spec, data_dir, progress)
    rel_entries = []
    with StoreWriter(out, overwrite=overwrite) as writer:
        built: list[_RelOut] = []
        seen: set = set()  # edge types written so far, reverse views included
        for rel in tqdm(schema.relations, desc="relations", unit="table", disable=not progress, leave=False):
            built.extend(_build_relation(rel, schema, nodes, data_dir, writer, progress, seen))
        node_meta = {}
        for name, node in nodes.items():
            if node.count == 0:
                raise DataError(f"node type {name!r} has no nodes (no table and no relation adds any)")
            node_dir = f"nodes/{path_component(name)}"
            id_dtype = _write_ids(writer, node, node_dir)
            extra = len(node.ids) if node.ids is not None else 0
            extra = node.count - extra
            feats = {}
            for fname, (kind, arrays, vocab, col) in node.features.items():
                stem = f"{node_dir}/features/{path_component(fname, dots=True)}"
                arrays = pad_feature(arrays, kind, extra)
                for suffix, arr in arrays.items():
                    writer.add_array(f"{stem}{suffix}", arr)
                if vocab is not None:
                    writer.add_json(f"{stem}.vocab.json", vocab)
                feats[fname] = {"kind": kind, "column": col, "vocab_size": len(vocab) if vocab else None, "path": stem}
            node_meta[name] = {"count": node.count, "id_dtype": id_dtype, "added_from_edges": extra, "features": feats,
                               "dir": node_dir}
        for r in built:
            key = relation_key(r.edge_type)
            src_type, rel_name, dst_type = r.edge_type
            n_src, n_dst = nodes[src_type].count, nodes[dst_type].count
            writer.add_array(f"relations/{key}/indptr.npy", _pad_indptr(r.indptr, n_src))
            writer.add_array(f"relations/{key}/rev_indptr.npy", _pad_indptr(r.rev_indptr, n_dst))
            rel_entries.append({"key": key, "src": src_type, "name": rel_name, "dst": dst_type,
                                "num_edges": r.num_edges, "attrs": r.attrs, "base": None})
            if r.reverse_name:
                ret = (dst_type, r.reverse_name, src_type)
                rel_entries.append({"key": relation_key(ret), "src": dst_type, "name": r.reverse_name, "dst": src_type,
                                    "num_edges": r.num_edges, "attrs": r.attrs, "base": key})
        writer.finish({
            "name": schema.name,
            "schema": schema.model_dump(mode="json"),
            "node_types": node_meta,
            "relations": rel_entries,
        })
    dt = time.perf_counter() - t0
    n_edges = sum(r.num_edges for r in built)
    log.info("built %s: %d node types, %d relations, %d edges in %.1fs", out, len(nodes), len(built), n_edges, dt)
    return GraphStore(out)
