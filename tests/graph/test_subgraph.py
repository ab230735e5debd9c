import numpy as np
import pytest

from graphrec.graph import GraphStore, build_graph, parse_schema
from graphrec.graph.store import write_store
from graphrec.graph.subgraph import drop_nodes, renumbering


def test_renumbering():
    np.testing.assert_array_equal(renumbering(np.array([True, False, True, True, False])), [0, -1, 1, 2, -1])


def test_drop_nodes_removes_ids_features_and_edges(tiny_dir, tiny_schema, tmp_path):
    (tiny_dir / "links.csv").write_text("item,entity\n10,e1\n20,e1\n30,e2\n50,e2\n")
    tiny_schema["relations"].append({"name": "linked", "source": "links.csv", "src": {"type": "item", "column": "item"},
                                     "dst": {"type": "entity", "column": "entity"}, "reverse": "links"})
    tiny_schema["nodes"]["entity"] = {}
    g = build_graph(parse_schema(tiny_schema), tmp_path / "g", data_dir=tiny_dir, progress=False)
    keep = g.original_ids("item") != 20
    arrays, meta, js = drop_nodes(g, "item", keep)
    h = GraphStore(write_store(tmp_path / "h", arrays, meta, js))
    h.verify()
    assert h.num_nodes("item") == 4 and h.num_nodes("user") == g.num_nodes("user")
    assert sorted(h.original_ids("item").tolist()) == [10, 30, 40, 50]
    # every kept edge survives with the same original endpoints; none touches item 20
    for et in [("user", "rated", "item"), ("item", "rev_rated", "user"), ("item", "linked", "entity")]:
        def pairs(store):
            s, d = store.relation(et).coo()
            return sorted(zip(store.original_ids(et[0], s).tolist(), store.original_ids(et[2], d).tolist()))
        before = [p for p in pairs(g) if 20 not in p]
        assert pairs(h) == before
    assert h.relation("user:rated:item").num_edges == 8 and h.relation("item:rev_rated:user").num_edges == 8
    # edge attributes follow their edges
    s, d = h.relation("user:rated:item").coo()
    ts = dict(zip(zip(h.original_ids("user", s), h.original_ids("item", d)), h.relation("user:rated:item").edge_attr("timestamp")))
    assert ts[("u1", 30)] == 200 and ts[("u4", 40)] == 95
    # features follow their nodes (numeric, bags)
    for item in (10, 30, 40, 50):
        a, b = g.lookup("item", np.array([item]))[0], h.lookup("item", np.array([item]))[0]
        np.testing.assert_array_equal(g.feature("item", "price").values[a], h.feature("item", "price").values[b])
        fg, fh = g.feature("item", "genres"), h.feature("item", "genres")
        assert list(fg.codes[fg.offsets[a]:fg.offsets[a + 1]]) == list(fh.codes[fh.offsets[b]:fh.offsets[b + 1]])
    with pytest.raises(ValueError, match="bool array of 5 item nodes"):
        drop_nodes(g, "item", keep[:3])
    assert g.num_nodes("item") == 5
