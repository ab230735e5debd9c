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
from graphrec.io import OutputLock, atomic_file, is_graphrec_dir, mark_graphrec_dir, write_bytes, write_json, write_npy
from graphrec.models.pinsage import PinSage
from graphrec.sampling.blocks import Block
from graphrec.sampling.features import NodeFeatureTable
from graphrec.sampling.walks import ImportanceNeighborhoods

log = logging.getLogger(__name__)

STATE_FILE = "inference.json"
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

    def run(self, phase: int, shard: int, lo: int, hi: int) -> int:
        """Compute phase ``phase`` for nodes ``[lo, hi)`` and mark the shard done."""
        m, k_layers = self.model, self.model.num_layers
        with torch.no_grad():
            if phase == 0:
                nodes = torch.arange(lo, hi)
                h = m.embed_input(nodes, self.features.gather(nodes.numpy()) if self.features is not None else None)
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
    """

    def __init__(self, model: PinSage, features: NodeFeatureTable | None, neighborhoods: ImportanceNeighborhoods | str | Path,
                 work_dir: str | Path, shard_size: int = 65536):
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
        nbr = np.load(self.neighbors_path, mmap_mode="r")
        if nbr.shape[0] != model.num_nodes:
            raise GraphrecError(f"{self.neighbors_path}: {nbr.shape[0]} neighbourhoods for a model of "
                                f"{model.num_nodes} nodes")
        self.num_neighbors = int(nbr.shape[1])
        self._check_state()

    def _check_state(self) -> None:
        state = {"fingerprint": model_fingerprint(self.model), "num_nodes": self.model.num_nodes,
                 "num_layers": self.model.num_layers, "hidden_dim": self.model.hidden_dim, "dim": self.model.dim,
                 "num_neighbors": self.num_neighbors, "shard_size": self.shard_size,
                 "neighbors_bytes": self.neighbors_path.stat().st_size + self.weights_path.stat().st_size}
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
        n, hid, k = self.model.num_nodes, self.model.hidden_dim, self.model.num_layers
        for i in range(k):
            _allocate(self.work_dir / f"h{i}.npy", (n, hid))
            _allocate(self.work_dir / f"m{i + 1}.npy", (n, hid))
        _allocate(self.work_dir / OUTPUT, (n, self.model.dim))

    @property
    def shards(self) -> list[tuple[int, int, int]]:
        n = self.model.num_nodes
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
        task = ShardTask(self.model, self.features, self.work_dir, self.neighbors_path, self.weights_path)
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
                  use_ray: bool = False, address: str | None = None, progress: bool = True) -> Path:
    """Layer-wise inference of a finished PinSage run over its saved neighbourhoods;
    writes ``work_dir`` (default ``RUN_DIR/inference``) with ``embeddings.npy`` (items)
    and ``user_embeddings.npy`` (recency-weighted means of them, or the learned user
    table), then returns ``work_dir``. Re-running resumes; one job per ``work_dir`` at a time."""
    from graphrec.run.directory import NEIGHBORHOODS_DIR, open_run

    run = open_run(run_dir, expect="pinsage")
    work = Path(work_dir) if work_dir is not None else Path(run_dir) / "inference"
    if work.is_dir() and any(work.iterdir()) and not is_graphrec_dir(work):
        raise GraphrecError(f"{work} is a directory graphrec did not write; choose an empty or new inference directory")
    with OutputLock(work):
        work.mkdir(parents=True, exist_ok=True)
        mark_graphrec_dir(work, "inference")
        job = LayerwiseInference(run.model, run.features(), Path(run_dir) / NEIGHBORHOODS_DIR, work,
                                 shard_size=shard_size)
        items = job.run(use_ray=use_ray, address=address, progress=progress)
        _write_user_vectors(run, work, items)
    return work


def _write_user_vectors(run, work: Path, items: np.ndarray) -> None:
    from graphrec.graph.store import parse_edge_type
    from graphrec.models.users import recency_weighted_mean

    users_path = work / "user_embeddings.npy"
    if not users_path.exists():
        cfg = run.config
        if cfg.user_vectors.kind == "learned":
            users = run.user_vectors
        else:
            rel = run.store.relation(parse_edge_type(cfg.interactions))
            ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else None
            users = recency_weighted_mean(torch.from_numpy(np.array(items)), rel.indptr, rel.indices, ts,
                                          cfg.user_vectors.half_life).numpy()
        write_npy(users_path, np.asarray(users, dtype=np.float32))
