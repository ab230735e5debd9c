"""MapReduce-style PinSage inference: every layer computed once for all nodes, in shards,
on disk, resumable.

For a model with ``K`` layers and fixed importance neighbourhoods ``N(v)`` (``[N, T]``
global ids, ``-1`` padding, with weights ``α``), inference runs ``K + 1`` phases, each a
map over node shards ``[lo, hi)``:

- phase 0 writes ``h⁰ = input(v)`` and the layer-1 messages ``m¹ = ReLU(Q₁ h⁰ + q₁)``;
- phase ``k`` (1..K) reads the shard's own ``h^{k-1}`` rows and the messages
  ``m^k[N(v)]`` of its neighbours (memory-mapped, gathered in sorted order), writes
  ``h^k = normalize(ReLU(W_k [h^{k-1} ‖ γ(m^k[N(v)], α)] + w_k))`` and the next layer's
  messages ``m^{k+1}`` — or, for ``k = K``, the output ``z = head(h^K)``.

So each node's representation and message are computed exactly once per layer (sampled
per-batch inference recomputes the lower layers of every neighbour for every batch
that touches it: ``O(T^K)`` work per node). Peak memory is bounded by the shard
(``shard_size × T × hidden`` floats for the gathered messages), not by the graph.

Layout of ``work_dir``::

    inference.json        what is being computed (model fingerprint, sizes, shard size)
    h0.npy … hK.npy       [N, hidden] float32 layer outputs (memory-mapped .npy)
    m1.npy … mK.npy       [N, hidden] float32 messages
    embeddings.npy        [N, dim] float32 output
    done/<phase>-<shard>  written after the shard's rows are flushed

A shard is skipped when its ``done`` marker exists, so re-running after a crash (or a
killed job) recomputes only unfinished shards. Shards write disjoint rows of the
pre-allocated arrays, so they run in any order and in parallel: in-process, or as Ray
tasks (local Ray or a cluster whose workers share ``work_dir``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.io import (OutputLock, atomic_file, is_graphrec_dir, mark_graphrec_dir, portable_path, resolve_portable,
                         write_bytes, write_json, write_npy)
from graphrec.models.pinsage import PinSage
from graphrec.sampling.blocks import Block
from graphrec.sampling.features import NodeFeatureTable
from graphrec.sampling.walks import ImportanceNeighborhoods

log = logging.getLogger(__name__)

STATE_FILE = "inference.json"
GRAPH_FILE = "graph.json"  # which graph the inference embeds
OUTPUT = "embeddings.npy"


def model_fingerprint(model: PinSage) -> str:
    """SHA-256 of the model's parameters (to refuse resuming with another model)."""
    buf = io.BytesIO()
    for name, t in sorted(model.state_dict().items()):
        buf.write(name.encode())
        buf.write(t.detach().cpu().contiguous().numpy().tobytes())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _allocate(path: Path, shape: tuple[int, int]) -> None:
    """Create a float32 ``.npy`` of ``shape`` (sparse file: no data written) unless it
    exists with that shape."""
    if path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == shape and arr.dtype == np.float32:
            return
        raise GraphrecError(f"{path}: shape {arr.shape} {arr.dtype}, expected {shape} float32")
    with atomic_file(path, overwrite=True) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape).flush()


def _open(path: Path) -> np.memmap:
    """A pre-allocated array (see :meth:`LayerwiseInference.allocate`) opened for writing rows."""
    return np.load(path, mmap_mode="r+")


