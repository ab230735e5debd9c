"""Partitioned TwHIN (graphrec) vs PyTorch-BigGraph on the same partitioned graph, in one run.

    python benchmarks/partitioned.py --dataset mlkg --partitions 4 --dim 100 --epochs 5
    python benchmarks/partitioned.py --dataset kinships --partitions 2 --epochs 20
    python benchmarks/partitioned.py --dataset pinterest --saves 14000000 --partitions 8   # ~21M edges
    python benchmarks/partitioned.py --check      # only the PBG scorer's hand-computed check

Needs the ``bench`` extra (``pip install -e '.[bench]' -c constraints.txt`` with
``torch==2.13.0`` in ``constraints.txt``): ``torchbiggraph==1.0.0`` (which imports
``pkg_resources``, hence ``setuptools<81``) and ``h5py``.

Data (each built once under ``--work`` and reused): ``mlkg`` = ``$GRAPHREC_DATA/ml-100k.kg``
(default ``../shared/datasets/ml-100k``), random 90/5/5 split, seed 0; ``kinships`` =
``$GRAPHREC_KG_DATA/kinships/{train,valid,test}.txt`` (default ``../shared/datasets/kg``),
its given split (both as ``benchmarks/kge_peers.py`` builds them); ``pinterest`` =
``graphrec generate pinterest`` with ``--saves`` saves (users = saves/20, pins = saves/10,
as ``benchmarks/inference.py``; 14M saves is the ~21M-edge graph) built with
``graphs/pinterest-synthetic.yaml``, random 90/5/5 split of every relation, seed 0.

Protocol — the same for both libraries:

* **graph and partitions**: both train on ``SPLIT/train``'s base relations with graphrec's
  partitioning (:class:`graphrec.graph.partition.EdgeBuckets` for ``PartitionSpec(P,
  --min-nodes, --seed)``). PBG gets it **directly in its on-disk format** (no TSV
  importer): ``entity_count_<type>_<p>.txt`` = partition sizes and one
  ``edges_<i>_<j>.h5`` per bucket (int64 datasets ``lhs``, ``rhs``, ``rel``: rows within
  the partitions, relation index; attribute ``format_version`` 1), so bucket
  ``(i, j)`` holds the same edges on both sides (edges of an unpartitioned side sit in
  partition 0 on both);
* **model**: ``--dim``, score ``--score`` = PBG operator + comparator of the same family
  (:data:`SCORE_TO_PBG`: PBG applies its operator to the tail, graphrec its relation to
  the head; ``complex``: PBG's ``complex_diagonal`` + ``dot`` is ComplEx with conjugated
  relation vectors), no global embeddings / bias in PBG, both initialised ``N(0,
  --init-scale²)`` (default ``1/sqrt(dim)``, graphrec's default);
* **negatives per positive**: batches of ``--batch-size`` positives of one relation; each
  corrupted side (both) scored against ``--uniform`` uniform nodes of its type from the
  held partition plus the other positives of its chunk of ``--in-batch`` positives (PBG
  ``num_uniform_negs`` / ``num_batch_negs``; graphrec ``negatives.uniform`` /
  ``negatives.chunk_size``): ``uniform + in_batch − 1`` negatives per positive and side
  (PBG draws its uniform nodes once per chunk, graphrec once per batch);
* **loss / optimiser**: ``--loss`` (graphrec softmax | margin | softplus = PBG softmax |
  ranking | logistic), Adagrad (PBG: row-wise Adagrad on embeddings). graphrec trains at
  each of ``--lr``, PBG at each of ``--pbg-lr`` (default: the same); given several, each
  library's run with the best filtered **valid** MRR is the one reported (its speed,
  memory and test MRR; every tried rate's valid MRR is listed). The implementations
  differ in loss reduction (PBG sums over the batch), Adagrad granularity (PBG: one
  accumulator per embedding row) and relation initialisation (PBG: identity operators),
  so one learning rate need not suit both: on Kinships (P 2, 5 epochs) PBG's valid MRR
  is 0.02–0.04 at 0.1 and 0.64–0.70 at 0.5, graphrec's 0.66 at 0.1 and 0.64 at 0.5;
* **epochs**: ``--epochs`` passes over every bucket, every training edge once per epoch;
  no early stopping, no held-out edges (PBG ``eval_fraction`` 0);
* **processes**: PBG runs ``--pbg-workers`` (default ``--workers``) HOGWILD! worker
  processes, one thread each (PBG sets that), ``num_machines`` 1, ``hogwild_delay``
  ``--pbg-hogwild-delay`` (default 0: PBG's default of 2 s would idle the other workers at
  the start of every first-epoch bucket); graphrec ``--workers`` Ray workers (1: ``--no-ray``,
  in-process) with ``--threads`` torch threads each. graphrec is deterministic given
  ``--seed``; PBG is not seedable (its workers seed torch from their process id), so its
  figures vary between runs (Kinships test MRR 0.63–0.67 over four runs).

Measured, each library in its own fresh process started by this script:

* **edges/s** = training edges x epochs / training seconds: PBG the wall time of
  ``torchbiggraph.train`` (its worker pool, each bucket's partition swap, training and
  write-back, each epoch's checkpoint; ``benchmarks/pbg_train.py``), graphrec the run's
  ``summary.seconds`` (each bucket's partition load, training and versioned commit,
  assembling ``model.pt``). Imports, graph building and the PBG conversion are not
  counted. "epochs 2+" is the same over the epochs after the first (without start-up:
  PBG's worker pool, graphrec's first-use imports). Each process's whole wall time and
  CPU time (user + system of it and its descendants; less sensitive than wall time to
  other load on a shared machine) and the load average are reported too;
* **peak memory** of the whole process tree (the process and all its descendants — PBG's
  worker pool, Ray's processes), sampled every ``--sample-every`` s with psutil: the sum
  of RSS (counts pages shared between processes once per process: PBG's workers share
  the embeddings and torch's libraries) and the sum of PSS (shared pages split between
  their processes: the tree's real footprint);
* **test filtered MRR** (and Hits@10), computed in this process by
  :func:`graphrec.train.evaluate.link_prediction_on_split` for both (head and tail
  corruption against every node of the type, train + valid + test triples filtered;
  ``--max-test`` caps the triples per relation): graphrec's trained ``model.pt``, PBG's
  final checkpoint scored by PBG's own operator and comparator modules
  (:class:`PBGScorer`, checked against a hand-computed case before every run).

Prints a markdown table (``--results FILE`` appends it, ``--json FILE`` writes
everything) with the ratios graphrec / PBG.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: graphrec score -> (PBG operator on the tail, PBG comparator), the same model family
SCORE_TO_PBG = {
    "translation_dot": ("translation", "dot"),  # (h + r)·t   vs  h·(t + r)
    "distmult": ("diagonal", "dot"),  # Σ h∘r∘t, identical
    "complex": ("complex_diagonal", "dot"),  # Re(Σ h∘r∘conj(t))  vs  Re(Σ h∘conj(r)∘conj(t))
    "transe": ("translation", "l2"),  # −‖h + r − t‖₂  vs  −‖h − (t + r)‖₂
}
#: graphrec loss -> PBG loss_fn (softmax: identical; softplus: sp(−p) + mean_j sp(n_j) in
#: both; margin: graphrec's mean over negatives, PBG's sum)
LOSS_TO_PBG = {"softmax": "softmax", "margin": "ranking", "softplus": "logistic"}

DATASETS = ("mlkg", "kinships", "pinterest")


def fail(msg: str) -> None:
    print(f"partitioned.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- data ----------------------------------------------------------------------------
def prepare(args, work: Path) -> Path:
    """The split directory of ``args.dataset`` under ``work`` (built on first use)."""
    name = args.dataset if args.dataset != "pinterest" else f"pinterest-{args.saves}"
    split = work / name / "split"
    if (split / "split.json").is_file():
        return split
    if (work / name).exists():
        fail(f"{work / name}: an unfinished build; remove it (this script wrote it) and rerun")
    if args.dataset in ("mlkg", "kinships"):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import kge_peers  # the same graphs and splits as the PyKEEN comparison

        out = kge_peers.prepare(args.dataset, work)
        if out is None:
            src = (kge_peers.ML_DATA / "ml-100k.kg") if args.dataset == "mlkg" else (kge_peers.KG_DATA / "kinships")
            fail(f"{src}: not found (set GRAPHREC_DATA / GRAPHREC_KG_DATA)")
        return out
    from graphrec.datasets import PinterestConfig, generate_pinterest
    from graphrec.eval.split import random_split
    from graphrec.graph import build_graph, load_schema

    saves = args.saves
    cfg = PinterestConfig(users=max(1000, saves // 20), pins=max(2000, saves // 10), boards=max(100, saves // 200),
                          authors=max(50, saves // 500), saves=saves, clusters=100, seed=0)
    generate_pinterest(cfg, work / name / "data", overwrite=False, progress=False)
    graph = build_graph(load_schema(ROOT / "graphs" / "pinterest-synthetic.yaml"), work / name / "graph",
                        data_dir=work / name / "data", progress=False)
    random_split(graph, fractions=(0.9, 0.05, 0.05), seed=0, out=split)
    return split


# ---- measurement ---------------------------------------------------------------------
class TreeMemory:
    """Peak memory of a process and all its descendants, sampled in a thread: the peak of
    the summed RSS and of the summed PSS (bytes), and each process's own peak RSS
    (``per_process``: pid -> (command line, bytes); an embedded Ray's GCS, raylet and
    workers are the driver's descendants)."""

    def __init__(self, pid: int, every: float):
        import psutil

        self._psutil, self.root, self.every = psutil, psutil.Process(pid), every
        self.peak_rss = self.peak_pss = 0
        self.max_processes = 0
        self.per_process: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        ps = self._psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except ps.Error:
            return
        rss = pss = 0
        for p in procs:
            try:
                m = p.memory_full_info()
            except ps.Error:  # exited between listing and reading
                continue
            rss, pss = rss + m.rss, pss + m.pss
            old = self.per_process.get(p.pid)
            if old is None or m.rss > old[1]:
                try:
                    name = " ".join(p.cmdline()[:4])[-90:]
                except ps.Error:
                    name = old[0] if old else "?"
                self.per_process[p.pid] = (name, m.rss)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.max_processes = max(self.max_processes, len(procs))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], log: Path, every: float, env: dict | None = None) -> dict:
    """Run ``cmd`` (output to ``log``), sampling its process tree's memory; its wall time,
    CPU time (user + system of the process and its waited-for descendants: less sensitive
    than wall time to other load on the machine), peak RSS / PSS (MB) and the most
    processes seen at once."""
    import resource

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=ROOT)
        with TreeMemory(proc.pid, every) as mem:
            rc = proc.wait()
    wall = time.perf_counter() - t0
    load = os.getloadavg()[0]  # the machine's 1-minute load average as the run ends (other work on it)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # every descendant that was waited for
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        # graphrec's own one-line refusals (exit 2) pass through as ours
        sys.exit(2 if rc == 2 else 1)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": mem.peak_rss / 2**20,
            "peak_pss_mb": mem.peak_pss / 2**20, "processes": mem.max_processes, "load_average": load}


