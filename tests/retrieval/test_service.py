"""`graphrec serve` for real: the CLI in a subprocess (local Ray, Ray Serve, 2 replicas) on
a free loopback port, every endpoint through a real HTTP client (urllib)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec.retrieval import Index, recommend, similar_items
from tests.conftest import ROOT, free_port_range

pytestmark = pytest.mark.slow


def call(base, path, body=None, method=None):
    """``(status, JSON body)`` of one request."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:  # Serve's own plain-text answers while starting ("Route table is not populated")
            return err.code, {"serve": text.decode(errors="replace")}


class Server:
    def __init__(self, args, port, log):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "graphrec.cli", "serve", *args, "--port", str(port)],
                                     stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait(self, base, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:  # answering, and past deployment (a signal before that interrupts it: exit 130)
                if call(base, "/healthz")[0] == 200 and "Ctrl-C stops" in self.log.read_text():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError("server did not answer:\n" + self.log.read_text()[-3000:])

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(served_indexes, tmp_path_factory):
    port = free_port_range(1)
    s = Server(["--index", str(served_indexes["a"]["index"]), "--replicas", "2"], port,
               tmp_path_factory.mktemp("serve") / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        s.wait(base)
        yield s, base
    finally:
        s.stop()


def test_healthz_and_similar_equal_graphrec_search(server, served_indexes):
    _, base = server
    a = served_indexes["a"]
    st, body = call(base, "/healthz")
    assert st == 200 and body["status"] == "ok" and body["count"] == 600 and body["dim"] == 16
    assert body["index"] == str(Path(a["index"]).resolve())
    idx = Index(a["index"])
    for pid in idx.ids[[0, 17, 599]]:
        st, body = call(base, f"/similar?id={pid}&k=7")
        df, _ = similar_items(idx, [pid], k=7)
        assert st == 200 and body["id"] == pid
        assert [h["id"] for h in body["results"]] == df["id"].tolist()
        np.testing.assert_allclose([h["score"] for h in body["results"]], df["score"], rtol=1e-5)
    assert call(base, f"/similar?id={idx.ids[0]}")[1]["results"].__len__() == 10  # default k


def test_recommend_users_equal_graphrec_recommend(server, served_indexes, small_pins_graph, tmp_path):
    _, base = server
    idx = Index(served_indexes["a"]["index"])
    users = small_pins_graph.node_ids("user").to_numpy()[[0, 3, 250]]
    (tmp_path / "users.txt").write_text("\n".join(map(str, users)))
    for exclude in (False, True):
        out = tmp_path / f"rec-{exclude}.parquet"
        recommend(idx, out, users=users, k=6, exclude_seen=small_pins_graph.path if exclude else None,
                  progress=False)
        want = pd.read_parquet(out)
        for u in users:
            st, body = call(base, f"/recommend?user={u}&k=6&exclude_seen={str(exclude).lower()}")
            assert st == 200 and body["user"] == u
            w = want[want["user"] == u].sort_values("rank")
            assert [h["id"] for h in body["results"]] == w["item"].tolist()
            np.testing.assert_allclose([h["score"] for h in body["results"]], w["score"], rtol=1e-5)


def test_session_recommend(server, served_indexes):
    _, base = server
    a = served_indexes["a"]
    ids = Index(a["index"]).ids
    items = [int(ids[4]), str(ids[9]), "not-a-pin"]
    st, body = call(base, "/recommend", {"items": items, "k": 5})
    assert st == 200 and body["unknown"] == ["not-a-pin"] and len(body["results"]) == 5
    w = 0.5 ** (np.array([1, 0]) / 2.0)
    q = (w[:, None] * a["pins"][[4, 9]]).sum(0) / w.sum()
    order = [i for i in np.argsort(-(a["pins"] @ q), kind="stable") if i not in (4, 9)][:5]
    assert [h["id"] for h in body["results"]] == ids[order].tolist()


@pytest.mark.parametrize("path,body,status", [
    ("/similar?id=nope", None, 404),
    ("/recommend?user=nope", None, 404),
    ("/similar?id=SOME&k=0", None, 422),
    ("/similar?id=SOME&k=abc", None, 422),
    ("/similar?id=SOME&k=1001", None, 422),
    ("/similar", None, 422),
    ("/recommend?user=SOME&exclude_seen=maybe", None, 422),
    ("/recommend", {"items": ["nope"]}, 404),
    ("/recommend", {"items": []}, 422),
    ("/recommend", {"items": "SOME"}, 422),
    ("/recommend", {"items": ["SOME"], "k": -1}, 422),
    ("/recommend", {"items": ["SOME"], "k": True}, 422),
    ("/recommend", b"{not json", 422),
    ("/recommend", b"[1, 2]", 422),
    ("/reload", {"index": 3}, 422),
    ("/nowhere", None, 404),
    ("/healthz", {}, 405),
])
def test_bad_requests_get_status_and_error(server, served_indexes, path, body, status):
    _, base = server
    pid = Index(served_indexes["a"]["index"]).ids[0]
    if body is not None and not isinstance(body, bytes):
        body = json.loads(json.dumps(body).replace('"SOME"', str(pid)))
    st, resp = call(base, path.replace("SOME", str(pid)), body)
    assert st == status and isinstance(resp["error"], str) and resp["error"]
    assert call(base, "/healthz")[0] == 200  # still serving


def test_reload_under_load_then_refusals(server, served_indexes):
    _, base = server
    a, b = served_indexes["a"], served_indexes["b"]
    pid = Index(a["index"]).ids[11]
    statuses, stop = [], threading.Event()

    def loop():
        while not stop.is_set():
            statuses.append(call(base, f"/similar?id={pid}&k=5")[0])

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    st, body = call(base, "/reload", {"index": str(b["index"])})
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert st == 200 and body["version"] == 1 and body["replicas"] == 2, body
    assert len(statuses) > 20 and set(statuses) == {200}
    want = similar_items(Index(b["index"]), [pid], k=5)[0]["id"].tolist()
    for _ in range(10):  # both replicas now answer from the new index
        assert [h["id"] for h in call(base, f"/similar?id={pid}&k=5")[1]["results"]] == want
    assert call(base, "/healthz")[1]["index"] == str(Path(b["index"]).resolve())
    # a missing directory and another dimension are refused; b keeps serving
    st, body = call(base, "/reload", {"index": str(b["index"]) + "-missing"})
    assert st == 400 and "still serving" in body["error"]
    st, body = call(base, "/reload", {"index": str(served_indexes["c"]["index"])})
    assert st == 400 and "dimension 8" in body["error"]
    health = call(base, "/healthz")[1]
    assert health["index"] == str(Path(b["index"]).resolve()) and health["dim"] == 16 and health["version"] == 1


def test_sigterm_stops_the_server(server):
    s, base = server
    t = time.time()
    assert s.stop(signal.SIGTERM) == 0
    assert time.time() - t < 30
    assert "stopped" in s.log.read_text()
    with pytest.raises(OSError):
        call(base, "/healthz")


def test_direct_ingress_replica_answers_on_its_port(served_indexes, tmp_path):
    port = free_port_range(2)
    (tmp_path / "service.yaml").write_text(f"index: {served_indexes['a']['index']}\nallow_reload: false\n")
    s = Server(["--config", str(tmp_path / "service.yaml"), "--ingress", "direct"], port, tmp_path / "serve.log")
    try:
        s.wait(f"http://127.0.0.1:{port}")
        pid = Index(served_indexes["a"]["index"]).ids[2]
        for p in (port, port + 1):  # the replica itself, Serve's proxy
            st, body = call(f"http://127.0.0.1:{p}", f"/similar?id={pid}&k=3")
            assert st == 200 and len(body["results"]) == 3
        st, body = call(f"http://127.0.0.1:{port}", "/reload", {"index": str(served_indexes["b"]["index"])})
        assert st == 403 and "allow_reload" in body["error"]
    finally:
        assert s.stop() == 0


def test_serve_config_file_is_a_valid_serve_deploy_config(served_indexes):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from graphrec.retrieval.service import build_app

    cfg = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    schema = ServeDeploySchema(**cfg)
    app = schema.applications[0]
    assert app.import_path == "graphrec.retrieval.service:build_app"
    built = build_app({**app.args, "index": str(served_indexes["a"]["index"])})
    assert type(built).__name__ == "Application"


def test_bad_service_input_is_one_line_before_ray_starts(tmp_path, capsys):
    from graphrec.cli import main

    assert main(["serve", "--index", str(tmp_path / "nope")]) == 2
    assert "not an index directory" in capsys.readouterr().err
    (tmp_path / "s.yaml").write_text("index: x\nreplicaz: 2\n")
    assert main(["serve", "--config", str(tmp_path / "s.yaml")]) == 2
    assert "replicaz" in capsys.readouterr().err
    assert main(["serve"]) == 2
