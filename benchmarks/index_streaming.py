"""IVF-PQ index build: streaming (`graphrec index` today) against the in-memory reference.

Writes a synthetic candidate file of N clustered vectors with log-normal norms (as
popularity spreads embedding norms) as an embedding directory, in chunks (the writer
itself holds one chunk), then builds the same IVF-PQ index twice, each in its own
subprocess so their peak RSS (``ru_maxrss``) are separate:

- ``in-memory``: the path `graphrec index` took before it streamed: ``read_vectors`` (the
  whole Parquet file as one ``[N, d]`` array), the MIPS→L2 augmentation of every vector
  (``[N, d']``), train on the seeded sample, one ``add`` of everything, ``np.save`` of the
  vectors;
- ``streaming``: :func:`graphrec.retrieval.build_index` (two passes over the file in
  chunks: norms + training sample, then train and add chunk by chunk; ``vectors.npy``
  written chunk by chunk).

Both train on the same seeded sample, so they are the same index; the script checks that
they return the same neighbours, and reports build time, peak RSS (and RSS after imports,
which both pay) and recall@10 against exact inner-product search on 1000 queries.

    python benchmarks/index_streaming.py --n 2000000 --dim 64 --pq-m 16 --work /tmp/idxbench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_candidates(emb: Path, n: int, dim: int, seed: int, chunk: int = 1 << 18) -> None:
    """``emb/nodes/pin.parquet`` (``id``, ``embedding``) of ``n`` clustered vectors and a
    manifest, written chunk by chunk (memory: one chunk)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    path = emb / "nodes" / "pin.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), dim))])
    with pq.ParquetWriter(path, schema) as w:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            v = centers[rng.integers(0, len(centers), m)] + 0.6 * rng.standard_normal((m, dim), dtype=np.float32)
            v *= rng.lognormal(0, 0.5, (m, 1)).astype(np.float32)
            emb_col = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)
            w.write_table(pa.table({"id": pa.array(np.arange(lo, lo + m, dtype=np.int64)), "embedding": emb_col},
                                   schema=schema), row_group_size=1 << 20)
    (emb / "manifest.json").write_text(json.dumps({"format": "graphrec-embeddings", "model": "synthetic",
                                                   "node_counts": {"pin": n}, "retrieval": {}}))
    np.save(emb / "queries.npy", (centers[rng.integers(0, len(centers), 1000)]
                                  + rng.standard_normal((1000, dim), dtype=np.float32)))


def in_memory_build(emb: Path, out: Path, cfg) -> dict:
    """The pre-streaming `graphrec index` for IVF: everything in memory at once."""
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    from graphrec.infer.export import read_vectors
    from graphrec.retrieval.index import IDS_FILE, INDEX_FILE, VECTORS_FILE, default_nlist, mips_augment, train_count

    ids, vecs = read_vectors(emb / "nodes" / "pin.parquet")
    n = vecs.shape[0]
    if cfg.mips == "raw":
        x, max_norm, metric, quantizer = vecs, None, faiss.METRIC_INNER_PRODUCT, faiss.IndexFlatIP(vecs.shape[1])
    else:
        x, max_norm = mips_augment(vecs, cfg.pq_m)
        metric, quantizer = faiss.METRIC_L2, faiss.IndexFlatL2(x.shape[1])
    nlist = cfg.nlist or default_nlist(n)
    n_train = train_count(cfg, n, nlist)
    rng = np.random.default_rng(cfg.seed)
    sample = x if n <= n_train else x[np.sort(rng.choice(n, n_train, replace=False))]
    index = faiss.IndexIVFPQ(quantizer, x.shape[1], nlist, cfg.pq_m, 8, metric)
    index.cp.seed = cfg.seed
    index.train(np.ascontiguousarray(sample))
    del sample
    index.nprobe = cfg.nprobe
    index.add(x)
    out.mkdir(parents=True)
    faiss.write_index(index, str(out / INDEX_FILE))
    pq.write_table(pa.table({"id": ids}), out / IDS_FILE)
    np.save(out / VECTORS_FILE, vecs)
    return {"max_norm": max_norm, "nlist": nlist, "train_vectors": n_train}


def child(mode: str, emb: Path, out: Path, cfg_json: str) -> None:
    import psutil

    from graphrec.retrieval import IndexConfig, build_index

    cfg = IndexConfig.model_validate_json(cfg_json)
    rss0 = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    if mode == "in-memory":
        info = in_memory_build(emb, out, cfg)
    else:
        man = build_index(emb, "pin", out, cfg=cfg)
        info = {"max_norm": man["mips_max_norm"], "nlist": man["nlist"], "train_vectors": man["train_vectors"]}
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"mode": mode, "seconds": secs, "peak_rss": peak, "rss_after_imports": rss0, **info}))