# ---- PBG: data, config, scorer --------------------------------------------------------
def pbg_type_names(types: list[str]) -> dict[str, str]:
    """PBG entity names (they become file names): the type's own name when it is plain."""
    return {t: t if re.fullmatch(r"[A-Za-z0-9_]+", t) else f"type{i}" for i, t in enumerate(types)}


def export_pbg(buckets, edge_types: list[tuple], names: dict[str, str], entity_dir: Path, edge_dir: Path) -> dict:
    """Write graphrec's partitioned graph in PBG's on-disk format (module docstring);
    returns ``{"lhs_parts", "rhs_parts", "edges"}``.

    The bucket files are what PBG's ``FileEdgeStorage.load_chunk_of_edges`` reads: int64
    datasets ``lhs``, ``rhs``, ``rel`` and the ``format_version`` attribute. They are
    written here with h5py as plain contiguous datasets, not through PBG's appender,
    which allocates 50 MiB HDF5 chunks per dataset (157 MB per bucket file however few
    its edges: 2.5 GB for ML-100K's 16 buckets)."""
    import h5py
    from torchbiggraph.graph_storages import FORMAT_VERSION, FORMAT_VERSION_ATTR, FileEdgeStorage, FileEntityStorage

    part = buckets.partitioning
    entities = FileEntityStorage(str(entity_dir))
    entities.prepare()
    used = sorted({t for et in edge_types for t in (et[0], et[2])})
    for t in used:
        for p, size in enumerate(part.sizes(t)):
            entities.save_count(names[t], p, int(size))
    # PBG's grid: P on a side where any relation's type is partitioned, else 1
    lhs_parts = max(part.parts(et[0]) for et in edge_types)
    rhs_parts = max(part.parts(et[2]) for et in edge_types)
    storage = FileEdgeStorage(str(edge_dir))
    storage.prepare()
    rel_buckets = [buckets.relation(et) for et in edge_types]
    total = 0
    for i in range(lhs_parts):
        for j in range(rhs_parts):
            cols = {"lhs": [], "rhs": [], "rel": []}
            for r, (et, rb) in enumerate(zip(edge_types, rel_buckets, strict=True)):
                pi = i if part.is_partitioned(et[0]) else 0
                pj = j if part.is_partitioned(et[2]) else 0
                if pi != i or pj != j:  # an unpartitioned side's edges sit in partition 0 only
                    continue
                s, d, _ = rb.bucket(pi, pj)
                cols["lhs"].append(np.asarray(s, np.int64))
                cols["rhs"].append(np.asarray(d, np.int64))
                cols["rel"].append(np.full(s.shape[0], r, np.int64))
            path = storage.get_edges_file(i, j)  # every bucket gets a file, empty ones too
            tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
            with h5py.File(tmp, "w") as hf:
                hf.attrs[FORMAT_VERSION_ATTR] = FORMAT_VERSION
                for name, xs in cols.items():
                    hf.create_dataset(name, data=np.concatenate(xs) if xs else np.empty(0, np.int64))
            tmp.replace(path)
            total += sum(x.shape[0] for x in cols["rel"])
    return {"lhs_parts": lhs_parts, "rhs_parts": rhs_parts, "edges": total}