@dataclass
class ShardTask:
    """Everything a shard needs (picklable: shipped once to Ray workers)."""

    model: PinSage
    features: NodeFeatureTable | None
    work_dir: Path
    neighbors_path: Path
    weights_path: Path
    id_rows_path: Path | None = None  # [N] int64 ID-table row per node (-1: none); None: row = node id

    def run(self, phase: int, shard: int, lo: int, hi: int) -> int:
        """Compute phase ``phase`` for nodes ``[lo, hi)`` and mark the shard done."""
        m, k_layers = self.model, self.model.num_layers
        with torch.no_grad():
            if phase == 0:
                nodes = torch.arange(lo, hi)
                rows = nodes if self.id_rows_path is None else \
                    torch.from_numpy(np.array(np.load(self.id_rows_path, mmap_mode="r")[lo:hi], dtype=np.int64))
                h = m.embed_input(rows, self.features.gather(nodes.numpy()) if self.features is not None else None)
            else:
                conv = m.convs[phase - 1]
                h_prev = torch.from_numpy(np.array(np.load(self.work_dir / f"h{phase - 1}.npy", mmap_mode="r")[lo:hi]))
                nbr = np.array(np.load(self.neighbors_path, mmap_mode="r")[lo:hi], dtype=np.int64)
                wts = np.array(np.load(self.weights_path, mmap_mode="r")[lo:hi], dtype=np.float32)
                uniq, local = np.unique(nbr[nbr >= 0], return_inverse=True)  # sorted: sequential memmap reads
                msgs = torch.from_numpy(np.array(np.load(self.work_dir / f"m{phase}.npy", mmap_mode="r")[uniq]))
                compact = np.full(nbr.shape, -1, dtype=np.int64)
                compact[nbr >= 0] = local
                h = conv.combine(h_prev, msgs, Block(torch.from_numpy(compact), torch.from_numpy(wts)))
            if phase < k_layers:  # h^K itself is needed by nothing but the head
                out = _open(self.work_dir / f"h{phase}.npy")
                out[lo:hi] = h.numpy()
                out.flush()
            if phase < k_layers:
                msg = _open(self.work_dir / f"m{phase + 1}.npy")
                msg[lo:hi] = m.convs[phase].message(h).numpy()
                msg.flush()
            else:
                z = _open(self.work_dir / OUTPUT)
                z[lo:hi] = m.head(h).numpy()
                z.flush()
        write_bytes(self.work_dir / "done" / f"{phase}-{shard:06d}", f"{lo} {hi}\n".encode())
        return hi - lo


