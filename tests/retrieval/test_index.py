import json

import numpy as np
import pandas as pd
import pytest

from graphrec.errors import GraphrecError
from graphrec.infer.export import export_embeddings
from graphrec.retrieval import Index, IndexConfig, build_index, make_index, recommend, similar_items

ET = ("user", "saves", "pin")


def _emb_dir(store, path, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    pins = rng.standard_normal((store.num_nodes("pin"), dim)).astype(np.float32)
    users = rng.standard_normal((store.num_nodes("user"), dim)).astype(np.float32)
    return export_embeddings(path, store, {"pin": pins, "user": users}, {"model": "test"},
                             retrieval={ET: (users, pins)}), users, pins


def _recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)])


def test_flat_index_is_exact_and_maps_ids(small_pins_graph, tmp_path):
    emb, users, pins = _emb_dir(small_pins_graph, tmp_path / "emb")
    man = build_index(emb, "pin", tmp_path / "idx", query="user:saves:pin")
    assert man["kind"] == "flat" and man["metric"] == "inner_product" and man["count"] == 600 and man["dim"] == 16
    idx = Index(tmp_path / "idx")
    scores, rows = idx.search(users[:5], 10)
    expect = np.argsort(-(users[:5] @ pins.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(users[:5] @ pins.T, expect, 1), rtol=1e-5)
    np.testing.assert_array_equal(idx.ids, small_pins_graph.node_ids("pin").to_numpy())
    # item->item: the item itself left out, ids as text work, unknown ids reported
    pid = idx.ids[7]
    df, unknown = similar_items(idx, [str(pid), "nope"], k=4)
    assert unknown == ["nope"] and len(df) == 4 and pid not in df["id"].to_numpy()
    order = [i for i in np.argsort(-(pins @ pins[7]), kind="stable") if i != 7][:4]
    assert df["id"].tolist() == idx.ids[order].tolist()
    with pytest.raises(GraphrecError, match="already exists"):
        build_index(emb, "pin", tmp_path / "idx")


@pytest.mark.parametrize("kind,params", [("hnsw", {}), ("ivf", {"nprobe": 64}), ("ivf", {"nprobe": 64, "pq_m": 11, "refine": 40})])
def test_approximate_indexes_recall_against_exact(kind, params):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 32))
    x = (centers[rng.integers(0, 50, 20000)] + 0.5 * rng.standard_normal((20000, 32))).astype(np.float32)
    # norms spread over ~20x, as popularity spreads embedding norms: raw inner-product HNSW /
    # IVF fail on this (hubs); the MIPS->L2 augmentation does not
    x *= rng.lognormal(0, 0.7, (20000, 1)).astype(np.float32)
    q = (centers[rng.integers(0, 50, 200)] + rng.standard_normal((200, 32))).astype(np.float32)
    exact, _ = make_index(x, IndexConfig(kind="flat"))
    approx, p = make_index(x, IndexConfig(kind=kind, **params))
    assert p["kind"] == kind and p["mips"] == ("raw" if kind == "hnsw" else "augment")
    if kind == "ivf":
        assert p["mips_max_norm"] == pytest.approx(np.linalg.norm(x, axis=1).max(), rel=1e-5)
    es, e = exact.search(q, 10)
    s, a = approx.search(q, 10)
    assert _recall(a, e) >= 0.95
    # scores are inner products again
    np.testing.assert_allclose(s, np.take_along_axis(q @ x.T, a, 1), rtol=1e-3, atol=1e-2)


def test_auto_kind_switches_above_flat_max(small_pins_graph, tmp_path):
    emb, _, _ = _emb_dir(small_pins_graph, tmp_path / "emb")
    man = build_index(emb, "pin", tmp_path / "idx", cfg=IndexConfig(flat_max=100, nprobe=4))
    assert man["kind"] == "ivf" and man["nprobe"] == 4 and man["mips"] == "augment" and man["query"] is None
    import faiss

    assert faiss.extract_index_ivf(Index(tmp_path / "idx").index).nprobe == 4
    man = build_index(emb, "pin", tmp_path / "h", cfg=IndexConfig(flat_max=100, above="hnsw", ef_search=64))
    assert man["kind"] == "hnsw" and man["ef_search"] == 64
    assert Index(tmp_path / "h").index.hnsw.efSearch == 64


def test_recommend_excludes_seen_and_reports_unknown_users(small_pins_graph, tmp_path):
    emb, users, pins = _emb_dir(small_pins_graph, tmp_path / "emb")
    build_index(emb, "pin", tmp_path / "idx", query="user:saves:pin")
    idx = Index(tmp_path / "idx")
    uids = small_pins_graph.node_ids("user").to_numpy()
    r = recommend(idx, tmp_path / "c.parquet", users=[str(uids[3]), "ghost", str(uids[0])], k=7,
                  exclude_seen=small_pins_graph.path, batch_size=1, progress=False)
    assert r == {"users": 2, "rows": 14, "unknown_users": ["ghost"]}
    df = pd.read_parquet(tmp_path / "c.parquet")
    rel = small_pins_graph.relation(ET)
    for u in (0, 3):
        seen = set(np.asarray(rel.indices[rel.indptr[u]:rel.indptr[u + 1]]).tolist())
        s = users[u] @ pins.T
        expect = [i for i in np.argsort(-s, kind="stable") if i not in seen][:7]
        got = df[df.user == uids[u]]
        assert got["item"].tolist() == idx.ids[expect].tolist() and got["rank"].tolist() == list(range(1, 8))
    # all users, nothing excluded
    r = recommend(idx, tmp_path / "all.parquet", k=3, progress=False)
    assert r["users"] == 400 and r["rows"] == 1200


def test_bad_inputs(small_pins_graph, tmp_path):
    emb, _, _ = _emb_dir(small_pins_graph, tmp_path / "emb")
    other, _, _ = _emb_dir(small_pins_graph, tmp_path / "emb32", dim=32)
    build_index(emb, "pin", tmp_path / "idx", query="user:saves:pin")
    idx = Index(tmp_path / "idx")
    with pytest.raises(GraphrecError, match="dimension 32 for an index of dimension 16"):
        recommend(idx, tmp_path / "c.parquet", embeddings=other, progress=False)
    assert not (tmp_path / "c.parquet").exists()
    with pytest.raises(GraphrecError, match="no retrieval vectors for it"):
        build_index(emb, "pin", tmp_path / "i2", query="user:follows:board")
    with pytest.raises(GraphrecError, match="no embeddings of node type 'board'"):
        build_index(emb, "board", tmp_path / "i2")
    with pytest.raises(GraphrecError, match="not an embedding directory"):
        build_index(tmp_path, "pin", tmp_path / "i2")
    build_index(emb, "pin", tmp_path / "noq")
    with pytest.raises(GraphrecError, match="built without --query"):
        recommend(Index(tmp_path / "noq"), tmp_path / "c.parquet", progress=False)
    assert not (tmp_path / "i2").exists()
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["embeddings"] == str(emb.resolve())