def search(out: Path, queries: np.ndarray, cfg) -> np.ndarray:
    import faiss

    from graphrec.retrieval.index import SearchIndex

    man_norm = json.loads((out / "result.json").read_text())["max_norm"]
    index = faiss.read_index(str(out / "index.faiss"))
    faiss.extract_index_ivf(index).nprobe = cfg.nprobe
    return SearchIndex(index, man_norm).search(queries, 10)[1]


def exact_top10(vectors: np.ndarray, queries: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Exact top-10 inner product over memory-mapped vectors, a chunk at a time."""
    best_s = np.full((len(queries), 10), -np.inf, np.float32)
    best_r = np.zeros((len(queries), 10), np.int64)
    for lo in range(0, len(vectors), chunk):
        s = queries @ np.asarray(vectors[lo : lo + chunk]).T
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        cs = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cr = np.concatenate([best_r, top + lo], 1)
        keep = np.argsort(-cs, axis=1, kind="stable")[:, :10]
        best_s, best_r = np.take_along_axis(cs, keep, 1), np.take_along_axis(cr, keep, 1)
    return best_r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--pq-m", type=int, default=16)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists [default: graphrec's, min(4·sqrt(N), N/39)]")
    ap.add_argument("--mips", choices=["augment", "raw"], default="augment",
                    help="index the MIPS->L2 augmentation (graphrec's IVF default) or raw inner products")
    ap.add_argument("--chunk-size", type=int, default=1 << 16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/graphrec-index-streaming"))
    ap.add_argument("--child", choices=["in-memory", "streaming"], help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.work / "emb", args.work / args.child, args.cfg)
        return

    import shutil

    from graphrec.retrieval import IndexConfig

    cfg = IndexConfig(kind="ivf", pq_m=args.pq_m, nprobe=args.nprobe, nlist=args.nlist, mips=args.mips,
                      chunk_size=args.chunk_size, seed=args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    emb = args.work / "emb"
    t0 = time.perf_counter()
    write_candidates(emb, args.n, args.dim, args.seed)
    print(f"wrote {args.n:,} x {args.dim} vectors in {time.perf_counter() - t0:.1f}s "
          f"({(emb / 'nodes' / 'pin.parquet').stat().st_size / 2**20:.0f} MiB Parquet)", flush=True)
    queries = np.load(emb / "queries.npy")
    results = {}
    for mode in ("in-memory", "streaming"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--work", str(args.work),
                               "--cfg", cfg.model_dump_json()], capture_output=True, text=True,
                              env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode:
            sys.exit(f"{mode} build failed:\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        (args.work / mode / "result.json").write_text(json.dumps(res))
        results[mode] = res
        print(f"{mode}: {res['seconds']:.1f}s, peak RSS {res['peak_rss'] / 2**30:.2f} GiB "
              f"(after imports {res['rss_after_imports'] / 2**30:.2f} GiB)", flush=True)
    vectors = np.load(args.work / "streaming" / "vectors.npy", mmap_mode="r")
    assert np.array_equal(vectors[:: max(1, args.n // 1000)],
                          np.load(args.work / "in-memory" / "vectors.npy", mmap_mode="r")[:: max(1, args.n // 1000)])
    t0 = time.perf_counter()
    exact = exact_top10(vectors, queries)
    print(f"exact top-10 of {len(queries)} queries in {time.perf_counter() - t0:.1f}s", flush=True)
    hits = {mode: search(args.work / mode, queries, cfg) for mode in results}
    same = float(np.mean(hits["in-memory"] == hits["streaming"]))
    print(f"\nN={args.n:,} d={args.dim} IVF-PQ{args.pq_m} ({args.mips}) nlist={results['streaming']['nlist']} "
          f"nprobe={args.nprobe}, trained on {results['streaming']['train_vectors']:,} sampled vectors, "
          f"chunk {args.chunk_size:,}; identical hits: {same:.4f}")
    print("| build | time (s) | peak RSS (GiB) | RSS after imports (GiB) | recall@10 |\n|---|---|---|---|---|")
    for mode, res in results.items():
        rec = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(hits[mode], exact, strict=True)])
        print(f"| {mode} | {res['seconds']:.1f} | {res['peak_rss'] / 2**30:.2f} | "
              f"{res['rss_after_imports'] / 2**30:.2f} | {rec:.4f} |")
    ratio = results["in-memory"]["peak_rss"] / results["streaming"]["peak_rss"]
    print(f"peak RSS in-memory / streaming: {ratio:.2f}x; time streaming / in-memory: "
          f"{results['streaming']['seconds'] / results['in-memory']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
