import numpy as np
import pytest
import torch

from graphrec.graph import build_graph, parse_schema
from graphrec.graph.dgl_compat import dgl_available


@pytest.fixture
def tiny_store(tiny_schema, tiny_dir, tmp_path):
    return build_graph(parse_schema(tiny_schema), tmp_path / "g", data_dir=tiny_dir, progress=False)


def test_to_pyg_counts_equal_store(tiny_store):
    data = tiny_store.to_pyg()
    for t in tiny_store.node_types:
        assert data[t].num_nodes == tiny_store.num_nodes(t)
    assert set(data.edge_types) == set(tiny_store.edge_types)
    for et in tiny_store.edge_types:
        rel = tiny_store.relation(et)
        ei = data[et].edge_index
        assert ei.dtype == torch.int64 and ei.shape == (2, rel.num_edges)
        s, d = rel.coo()
        np.testing.assert_array_equal(ei[0].numpy(), s)
        np.testing.assert_array_equal(ei[1].numpy(), d)
        np.testing.assert_array_equal(data[et].time.numpy(), rel.edge_attr("timestamp"))
    assert data["item"].price.dtype == torch.float32
    assert data["user"].country.dtype == torch.int64
    genres = data["item"].genres
    assert genres.layout == torch.sparse_csr and genres.shape == (5, 4)
    assert genres.to_dense()[0].tolist() == [0.0, 1.0, 1.0, 0.0]  # "a b"; vocab <unk>, a, b, c
    data.validate()


def test_to_pyg_shares_memory_with_store(tiny_store):
    data = tiny_store.to_pyg()
    w = data[("user", "rated", "item")].edge_weight
    arr = tiny_store.relation(("user", "rated", "item")).edge_attr("weight")
    assert w.data_ptr() == arr.ctypes.data  # zero-copy over the memory map


def test_to_pyg_ml100k(ml100k_store):
    data = ml100k_store.to_pyg(features=False)
    assert data["user"].num_nodes == 943 and data["item"].num_nodes == 1682
    assert data[("user", "rated", "item")].edge_index.shape[1] == 100000
    assert data.num_edges == sum(ml100k_store.num_edges(et) for et in ml100k_store.edge_types)


def test_to_networkx_attributes_and_subsets(tiny_store):
    g = tiny_store.to_networkx()
    assert g.number_of_nodes() == 9
    assert g.number_of_edges() == 10  # reverse views left out
    assert g.nodes[("user", 0)] == {"type": "user", "id": "u1"}
    u, v, attrs = next(iter(g.edges(data=True)))
    assert attrs["relation"] == "rated" and "weight" in attrs and "timestamp" in attrs
    sub = tiny_store.to_networkx(max_edges_per_relation=4, seed=1)
    assert sub.number_of_edges() == 4
    only_users = tiny_store.to_networkx(node_types=["user"])
    assert only_users.number_of_nodes() == 4 and only_users.number_of_edges() == 0
    with_rev = tiny_store.to_networkx(include_reverse=True)
    assert with_rev.number_of_edges() == 20


@pytest.fixture
def dgl():
    """DGL through graphrec's compat import (the README's setup installs the ``dgl`` extra,
    so these tests run in CI); skipped only where DGL is not installed."""
    ok, reason = dgl_available()
    if not ok:
        assert "pip install 'graphrec[dgl]'" in reason
        pytest.skip(reason)
    from graphrec.graph.dgl_compat import import_dgl

    return import_dgl()


def test_to_dgl_counts_edges_and_features_equal_the_store(tiny_store, dgl):
    g = tiny_store.to_dgl()
    assert isinstance(g, dgl.DGLGraph)
    assert set(g.ntypes) == set(tiny_store.node_types)
    assert set(g.canonical_etypes) == set(tiny_store.edge_types)  # reverse views included
    for t in tiny_store.node_types:
        assert g.num_nodes(t) == tiny_store.num_nodes(t)
    for et in tiny_store.edge_types:
        rel = tiny_store.relation(et)
        src, dst = g.edges(etype=et, order="eid")
        s, d = rel.coo()
        np.testing.assert_array_equal(src.numpy(), s)  # edge k of DGL is edge k of the store
        np.testing.assert_array_equal(dst.numpy(), d)
        for a in rel.attr_names:
            np.testing.assert_array_equal(g.edges[et].data[a].numpy(), rel.edge_attr(a))
    pyg = tiny_store.to_pyg()
    for t in tiny_store.node_types:
        names = tiny_store.feature_names(t)
        assert set(g.nodes[t].data.keys()) == set(names)
        for name in names:
            want = pyg[t][name]
            want = want.to_dense() if want.layout == torch.sparse_csr else want
            torch.testing.assert_close(g.nodes[t].data[name], want, rtol=0, atol=0, equal_nan=True)
    assert g.nodes["item"].data["genres"][0].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert not tiny_store.to_dgl(features=False).nodes["item"].data


def test_dgl_samplers_run_on_the_converted_graph(tiny_store, dgl):
    """DGL's own samplers on graphrec's graph: a metapath random walk (item -> user ->
    item) and PinSAGE's importance neighbourhoods."""
    g = tiny_store.to_dgl()
    fwd = ("user", "rated", "item")
    back = next(et for et in tiny_store.edge_types if et[0] == "item" and et[2] == "user")
    items = torch.arange(g.num_nodes("item"))
    traces, types_ = dgl.sampling.random_walk(g, items, metapath=[back[1], fwd[1]] * 2)
    assert traces.shape == (items.shape[0], 5)
    edges_back = set(zip(*(x.tolist() for x in g.edges(etype=back))))
    edges_fwd = set(zip(*(x.tolist() for x in g.edges(etype=fwd))))
    for row in traces.tolist():  # every step follows an edge of its relation (-1: the walk stopped)
        for k in range(4):
            a, b = row[k], row[k + 1]
            if b == -1:
                break
            assert (a, b) in (edges_back if k % 2 == 0 else edges_fwd)
    sampler = dgl.sampling.PinSAGESampler(g, "item", "user", num_traversals=2, termination_prob=0.5,
                                         num_random_walks=10, num_neighbors=2)
    block = sampler(items)
    assert block.num_nodes() == g.num_nodes("item") and "weights" in block.edata


def test_to_dgl_without_dgl_names_the_fix(tiny_store, monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def no_dgl(name, *args, **kwargs):
        if name == "dgl" or name.startswith("dgl."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "dgl" or m.startswith("dgl.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_dgl)
    with pytest.raises(ImportError, match=r"DGL is not installed: pip install 'graphrec\[dgl\]'"):
        tiny_store.to_dgl()
