"""Load test of ``graphrec serve`` over the 1.4M-pin index of the ANN benchmark.

    python benchmarks/serve_load.py --work /tmp/sl                 # prepares what is missing
    python benchmarks/serve_load.py --work /tmp/sl --concurrency 1 8 32 --requests 4000 --duration 60

1. The index (reused when present): the 14M-save synthetic graph of
   ``benchmarks/inference.py`` (1.4M pins), TwHIN one epoch over the saves, exported with
   ``user:saves:pin`` retrieval vectors, ``graphrec index --query user:saves:pin`` with
   the defaults (IVF over the MIPS→L2 augmentation, nprobe 32).
2. ``graphrec serve --index ... --port P --ingress I --replicas N`` is started as a
   subprocess for each ``--modes`` entry ``I:N`` (the real CLI, local Ray) and stopped with
   SIGTERM: ``proxy:1`` (Serve's HTTP proxy, the default), ``direct:1`` and ``direct:2``
   (Ray Serve's direct ingress: each replica answers HTTP on its own port; the generator's
   workers are spread over the replicas' ports, as a load balancer in front would).
3. For each concurrency C, a closed-loop generator (``aiohttp``, C connections kept
   alive, each sending its next request when the previous one answered) sends ``GET
   /recommend?user=U&k=10`` for random users (seeded) until ``--requests`` answers or
   ``--duration`` seconds, whichever first; it stops by itself. Latency is per request,
   client side (send to body read); requests/s = answers / wall time. Everything runs on
   this machine's 2 cores: the generator competes with the service for them.
4. Recall@10 of the served results against exact inner-product search (FAISS Flat over
   the 1.4M candidate vectors) for the same users, and the same queries through an
   in-process FAISS call on the same index (``graphrec.retrieval.Index``, one query per
   call, one thread): the overhead ratio is served p50 / in-process p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def prepare(work: Path) -> Path:
    """The index directory (built when missing)."""
    index = work / "index"
    if (index / "manifest.json").is_file():
        return index
    import inference  # benchmarks/inference.py: the graph and TwHIN embeddings of the ANN benchmark

    from graphrec.retrieval.index import IndexConfig, build_index

    store = inference.graph(work, 14_000_000)
    emb = inference.twhin_embeddings(store, work, threads=2)
    build_index(emb, "pin", index, query="user:saves:pin", cfg=IndexConfig())
    return index


def start_server(index: Path, port: int, log: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "graphrec.cli", "serve", "--index", str(index), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    import urllib.request

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"graphrec serve exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc  # urlopen raises on anything but 2xx
        except OSError:
            time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit("graphrec serve did not answer in 300 s")


async def load(urls: list[str], concurrency: int, requests: int, duration: float, bases: list[str] | None = None
               ) -> dict:
    """Closed loop: ``concurrency`` workers, each one request at a time, until ``requests``
    answers or ``duration`` seconds. ``bases``: worker ``w`` sends to ``bases[w % len]``
    (the direct-ingress replicas' ports, as a load balancer in front of them would)."""
    import aiohttp

    latencies, bodies, failures = [], {}, 0
    next_i = 0
    deadline = time.perf_counter() + duration

    async def worker(session, w):
        nonlocal next_i, failures
        base = bases[w % len(bases)] if bases else ""
        while time.perf_counter() < deadline:
            i = next_i
            if i >= requests:
                return
            next_i += 1
            t = time.perf_counter()
            async with session.get(base + urls[i % len(urls)]) as resp:
                body = await resp.read()
                ok = resp.status == 200
            latencies.append(time.perf_counter() - t)
            if ok:
                bodies[i % len(urls)] = body
            else:
                failures += 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        for w, u in enumerate(urls[:concurrency]):  # warm the connections
            async with session.get((bases[w % len(bases)] if bases else "") + u) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session, w) for w in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "failures": failures, "wall_s": wall,
            "rps": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": float(lat.mean()), "bodies": bodies}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--port", type=int, default=8431)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=4000, help="requests per concurrency level (at most)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per concurrency level (at most)")
    ap.add_argument("--users", type=int, default=2000, help="distinct random users queried")
    ap.add_argument("--modes", nargs="+", default=["proxy:1", "direct:1", "direct:2"],
                    help="INGRESS:REPLICAS servers to measure, each started afresh with `--ingress INGRESS "
                         "--replicas REPLICAS`")
    ap.add_argument("--serve-args", default="", help="extra `graphrec serve` flags, e.g. '--max-batch-size 32'")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    index_dir = prepare(work)

    import faiss

    from graphrec.retrieval import Index
    from graphrec.retrieval.search import query_vectors

    faiss.omp_set_num_threads(1)
    index = Index(index_dir, gpu=False)
    qids, qvecs = query_vectors(index)
    pick = np.random.default_rng(0).choice(qids.shape[0], args.users, replace=False)
    users, queries = qids[pick], np.ascontiguousarray(qvecs[pick])
    paths = [f"/recommend?user={u}&k=10" for u in users]

    # exact top-10 (Flat over the candidate vectors) and the in-process IVF search, one query per call
    flat = faiss.IndexFlatIP(index.dim)
    flat.add(np.ascontiguousarray(index.vectors, dtype=np.float32))
    faiss.omp_set_num_threads(2)
    _, exact = flat.search(queries, 10)
    faiss.omp_set_num_threads(1)
    del flat
    inproc, inproc_rows = [], []
    for q in queries:
        t = time.perf_counter()
        _, rows = index.search(q[None], 10)
        inproc.append(time.perf_counter() - t)
        inproc_rows.append(rows[0])
    inproc = np.array(inproc) * 1000
    rec_inproc = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(inproc_rows, exact, strict=True)]))
    row_of = {i: r for r, i in enumerate(index.ids.tolist())}
    print(json.dumps({"in_process": {"p50_ms": float(np.percentile(inproc, 50)),
                                     "p99_ms": float(np.percentile(inproc, 99)),
                                     "queries_per_s_1_thread": 1000 / inproc.mean(), "recall@10": rec_inproc}}),
          flush=True)

    rows = []
    for mode in args.modes:
        ingress, replicas = mode.split(":")
        replicas = int(replicas)
        extra = ["--replicas", str(replicas), "--ingress", ingress] + args.serve_args.split()
        port = args.port
        args.port += 10  # a fresh port per server: direct ingress cannot reuse one in TIME_WAIT
        proc = start_server(index_dir, port, work / f"serve-{ingress}-{replicas}.log", extra)
        # direct: workers spread over the replicas' own ports, as a load balancer would; proxy: one port
        bases = [f"http://127.0.0.1:{port + i}" for i in range(replicas if ingress == "direct" else 1)]
        try:
            for c in args.concurrency:
                r = asyncio.run(load(paths, c, args.requests, args.duration, bases=bases))
                bodies = r.pop("bodies")
                rec = [len({row_of[h["id"]] for h in json.loads(b)["results"]} & set(exact[i].tolist())) / 10
                       for i, b in bodies.items()]
                r.update({"ingress": ingress, "replicas": replicas, "recall@10": float(np.mean(rec)),
                          "overhead_p50": r["p50_ms"] / float(np.percentile(inproc, 50))})
                print(json.dumps(r), flush=True)
                rows.append(r)
        finally:
            t = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            print(f"# graphrec serve ({mode}) stopped {time.perf_counter() - t:.1f}s after SIGTERM "
                  f"(exit {proc.returncode})", flush=True)
    print(f"\nin-process FAISS (same index, one query per call, 1 thread): p50 {np.percentile(inproc, 50):.2f} ms, "
          f"p99 {np.percentile(inproc, 99):.2f} ms, recall@10 {rec_inproc:.3f}")
    print("\n| ingress | replicas | concurrency | requests | failed | requests/s | p50 ms | p95 ms | p99 ms | recall@10 "
          "| p50 / in-process p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ingress']} | {r['replicas']} | {r['concurrency']} | {r['requests']:,} | {r['failures']} | "
              f"{r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall@10']:.3f} | "
              f"{r['overhead_p50']:.0f}× |")


if __name__ == "__main__":
    main()
