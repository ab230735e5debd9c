"""`graphrec export` of a partitioned TwHIN run: peak RSS against the size of its tables.

1. Builds a synthetic graph store (``graphrec build`` of generated Parquet tables:
   ``--users`` users, ``--items`` items, ``--edges`` random ``user:clicks:item`` edges).
2. Makes a partitioned run of it (``--partitions`` P, ``--dim`` d): its tables are
   written exactly as partitioned training leaves them — ``PartitionTables.initialise``
   (the first commit of ``train_partitioned``: every partition's embeddings and Adagrad
   state) — and the run is finished by ``write_run(..., tables=...)`` as
   ``run_partitioned`` finishes one (model.pt: the relation vectors; run.json pins the
   tables). The values are the initial ones, not trained ones: an export's cost depends
   on the tables' layout and size, not on their values, and training a few million
   nodes does not fit the time this benchmark gets.
3. Exports it twice, each in its own child process so that their peak RSS (``VmHWM``;
   not ``ru_maxrss``, which also counts the RSS of the parent a child was forked from)
   are separate, both with the retrieval vectors of ``user:clicks:item``:

   - ``streaming``: :func:`graphrec.infer.export.export_twhin` (what ``graphrec export``
     runs): one partition at a time, retrieval vectors per chunk;
   - ``assembled`` (the reference: what exporting took before streaming, with today's
     row groups): ``open_run(...).model`` assembles the whole TwHIN in memory, then
     ``export_embeddings`` of its tables and of ``TwHIN.retrieval_vectors`` (whole
     arrays).

The script checks that both exports hold the same rows (per file: row count, the sum of
the ids and the float64 sum of every vector coordinate, all order-independent, read
batch by batch) and reports, per mode, wall time, vectors written per second, RSS after
imports and opening the run (which both pay) and peak RSS, against the tables' size (the
embeddings the export reads; the Adagrad state beside them is never read) and the
largest partition.

    nice -n 10 python benchmarks/export_streaming.py --users 2000000 --items 1000000 --dim 128 --partitions 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EDGE = ("user", "clicks", "item")


def build_store(work: Path, users: int, items: int, edges: int, seed: int):
    """A graph store of ``users`` + ``items`` nodes and ``edges`` random clicks, built by
    graphrec's builder from Parquet tables (ids are spread out, not 0..N-1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from graphrec.graph import build_graph
    from graphrec.graph.schema import parse_schema

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    uid = np.arange(users, dtype=np.int64) * 7 + 11
    iid = np.arange(items, dtype=np.int64) * 5 + 3
    pq.write_table(pa.table({"uid": uid}), data / "users.parquet")
    pq.write_table(pa.table({"iid": iid}), data / "items.parquet")
    pq.write_table(pa.table({"user": uid[rng.integers(0, users, edges)], "item": iid[rng.integers(0, items, edges)]}),
                   data / "clicks.parquet")
    schema = parse_schema({"name": "export-bench",
                           "nodes": {"user": {"source": "users.parquet", "id": "uid"},
                                     "item": {"source": "items.parquet", "id": "iid"}},
                           "relations": [{"name": "clicks", "source": "clicks.parquet",
                                          "src": {"type": "user", "column": "user"},
                                          "dst": {"type": "item", "column": "item"}}]}, origin="benchmark")
    return build_graph(schema, work / "graph", data_dir=data, overwrite=True, progress=False)


def make_partitioned_run(store, run: Path, dim: int, partitions: int, seed: int) -> dict:
    """A finished partitioned run of ``store`` (see the module docstring, step 2)."""
    import torch

    from graphrec.graph.partition import NodePartitioning
    from graphrec.io import mark_graphrec_dir
    from graphrec.run.config import TwHINConfig
    from graphrec.run.directory import RELATIONS_STATE, twhin_model, write_run
    from graphrec.run.tables import PARTITION_TABLES_DIR, RELATIONS_EMB, PartitionTables
    from graphrec.train.partitioned import partition_spec
    from graphrec.train.twhin import resolve_auto, select_relations

    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    mark_graphrec_dir(run, "run:twhin")
    cfg = TwHINConfig(dim=dim, partitions=partitions, seed=seed, epochs=1)
    selected = select_relations(store, cfg)
    cfg = resolve_auto(cfg, store, [et for et, _ in selected])
    part = NodePartitioning({t: store.num_nodes(t) for t in store.node_types}, partition_spec(cfg))
    tables = PartitionTables(run / PARTITION_TABLES_DIR, part, dim)
    template = twhin_model(cfg, {t: 1 for t in part.node_types}, [et for et, _ in selected], sparse=True)
    tables.initialise(1.0 / dim ** 0.5, cfg.seed, template.rel_emb.weight.detach().numpy(), meta={"epoch": 1})
    relations = torch.from_numpy(np.array(tables.read(RELATIONS_EMB), dtype=np.float32))
    summary = {"epochs_run": 0, "history": [], "partitions": partitions, "note": "export benchmark: initial tables"}
    write_run(run, "twhin", cfg, store, {RELATIONS_STATE: relations}, summary, tables=tables,
              num_nodes={t: store.num_nodes(t) for t in store.node_types},
              edge_types=[list(et) for et, _ in selected], relation_weights={":".join(et): w for et, w in selected})
    head = tables.head
    emb = [e for n, e in head.files.items() if n.endswith("/emb") and n.startswith("type")]
    return {"tables_emb_bytes": sum(e.bytes for e in emb), "largest_partition_bytes": max(e.bytes for e in emb),
            "tables_on_disk_bytes": sum(e.bytes for e in head.files.values())}


