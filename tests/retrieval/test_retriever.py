import numpy as np
import pytest

from graphrec.errors import GraphrecError
from graphrec.retrieval import Index, build_index, similar_items
from graphrec.retrieval.index import IdPositions
from graphrec.retrieval.retriever import Retriever
from tests.retrieval.conftest import HALF_LIFE, export_random


def _top(scores, k, exclude=()):
    order = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in set(exclude)]
    return order[:k]


def test_similar_and_users_match_exact_search(served_indexes, small_pins_graph):
    a = served_indexes["a"]
    r = Retriever(a["index"])
    ids = r.index.ids
    # item->item, text ids, an unknown id in the batch, different k per request
    hits = r.similar([str(ids[3]), "nope", ids[7]], [4, 2, 6])
    assert hits[1] is None
    assert hits[0].ids.tolist() == ids[_top(a["pins"] @ a["pins"][3], 4, exclude=[3])].tolist()
    assert hits[2].ids.tolist() == ids[_top(a["pins"] @ a["pins"][7], 6, exclude=[7])].tolist()
    df, _ = similar_items(Index(a["index"]), [ids[3]], k=4)
    assert df["id"].tolist() == hits[0].ids.tolist()
    np.testing.assert_allclose(df["score"], hits[0].scores, rtol=1e-6)
    # user->items with and without the user's saves (the export's graph) excluded
    users = small_pins_graph.node_ids("user").to_numpy()
    rel = small_pins_graph.relation(("user", "saves", "pin"))
    u = 5
    seen = np.asarray(rel.indices[rel.indptr[u]:rel.indptr[u + 1]])
    got = r.recommend_users([users[u], users[u], "zz"], [5, 5, 5], [False, True, False])
    assert got[2] is None
    assert got[0].query == users[u]
    assert got[0].ids.tolist() == ids[_top(a["users"][u] @ a["pins"].T, 5)].tolist()
    assert got[1].ids.tolist() == ids[_top(a["users"][u] @ a["pins"].T, 5, exclude=seen)].tolist()
    assert not set(got[1].ids.tolist()) & set(ids[seen].tolist())


def test_session_query_is_the_recency_weighted_mean(served_indexes):
    a = served_indexes["a"]
    r = Retriever(a["index"])
    ids = r.index.ids
    items = [10, 20, 30]  # oldest first: ages 2, 1, 0
    w = 0.5 ** (np.array([2, 1, 0]) / HALF_LIFE)
    q = (w[:, None] * a["pins"][items]).sum(0) / w.sum()
    got = r.recommend_session([[ids[i] for i in items] + ["unknown-pin"], ["nope"]], [5, 5])
    assert got[1] is None and got[0].unknown == ["unknown-pin"]
    assert got[0].ids.tolist() == ids[_top(a["pins"] @ q, 5, exclude=items)].tolist()


def test_transe_item_queries_rank_by_distance(small_pins_graph, tmp_path):
    """A TransE index's candidates are [t, |t|^2]: item->item must rank by L2 distance."""
    import torch

    from graphrec.models.scores import make_score

    from graphrec.infer.export import export_embeddings

    rng = np.random.default_rng(0)
    pins = rng.standard_normal((small_pins_graph.num_nodes("pin"), 8)).astype(np.float32)
    users = rng.standard_normal((small_pins_graph.num_nodes("user"), 8)).astype(np.float32)
    score = make_score("transe", p=2)
    cand = score.retrieval_candidates(torch.from_numpy(pins)).numpy()
    query = score.retrieval_queries(torch.from_numpy(users), torch.zeros(pins.shape[1])).numpy()
    export_embeddings(tmp_path / "emb2", small_pins_graph, {"pin": pins, "user": users},
                      {"model": "test", "score": "transe"}, retrieval={("user", "saves", "pin"): (query, cand)})
    build_index(tmp_path / "emb2", "pin", tmp_path / "idx", query="user:saves:pin")
    r = Retriever(tmp_path / "idx")
    ids = r.index.ids
    hits = r.similar([ids[3]], [5])[0]
    dist = ((pins - pins[3]) ** 2).sum(1)
    assert hits.ids.tolist() == ids[_top(-dist, 5, exclude=[3])].tolist()


def test_id_positions_parse_text_ids():
    p = IdPositions(np.array([5, 42, -3, 10 ** 17]))
    rows, known = p(["42", "x", "-3", "", str(10 ** 17), "5.0", "--5"])
    assert rows.tolist() == [1, -1, 2, -1, 3, -1, -1] and known.sum() == 3
    rows, _ = IdPositions(np.array(["a", "b", "42"], dtype=object))(["b", 42, "zz"])
    assert rows.tolist() == [1, 2, -1]


def test_exclude_seen_needs_the_graph(served_indexes, tmp_path):
    import json
    import shutil

    # a copy of the embeddings whose manifest names a graph that is gone
    emb = tmp_path / "emb"
    shutil.copytree(served_indexes["a"]["emb"], emb)
    man = json.loads((emb / "manifest.json").read_text())
    man["graph"] = str(tmp_path / "gone")
    (emb / "manifest.json").write_text(json.dumps(man))
    build_index(emb, "pin", tmp_path / "idx", query="user:saves:pin")
    r = Retriever(tmp_path / "idx")
    assert r.seen is None and "not available" in r.seen_error
    with pytest.raises(GraphrecError, match="exclude_seen"):
        r.recommend_users([r.user_ids[0]], [3], [True])
    assert r.recommend_users([r.user_ids[0]], [3], [False])[0] is not None
