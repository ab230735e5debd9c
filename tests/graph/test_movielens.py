"""ML-100K with its Freebase KG: counts checked against an independent pandas reading."""

import numpy as np
import pandas as pd

from graphrec.cli import main
from tests.conftest import ROOT


def _read(d, name):
    df = pd.read_csv(d / name, sep="\t", dtype=str, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def test_counts(ml100k_store, ml100k_dir):
    g = ml100k_store
    kg = _read(ml100k_dir, "ml-100k.kg")
    link = _read(ml100k_dir, "ml-100k.link")
    assert g.num_nodes("user") == 943
    assert g.num_nodes("item") == 1682
    assert g.num_edges(("user", "rated", "item")) == 100000
    assert g.num_edges(("item", "rated_by", "user")) == 100000
    entities = set(link.entity_id) | set(kg.head_id) | set(kg.tail_id)
    assert g.num_nodes("entity") == len(entities) == 34628
    assert g.num_edges(("item", "linked_to", "entity")) == len(link)
    per_rel = kg.relation_id.value_counts()
    kg_rels = [r for r in g.edge_types if r[0] == "entity" and r[2] == "entity"]
    assert len(kg_rels) == per_rel.size == 24
    for name, count in per_rel.items():
        assert g.num_edges(("entity", name, "entity")) == count
    assert sum(g.num_edges(r) for r in kg_rels) == len(kg) == 91631


def test_ratings_and_features_match_source(ml100k_store, ml100k_dir):
    g = ml100k_store
    inter = _read(ml100k_dir, "ml-100k.inter")
    rated = g.relation(("user", "rated", "item"))
    src, dst = rated.coo()
    got = pd.DataFrame({"user_id": g.original_ids("user", src), "item_id": g.original_ids("item", dst),
                        "rating": rated.edge_attr("weight"), "timestamp": rated.edge_attr("timestamp")})
    want = inter.astype({"rating": float, "timestamp": float})
    merged = want.merge(got, on=["user_id", "item_id"], suffixes=("", "_g"))
    assert len(merged) == 100000
    np.testing.assert_array_equal(merged.rating, merged.rating_g)
    np.testing.assert_array_equal(merged.timestamp.astype(np.int64), merged.timestamp_g)
    genres = g.feature("item", "genres")
    toy = int(g.lookup("item", ["1"])[0])
    assert sorted(genres.vocab[c] for c in genres.codes[genres.offsets[toy]:genres.offsets[toy + 1]]) == \
        ["Animation", "Children's", "Comedy"]
    year = g.feature("item", "release_year").values
    assert year[toy] == 1995 and np.isnan(year).sum() == 2  # two rows hold 'unkonwn' / 'V'
    gender = g.feature("user", "gender")
    assert sorted(gender.vocab) == ["<unk>", "F", "M"]


def test_cli_build_and_info(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "ml"
    assert main(["-q", "build", "--schema", str(ROOT / "graphs" / "movielens-100k.yaml"),
                 "--data", str(ml100k_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in ("user", "943", "item", "1,682", "entity", "34,628", "user:rated:item", "100,000",
                   "entity:film.film.actor:entity", "40,152", "28 relation types"):
        assert needle in text, needle


def test_kg_from_triples_cli(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "kg"
    assert main(["-q", "build", "--triples", str(ml100k_dir / "ml-100k.kg"), "--out", str(out)]) == 0
    from graphrec.graph import GraphStore

    g = GraphStore(out)
    assert g.num_edges() == 91631 and len(g.edge_types) == 24
