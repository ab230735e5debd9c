"""Analytics against networkx references on small graphs."""

import networkx as nx
import numpy as np
import pytest

from graphrec.analytics import (
    bipartite_projection_stats,
    connected_components,
    degree_distribution,
    graph_summary,
    homogeneous_adjacency,
    pagerank_topk,
    projection_clustering,
)
from graphrec.analytics.structure import pagerank
from graphrec.graph import build_graph, parse_schema


@pytest.fixture
def tiny_store(tiny_schema, tiny_dir, tmp_path):
    return build_graph(parse_schema(tiny_schema), tmp_path / "g", data_dir=tiny_dir, progress=False)


def test_degree_distribution(tiny_store):
    rel = tiny_store.relation(("user", "rated", "item"))
    deg, count = degree_distribution(rel, "out")
    assert dict(zip(deg.tolist(), count.tolist())) == {1: 1, 2: 1, 3: 1, 4: 1}
    deg, count = degree_distribution(rel, "in")
    assert count.sum() == 5


def test_pagerank_matches_networkx():
    g = nx.gnm_random_graph(60, 150, seed=1, directed=True)
    g.add_node(60)  # dangling + isolated
    a = nx.to_scipy_sparse_array(g, nodelist=range(61), format="csr")
    import scipy.sparse as sp

    ours = pagerank(sp.csr_matrix(a), alpha=0.85)
    ref = nx.pagerank(g, alpha=0.85, tol=1e-12, max_iter=500)
    np.testing.assert_allclose(ours, [ref[i] for i in range(61)], atol=1e-8)


def test_components_and_pagerank_on_store(ml100k_store):
    comps = connected_components(ml100k_store)
    a, offsets = homogeneous_adjacency(ml100k_store)
    g = nx.from_scipy_sparse_array(a)
    ref = sorted((len(c) for c in nx.connected_components(g)), reverse=True)
    assert comps.num_components == len(ref)
    assert comps.sizes.tolist() == ref
    top = pagerank_topk(ml100k_store, k=5, node_type="item")
    assert list(top.columns) == ["node_type", "index", "id", "score"]
    assert (top.node_type == "item").all() and top.score.is_monotonic_decreasing
    # the most-rated item should be among the top PageRank items of the rating graph
    rated = ml100k_store.relation(("user", "rated", "item"))
    most_rated = int(np.argmax(rated.in_degree()))
    top_r = pagerank_topk(ml100k_store, k=10, node_type="item", edge_types=[("user", "rated", "item")])
    assert most_rated in top_r["index"].tolist()


def test_bipartite_projection_matches_networkx(tiny_store):
    stats = bipartite_projection_stats(tiny_store, ("user", "rated", "item"), side="dst")
    g = tiny_store.to_networkx(node_types=["user", "item"])
    b = nx.Graph()
    b.add_edges_from((u, v) for u, v in g.edges())
    items = [n for n in b.nodes if n[0] == "item"]
    proj = nx.bipartite.projected_graph(b, items)
    assert stats["pairs"] == proj.number_of_edges()
    assert stats["nodes"] == tiny_store.num_nodes("item")
    with pytest.raises(ValueError, match="wedges"):
        bipartite_projection_stats(tiny_store, ("user", "rated", "item"), max_wedges=1)
    cc = projection_clustering(tiny_store, ("user", "rated", "item"), top_n=5)
    assert cc == pytest.approx(nx.average_clustering(proj), abs=1e-12)  # top_n=5 keeps all 5 items


def test_graph_summary(tiny_store):
    s = graph_summary(tiny_store)
    assert s["total_edges"] == 10 and s["total_nodes"] == 9
    assert s["relations"][0]["out_degree"]["max"] == 4
