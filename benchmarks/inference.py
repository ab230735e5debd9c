"""Layer-wise (MapReduce-style) PinSage inference vs naive per-batch sampled inference,
and ANN recall / queries per second on exported embeddings of the same graph.

    python benchmarks/inference.py --work /tmp/bench-pins     # ~1.4M pins, ~21M edges
    python benchmarks/inference.py --saves 2000000 --naive-batches 5   # quicker

1. Graph: ``graphrec generate pinterest`` (``--saves`` saves; pins = saves / 10) built
   with ``graphs/pinterest-synthetic.yaml`` (shared with ``benchmarks/random_walk.py``
   through ``--work``).
2. Importance neighbourhoods of every pin (pin→user→pin and pin→board→pin walks, 1:1,
   100 walks of 2 rounds, top-T), computed once and saved — fixed for both methods.
3. The same 2-layer PinSage model (hidden 64, dim 64, ID + pin features; seeded random
   weights: timing and memory do not depend on training) embeds every pin:

   * **layer-wise** (:class:`graphrec.infer.LayerwiseInference`): each layer once for all
     pins, in shards of ``--shard-size`` over memory-mapped layer files, in-process;
   * **naive** (:func:`graphrec.infer.layerwise.minibatch_inference`): batches of 512
     pins, each expanding its 2-hop importance neighbourhood and recomputing the lower
     layers for it. Run on ``--naive-batches`` random batches and extrapolated linearly
     to all pins (every batch does the same kind of work; running all of them takes hours).

   Each method runs in its own fresh process, single thread; the table reports its CPU
   seconds and peak RSS (``VmHWM`` of that process, setup included: torch and the pin
   feature table; pages of memory-mapped files count once touched).
4. ANN (with ``--ann``): TwHIN trained for one epoch on the graph's 14M saves, exported; the pin
   candidate vectors of ``user:saves:pin`` indexed by FAISS Flat (exact), HNSW and IVF
   (:mod:`graphrec.retrieval`), queried with ``--queries`` user vectors: recall@10
   against exact search and queries per second (single thread).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METAPATHS = [(["pin:saved_by:user", "user:saves:pin"], 1.0), (["pin:in_board:board", "board:has_pin:pin"], 1.0)]


def graph(work: Path, saves: int):
    from graphrec.datasets import PinterestConfig, generate_pinterest
    from graphrec.graph import GraphStore, build_graph, load_schema

    g = work / f"pins-{saves}"
    if (g / "manifest.json").is_file():
        return GraphStore(g)
    data = work / f"data-{saves}"
    if not (data / "saves.parquet").exists():
        cfg = PinterestConfig(users=max(1000, saves // 20), pins=max(2000, saves // 10), boards=max(100, saves // 200),
                              authors=max(50, saves // 500), saves=saves, clusters=100, seed=0)
        generate_pinterest(cfg, data, overwrite=True, progress=False)
    return build_graph(load_schema(ROOT / "graphs" / "pinterest-synthetic.yaml"), g, data_dir=data, progress=False)


def neighborhoods(store, work: Path, top_t: int):
    from graphrec.sampling import RandomWalkSampler
    from graphrec.sampling.walks import ImportanceNeighborhoods, importance_neighbors

    d = work / f"nbh-{store.num_nodes('pin')}-T{top_t}"
    if (d / "weights.npy").exists():
        return d
    t = time.perf_counter()
    sampler = RandomWalkSampler(store, METAPATHS, restart_prob=0.5)
    nbh: ImportanceNeighborhoods = importance_neighbors(sampler, np.arange(store.num_nodes("pin")), top_t, 100, 2,
                                                        np.random.default_rng(0))
    nbh.save(d)
    print(f"# neighbourhoods T={top_t}: {time.perf_counter() - t:.0f}s", flush=True)
    return d


def make_model(store):
    import torch

    from graphrec.models import PinSage
    from graphrec.sampling.features import NodeFeatureTable

    torch.manual_seed(0)
    feats = NodeFeatureTable(store, "pin")
    return PinSage(store.num_nodes("pin"), feats.spec, dim=64, hidden_dim=64, num_layers=2, id_dim=32,
                   feature_dim=16).eval(), feats


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``: per address space, so unlike ``ru_maxrss`` it is
    not inherited from the parent that spawned it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(method: str, graph_dir: str, nbh_dir: str, work: str, args: dict, q) -> None:
    import torch

    torch.set_num_threads(1)
    from graphrec.graph import GraphStore
    from graphrec.infer.layerwise import LayerwiseInference, minibatch_inference
    from graphrec.sampling.walks import ImportanceNeighborhoods

    store = GraphStore(graph_dir)
    model, feats = make_model(store)
    n = model.num_nodes
    t, w = time.process_time(), time.perf_counter()
    if method == "layerwise":
        out_dir = Path(work) / f"layerwise-{Path(nbh_dir).name}"
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)
        out = LayerwiseInference(model, feats, nbh_dir, out_dir, shard_size=args["shard_size"]).run(progress=False)
        nodes = n
        sample = np.asarray(out[:2048])
    else:
        nbh = ImportanceNeighborhoods.load(nbh_dir)
        rng = np.random.default_rng(0)
        nodes_arr = rng.choice(n, args["naive_batches"] * 512, replace=False)
        sample = minibatch_inference(model, feats, nbh, nodes_arr, batch_size=512)
        nodes = nodes_arr.shape[0]
        out_dir = None
    cpu, wall = time.process_time() - t, time.perf_counter() - w
    q.put({"method": method, "nodes": int(nodes), "cpu_s": cpu, "wall_s": wall, "cpu_s_per_node": cpu / nodes,
           "peak_rss_mb": peak_rss_mb(),
           "checksum": float(np.abs(sample).sum())})


def run_child(method, graph_dir, nbh_dir, work, args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(method, str(graph_dir), str(nbh_dir), str(work), args, q))
    p.start()
    r = q.get()
    p.join()
    return r


def check_equal(store, nbh_dir: Path, work: Path) -> float:
    """Max |layer-wise − naive| on 1,024 random pins (same model, same neighbourhoods)."""
    from graphrec.infer.layerwise import minibatch_inference
    from graphrec.sampling.walks import ImportanceNeighborhoods

    model, feats = make_model(store)
    out = np.load(work / f"layerwise-{nbh_dir.name}" / "embeddings.npy", mmap_mode="r")
    nodes = np.sort(np.random.default_rng(1).choice(model.num_nodes, 1024, replace=False))
    naive = minibatch_inference(model, feats, ImportanceNeighborhoods.load(nbh_dir), nodes)
    return float(np.abs(np.asarray(out[nodes]) - naive).max())


def twhin_embeddings(store, work: Path, threads: int) -> Path:
    """``work/twhin-emb``: TwHIN trained for one epoch over the saves only (uniform tail
    negatives; in-batch negatives cost O(batch²)), exported with ``user:saves:pin``
    retrieval vectors; reused when present (also by ``benchmarks/serve_load.py``)."""
    from graphrec.infer.export import export_run
    from graphrec.run.config import TwHINConfig, load_config
    from graphrec.train.runs import fit

    run, emb = work / "twhin-run", work / "twhin-emb"
    if not (emb / "manifest.json").exists():
        cfg = load_config(ROOT / "configs" / "twhin-pinterest.yaml", TwHINConfig,
                          overrides={"epochs": 1, "threads": threads, "relations": {"user:saves:pin": 1.0},
                                     "negatives": {"uniform": 100, "in_batch": False, "chunk_size": 0,
                                                   "corrupt": "tail"},
                                     "batch_size": 4096})
        t = time.perf_counter()
        fit(cfg, store.path, run, use_ray=False, overwrite=True)
        print(f"# TwHIN 1 epoch: {time.perf_counter() - t:.0f}s", flush=True)
        export_run(run, emb, retrieval=["user:saves:pin"], overwrite=True)
    return emb


def ann(store, work: Path, queries: int, threads: int) -> list[dict]:
    import faiss
    import torch

    from graphrec.infer.export import read_vectors
    from graphrec.retrieval import IndexConfig, make_index

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    emb = twhin_embeddings(store, work, threads)
    _, cand = read_vectors(emb / "retrieval" / "user__saves__pin" / "candidate.parquet")
    _, qv = read_vectors(emb / "retrieval" / "user__saves__pin" / "query.parquet")
    qv = qv[np.random.default_rng(0).choice(qv.shape[0], queries, replace=False)]
    faiss.omp_set_num_threads(1)
    rows = []
    truth = None
    # (name, build config, [(search-parameter label, setter)]): one build, several settings
    variants = [
        ("Flat (exact)", IndexConfig(kind="flat"), [("", None)]),
        ("HNSW M32 efC100, raw inner product", IndexConfig(kind="hnsw", hnsw_m=32, ef_construction=100),
         [(f"efSearch {ef}", lambda ix, ef=ef: setattr(ix.index.hnsw, "efSearch", ef)) for ef in (64, 128, 256, 512)]),
        ("IVF-Flat 4·√N lists, MIPS→L2 augmented", IndexConfig(kind="ivf"),
         [(f"nprobe {p}", lambda ix, p=p: setattr(faiss.extract_index_ivf(ix.index), "nprobe", p))
          for p in (16, 32, 64, 128)]),
    ]
    for name, cfg, settings in variants:
        faiss.omp_set_num_threads(threads)
        t = time.perf_counter()
        index, params = make_index(cand, cfg)
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        for label, setter in settings:
            if setter is not None:
                setter(index)
            t = time.perf_counter()
            _, hits = index.search(qv, 10)
            dt = time.perf_counter() - t
            if truth is None:
                truth = hits
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits, truth, strict=True)]))
            row = {"index": f"{name} {label}".strip(), "vectors": int(cand.shape[0]), "dim": int(cand.shape[1]),
                   "build_s": build, "queries_per_s": queries / dt, "recall@10": recall}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--saves", type=int, default=14_000_000)
    ap.add_argument("--work", default=None)
    ap.add_argument("--top-t", type=int, nargs="+", default=[50, 10])
    ap.add_argument("--shard-size", type=int, default=65536)
    ap.add_argument("--naive-batches", type=int, default=10)
    ap.add_argument("--ann", action="store_true")
    ap.add_argument("--ann-only", action="store_true", help="skip the inference comparison")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2, help="threads for TwHIN training and index builds")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="infer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    store = graph(work, args.saves)
    edges = sum(r.num_edges for r in store.relations() if not r.is_reverse)
    print(f"# graph: {store.num_nodes('pin'):,} pins, {edges:,} edges ({time.perf_counter() - t:.0f}s)", flush=True)
    rows = []
    for top_t in [] if args.ann_only else args.top_t:
        nbh = neighborhoods(store, work, top_t)
        cfg = {"shard_size": args.shard_size, "naive_batches": args.naive_batches}
        lw = run_child("layerwise", store.path, nbh, work, cfg)
        nv = run_child("naive", store.path, nbh, work, cfg)
        err = check_equal(store, nbh, work)
        row = {"T": top_t, "pins": store.num_nodes("pin"), "layerwise_cpu_s": lw["cpu_s"],
               "layerwise_peak_rss_mb": lw["peak_rss_mb"], "naive_cpu_s_measured": nv["cpu_s"],
               "naive_nodes_measured": nv["nodes"], "naive_cpu_s_extrapolated": nv["cpu_s_per_node"] * lw["nodes"],
               "naive_peak_rss_mb": nv["peak_rss_mb"],
               "ratio": nv["cpu_s_per_node"] / lw["cpu_s_per_node"], "max_abs_diff": err}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if rows:
        print("\n| T | pins | layer-wise CPU s | naive CPU s (extrapolated) | naive / layer-wise | peak RSS layer-wise | "
              "peak RSS naive | max abs diff |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['T']} | {r['pins']:,} | {r['layerwise_cpu_s']:.0f} | {r['naive_cpu_s_extrapolated']:.0f} "
                  f"({r['naive_nodes_measured']:,} pins measured) | {r['ratio']:.1f}× | {r['layerwise_peak_rss_mb']:.0f} MB | "
                  f"{r['naive_peak_rss_mb']:.0f} MB | {r['max_abs_diff']:.1e} |")
    if args.ann or args.ann_only:
        res = ann(store, work, args.queries, args.threads)
        print("\n| index | vectors | build s | queries/s (1 thread) | recall@10 vs exact |")
        print("|---|---|---|---|---|")
        for r in res:
            print(f"| {r['index']} | {r['vectors']:,} | {r['build_s']:.0f} | {r['queries_per_s']:.0f} | {r['recall@10']:.3f} |")


if __name__ == "__main__":
    main()
