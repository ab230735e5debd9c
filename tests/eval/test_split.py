import numpy as np
import pandas as pd
import pytest
import pyarrow.parquet as pq

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.eval import chronological_split, load_split, split_labels


def test_split_labels_chronological_per_user():
    # user 0: 10 edges with shuffled times; user 1: 2 edges (too few); user 2: none
    ts0 = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 0])
    indptr = np.array([0, 10, 12, 12])
    ts = np.concatenate([ts0, [1, 2]])
    lab = split_labels(indptr, ts, (0.8, 0.1, 0.1), min_interactions=3)
    assert lab[:10][ts0 == 9] == 2 and lab[:10][ts0 == 8] == 1
    assert (lab[:10][ts0 <= 7] == 0).all()
    assert (lab[10:] == 0).all()


def test_each_part_nonempty_and_later_than_train(ml100k_store, tmp_path):
    res = chronological_split(ml100k_store, ("user", "rated", "item"), out=tmp_path / "s")
    c = res.counts
    assert c["train"] + c["valid"] + c["test"] == 100000
    assert c["users_split"] == 943  # every ML-100K user has >= 20 ratings
    sp = load_split(tmp_path / "s")
    train = sp.train.relation(("user", "rated", "item"))
    assert train.num_edges == c["train"]
    assert sp.train.relation(("item", "rated_by", "user")).num_edges == c["train"]
    # per user: valid and test non-empty, and no held-out edge precedes a train edge
    tr_src, _ = train.coo()
    tr_ts = train.edge_attr("timestamp")
    last_train = pd.Series(tr_ts).groupby(tr_src).max()
    for part in ("valid", "test"):
        df = pd.read_parquet(tmp_path / "s" / f"{part}.parquet")
        assert df.src.nunique() == 943
        first = df.groupby("src").timestamp.min()
        assert (first.values >= last_train.loc[first.index].values).all()
        # original ids carried along
        assert (ml100k_store.original_ids("user", df.src.values) == df.src_id.values).all()
    # held-out edges are absent from the train graph
    test_src, test_dst = sp.heldout("test")
    train_pairs = set(zip(*map(np.ndarray.tolist, train.coo())))
    assert not any((s, d) in train_pairs for s, d in zip(test_src.tolist(), test_dst.tolist()))
    # the rest of the graph is untouched
    assert sp.train.num_edges(("entity", "film.film.actor", "entity")) == 40152
    assert sp.train.manifest["split"]["source_checksum"] == ml100k_store.checksum


def test_split_errors(tiny_schema, tiny_dir, tmp_path, capsys):
    from graphrec.graph import build_graph, parse_schema

    g = build_graph(parse_schema(tiny_schema), tmp_path / "g", data_dir=tiny_dir, progress=False)
    with pytest.raises(GraphrecError, match="summing to 1"):
        chronological_split(g, ("user", "rated", "item"), fractions=(0.5, 0.1, 0.1), out=tmp_path / "s")
    with pytest.raises(GraphrecError, match="reverse view"):
        chronological_split(g, ("item", "rev_rated", "user"), out=tmp_path / "s")
    assert main(["split", str(tmp_path / "g"), "--relation", "user-rated-item", "--out", str(tmp_path / "s")]) == 2
    assert "src:name:dst" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["split", str(tmp_path / "g"), "--relation", "user:rated:item", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "train" / "manifest.json").is_file()


def test_given_split_from_triple_files(tmp_path, capsys):
    from graphrec.graph import GraphStore

    (tmp_path / "train.txt").write_text("a\tr\tb\nb\tr\tc\nc\ts\ta\na\ts\tc\n")
    (tmp_path / "valid.txt").write_text("a\tr\tc\n")
    (tmp_path / "test.txt").write_text("b\ts\ta\nzz\tr\ta\nb\tnope\tc\n")  # an unknown entity, an unknown relation
    assert main(["-q", "build", "--triples", str(tmp_path / "train.txt"), "--out", str(tmp_path / "g")]) == 0
    assert main(["-q", "split", str(tmp_path / "g"), "--valid-triples", str(tmp_path / "valid.txt"),
                 "--test-triples", str(tmp_path / "test.txt"), "--out", str(tmp_path / "s")]) == 0
    assert "2 naming unknown entities left out" in capsys.readouterr().out
    sp = load_split(tmp_path / "s")
    assert sp.info["kind"] == "given" and sp.info["counts"]["dropped_unknown"] == {"valid": 0, "test": 2}
    assert sp.train.num_edges() == GraphStore(tmp_path / "g").num_edges() == 4  # train graph = the given train file
    test = sp.heldout_triples("test")
    assert list(test) == [("entity", "s", "entity")]
    s, d = test[("entity", "s", "entity")]
    assert sp.train.original_ids("entity", s).tolist() == ["b"] and sp.train.original_ids("entity", d).tolist() == ["a"]
    # both files are needed, and a missing one is a clear error with nothing written
    assert main(["-q", "split", str(tmp_path / "g"), "--valid-triples", str(tmp_path / "valid.txt"),
                 "--out", str(tmp_path / "s2")]) == 2
    assert main(["-q", "split", str(tmp_path / "g"), "--valid-triples", str(tmp_path / "valid.txt"),
                 "--test-triples", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "s2")]) == 2
    assert "missing.txt: file not found" in capsys.readouterr().err and not (tmp_path / "s2").exists()


