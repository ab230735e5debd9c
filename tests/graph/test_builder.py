import logging

import numpy as np
import pandas as pd
import pytest

from graphrec.graph import GraphStore, build_graph, parse_schema, triples_schema


def _build(tiny_schema, tiny_dir, out):
    return build_graph(parse_schema(tiny_schema), out, data_dir=tiny_dir, progress=False)


def test_round_trip_equals_input_tables(tiny_schema, tiny_dir, tmp_path):
    g = _build(tiny_schema, tiny_dir, tmp_path / "g")
    assert g.num_nodes("user") == 4 and g.num_nodes("item") == 5
    assert g.original_ids("user").tolist() == ["u1", "u2", "u3", "u4"]
    assert g.original_ids("item").tolist() == [10, 20, 30, 40, 50]
    rated = g.relation(("user", "rated", "item"))
    src, dst = rated.coo()
    got = pd.DataFrame({
        "user": g.original_ids("user", src), "item": g.original_ids("item", dst),
        "stars": rated.edge_attr("weight"), "ts": rated.edge_attr("timestamp"),
    })
    want = pd.read_csv(tiny_dir / "ratings.tsv", sep="\t")
    key = ["user", "item"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True), check_dtype=False
    )
    # reverse view: same edges, transposed, attributes aligned
    rev = g.relation(("item", "rev_rated", "user"))
    assert rev.is_reverse and rev.num_edges == 10
    r_src, r_dst = rev.coo()
    pairs = set(zip(r_dst.tolist(), r_src.tolist()))
    assert pairs == set(zip(src.tolist(), dst.tolist()))
    fwd = dict(zip(zip(src.tolist(), dst.tolist()), rated.edge_attr("timestamp").tolist()))
    assert all(fwd[(u, i)] == t for i, u, t in zip(r_src.tolist(), r_dst.tolist(), rev.edge_attr("timestamp").tolist()))
    # save -> load equals the original, checksums verified
    copy = g.save(tmp_path / "copy")
    assert copy.equals(g)
    GraphStore(tmp_path / "copy", verify=True)
    assert copy.checksum == g.checksum


def test_arrays_are_memory_mapped(tiny_schema, tiny_dir, tmp_path):
    g = _build(tiny_schema, tiny_dir, tmp_path / "g")
    assert isinstance(g.relation(("user", "rated", "item")).indices, np.memmap)


def test_feature_encodings(tiny_schema, tiny_dir, tmp_path):
    g = _build(tiny_schema, tiny_dir, tmp_path / "g")
    age = g.feature("user", "age")
    assert age.vocab == ["<unk>", "<30", "[30,60)", ">=60"]
    assert [age.vocab[c] for c in age.codes] == ["<30", "[30,60)", "<unk>", ">=60"]
    country = g.feature("user", "country")
    assert [country.vocab[c] for c in country.codes] == ["US", "DE", "US", "FR"]
    assert country.vocab[1] == "US"  # most frequent first
    price = g.feature("item", "price")
    np.testing.assert_allclose(price.values, [1.5, 2.0, np.nan, 4.0, 10.0])
    genres = g.feature("item", "genres")
    rows = [sorted(genres.vocab[c] for c in genres.codes[genres.offsets[i]:genres.offsets[i + 1]]) for i in range(5)]
    assert rows == [["a", "b"], ["b"], [], ["a", "c"], []]
    title = g.feature("item", "title")
    rows = [[title.vocab[c] for c in title.codes[title.offsets[i]:title.offsets[i + 1]]] for i in range(5)]
    assert rows == [["red", "shoes"], ["blue", "shoes"], ["hat"], [], ["red", "hat"]]


def test_lookup_maps_original_ids(tiny_schema, tiny_dir, tmp_path):
    g = _build(tiny_schema, tiny_dir, tmp_path / "g")
    np.testing.assert_array_equal(g.lookup("user", ["u3", "u1", "zz"]), [2, 0, -1])
    np.testing.assert_array_equal(g.lookup("item", [50, 10]), [4, 0])