class LayerwiseInference:
    """Sharded, resumable layer-wise inference of a :class:`PinSage` model.

    ``run()`` returns the ``[N, dim]`` float32 output (memory-mapped from
    ``work_dir/embeddings.npy``). With ``use_ray``, shards run as Ray tasks
    (``ray.init()`` embedded unless Ray is already initialised or ``address`` is given);
    at most ``max_in_flight`` at a time.

    ``id_rows`` (int64 ``[N]``, inductive inference on another graph): the model's ID-table
    row of each node, ``-1`` for nodes the model never saw (embedded from features and
    neighbours alone); ``N`` is then the graph's node count, not the model's.
    """

    def __init__(self, model: PinSage, features: NodeFeatureTable | None, neighborhoods: ImportanceNeighborhoods | str | Path,
                 work_dir: str | Path, shard_size: int = 65536, id_rows: np.ndarray | None = None):
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.model = model.eval()
        self.features = features
        self.work_dir = Path(work_dir)
        self.shard_size = int(shard_size)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(neighborhoods, (str, Path)):
            d = Path(neighborhoods)
            self.neighbors_path, self.weights_path = d / "neighbors.npy", d / "weights.npy"
        else:  # saved next to the outputs so that shard tasks read them memory-mapped
            d = self.work_dir / "neighborhoods"
            if not (d / "weights.npy").exists():
                neighborhoods.save(d)
            self.neighbors_path, self.weights_path = d / "neighbors.npy", d / "weights.npy"
        self.num_nodes = model.num_nodes if id_rows is None else int(np.asarray(id_rows).shape[0])
        self.id_rows_path = self._id_rows_hash = None
        if id_rows is not None:
            id_rows = np.asarray(id_rows, dtype=np.int64)
            self._id_rows_hash = hashlib.sha256(id_rows.tobytes()).hexdigest()  # in the state: refuse other rows
            self.id_rows_path = self.work_dir / "id_rows.npy"
            if not self.id_rows_path.exists():
                write_npy(self.id_rows_path, id_rows)
        nbr = np.load(self.neighbors_path, mmap_mode="r")
        if nbr.shape[0] != self.num_nodes:
            raise GraphrecError(f"{self.neighbors_path}: {nbr.shape[0]} neighbourhoods for "
                                f"{self.num_nodes} nodes")
        self.num_neighbors = int(nbr.shape[1])
        self._check_state()

    def _check_state(self) -> None:
        state = {"fingerprint": model_fingerprint(self.model), "num_nodes": self.num_nodes,
                 "num_layers": self.model.num_layers, "hidden_dim": self.model.hidden_dim, "dim": self.model.dim,
                 "num_neighbors": self.num_neighbors, "shard_size": self.shard_size,
                 "neighbors_bytes": self.neighbors_path.stat().st_size + self.weights_path.stat().st_size,
                 "id_rows": self._id_rows_hash}
        path = self.work_dir / STATE_FILE
        if path.exists():
            old = json.loads(path.read_text())
            old.pop("seconds", None)
            if old != state:
                diff = sorted(k for k in state if old.get(k) != state[k])
                raise GraphrecError(f"{self.work_dir}: holds an inference of another model or setting "
                                    f"(differs in {diff}); use an empty directory")
        else:
            write_json(path, state)
        (self.work_dir / "done").mkdir(exist_ok=True)

    def allocate(self) -> None:
        """Create the layer, message and output arrays (before any shard runs, so that
        shards only ever write rows of existing files)."""
        n, hid, k = self.num_nodes, self.model.hidden_dim, self.model.num_layers
        for i in range(k):
            _allocate(self.work_dir / f"h{i}.npy", (n, hid))
            _allocate(self.work_dir / f"m{i + 1}.npy", (n, hid))
        _allocate(self.work_dir / OUTPUT, (n, self.model.dim))

    @property
    def shards(self) -> list[tuple[int, int, int]]:
        n = self.num_nodes
        return [(i, lo, min(n, lo + self.shard_size)) for i, lo in enumerate(range(0, n, self.shard_size))]

    def pending(self, phase: int) -> list[tuple[int, int, int]]:
        return [s for s in self.shards if not (self.work_dir / "done" / f"{phase}-{s[0]:06d}").exists()]

    @property
    def complete(self) -> bool:
        return not self.pending(self.model.num_layers)

    def run(self, use_ray: bool = False, address: str | None = None, max_in_flight: int | None = None,
            progress: bool = True) -> np.ndarray:
        """Compute every pending shard of every phase and return the output (shards that
        are already done are skipped: re-running after a crash resumes)."""
        self.allocate()
        task = ShardTask(self.model, self.features, self.work_dir, self.neighbors_path, self.weights_path,
                         self.id_rows_path)
        phases = range(self.model.num_layers + 1)
        total = len(self.shards) * len(phases)
        started = False
        if use_ray:
            from graphrec.ray_env import init_ray

            started = init_ray(address)
        t0, rows = time.perf_counter(), 0
        bar = tqdm(total=total, desc="inference shards", disable=not progress, unit="shard")
        try:
            bar.update(total - sum(len(self.pending(p)) for p in phases))
            for phase in phases:
                todo = self.pending(phase)
                rows += self._run_ray(task, phase, todo, max_in_flight, bar) if use_ray else \
                    sum(self._run_local(task, phase, s, bar) for s in todo)
                if self.pending(phase):  # a shard task failed without raising
                    raise GraphrecError(f"{self.work_dir}: phase {phase} has unfinished shards after running them")
        finally:
            bar.close()
            if started:
                import ray

                ray.shutdown()
        dt = time.perf_counter() - t0
        if rows:
            log.info("layer-wise inference: %d node-layers in %.1fs (%.0f node-layers/s)", rows, dt, rows / max(dt, 1e-9))
        return np.load(self.work_dir / OUTPUT, mmap_mode="r")

    @staticmethod
    def _run_local(task: ShardTask, phase: int, shard: tuple[int, int, int], bar) -> int:
        n = task.run(phase, *shard)
        bar.update(1)
        return n

    @staticmethod
    def _run_ray(task: ShardTask, phase: int, todo, max_in_flight, bar) -> int:
        import ray

        if not todo:
            return 0
        remote = ray.remote(num_cpus=1)(_run_shard)
        ref = ray.put(task)
        limit = max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)))
        rows, in_flight, queue = 0, [], list(todo)
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                shard, lo, hi = queue.pop(0)
                in_flight.append(remote.remote(ref, phase, shard, lo, hi))
            ready, in_flight = ray.wait(in_flight, num_returns=1)
            rows += ray.get(ready[0])
            bar.update(1)
        return rows