def pbg_config(args, edge_types, names, part, entity_dir: Path, edge_dir: Path, ckpt_dir: Path) -> dict:
    operator, comparator = SCORE_TO_PBG[args.score]
    used = sorted({t for et in edge_types for t in (et[0], et[2])})
    return {
        "entities": {names[t]: {"num_partitions": part.parts(t)} for t in used},
        "relations": [{"name": ":".join(et), "lhs": names[et[0]], "rhs": names[et[2]], "operator": operator}
                      for et in edge_types],
        "dimension": args.dim, "init_scale": args.init_scale, "global_emb": False, "bias": False,
        "comparator": comparator, "loss_fn": LOSS_TO_PBG[args.loss], "margin": args.margin,
        "entity_path": str(entity_dir), "edge_paths": [str(edge_dir)], "checkpoint_path": str(ckpt_dir),
        "num_epochs": args.epochs, "num_edge_chunks": 1, "batch_size": args.batch_size,
        "num_uniform_negs": args.uniform, "num_batch_negs": args.in_batch,
        "lr": args.pbg_lr[0], "eval_fraction": 0.0,
        "workers": args.pbg_workers, "hogwild_delay": args.pbg_hogwild_delay,
        "num_machines": 1, "background_io": False, "verbose": 0,
    }


class PBGScorer:
    """Filtered-link-prediction scorers of a PBG model, computed by PBG's own operator and
    comparator modules: ``score_tails(et, h) -> [B, N_tail_type]`` and ``score_heads(et,
    t) -> [B, N_head_type]`` (global graphrec ids), with PBG's score ``comparator(lhs,
    operator_r(rhs))`` (no global embeddings, no bias: the benchmark's config)."""

    def __init__(self, tables: dict[str, torch.Tensor], edge_types, operators: list, comparator):
        self.tables, self.edge_types = tables, [tuple(et) for et in edge_types]
        self.operators, self.comparator = operators, comparator
        self._tail_candidates: dict[int, torch.Tensor] = {}

    @classmethod
    def from_checkpoint(cls, ckpt_dir: Path, config: dict, edge_types, names: dict[str, str], part) -> PBGScorer:
        from torchbiggraph.checkpoint_manager import CheckpointManager
        from torchbiggraph.model import COMPARATORS, OPERATORS

        cm = CheckpointManager(str(ckpt_dir))
        tables = {}
        for t in sorted({t for et in edge_types for t in (et[0], et[2])}):
            table = torch.empty(int(part.sizes(t).sum()), config["dimension"])
            for p in range(part.parts(t)):
                emb, _ = cm.read(names[t], p)
                table[torch.from_numpy(part.members(t, p))] = emb  # partition row r = node members[r]
            tables[t] = table
        state, _ = cm.read_model()
        operators = []
        for r, rel in enumerate(config["relations"]):
            op = OPERATORS.get_class(rel["operator"])(config["dimension"])
            prefix = f"rhs_operators.{r}."
            op.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            operators.append(op.eval())
        cm.close()
        return cls(tables, edge_types, operators, COMPARATORS.get_class(config["comparator"])())

    def _op(self, r: int, x: torch.Tensor) -> torch.Tensor:
        return self.comparator.prepare(self.operators[r](x))

    @torch.no_grad()
    def score_tails(self, et, h: torch.Tensor) -> torch.Tensor:
        r = self.edge_types.index(tuple(et))
        if r not in self._tail_candidates:  # operator_r(every tail), once per relation
            self._tail_candidates[r] = self._op(r, self.tables[et[2]])
        lhs = self.comparator.prepare(self.tables[et[0]][h])[None]
        empty = lhs[:, :0]
        _, _, scores = self.comparator(lhs, lhs, empty, self._tail_candidates[r][None])
        return scores[0]

    @torch.no_grad()
    def score_heads(self, et, t: torch.Tensor) -> torch.Tensor:
        r = self.edge_types.index(tuple(et))
        rhs = self._op(r, self.tables[et[2]][t])[None]
        heads = self.comparator.prepare(self.tables[et[0]])[None]
        _, scores, _ = self.comparator(rhs, rhs, heads, rhs[:, :0])
        return scores[0]


