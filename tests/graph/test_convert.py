import numpy as np
import pytest
import torch

from graphrec.graph import build_graph, parse_schema
from graphrec.graph.convert import dgl_available


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


def test_to_dgl(tiny_store):
    ok, reason = dgl_available()
    if not ok:
        with pytest.raises(ImportError, match="DGL"):
            tiny_store.to_dgl()
        pytest.skip(f"DGL not importable here: {reason}")
    g = tiny_store.to_dgl()
    for et in tiny_store.edge_types:
        assert g.num_edges(et) == tiny_store.num_edges(et)
    assert g.num_nodes("user") == 4
