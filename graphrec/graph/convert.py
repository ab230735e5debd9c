"""Conversions of a :class:`~graphrec.graph.store.GraphStore` to PyG, networkx and DGL."""

from __future__ import annotations

import logging

import numpy as np
import torch

from graphrec.graph.dgl_compat import dgl_available, import_dgl
from graphrec.graph.store import EdgeType, GraphStore

log = logging.getLogger(__name__)

#: multi-categorical / text features up to this many cells (N x vocabulary) become dense
#: bags in DGL (whose node data are dense tensors); larger ones are left out, with a warning
DGL_MAX_BAG_CELLS = 50_000_000


def _feature_tensor(feat, num_nodes: int) -> torch.Tensor:
    if feat.kind == "numeric":
        return torch.from_numpy(np.asarray(feat.values))
    if feat.kind == "categorical":
        return torch.from_numpy(np.asarray(feat.codes)).long()
    # multi_categorical / text: bag of tokens [N, V] (token counts) in sparse CSR layout
    offsets = np.asarray(feat.offsets)
    rows = torch.from_numpy(np.repeat(np.arange(num_nodes, dtype=np.int64), np.diff(offsets)))
    cols = torch.from_numpy(np.asarray(feat.codes)).long()
    bag = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(cols.shape[0]), (num_nodes, feat.num_categories),
                                  check_invariants=True)
    return bag.coalesce().to_sparse_csr()


def to_pyg(store: GraphStore, features: bool = True, edge_types: list[EdgeType] | None = None):
    """A ``torch_geometric.data.HeteroData`` of the store.

    Node types get ``num_nodes`` and, with ``features``, one attribute per feature:
    numeric float32 ``[N]`` and edge attributes (``edge_weight``, ``time``) wrap the
    memory-mapped arrays without copying; categorical codes become int64 ``[N]``;
    multi-categorical/text become sparse CSR bags of tokens ``[N, V]`` (counts).
    ``edge_index`` is ``[2, E]`` int64 COO, which PyG requires, so it is materialised:
    the source row expanded from ``indptr``, the destination row from ``indices``
    (stored as int32 when ids fit, widened here).
    """
    from torch_geometric.data import HeteroData

    data = HeteroData()
    for t in store.node_types:
        n = store.num_nodes(t)
        data[t].num_nodes = n
        if features:
            for name in store.feature_names(t):
                data[t][name] = _feature_tensor(store.feature(t, name), n)
    for rel in store.relations():
        if edge_types is not None and rel.edge_type not in [tuple(e) for e in edge_types]:
            continue
        src, dst = rel.coo()
        store_et = data[rel.edge_type]
        store_et.edge_index = torch.stack([torch.from_numpy(src), torch.from_numpy(np.asarray(dst)).long()])
        if "weight" in rel.attr_names:
            store_et.edge_weight = torch.from_numpy(np.asarray(rel.edge_attr("weight")))
        if "timestamp" in rel.attr_names:
            store_et.time = torch.from_numpy(np.asarray(rel.edge_attr("timestamp")))
    return data


def to_networkx(
    store: GraphStore,
    node_types: list[str] | None = None,
    edge_types: list[EdgeType] | None = None,
    max_edges_per_relation: int | None = None,
    include_reverse: bool = False,
    seed: int = 0,
):
    """A ``networkx.MultiDiGraph`` with nodes ``(type, index)`` carrying ``type`` and
    ``id`` (original id), and edges carrying ``relation`` (and ``weight``/``timestamp``).

    Only ``node_types``/``edge_types`` when given (edges between kept types only);
    ``max_edges_per_relation`` samples that many edges uniformly per relation (seeded).
    Reverse views are left out unless ``include_reverse``. networkx keeps a Python dict
    per node and edge: use a subset for graphs beyond a few million edges.
    """
    import networkx as nx

    rng = np.random.default_rng(seed)
    keep_types = set(node_types) if node_types is not None else set(store.node_types)
    g = nx.MultiDiGraph()
    for t in store.node_types:
        if t not in keep_types:
            continue
        ids = store.original_ids(t)
        g.add_nodes_from(((t, i), {"type": t, "id": ids[i]}) for i in range(len(ids)))
    wanted = None if edge_types is None else {tuple(e) for e in edge_types}
    for rel in store.relations():
        if rel.is_reverse and not include_reverse:
            continue
        if wanted is not None and rel.edge_type not in wanted:
            continue
        if rel.src_type not in keep_types or rel.dst_type not in keep_types:
            continue
        src, dst = rel.coo()
        pick = np.arange(src.shape[0])
        if max_edges_per_relation is not None and src.shape[0] > max_edges_per_relation:
            pick = np.sort(rng.choice(src.shape[0], size=max_edges_per_relation, replace=False))
        attrs = {a: np.asarray(rel.edge_attr(a))[pick] for a in rel.attr_names}
        s_t, name, d_t = rel.edge_type
        for j, e in enumerate(pick):
            extra = {a: v[j].item() for a, v in attrs.items()}
            g.add_edge((s_t, int(src[e])), (d_t, int(dst[e])), key=name, relation=name, **extra)
    return g


def to_dgl(store: GraphStore, features: bool = True):
    """A ``dgl.DGLHeteroGraph`` of the store (DGL through
    :func:`graphrec.graph.dgl_compat.import_dgl`; ``ImportError`` naming the fix when
    DGL is absent).

    Every relation (reverse views included) is built from its stored CSR
    (``('csr', (indptr, indices, eids))``: edge ``k`` of the graph is edge ``k`` of the
    store), so ``g.edges[et].data`` holds each edge attribute in store order. Node types
    get ``num_nodes`` and, with ``features``, ``g.nodes[t].data[name]``: numeric float32
    ``[N]`` / ``[N, d]``, categorical int64 codes ``[N]`` (0 = unknown), multi-categorical
    and text as dense token counts ``[N, V]`` float32 (left out, with a warning, above
    :data:`DGL_MAX_BAG_CELLS` cells).
    """
    dgl = import_dgl()
    graph_data = {}
    for rel in store.relations():
        indptr = torch.from_numpy(np.asarray(rel.indptr, dtype=np.int64))
        indices = torch.from_numpy(np.asarray(rel.indices, dtype=np.int64))
        graph_data[rel.edge_type] = ("csr", (indptr, indices, torch.arange(rel.num_edges, dtype=torch.int64)))
    g = dgl.heterograph(graph_data, num_nodes_dict={t: store.num_nodes(t) for t in store.node_types})
    for rel in store.relations():
        for a in rel.attr_names:
            g.edges[rel.edge_type].data[a] = torch.from_numpy(np.array(rel.edge_attr(a)))
    if features:
        for t in store.node_types:
            n = store.num_nodes(t)
            for name in store.feature_names(t):
                feat = store.feature(t, name)
                if feat.kind in ("numeric", "categorical"):
                    g.nodes[t].data[name] = _feature_tensor(feat, n).clone()  # DGL may write in place
                elif n * feat.num_categories <= DGL_MAX_BAG_CELLS:
                    g.nodes[t].data[name] = _feature_tensor(feat, n).to_dense()
                else:
                    log.warning("to_dgl: %s.%s left out (%d x %d token counts would be dense in DGL)", t, name, n,
                                feat.num_categories)
    return g


__all__ = ["to_pyg", "to_networkx", "to_dgl", "dgl_available", "DGL_MAX_BAG_CELLS"]
