"""Property: every schema + tables either builds a store that reads back equal to the
tables, or fails with a GraphrecError -- never any other exception.

Random schemas (node types with and without tables, relations named in the schema or
by a column, reverse views, missing-endpoint policies) over random tables (int and
string ids, unicode and separator-laden ids and names, nulls, duplicates, empty tables,
features of every kind). A pure-Python oracle computes what the store must hold --
nodes in order, original ids, edges through original ids with their attributes,
features -- or that the input must be refused. Tables are read through
:class:`graphrec.graph.sources.Table` in the oracle too, so CSV type inference is not
what is under test; everything after reading is.

Seeded (``derandomize=True``): a failure reproduces; hypothesis prints the example.
``GRAPHREC_PROPERTY_EXAMPLES`` (default 300, ~30 s on 2 cores) sets how many inputs
are tried; raise it for a longer hunt.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrec.errors import GraphrecError
from graphrec.graph import GraphStore, build_graph, parse_schema
from graphrec.graph.schema import Source
from graphrec.graph.sources import Table

pytestmark = pytest.mark.filterwarnings("ignore")

NODE_NAMES = ["user", "item", "a__b", "a", "b_", "_c", "x.y", "..", ".", "n-1", "ü", "n:1", "a/b", ""]
REL_NAMES = ["r", "r__s", "rev_r", "..", "_", "x.y", "a/b", "r:s", "é"]
FEATURE_NAMES = ["f", "f.offsets", "f.values", "g__h", "..", "ids", "_"]
def _texts(pieces, max_size):
    return st.lists(st.sampled_from(pieces), max_size=max_size).map("".join)


ID_TEXT = _texts(list("ab_:/.%~ é中\t") + ["__", "..", "\U0001f600"], 6)
NAME_TEXT = _texts(list("rs_:/.% é") + ["__", "..", "\x00", "\n"], 5)
TOKENS = _texts(list("abcAB ,.!"), 8)


class Refused(Exception):
    """The oracle says the input must be refused with a GraphrecError."""


# ---- generation -------------------------------------------------------------------------


@st.composite
def graphs(draw):
    int_pool = draw(st.lists(st.integers(-3, 2**62) | st.integers(0, 20), min_size=1, max_size=8, unique=True))
    str_pool = draw(st.lists(ID_TEXT, min_size=1, max_size=8, unique=True))

    def ids(kind, n, unique=False):
        pool = int_pool if kind == "int" else str_pool
        if unique and draw(st.integers(0, 5)) != 5:
            n = min(n, len(pool))
        vals = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n, unique=unique and n <= len(pool)))
        if n and draw(st.integers(0, 15)) == 15:  # a null id now and then
            vals[draw(st.integers(0, n - 1))] = None
        return vals

    def size(hi):
        return 0 if draw(st.integers(0, 15)) == 15 else draw(st.integers(1, hi))

    n_types = draw(st.integers(1, 3))
    node_names = st.sampled_from(NODE_NAMES) if draw(st.integers(0, 9)) == 9 else st.sampled_from(NODE_NAMES[:10])
    names = draw(st.lists(node_names, min_size=n_types, max_size=n_types, unique=True))
    tables, nodes, kinds = {}, {}, {}
    fmt = draw(st.sampled_from(["parquet", "parquet", "csv"]))
    for i, name in enumerate(names):
        kinds[name] = draw(st.sampled_from(["int", "str"]))
        if draw(st.integers(0, 4)) == 4:
            nodes[name] = {}
            continue
        n = size(6)
        cols = {"id": ids(kinds[name], n, unique=True)}
        n = len(cols["id"])
        feats = {}
        for f in draw(st.lists(st.sampled_from(FEATURE_NAMES), max_size=3, unique=True)):
            kind = draw(st.sampled_from(["numeric", "categorical", "multi_categorical", "text"]))
            if kind == "numeric":
                vals = draw(st.lists(st.none() | st.floats(-1e6, 1e6, width=32), min_size=n, max_size=n))
            elif kind == "categorical" and draw(st.booleans()):
                vals = draw(st.lists(st.none() | st.integers(-5, 5), min_size=n, max_size=n))
            else:
                vals = draw(st.lists(st.none() | TOKENS, min_size=n, max_size=n))
            col = f"c{len(cols)}"
            cols[col] = vals
            feats[f] = {"kind": kind, "column": col}
        file = f"n{i}.{fmt}"
        tables[file] = cols
        nodes[name] = {"source": file, "id": "id", "features": feats}
    relations = []
    for j in range(draw(st.integers(1, 3))):
        s, d = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        n = size(7)
        kind_s = kinds[s] if draw(st.integers(0, 9)) != 9 else draw(st.sampled_from(["int", "str"]))
        cols = {"src": ids(kind_s, n), "dst": ids(kinds[d], n)}
        rel = {"source": f"e{j}.{fmt}", "src": {"type": s, "column": "src"}, "dst": {"type": d, "column": "dst"}}
        if draw(st.booleans()):
            rel["name"] = draw(st.sampled_from(REL_NAMES[:6]) if draw(st.integers(0, 5)) != 5 else st.sampled_from(REL_NAMES))
        else:
            rel["name_column"] = "rel"
            pool = draw(st.lists(NAME_TEXT.filter(lambda x: x and ":" not in x and "\x00" not in x and "\n" not in x)
                                 if draw(st.integers(0, 3)) != 3 else NAME_TEXT, min_size=1, max_size=3, unique=True))
            cols["rel"] = draw(st.lists(st.sampled_from(pool) | st.none(), min_size=n, max_size=n)) \
                if draw(st.integers(0, 4)) == 4 else draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
        if draw(st.booleans()):
            cols["w"] = draw(st.lists(st.floats(-10, 10, width=32) | st.none() if draw(st.integers(0, 4)) == 4
                                      else st.floats(-10, 10, width=32), min_size=n, max_size=n))
            rel["weight"] = "w"
        if draw(st.booleans()):
            cols["t"] = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n))
            rel["timestamp"] = "t"
        rel["reverse"] = draw(st.sampled_from([False, True, "rev"]))
        if rel["reverse"] == "rev" and "name_column" in rel:
            rel["reverse"] = True
        if draw(st.booleans()):
            rel["missing_endpoints"] = draw(st.sampled_from(["drop", "add", "error"]))
        tables[rel["source"]] = cols
        relations.append(rel)
    schema = {"name": "prop", "missing_endpoints": draw(st.sampled_from(["add", "drop", "error"])),
              "nodes": nodes, "relations": relations}
    return schema, tables


def _write(tables, d):
    for file, cols in tables.items():
        t = pa.table({c: pa.array(v, type=_arrow_type(v)) for c, v in cols.items()})
        if file.endswith(".parquet"):
            pq.write_table(t, d / file)
        else:
            pacsv.write_csv(t, d / file)


def _arrow_type(values):
    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    if isinstance(present[0], float):
        return pa.float32()
    return pa.int64() if isinstance(present[0], int) else pa.string()


# ---- oracle -----------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _ids(col: pa.ChunkedArray) -> list:
    """The ids as the builder normalises them (ints or strings), or Refused."""
    t = col.type
    if col.null_count:
        raise Refused("null id")
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.to_pylist()
    if pa.types.is_floating(t):
        vals = col.to_pylist()
        if any(not math.isfinite(v) or v != math.floor(v) or abs(v) >= 2**63 for v in vals):
            raise Refused("non-integer id")
        return [int(v) for v in vals]
    raise Refused(f"id type {t}")


def _kind(col):
    return "int" if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) else "str"


def _read(source, cols, data_dir):
    t = Table(Source.model_validate(source if isinstance(source, dict) else {"path": source}), data_dir)
    t.require(cols, "oracle")
    return t.read(cols)


def oracle(schema, data_dir):
    """{"nodes": {type: [ids]}, "edges": {edge_type: Counter((src, dst, w, t))},
    "features": {(type, f): [decoded values]}}; raises Refused or GraphrecError."""
    for name in schema["nodes"]:
        if not _NAME_RE.match(name):
            raise Refused("node type name")
    nodes, kinds, feats = {}, {}, {}
    for name, spec in schema["nodes"].items():
        if not spec:
            continue
        cols = ["id", *[f["column"] for f in spec["features"].values()]]
        t = _read(spec["source"], cols, data_dir)
        ids = _ids(t.column("id"))
        if len(set(ids)) != len(ids):
            raise Refused("duplicate ids")
        nodes[name], kinds[name] = list(ids), _kind(t.column("id"))
        for f, fs in spec["features"].items():
            if not _NAME_RE.match(f):
                raise Refused("feature name")
            feats[(name, f)] = (fs["kind"], t.column(fs["column"]))
    edges, seen = {}, set()
    for rel in schema["relations"]:
        policy = rel.get("missing_endpoints") or (
            "add" if any(not schema["nodes"][rel[s]["type"]] for s in ("src", "dst")) else schema["missing_endpoints"])
        if any(not schema["nodes"][rel[s]["type"]] for s in ("src", "dst")) and policy != "add":
            raise Refused("table-less node type needs add")
        if "name" in rel and not _NAME_RE.match(rel["name"]):
            raise Refused("relation name")
        cols = ["src", "dst"] + [c for c in ("rel", "w", "t") if c in (rel.get("name_column"), rel.get("weight"),
                                                                     rel.get("timestamp"))]
        t = _read(rel["source"], cols, data_dir)
        ends = []
        for side in ("src", "dst"):
            col = t.column(side)
            vals = _ids(col)
            typ = rel[side]["type"]
            if typ in kinds and kinds[typ] != _kind(col):
                raise Refused("id type mismatch")
            kinds.setdefault(typ, _kind(col))
            ends.append((vals, typ))
        snap = {typ: len(nodes.get(typ, [])) for _, typ in ends}
        mapped = []
        for vals, typ in ends:  # src first, then dst: the builder's order of `add`
            known = nodes.setdefault(typ, [])
            index = {v: i for i, v in enumerate(known)}
            out = []
            for v in vals:
                if v in index and (index[v] < snap[typ] or policy == "add"):
                    out.append(v)
                elif policy == "error":
                    raise Refused("unknown endpoint")
                elif policy == "drop":
                    out.append(None)
                else:
                    index[v] = len(known)
                    known.append(v)
                    out.append(v)
            mapped.append(out)
        w = t.column("w").to_pylist() if rel.get("weight") else [None] * t.num_rows
        if rel.get("weight") and any(x is None or math.isnan(x) for x in w):
            raise Refused("missing weight")
        ts = t.column("t").to_pylist() if rel.get("timestamp") else [None] * t.num_rows
        if rel.get("timestamp") and any(x is None for x in ts):
            raise Refused("missing timestamp")
        if rel.get("name_column"):
            rn = t.column("rel").to_pylist()
            if any(x is None for x in rn):
                raise Refused("null relation name")
            if any(x == "" or ":" in x or re.search(r"[\x00-\x1f\x7f]", x) for x in rn):
                raise Refused("relation name from data")
            rel_names = sorted(set(rn))
        else:
            rn, rel_names = [rel["name"]] * t.num_rows, [rel["name"]]
        for r in rel_names:
            et = (rel["src"]["type"], r, rel["dst"]["type"])
            rev = None if rel["reverse"] is False else ("rev_" + r if rel["reverse"] is True else rel["reverse"])
            for x in [et] + ([(et[2], rev, et[0])] if rev else []):
                if x in seen:
                    raise Refused("relation defined twice")
                seen.add(x)
            edges[et] = Counter(
                (s, d, None if wi is None else np.float32(wi), ti)
                for s, d, wi, ti, ri in zip(*mapped, w, ts, rn, strict=True)
                if ri == r and s is not None and d is not None)
            if rev:
                edges[(et[2], rev, et[0])] = Counter({(d, s, wi, ti): c for (s, d, wi, ti), c in edges[et].items()})
    for name in schema["nodes"]:
        if not nodes.get(name):
            raise Refused("node type without nodes")
    return {"nodes": nodes, "edges": edges, "features": feats}


# ---- read-back --------------------------------------------------------------------------


def _feature_values(store, node_type, name):
    f = store.feature(node_type, name)
    if f.kind == "numeric":
        return [None if np.isnan(v) else float(v) for v in f.values]
    if f.kind == "categorical":
        return [None if c == 0 else f.vocab[c] for c in f.codes]
    off = np.asarray(f.offsets)
    return [[f.vocab[c] for c in f.codes[off[i]:off[i + 1]]] for i in range(len(off) - 1)]


def _expected_feature(kind, col: pa.ChunkedArray, n_total):
    vals = col.to_pylist()
    if kind == "numeric":
        out = [None if v is None else float(np.float32(v)) for v in vals]
    elif kind == "categorical":
        out = [None if v is None else str(v) for v in vals]
    elif kind == "multi_categorical":
        out = [[] if v is None else str(v).split() for v in vals]
    else:
        out = [[] if v is None else [t for t in re.split(r"[^\w]+", str(v).lower()) if t] for v in vals]
    pad = None if kind in ("numeric", "categorical") else []
    return out + [pad] * (n_total - len(out))


def _check_equal(store: GraphStore, want):
    assert sorted(store.node_types) == sorted(want["nodes"])
    for t, ids in want["nodes"].items():
        assert store.original_ids(t).tolist() == ids, t
    got_edges = {}
    for rel in store.relations():
        src, dst = rel.coo()
        s_ids = store.original_ids(rel.src_type, src).tolist()
        d_ids = store.original_ids(rel.dst_type, dst).tolist()
        w = rel.edge_attr("weight").tolist() if "weight" in rel.attr_names else [None] * rel.num_edges
        ts = rel.edge_attr("timestamp").tolist() if "timestamp" in rel.attr_names else [None] * rel.num_edges
        got_edges[rel.edge_type] = Counter(
            (s, d, None if wi is None else np.float32(wi), ti) for s, d, wi, ti in zip(s_ids, d_ids, w, ts, strict=True))
        assert np.array_equal(np.diff(rel.indptr), rel.out_degree())
        assert int(rel.indptr[-1]) == rel.num_edges == len(rel.rev_indices)
    assert got_edges == want["edges"]
    for (t, f), (kind, col) in want["features"].items():
        assert _feature_values(store, t, f) == _expected_feature(kind, col, len(want["nodes"][t])), (t, f)


@settings(derandomize=True, max_examples=int(os.environ.get("GRAPHREC_PROPERTY_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(case=graphs())
def test_build_reads_back_or_refuses(case, tmp_path_factory):
    schema, tables = case
    d = tmp_path_factory.mktemp("prop")
    _write(tables, d)
    try:
        want = oracle(schema, d)
    except (Refused, GraphrecError) as err:
        want = err
    out = d / "graph"
    try:
        store = build_graph(parse_schema(schema), out, data_dir=d, progress=False)
    except GraphrecError as err:
        assert isinstance(want, Exception), f"valid input refused: {err}"
        assert not out.exists()
        return
    assert not isinstance(want, Exception), f"built although the input is invalid ({want})"
    _check_equal(store, want)
    _check_equal(GraphStore(out, verify=True), want)


@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), 1.5, 2.0**70])
def test_float_ids_that_are_not_int64_integers_are_refused(tmp_path, bad):
    pq.write_table(pa.table({"id": pa.array([1.0, bad])}), tmp_path / "n.parquet")
    pq.write_table(pa.table({"s": pa.array([1.0]), "d": pa.array([1.0])}), tmp_path / "e.parquet")
    schema = {"nodes": {"n": {"source": "n.parquet", "id": "id"}},
              "relations": [{"name": "r", "source": "e.parquet", "src": {"type": "n", "column": "s"},
                             "dst": {"type": "n", "column": "d"}}]}
    with pytest.raises(GraphrecError, match="ids must be integers or strings"):
        build_graph(parse_schema(schema), tmp_path / "g", data_dir=tmp_path, progress=False)
    assert not (tmp_path / "g").exists()
