import sqlite3

import pandas as pd
import pytest

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.retrieval import Index, recommend
from graphrec.retrieval.kv import RecommendationStore, load_sqlite


def test_sqlite_store_equals_the_recommendations(served_indexes, small_pins_graph, tmp_path, capsys):
    recs = tmp_path / "candidates.parquet"
    recommend(Index(served_indexes["a"]["index"]), recs, k=7, exclude_seen=small_pins_graph.path, batch_size=64,
              progress=False)
    want = pd.read_parquet(recs)
    r = load_sqlite(recs, tmp_path / "kv.sqlite")
    assert r["users"] == want["user"].nunique() == 400 and r["rows"] == len(want) and r["k"] == 7
    store = RecommendationStore(tmp_path / "kv.sqlite")
    for u in want["user"].unique()[[0, 63, 64, 399]]:  # across the 64-user batches of the file
        w = want[want["user"] == u].sort_values("rank")
        got = store[u]
        assert [h["id"] for h in got] == w["item"].tolist()
        assert [h["score"] for h in got] == pytest.approx(w["score"].tolist())
        assert store.get(str(u)) == got  # text keys
    assert store.get("nobody") is None and len(store) == 400
    # the CLI: lookup, unknown users, refusals
    u = want["user"].iloc[0]
    assert main(["kv", "get", "--db", str(tmp_path / "kv.sqlite"), "--user", str(u), "--user", "nobody"]) == 0
    out = capsys.readouterr()
    assert f'"user": "{u}"' in out.out and "unknown user: nobody" in out.err
    assert main(["kv", "get", "--db", str(tmp_path / "kv.sqlite"), "--user", "nobody"]) == 2
    assert main(["kv", "load", "--recommendations", str(recs), "--db", str(tmp_path / "kv.sqlite")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["kv", "load", "--recommendations", str(recs), "--db", str(tmp_path / "kv.sqlite"),
                 "--overwrite"]) == 0


def test_bad_input_is_refused_and_foreign_files_kept(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"user": [1], "item": [2], "score": [0.5]}).to_parquet(bad)
    with pytest.raises(GraphrecError, match="bad.parquet: no column 'rank'"):
        load_sqlite(bad, tmp_path / "kv.sqlite")
    assert not (tmp_path / "kv.sqlite").exists()
    split = tmp_path / "split.parquet"  # user 1's rows in two runs
    pd.DataFrame({"user": [1, 2, 1], "rank": [1, 1, 2], "item": [5, 6, 7], "score": [0.3, 0.2, 0.1]}).to_parquet(split)
    with pytest.raises(GraphrecError, match="not contiguous"):
        load_sqlite(split, tmp_path / "kv.sqlite")
    assert not (tmp_path / "kv.sqlite").exists()
    foreign = tmp_path / "theirs.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE t (x)")
    good = tmp_path / "good.parquet"
    pd.DataFrame({"user": [1, 1], "rank": [1, 2], "item": [5, 7], "score": [0.3, 0.1]}).to_parquet(good)
    assert main(["kv", "load", "--recommendations", str(good), "--db", str(foreign), "--overwrite"]) == 2
    assert "not written by graphrec" in capsys.readouterr().err
    with sqlite3.connect(foreign) as con:
        assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]
    with pytest.raises(GraphrecError, match="not a graphrec key-value store"):
        RecommendationStore(foreign)
