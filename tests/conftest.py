from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ.get("GRAPHREC_DATA", ROOT.parent / "shared" / "datasets" / "ml-100k"))


def free_port_range(size: int, taken: set[int] | None = None) -> int:
    """The first of ``size`` consecutive ports free on loopback now (a random range in
    20000-30000), none of them in ``taken`` (which gets them)."""
    import random

    taken = set() if taken is None else taken
    for _ in range(200):
        lo = random.randrange(20000, 30000 - size)
        if any(p in taken for p in range(lo, lo + size)):
            continue
        try:
            for p in range(lo, lo + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        taken.update(range(lo, lo + size))
        return lo
    raise RuntimeError(f"no {size} free consecutive ports on loopback")


def assert_resumed_after_kill(starts: list[int], kill_epoch: int) -> None:
    """``run.json``'s ``starts`` of a Ray run whose worker was killed at the start of
    ``kill_epoch``: every start at or after the previous one (never behind a committed
    checkpoint) and the kill resumed from a reported checkpoint, not from scratch.

    A third start is tolerated, with a warning: the rare crash of a gloo process-group
    thread (README, "A worker that dies") can restart the group once more, and Ray Train
    recovers from it."""
    assert starts[0] == 0 and starts == sorted(starts), starts
    assert any(0 < s <= kill_epoch for s in starts[1:]), starts
    if len(starts) > 2:
        warnings.warn(f"worker group started {len(starts)} times (starts {starts}), one more than the kill")


#: Ray's chatter a user of local Ray must not see (graphrec.ray_env filters it): lines seen
#: in `graphrec train twhin --workers 2` on local Ray 2.60 without the filter.
RAY_CHATTER = ("Failed to query Ray Train Controller", "Reporting training result", "Requesting resources",
               "Started training worker group", "Checkpoint successfully created", "Sparse invariant checks",
               "Token authentication is enabled")


def assert_quiet_ray_output(text: str, progress: str = "epoch 1: loss") -> None:
    """What a user saw of a local Ray run (``capfd``'s out + err): graphrec's epoch lines
    (``progress``, forwarded from the worker), none of :data:`RAY_CHATTER`."""
    assert progress in text, text[-3000:]
    for chatter in RAY_CHATTER:
        assert chatter not in text, chatter


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    if not (ML100K / "ml-100k.inter").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K} (set GRAPHREC_DATA)")
    return ML100K


@pytest.fixture(scope="session")
def ml100k_store(ml100k_dir, tmp_path_factory):
    from graphrec.graph import build_graph, load_schema

    out = tmp_path_factory.mktemp("ml100k") / "graph"
    return build_graph(load_schema(ROOT / "graphs" / "movielens-100k.yaml"), out, data_dir=ml100k_dir, progress=False)