def test_missing_endpoint_policies(tiny_schema, tiny_dir, tmp_path, caplog):
    with open(tiny_dir / "ratings.tsv", "a") as fh:
        fh.write("u9\t10\t1\t5\nu1\t99\t2\t6\n")
    tiny_schema["relations"][0]["missing_endpoints"] = "drop"
    with caplog.at_level(logging.WARNING):
        g = _build(tiny_schema, tiny_dir, tmp_path / "drop")
    assert g.num_edges(("user", "rated", "item")) == 10
    assert "dropped 1 edges" in caplog.text
    tiny_schema["relations"][0]["missing_endpoints"] = "add"
    g = _build(tiny_schema, tiny_dir, tmp_path / "add")
    assert g.num_edges(("user", "rated", "item")) == 12
    assert g.original_ids("user").tolist()[-1] == "u9" and g.original_ids("item").tolist()[-1] == 99
    # added nodes have no features: unknown code / NaN / empty list
    assert g.feature("user", "country").codes[-1] == 0
    assert np.isnan(g.feature("item", "price").values[-1])
    off = g.feature("item", "genres").offsets
    assert off[-1] == off[-2]
    assert g.manifest["node_types"]["user"]["added_from_edges"] == 1


def test_name_column_and_tableless_nodes(tiny_dir, tmp_path):
    schema = parse_schema({
        "nodes": {"item": {"source": "items.parquet", "id": "iid"}, "entity": {}},
        "relations": [
            {"name": "linked", "source": "shop.link", "src": {"type": "item", "column": "item_id"},
             "dst": {"type": "entity", "column": "entity_id"}},
            {"name_column": "relation_id", "source": "shop.kg", "src": {"type": "entity", "column": "head_id"},
             "dst": {"type": "entity", "column": "tail_id"}, "reverse": True},
        ],
    })
    with pytest.raises(Exception, match="ids are strings but node type 'item' has integer ids"):
        build_graph(schema, tmp_path / "g", data_dir=tiny_dir, progress=False)
    (tiny_dir / "items.csv").write_text("iid\n10\n20\n30\n40\n50\n")
    (tiny_dir / "items.item").write_text("iid:token\n10\n20\n30\n40\n50\n")
    schema = parse_schema({**schema.model_dump(), "nodes": {"item": {"source": "items.item", "id": "iid"}, "entity": {}}})
    g = build_graph(schema, tmp_path / "g", data_dir=tiny_dir, progress=False)
    assert g.original_ids("entity").tolist() == ["m.a", "m.b", "m.c", "m.g1", "m.d1"]
    assert sorted(r.edge_type[1] for r in g.relations()) == ["director", "genre", "linked", "rev_director", "rev_genre"]
    assert g.num_edges(("entity", "genre", "entity")) == 2


def test_build_from_triples(tmp_path):
    (tmp_path / "kg.tsv").write_text("a\tlikes\tb\nb\tlikes\tc\nc\tknows\ta\n")
    g = build_graph(triples_schema(tmp_path / "kg.tsv"), tmp_path / "g", progress=False)
    assert g.node_types == ["entity"] and g.num_nodes("entity") == 3
    assert g.num_edges(("entity", "likes", "entity")) == 2
    assert g.num_edges(("entity", "knows", "entity")) == 1


def test_deterministic_checksum(tiny_schema, tiny_dir, tmp_path):
    a = _build(tiny_schema, tiny_dir, tmp_path / "a")
    b = _build(tiny_schema, tiny_dir, tmp_path / "b")
    assert a.checksum == b.checksum


def test_multi_valued_endpoint_explodes_into_edges(tiny_dir, tmp_path):
    schema = parse_schema({
        "nodes": {"item": {"source": "items.parquet", "id": "iid"}, "genre": {}},
        "relations": [{"name": "has_genre", "source": "items.parquet", "src": {"type": "item", "column": "iid"},
                       "dst": {"type": "genre", "column": "genres", "sep": " "}}],
    })
    g = build_graph(schema, tmp_path / "g", data_dir=tiny_dir, progress=False)
    rel = g.relation(("item", "has_genre", "genre"))
    s, d = rel.coo()
    pairs = sorted(zip(g.original_ids("item", s).tolist(), g.original_ids("genre", d).tolist()))
    # "a b", "b", "", "c a", null -> 5 edges, empty and null rows give none
    assert pairs == [(10, "a"), (10, "b"), (20, "b"), (40, "a"), (40, "c")]