def check_pbg_scorer() -> None:
    """:class:`PBGScorer` against scores computed by hand (a wrong operator side, a
    conjugation or a transposed output would fail here)."""
    from torchbiggraph.model import COMPARATORS, OPERATORS

    et = ("e", "r", "e")
    # 3 entities, dim 2 = one complex coordinate [re | im]
    table = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, -1.0]])
    op = OPERATORS.get_class("complex_diagonal")(2)
    op.load_state_dict({"real": torch.tensor([0.5]), "imag": torch.tensor([0.25])})
    s = PBGScorer({"e": table}, [et], [op], COMPARATORS.get_class("dot")())
    # f(h, t) = h · op(t), op(t) = [t_re·0.5 − t_im·0.25, t_re·0.25 + t_im·0.5]:
    # op(e0) = [0, 1.25], op(e1) = [0.5, 2.75], op(e2) = [0.25, −0.5]
    want = torch.tensor([[2.5, 6.0, -0.75],  # h = e0 = [1, 2]
                         [5.0, 12.5, -1.25]])  # h = e1 = [3, 4]
    got = s.score_tails(et, torch.tensor([0, 1]))
    assert torch.allclose(got, want), (got, want)
    # heads of tail e1 (op(e1) = [0.5, 2.75]): e0 6.0, e1 12.5, e2 −2.75
    got = s.score_heads(et, torch.tensor([1]))
    assert torch.allclose(got, torch.tensor([[6.0, 12.5, -2.75]])), got
    # translation + l2: f(h, t) = −‖h − (t + r)‖ with r = [1, 0]; h = e0, t = e2: t + r = [1, −1], norm 3
    op = OPERATORS.get_class("translation")(2)
    op.load_state_dict({"translation": torch.tensor([1.0, 0.0])})
    s = PBGScorer({"e": table}, [et], [op], COMPARATORS.get_class("l2")())
    assert torch.allclose(s.score_tails(et, torch.tensor([0]))[0, 2], torch.tensor(-3.0))
    assert torch.allclose(s.score_heads(et, torch.tensor([2]))[0, 0], torch.tensor(-3.0))