def write_tiny_tables(d: Path) -> Path:
    """A small shop: users (CSV), items (Parquet), ratings (TSV), tags (RecBole atomic)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "users.csv").write_text("uid,age,country\nu1,23,US\nu2,41,DE\nu3,,US\nu4,67,FR\n")
    pq.write_table(
        pa.table({
            "iid": pa.array([10, 20, 30, 40, 50], pa.int64()),
            "price": [1.5, 2.0, None, 4.0, 10.0],
            "genres": ["a b", "b", "", "c a", None],
            "title": ["Red Shoes", "blue SHOES!", "hat", None, "red hat"],
        }),
        d / "items.parquet",
    )
    (d / "ratings.tsv").write_text(
        "user\titem\tstars\tts\n"
        "u1\t10\t5\t100\nu1\t20\t3\t300\nu1\t30\t4\t200\nu2\t10\t1\t50\n"
        "u2\t40\t2\t60\nu3\t50\t5\t10\nu4\t10\t4\t70\nu4\t20\t4\t80\nu4\t30\t4\t90\nu4\t40\t4\t95\n"
    )
    (d / "shop.link").write_text("item_id:token\tentity_id:token\n10\tm.a\n20\tm.b\n30\tm.c\n")
    (d / "shop.kg").write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        "m.a\tgenre\tm.g1\nm.b\tgenre\tm.g1\nm.c\tdirector\tm.d1\nm.a\tdirector\tm.d1\n"
    )
    return d


TINY_SCHEMA = {
    "name": "tiny",
    "nodes": {
        "user": {"source": "users.csv", "id": "uid", "features": {
            "age": {"kind": "categorical", "buckets": [30, 60]},
            "country": {"kind": "categorical"},
        }},
        "item": {"source": "items.parquet", "id": "iid", "features": {
            "price": {"kind": "numeric"},
            "genres": {"kind": "multi_categorical"},
            "title": {"kind": "text"},
        }},
    },
    "relations": [
        {"name": "rated", "source": "ratings.tsv", "src": {"type": "user", "column": "user"},
         "dst": {"type": "item", "column": "item"}, "weight": "stars", "timestamp": "ts", "reverse": True},
    ],
}


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    return write_tiny_tables(tmp_path / "data")


@pytest.fixture
def tiny_schema():
    import copy

    return copy.deepcopy(TINY_SCHEMA)


@pytest.fixture(scope="session")
def small_pins_graph(tmp_path_factory):
    """A small synthetic Pinterest-like graph store (400 users, 600 pins, 8k saves)."""
    from graphrec.datasets import PinterestConfig, generate_pinterest
    from graphrec.graph import build_graph, load_schema

    d = tmp_path_factory.mktemp("pins")
    generate_pinterest(PinterestConfig(users=400, pins=600, boards=60, authors=40, saves=8000, clusters=6, seed=2),
                       d / "data", progress=False)
    return build_graph(load_schema(ROOT / "graphs" / "pinterest-synthetic.yaml"), d / "graph", data_dir=d / "data",
                       progress=False)


@pytest.fixture(scope="session")
def kg_split(tmp_path_factory):
    """A 60-entity triple graph with latent clusters (relation k links cluster c to c + k),
    split 80/10/10 at random."""
    import numpy as np

    from graphrec.eval import random_split
    from graphrec.graph import build_graph, triples_schema

    d = tmp_path_factory.mktemp("kg")
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 6, 60)
    lines = set()
    while len(lines) < 900:
        h, k = int(rng.integers(60)), int(rng.integers(1, 4))
        cands = np.flatnonzero(cluster == (cluster[h] + k) % 6)
        lines.add(f"e{h}\tr{k}\te{int(rng.choice(cands))}")
    (d / "kg.txt").write_text("\n".join(sorted(lines)) + "\n")
    graph = build_graph(triples_schema(d / "kg.txt"), d / "graph", progress=False)
    random_split(graph, fractions=(0.8, 0.1, 0.1), seed=0, out=d / "split")
    return d


# ---------------------------------------------------------------- S3 on loopback

KEY, SECRET, REGION, BUCKET = "graphrec-test-key", "graphrec-test-secret", "us-east-1", "graphrec-runs"


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (a free port) for the session, with one bucket;
    yields its ``host:port``; stopped (and checked stopped) at the end."""
    server_mod = pytest.importorskip("moto.server", exc_type=ImportError,
                                     reason="moto[server] is not installed (pip install -e '.[dev]')")
    with pytest.MonkeyPatch.context() as mp:
        # pyarrow gets explicit credentials and region; never look for real ones or probe EC2
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        werkzeug = logging.getLogger("werkzeug")
        level = werkzeug.level
        werkzeug.setLevel(logging.ERROR)  # no line per request
        server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"{host}:{port}"
            fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key=KEY, secret_key=SECRET,
                                   region=REGION, allow_bucket_creation=True)
            fs.create_dir(BUCKET)
            yield endpoint
        finally:
            server.stop()
            werkzeug.setLevel(level)
        assert not server._thread.is_alive()
        with pytest.raises(OSError):
            socket.create_connection((host, port), timeout=1).close()


def s3_uri(endpoint: str, prefix: str, credentials: bool = True) -> str:
    """An ``s3://`` URI of ``prefix`` in the test bucket on the moto server at ``endpoint``
    (credentials in the URI, or left to the environment: :func:`s3_credentials_env`)."""
    if not credentials:
        return f"s3://{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http&region={REGION}"
    return f"s3://{KEY}:{SECRET}@{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http&region={REGION}"


def s3_credentials_env(monkeypatch) -> None:
    """The test server's credentials where AWS clients look for them (the environment)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