def _run_shard(task: ShardTask, phase: int, shard: int, lo: int, hi: int) -> int:
    torch.set_num_threads(1)  # one logical CPU per task
    return task.run(phase, shard, lo, hi)


@torch.no_grad()
def minibatch_inference(model: PinSage, features: NodeFeatureTable | None, neighborhoods: ImportanceNeighborhoods,
                        nodes: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
    """The naive baseline: embeddings ``[len(nodes), dim]`` by per-batch sampled forward
    passes over the same fixed neighbourhoods — every batch expands its ``K``-hop
    neighbourhood and recomputes all lower layers of it (what a training-style loader
    does at inference time). Exists to measure and to check :class:`LayerwiseInference`."""
    from graphrec.sampling.blocks import compact_blocks

    model.eval()
    nodes = np.arange(model.num_nodes) if nodes is None else np.asarray(nodes, dtype=np.int64)
    nbr, wts = neighborhoods.neighbors, neighborhoods.weights

    def hood(v):
        return np.asarray(nbr[v], dtype=np.int64), np.asarray(wts[v], dtype=np.float32)

    out = np.empty((nodes.shape[0], model.dim), dtype=np.float32)
    for lo in range(0, nodes.shape[0], batch_size):
        layer_nodes, blocks = compact_blocks(nodes[lo:lo + batch_size], model.num_layers, hood)
        n0 = torch.from_numpy(layer_nodes[0])
        out[lo:lo + batch_size] = model(n0, features.gather(layer_nodes[0]) if features is not None else None,
                                        blocks).numpy()
    return out


def infer_pinsage(run_dir: str | Path, work_dir: str | Path | None = None, shard_size: int = 65536,
                  use_ray: bool = False, address: str | None = None, progress: bool = True,
                  graph: str | Path | None = None) -> Path:
    """Layer-wise inference of a finished PinSage run; writes ``work_dir`` with
    ``embeddings.npy`` (items) and ``user_embeddings.npy`` (recency-weighted means of
    them, or the learned user table), then returns ``work_dir``. Re-running resumes; one
    job per ``work_dir`` at a time.

    Without ``graph``: the run's own items over its saved neighbourhoods (default
    ``work_dir``: ``RUN_DIR/inference``). With ``graph`` — a newer store built with the
    same schema (more nodes, more edges) — every item and user *of that graph*, matched
    to the model by original id (inductive): neighbourhoods walked afresh on it (same
    metapaths and seed), features encoded with the run's vocabularies (unseen categories:
    the unknown bucket), items the model never saw embedded without an ID vector, users
    from their history in that graph (default ``work_dir``: ``RUN_DIR/inference-<graph
    checksum>``). ``graph.json`` in ``work_dir`` names the graph (for ``graphrec export``)."""
    from graphrec.graph.store import GraphStore
    from graphrec.run.directory import NEIGHBORHOODS_DIR, open_run

    run = open_run(run_dir, expect="pinsage")
    store = GraphStore(graph) if graph is not None else run.store
    default = "inference" if graph is None else f"inference-{store.checksum[:12]}"
    work = Path(work_dir) if work_dir is not None else Path(run_dir) / default
    if work.is_dir() and any(work.iterdir()) and not is_graphrec_dir(work):
        raise GraphrecError(f"{work} is a directory graphrec did not write; choose an empty or new inference directory")
    if graph is not None:
        from graphrec.run.directory import check_pinsage_graph

        check_pinsage_graph(run.config, store)
    graph_file = work / GRAPH_FILE
    if graph_file.is_file() and json.loads(graph_file.read_text())["checksum"] != store.checksum:
        raise GraphrecError(f"{work}: holds an inference of another graph than {store.path}; use an empty directory")
    with OutputLock(work):
        work.mkdir(parents=True, exist_ok=True)
        mark_graphrec_dir(work, "inference")
        # the run's own graph: found through the run; another graph: a reference that survives moving both
        write_json(graph_file, {"run_graph": True, "checksum": store.checksum} if graph is None else
                   {"run_graph": False, "checksum": store.checksum, **portable_path(store.path, work)})
        if graph is None:
            job = LayerwiseInference(run.model, run.features(), Path(run_dir) / NEIGHBORHOODS_DIR, work,
                                     shard_size=shard_size)
        else:
            job = LayerwiseInference(run.model, run.features(store), _neighborhoods_of(run, store, work), work,
                                     shard_size=shard_size, id_rows=_id_rows(run, store))
        items = job.run(use_ray=use_ray, address=address, progress=progress)
        _write_user_vectors(run, work, items, store)
    return work


def inference_graph(work_dir: str | Path):
    """The graph store an inference directory embeds (``None``: the run's own graph)."""
    from graphrec.graph.store import GraphStore

    path = Path(work_dir) / GRAPH_FILE
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    if info.get("run_graph"):
        return None
    store = GraphStore(resolve_portable(info, work_dir))
    if store.checksum != info["checksum"]:
        raise GraphrecError(f"{work_dir}: the graph it embeds, {store.path}, has changed since "
                            f"(checksum {store.checksum[:12]} != {info['checksum'][:12]}); run `graphrec infer` again")
    return store


def read_inference(work_dir: str | Path, run) -> tuple[np.ndarray, np.ndarray, object]:
    """``(user_vectors, item_vectors, graph)`` of a finished inference directory of
    ``run`` (memory-mapped; ``graph``: the store it embeds, ``None`` for the run's own)."""
    inf = Path(work_dir)
    if not (inf / STATE_FILE).is_file() or not (inf / "user_embeddings.npy").is_file():
        raise GraphrecError(f"--inference {inf}: not a finished `graphrec infer` directory")
    if json.loads((inf / STATE_FILE).read_text())["fingerprint"] != model_fingerprint(run.model):
        raise GraphrecError(f"--inference {inf}: computed with another model than {run.dir}'s")
    return (np.load(inf / "user_embeddings.npy", mmap_mode="r"), np.load(inf / OUTPUT, mmap_mode="r"),
            inference_graph(inf))


def _id_rows(run, store) -> np.ndarray:
    """Each item of ``store``: its row in the run's ID table (by original id), ``-1`` if new."""
    item_type = run.config.item_type
    return run.store.lookup(item_type, store.node_ids(item_type))


def _neighborhoods_of(run, store, work: Path) -> Path:
    """Importance neighbourhoods of every item of ``store`` under the run's walk settings,
    saved once in ``work/neighborhoods`` (reused when resuming)."""
    from graphrec.run.directory import fixed_neighborhoods, pinsage_sampler

    d = work / "neighborhoods"
    if not (d / "weights.npy").is_file():
        t0 = time.perf_counter()
        fixed_neighborhoods(pinsage_sampler(store, run.config), run.config).save(d)
        log.info("neighbourhoods of %d items of %s in %.1fs", store.num_nodes(run.config.item_type), store.path,
                 time.perf_counter() - t0)
    return d


def _write_user_vectors(run, work: Path, items: np.ndarray, store) -> None:
    """``user_embeddings.npy``: every user of ``store`` (recency-weighted mean of their
    item vectors in ``store``; a learned-user run keeps its table's row for the users it
    trained, by original id, and gives new users the recency-weighted mean)."""
    from graphrec.graph.store import parse_edge_type
    from graphrec.models.users import recency_weighted_mean

    users_path = work / "user_embeddings.npy"
    if users_path.exists():
        return
    cfg = run.config
    rel = store.relation(parse_edge_type(cfg.interactions))
    ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else None
    if cfg.user_vectors.kind == "learned" and store is run.store:
        users = np.asarray(run.user_vectors)
    else:
        users = recency_weighted_mean(torch.from_numpy(np.array(items)), rel.indptr, rel.indices, ts,
                                      cfg.user_vectors.half_life).numpy()
        if cfg.user_vectors.kind == "learned":
            user_type = rel.src_type
            rows = run.store.lookup(user_type, store.node_ids(user_type))
            known = rows >= 0
            users[known] = np.asarray(run.user_vectors)[rows[known]]
    write_npy(users_path, np.asarray(users, dtype=np.float32))