# ---- the two runs --------------------------------------------------------------------
def graphrec_config(args, lr: float, path: Path) -> None:
    import yaml

    cfg = {
        "model": "twhin", "dim": args.dim, "score": args.score, "init_scale": args.init_scale,
        "epochs": args.epochs, "batch_size": args.batch_size,
        "negatives": {"uniform": args.uniform, "in_batch": args.in_batch > 0, "chunk_size": args.in_batch,
                      "corrupt": "both", "exhaustive_max_nodes": 0},
        "loss": args.loss, "margin": args.margin, "optimizer": args.optimizer, "lr": lr,
        "validation": {"source": "none"}, "holdout_fraction": 0.0,
        "partitions": args.partitions, "partition_min_nodes": args.min_nodes, "seed": args.seed,
        "partition_buckets": args.buckets,
        "batches": args.batches,
        "threads": args.threads,
        "ray": {"workers": args.workers, "cpus_per_worker": args.threads},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_graphrec(args, lr: float, split: Path, runs: Path) -> dict:
    """Train graphrec at learning rate ``lr`` with the CLI in its own process; timing,
    memory and the trained model."""
    from graphrec.run.directory import open_run

    name = f"graphrec-lr{lr:g}"
    cfg_path, run_dir, log = runs / f"{name}.yaml", runs / name, runs / f"{name}.log"
    graphrec_config(args, lr, cfg_path)
    cmd = [sys.executable, "-m", "graphrec.cli", "train", "twhin", "--config", str(cfg_path),
           "--graph", str(split / "train"), "--out", str(run_dir), "--partitions", str(args.partitions)]
    cmd += ["--no-ray"] if args.workers == 1 else ["--workers", str(args.workers)]
    print(f"graphrec: training, lr {lr:g} ({' '.join(cmd[3:])})", flush=True)
    m = run_measured(cmd, log, args.sample_every, env={"PYTHONPATH": str(ROOT)})
    run = open_run(run_dir)
    summary = run.info["summary"]
    per_epoch = [(h["positives_per_s"] * h["seconds"], h["seconds"]) for h in summary["history"]]
    positives = sum(n for n, _ in per_epoch)
    later = per_epoch[1:]
    return {**m, "train_seconds": summary["seconds"], "positives": round(positives),
            "edges_per_s": positives / summary["seconds"],
            "steady_edges_per_s": sum(n for n, _ in later) / sum(t for _, t in later) if later else None,
            "lr": lr, "model": run.model, "log": str(log)}


def run_pbg(args, lr: float, d: Path, config: dict, grid: int) -> dict:
    """Train PBG with ``config`` at learning rate ``lr`` in ``d`` (the data written by
    :func:`export_pbg`); timing, memory and the checkpoint directory."""
    config = {**config, "lr": lr, "checkpoint_path": str(d / f"checkpoints-lr{lr:g}")}
    cfg_path, timing_path = d / f"config-lr{lr:g}.json", d / f"timing-lr{lr:g}.json"
    cfg_path.write_text(json.dumps(config, indent=1))
    print(f"PBG: training, lr {lr:g}", flush=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "pbg_train.py"), str(cfg_path), str(timing_path)]
    m = run_measured(cmd, d / f"train-lr{lr:g}.log", args.sample_every)
    timing = json.loads(timing_path.read_text())
    b = timing["buckets"]  # one entry per bucket (empty ones too), grid buckets per epoch
    trained = sum(x["count"] for x in b)
    # epochs 2.. : from the end of epoch 1's last bucket (its checkpoint included) to the last bucket
    later = sum(x["count"] for x in b[grid:]) / (b[-1]["seconds"] - b[grid - 1]["seconds"]) if len(b) > grid else None
    return {**m, "train_seconds": timing["train_seconds"], "positives": trained,
            "edges_per_s": trained / timing["train_seconds"], "steady_edges_per_s": later, "lr": lr,
            "checkpoint": config["checkpoint_path"], "config": config, "log": str(d / f"train-lr{lr:g}.log")}