def test_cold_item_split(small_pins_graph, tmp_path):
    from graphrec.eval.split import cold_item_split, cold_items

    g, rel = small_pins_graph, ("user", "saves", "pin")
    res = cold_item_split(g, rel, 0.1, 0.05, out=tmp_path / "s")
    s = load_split(tmp_path / "s")
    first, test_items, valid_items = cold_items(g, rel, 0.1, 0.05)
    engaged = first < np.iinfo(np.int64).max
    cold = test_items | valid_items
    assert test_items.sum() == round(0.1 * engaged.sum()) and valid_items.sum() == round(0.05 * engaged.sum())
    # the cold test items are the newest by first interaction, the cold valid ones just before them
    assert first[test_items].min() >= first[valid_items].max() >= first[engaged & ~cold].max()
    # train/: no cold item at all (node, features, edges)
    cold_ids = set(g.original_ids("pin", np.flatnonzero(cold)).tolist())
    assert not cold_ids & set(s.train.original_ids("pin").tolist())
    assert s.train.num_nodes("pin") == 600 - len(cold_ids) == res.counts["warm_items"]
    assert s.train.feature("pin", "quality").values.shape == (s.train.num_nodes("pin"),)
    # cold_graph/: every pin with its side edges, no interaction of a cold pin
    cg = s.cold_graph()
    assert cg.num_nodes("pin") == 600 and cg.relation("pin:in_board:board").num_edges == g.relation("pin:in_board:board").num_edges
    assert not np.isin(np.asarray(cg.relation(rel).coo()[1]), np.flatnonzero(cold)).any()
    assert cg.relation(rel).num_edges == s.train.relation(rel).num_edges == res.counts["train"]
    # every interaction lands in exactly one part
    src, dst = g.relation(rel).coo()
    parts = ("train", "valid", "test", "cold_valid", "cold_test", "cold_valid_after_cutoff")
    assert sum(res.counts[p] for p in parts) == src.shape[0] and res.counts["cold_valid_after_cutoff"] > 0
    # cold valid is a backtest: only interactions before the first cold test item appeared
    vt = pq.read_table(tmp_path / "s" / "cold_valid.parquet")
    assert vt.num_rows > 0 and vt["timestamp"].to_numpy().max() < first[test_items].min()
    cs, cd = s.cold_heldout("test")
    assert cs.shape[0] == int(test_items[np.asarray(dst)].sum())
    assert set(cd.tolist()) <= set(s.cold_item_ids("test").tolist())
    np.testing.assert_array_equal(s.cold_item_ids("test"), np.flatnonzero(test_items))
    # warm held-out pairs use train/'s (renumbered) ids; their original ids agree
    t = pq.read_table(tmp_path / "s" / "test.parquet")
    np.testing.assert_array_equal(s.train.original_ids("pin", t["dst"].to_numpy()), t["dst_id"].to_numpy())
    c = pq.read_table(tmp_path / "s" / "cold_test.parquet")
    np.testing.assert_array_equal(cg.original_ids("pin", c["dst"].to_numpy()), c["dst_id"].to_numpy())
    assert s.has_cold_items and not load_split(tmp_path / "s").info.get("cut_side_relations")
    with pytest.raises(GraphrecError, match="--cold-items must be a fraction"):
        cold_item_split(g, rel, 1.5, out=tmp_path / "bad")
    with pytest.raises(GraphrecError, match="leave warm items"):
        cold_item_split(g, rel, 0.6, 0.5, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