CHILD = r"""
import json, sys, time
from pathlib import Path
mode, run, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import torch
from graphrec.infer import export as ex
from graphrec.run.directory import open_run

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

run = open_run(run)  # opening (run.json, model.pt, the tables' commit) is paid by both modes
base = status("VmRSS")
t0 = time.perf_counter()
if mode == "streaming":
    del run
    ex.export_twhin(sys.argv[2], out, retrieval=["user:clicks:item"])
else:
    model = run.model  # the whole TwHIN, assembled from the tables
    et = tuple(run.edge_types[0])
    with torch.no_grad():
        nodes = {t: model.node_embeddings(t) for t in model.node_types}
        rels = {e: model.relation_embedding(e) for e in model.edge_types}
        retr = {et: model.retrieval_vectors(et)}
        ex.export_embeddings(out, run.store, nodes, {"model": "twhin"}, rels, retr)
seconds = time.perf_counter() - t0
# VmHWM, not ru_maxrss: the latter also counts the parent's RSS the child was forked with
print(json.dumps({"seconds": seconds, "rss_after_open": base, "peak_rss": status("VmHWM")}))
"""


def export_child(mode: str, run: Path, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(run), str(out)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode:
        raise SystemExit(f"{mode} export failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def file_digest(path: Path) -> tuple[int, int, float]:
    """``(rows, sum of ids, float64 sum of every coordinate)``: independent of row order."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    rows, ids, total = 0, 0, 0.0
    for batch in f.iter_batches(batch_size=1 << 16):
        rows += batch.num_rows
        ids += int(np.asarray(batch.column(0).to_numpy(), dtype=np.int64).sum())
        total += float(batch.column("embedding").flatten().to_numpy().astype(np.float64).sum())
    return rows, ids, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=2_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/graphrec-export-bench"))
    ap.add_argument("--modes", default="streaming,assembled",
                    help="exports to run, comma-separated (assembled needs memory for the whole tables)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = build_store(args.work, args.users, args.items, args.edges, args.seed)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    sizes = make_partitioned_run(store, args.work / "run", args.dim, args.partitions, args.seed)
    t_tables = time.perf_counter() - t0
    nodes = args.users + args.items
    rows_written = nodes + args.users + args.items  # nodes/*.parquet + query + candidate
    results = {}
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"streaming", "assembled"}:
        raise SystemExit(f"--modes: streaming and/or assembled, got {args.modes}")
    for mode in modes:
        results[mode] = export_child(mode, args.work / "run", args.work / f"emb-{mode}")
        results[mode]["vectors_per_s"] = rows_written / results[mode]["seconds"]
    files = []
    if len(results) == 2:
        a, b = args.work / "emb-streaming", args.work / "emb-assembled"
        files = sorted(str(p.relative_to(a)) for p in a.rglob("*.parquet") if p.name != "relations.parquet")
        for f in files:
            da, db = file_digest(a / f), file_digest(b / f)
            if da[:2] != db[:2] or not np.isclose(da[2], db[2], rtol=1e-9, atol=1e-6):
                raise SystemExit(f"{f}: the two exports differ: {da} vs {db}")
    gib = 1 << 30
    report = {"nodes": nodes, "users": args.users, "items": args.items, "edges": args.edges, "dim": args.dim,
              "partitions": args.partitions, "graph_build_s": round(t_build, 1), "tables_write_s": round(t_tables, 1),
              "tables_emb_GiB": round(sizes["tables_emb_bytes"] / gib, 3),
              "tables_on_disk_GiB (with Adagrad state)": round(sizes["tables_on_disk_bytes"] / gib, 3),
              "largest_partition_MiB": round(sizes["largest_partition_bytes"] / (1 << 20), 1),
              "files_checked_equal": files}
    for mode, r in results.items():
        report[mode] = {"seconds": round(r["seconds"], 1), "vectors_per_s": round(r["vectors_per_s"]),
                        "rss_after_open_GiB": round(r["rss_after_open"] / gib, 3),
                        "peak_rss_GiB": round(r["peak_rss"] / gib, 3),
                        "peak_rss / tables_emb": round(r["peak_rss"] / sizes["tables_emb_bytes"], 3),
                        "(peak - after open) / tables_emb": round((r["peak_rss"] - r["rss_after_open"])
                                                                  / sizes["tables_emb_bytes"], 3)}
    if len(results) == 2:
        report["peak_rss streaming / assembled"] = round(results["streaming"]["peak_rss"]
                                                         / results["assembled"]["peak_rss"], 3)
        report["time streaming / assembled"] = round(results["streaming"]["seconds"]
                                                     / results["assembled"]["seconds"], 3)
    print(json.dumps(report, indent=1))
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