def link_prediction(score_tails, score_heads, split, edge_types, part: str, max_test) -> dict:
    from graphrec.train.evaluate import link_prediction_on_split

    r = link_prediction_on_split(None, split, part, ks=(1, 10), edge_types=edge_types, max_per_relation=max_test,
                                 scorers=(score_tails, score_heads))
    return {k: r[k] for k in ("mrr", "hits@1", "hits@10", "triples")}


# ---- report --------------------------------------------------------------------------
def table(res: dict) -> str:
    s = res["settings"]
    neg = f"{s['uniform']} + {max(s['in_batch'] - 1, 0)} in-batch"
    fmt_rate = (lambda x: "—" if x is None else f"{x:,.0f}")
    head = ("| dataset | train edges | P | dim | score / loss | negatives per positive and side | epochs | library "
            "(processes x threads) | lr | edges/s (epochs 2+) | peak RSS MB (PSS) | process wall s (CPU s) | "
            "test MRR | test Hits@10 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for lib, label in (("pbg", f"PyTorch-BigGraph 1.0.0 ({s['pbg_workers']} x 1)"),
                       ("graphrec", f"graphrec ({s['workers']} x {s['threads']})")):
        r = res[lib]
        lr = f"{r['lr']:g}"
        if r.get("lr_valid_mrr"):  # picked on valid: every tried learning rate's valid MRR
            lr += " (valid MRR " + ", ".join(f"{k}: {v:.3f}" for k, v in r["lr_valid_mrr"].items()) + ")"
        rows.append(f"| {s['dataset']} | {res['train_edges']:,} | {s['partitions']} | {s['dim']} | {s['score']} / "
                    f"{s['loss']} | {neg} | {s['epochs']} | {label} | {lr} | {fmt_rate(r['edges_per_s'])} "
                    f"({fmt_rate(r['steady_edges_per_s'])}) | {r['peak_rss_mb']:,.0f} ({r['peak_pss_mb']:,.0f}) | "
                    f"{r['wall_seconds']:.1f} ({r['cpu_seconds']:.1f}) | {r['test']['mrr']:.4f} | "
                    f"{r['test']['hits@10']:.4f} |")
    g, p = res["graphrec"], res["pbg"]
    steady = ""
    if g["steady_edges_per_s"] and p["steady_edges_per_s"]:
        steady = f" (epochs 2+: x{g['steady_edges_per_s'] / p['steady_edges_per_s']:.2f})"
    ratio = (f"\ngraphrec / PBG: edges/s x{g['edges_per_s'] / p['edges_per_s']:.2f}{steady}, peak RSS "
             f"x{g['peak_rss_mb'] / p['peak_rss_mb']:.2f} (PSS x{g['peak_pss_mb'] / p['peak_pss_mb']:.2f}), "
             f"test MRR {g['test']['mrr'] - p['test']['mrr']:+.4f}; {os.cpu_count()} CPUs, 1-minute load average at "
             f"the end of the runs: graphrec {g['load_average']:.1f}, PBG {p['load_average']:.1f}")
    return "\n".join([head, *rows]) + "\n" + ratio


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=DATASETS, default="mlkg")
    ap.add_argument("--saves", type=int, default=200_000, help="pinterest: save edges (14M: the ~21M-edge graph)")
    ap.add_argument("--partitions", type=int, default=4, help="P of both libraries")
    ap.add_argument("--optimizer", choices=["row_adagrad", "adagrad"], default="row_adagrad",
                    help="graphrec's node-table optimizer (row_adagrad: PBG's own, one accumulator per row)")
    ap.add_argument("--batches", choices=["relation", "types"], default="relation",
                    help="graphrec's batches (types: PBG's batches, every relation between two types)")
    ap.add_argument("--buckets", choices=["blocks", "pairs"], default="blocks",
                    help="graphrec's partition_buckets (blocks: PBG's own scheme, the like-for-like comparison)")
    ap.add_argument("--min-nodes", type=int, default=0, help="node types with fewer nodes stay whole (both)")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--score", choices=sorted(SCORE_TO_PBG), default="complex")
    ap.add_argument("--loss", choices=sorted(LOSS_TO_PBG), default="softmax")
    ap.add_argument("--margin", type=float, default=1.0, help="margin of the margin loss (both)")
    ap.add_argument("--uniform", type=int, default=100, help="uniform negatives per chunk and side")
    ap.add_argument("--in-batch", type=int, default=50,
                    help="chunk of positives that are each other's negatives (PBG num_batch_negs; 0: none)")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, nargs="+", default=[0.1],
                    help="graphrec's Adagrad learning rate(s); with several, the best valid MRR is reported")
    ap.add_argument("--pbg-lr", type=float, nargs="+", default=None,
                    help="PBG's learning rate(s) (default: --lr); with several, the best valid MRR is reported")
    ap.add_argument("--init-scale", type=float, default=None, help="std of the initial embeddings (1/sqrt(dim))")
    ap.add_argument("--workers", type=int, default=1, help="graphrec processes (1: --no-ray; >1: Ray workers)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each graphrec process")
    ap.add_argument("--pbg-workers", type=int, default=None, help="PBG HOGWILD! workers (default: --workers)")
    ap.add_argument("--pbg-hogwild-delay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0, help="graphrec's seed and the partitioning's")
    ap.add_argument("--max-test", type=int, default=None, help="test triples per relation (default: all)")
    ap.add_argument("--sample-every", type=float, default=0.1, help="memory sampling period, seconds")
    ap.add_argument("--work", default=None, help="keeps the built graphs (default: a temporary directory)")
    ap.add_argument("--keep-runs", action="store_true", help="keep both runs' directories under --work")
    ap.add_argument("--results", default=None, help="append the markdown table to this file")
    ap.add_argument("--json", default=None, help="write every figure to this file")
    ap.add_argument("--check", action="store_true", help="only check the PBG scorer on a hand-computed case")
    args = ap.parse_args(argv)
    if args.pbg_lr is None:
        args.pbg_lr = list(args.lr)
    if args.pbg_workers is None:
        args.pbg_workers = args.workers
    for k in ("partitions", "dim", "batch_size", "epochs", "workers", "threads", "pbg_workers"):
        if getattr(args, k) < 1:
            fail(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    if args.uniform < 0 or args.in_batch < 0 or args.min_nodes < 0:
        fail("--uniform, --in-batch and --min-nodes must be >= 0")
    if args.uniform == 0 and args.in_batch < 2:
        fail("no negatives: set --uniform > 0 or --in-batch >= 2")
    if args.in_batch and args.batch_size % args.in_batch:
        fail(f"--batch-size {args.batch_size} must be a multiple of --in-batch {args.in_batch} (PBG's chunking)")
    if args.score in ("complex",) and args.dim % 2:
        fail(f"--dim {args.dim}: complex needs an even dimension")
    if args.init_scale is None:
        args.init_scale = 1.0 / args.dim ** 0.5
    return args


class BestByValid:
    """Keeps the run with the best filtered valid MRR among several learning rates (the only
    one, unevaluated on valid, when there is one) and only its scorers, so a big graph
    holds one trained model at a time besides the best."""

    def __init__(self, several: bool, split, edge_types, max_test, label: str):
        self.several, self.split, self.edge_types = several, split, edge_types
        self.max_test, self.label = max_test, label
        self.best, self.scorers, self.valid = None, None, {}

    def offer(self, result: dict, score_tails, score_heads) -> None:
        if self.several:
            result["valid"] = link_prediction(score_tails, score_heads, self.split, self.edge_types, "valid",
                                              self.max_test)
            self.valid[f"{result['lr']:g}"] = result["valid"]["mrr"]
            print(f"{self.label}: lr {result['lr']:g}: valid MRR {result['valid']['mrr']:.4f}", flush=True)
        if self.best is None or result["valid"]["mrr"] > self.best["valid"]["mrr"]:  # several: both have valid
            self.best, self.scorers = result, (score_tails, score_heads)

    def result(self) -> dict:
        """The pick with its test metrics and every learning rate's valid MRR."""
        self.best["lr_valid_mrr"] = self.valid
        self.best["test"] = link_prediction(*self.scorers, self.split, self.edge_types, "test", self.max_test)
        return self.best


def train_graphrec(args, split_path: Path, runs: Path, split, edge_types) -> dict:
    """Train graphrec at every ``--lr`` (picking the best valid MRR when there are
    several) and evaluate the pick on test."""
    pick = BestByValid(len(args.lr) > 1, split, edge_types, args.max_test, "graphrec")
    for lr in args.lr:
        r = run_graphrec(args, lr, split_path, runs)
        model = r.pop("model")
        pick.offer(r, lambda et, h, m=model: m.score_tails(et, h), lambda et, t, m=model: m.score_heads(et, t))
        del model
    best = pick.result()
    print(f"graphrec: {best['edges_per_s']:,.0f} edges/s, peak RSS {best['peak_rss_mb']:,.0f} MB "
          f"(PSS {best['peak_pss_mb']:,.0f}), test MRR {best['test']['mrr']:.4f} (lr {best['lr']:g})", flush=True)
    return best


def train_pbg(args, runs: Path, store, buckets, edge_types, split) -> dict:
    """Convert, train PBG at every ``--pbg-lr`` (picking the best valid MRR when there are
    several) and evaluate the pick on test."""
    import warnings

    names = pbg_type_names(store.node_types)
    d = runs / "pbg"
    t0 = time.perf_counter()
    info = export_pbg(buckets, edge_types, names, d / "entities", d / "edges")
    convert_s = time.perf_counter() - t0
    print(f"PBG: {info['edges']:,} edges in {info['lhs_parts']}x{info['rhs_parts']} buckets written in "
          f"{convert_s:.1f}s ({d / 'edges'})", flush=True)
    config = pbg_config(args, edge_types, names, buckets.partitioning, d / "entities", d / "edges", d / "checkpoints")
    pick = BestByValid(len(args.pbg_lr) > 1, split, edge_types, args.max_test, "PBG")
    for lr in args.pbg_lr:
        r = run_pbg(args, lr, d, config, info["lhs_parts"] * info["rhs_parts"])
        with warnings.catch_warnings():  # torch's TypedStorage notice from PBG's shared-memory reads
            warnings.simplefilter("ignore", UserWarning)
            scorer = PBGScorer.from_checkpoint(Path(r["checkpoint"]), r["config"], edge_types, names,
                                               buckets.partitioning)
        pick.offer(r, scorer.score_tails, scorer.score_heads)
        del scorer
    best = pick.result()
    best["convert_seconds"] = convert_s
    best["config"] = {k: v for k, v in best["config"].items() if not k.endswith("_path") and k != "edge_paths"}
    print(f"PBG: {best['edges_per_s']:,.0f} edges/s, peak RSS {best['peak_rss_mb']:,.0f} MB "
          f"(PSS {best['peak_pss_mb']:,.0f}), test MRR {best['test']['mrr']:.4f} (lr {best['lr']:g})", flush=True)
    return best


def main(argv=None):
    args = parse_args(argv)
    try:
        import warnings

        with warnings.catch_warnings():  # its import-time pkg_resources deprecation notice
            warnings.simplefilter("ignore", UserWarning)
            import torchbiggraph  # noqa: F401
    except ImportError:
        fail("torchbiggraph is not installed: pip install -e '.[bench]' -c constraints.txt (torch==2.13.0 pinned)")
    check_pbg_scorer()
    if args.check:
        print("PBG scorer: hand-computed case OK")
        return
    from graphrec.eval import load_split
    from graphrec.graph.partition import EdgeBuckets, PartitionSpec
    from graphrec.run.config import TwHINConfig
    from graphrec.train.twhin import select_relations

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="partitioned-"))
    work.mkdir(parents=True, exist_ok=True)
    split_path = prepare(args, work)
    split = load_split(split_path)
    store = split.train
    edge_types = [et for et, _ in select_relations(store, TwHINConfig(model="twhin"))]  # every base relation
    spec = PartitionSpec(args.partitions, args.min_nodes, args.seed)
    t0 = time.perf_counter()
    buckets = EdgeBuckets.open_or_build(store, spec)  # graphrec's run reuses them (same spec)
    train_edges = int(sum(store.relation(et).num_edges for et in edge_types))
    print(f"{args.dataset}: {train_edges:,} train edges, {len(edge_types)} relations, types "
          + ", ".join(f"{t} {store.num_nodes(t):,} in {buckets.partitioning.parts(t)}" for t in store.node_types)
          + f"; buckets {time.perf_counter() - t0:.1f}s", flush=True)
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    try:
        ours = train_graphrec(args, split_path, runs, split, edge_types)  # first: a refused setting fails fast
        pbg = train_pbg(args, runs, store, buckets, edge_types, split)
    finally:
        if not args.keep_runs:
            shutil.rmtree(runs, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    res = {"settings": {k: v for k, v in vars(args).items() if k not in ("results", "json", "check", "work")},
           "train_edges": train_edges, "relations": [":".join(et) for et in edge_types], "pbg": pbg,
           "graphrec": ours, "command": " ".join(["python", "benchmarks/partitioned.py", *(argv or sys.argv[1:])])}
    out = table(res)
    print("\n" + out)
    if args.results:
        with open(args.results, "a") as f:
            f.write(f"\n`{res['command']}`\n\n{out}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
