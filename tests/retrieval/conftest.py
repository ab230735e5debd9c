import numpy as np
import pytest

from graphrec.infer.export import export_embeddings
from graphrec.retrieval import build_index

ET = ("user", "saves", "pin")
HALF_LIFE = 2.0


def export_random(store, path, dim=16, seed=0, score=None):
    """An embedding directory of random user/pin vectors with ``user:saves:pin`` retrieval
    vectors (query = user, candidate = pin) and a session recipe of half-life 2."""
    rng = np.random.default_rng(seed)
    pins = rng.standard_normal((store.num_nodes("pin"), dim)).astype(np.float32)
    users = rng.standard_normal((store.num_nodes("user"), dim)).astype(np.float32)
    man = {"model": "test", "session_queries": {"half_life": HALF_LIFE}}
    if score:
        man["score"] = score
    export_embeddings(path, store, {"pin": pins, "user": users}, man, retrieval={ET: (users, pins)})
    return path, users, pins


@pytest.fixture(scope="session")
def served_indexes(small_pins_graph, tmp_path_factory):
    """Three flat ``--query user:saves:pin`` indexes of the small pins graph: ``a`` (dim
    16), ``b`` (dim 16, other vectors: a reload target) and ``c`` (dim 8)."""
    d = tmp_path_factory.mktemp("served")
    out = {}
    for name, dim, seed in (("a", 16, 0), ("b", 16, 1), ("c", 8, 2)):
        emb, users, pins = export_random(small_pins_graph, d / f"emb-{name}", dim=dim, seed=seed)
        build_index(emb, "pin", d / f"index-{name}", query="user:saves:pin")
        out[name] = {"index": d / f"index-{name}", "emb": emb, "users": users, "pins": pins}
    return out
