"""TwHIN training: ``train_loop_per_worker(config)`` runs single-process or as one of N
Ray Train workers (:mod:`graphrec.train.ray_runner` wraps it; nothing here imports Ray
unless ``config["reporter"] == "ray"``).

Distribution: every worker trains on its shard of each relation's edges with the same
step schedule (:class:`~graphrec.sampling.RelationBatchSchedule`); gradients are
all-reduced by ``DistributedDataParallel`` over gloo, which supports the sparse
gradient of the node table (only the rows a step touched travel). See
``benchmarks/RESULTS.md`` for the measured scaling.

``config`` keys: ``twhin`` (a :class:`~graphrec.train.config.TwHINConfig` as dict),
``graph`` (graph store path), ``out`` (run directory), ``reporter`` (``local`` | ``ray``),
``resume`` (bool, local mode), ``progress`` (bool), ``fault`` (tests only:
``{"epoch", "rank", "marker"}`` makes that worker die once at that epoch).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.graph.csr import row_ages
from graphrec.graph.store import GraphStore
from graphrec.models.twhin import TwHIN
from graphrec.sampling import RelationBatchSchedule, RelationEdges, typed_negatives, uniform_typed_negatives
from graphrec.train.checkpoint import save_checkpoint
from graphrec.train.reporting import LocalReporter, RayReporter, dist_info, inject_fault, write_json_atomic
from graphrec.train.runs import MODEL_FILE, RUN_FILE, run_training
from graphrec.train.config import TwHINConfig, parse_config

log = logging.getLogger(__name__)



def select_relations(store: GraphStore, cfg: TwHINConfig) -> list[tuple[tuple, float]]:
    """``[(edge_type, weight)]`` to train on: reverse views only with
    ``include_reverse``; the last matching ``relations`` pattern sets the weight."""
    out = []
    for rel in store.relations():
        if rel.is_reverse and not cfg.include_reverse:
            continue
        name = ":".join(rel.edge_type)
        w = 1.0
        for pat, weight in cfg.relations.items():
            if fnmatch.fnmatchcase(name, pat):
                w = weight
        if w > 0 and rel.num_edges > 0:
            out.append((rel.edge_type, w))
    if not out:
        raise ValueError("no relation to train on (all weights 0 or relations empty)")
    return out


def edge_weights(store: GraphStore, edge_type, cfg: TwHINConfig) -> np.ndarray | None:
    """Per-edge sampling weights ``[E]`` (CSR order) of ``edge_type`` from the last
    matching ``cfg.edge_weights`` pattern, or ``None`` (uniform)."""
    name = ":".join(edge_type)
    spec = None
    for pat, ew in cfg.edge_weights.items():
        if fnmatch.fnmatchcase(name, pat):
            spec = ew
    if spec is None:
        return None
    rel = store.relation(edge_type)
    w = np.ones(rel.num_edges)
    if spec.attribute is not None:
        if spec.attribute not in rel.attr_names:
            raise GraphrecError(f"edge_weights[{name}]: relation has no edge attribute {spec.attribute!r} "
                                f"(has {list(rel.attr_names)})")
        w *= np.asarray(rel.edge_attr(spec.attribute), dtype=np.float64)
    if spec.recency_half_life is not None:
        if "timestamp" not in rel.attr_names:
            raise GraphrecError(f"edge_weights[{name}]: recency needs a timestamp edge attribute")
        age = row_ages(rel.indptr, rel.edge_attr("timestamp"))
        f = spec.recency_floor
        w *= f + (1.0 - f) * np.power(0.5, age / spec.recency_half_life)
    return w


def build_model(store: GraphStore, cfg: TwHINConfig, edge_types) -> TwHIN:
    torch.manual_seed(cfg.seed)
    return TwHIN({t: store.num_nodes(t) for t in store.node_types}, edge_types, dim=cfg.dim, score=cfg.score,
                 p_norm=cfg.p_norm, init_scale=cfg.init_scale, sparse=True, max_norm=cfg.max_norm)


class TwHINLoss(nn.Module):
    """``forward(rel, heads, tails, neg_tails, neg_heads) -> loss`` so that DDP sees the
    training computation as the module's forward."""

    def __init__(self, model: TwHIN, cfg: TwHINConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, rel: int, heads, tails, neg_tails, neg_heads):
        c = self.cfg
        return self.model.loss(self.model.edge_types[rel], heads, tails, neg_tails=neg_tails, neg_heads=neg_heads,
                               in_batch=c.negatives.in_batch, loss=c.loss, margin=c.margin, corrupt=c.negatives.corrupt,
                               chunk_size=c.negatives.chunk_size, regularization=c.regularization)


def make_optimizers(model: TwHIN, cfg: TwHINConfig):
    rel_lr = cfg.relation_lr or cfg.lr
    if cfg.optimizer == "adagrad":
        return [torch.optim.Adagrad(model.node_emb.parameters(), lr=cfg.lr),
                torch.optim.Adagrad(model.rel_emb.parameters(), lr=rel_lr)]
    return [torch.optim.SparseAdam(list(model.node_emb.parameters()), lr=cfg.lr),
            torch.optim.Adam(model.rel_emb.parameters(), lr=rel_lr)]


def train_step(loss_module: nn.Module, optimizers, rel: int, heads, tails, neg_tails, neg_heads) -> float:
    """One optimisation step on a batch of one relation; returns the loss."""
    loss = loss_module(rel, heads, tails, neg_tails, neg_heads)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()
    return float(loss.detach())


@torch.no_grad()
def sampled_validation_mrr(model: TwHIN, schedule: RelationBatchSchedule, seed: int, candidates: int,
                           max_per_relation: int = 2000) -> float:
    """Tail MRR of held-out edges against ``candidates`` uniform nodes of the
    destination type (unfiltered, deterministic given ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    rr_sum, n = 0.0, 0
    for i, rel in enumerate(schedule.relations):
        src, dst = schedule.holdout(i)
        if src.size == 0:
            continue
        src, dst = torch.from_numpy(src[:max_per_relation]), torch.from_numpy(dst[:max_per_relation])
        et = rel.edge_type
        cand = uniform_typed_negatives(model.num_nodes[et[2]], candidates, g)
        pos = model(et, src, dst)
        neg = model.score_tails(et, src, cand)
        rank = 1 + (neg > pos[:, None]).sum(1)
        rr_sum += float((1.0 / rank.double()).sum())
        n += src.shape[0]
    return rr_sum / max(n, 1)


def train_loop_per_worker(config: dict) -> dict:
    """Train TwHIN on the graph store ``config["graph"]``; see the module docstring."""
    cfg = config["twhin"] if isinstance(config["twhin"], TwHINConfig) else parse_config(config["twhin"])
    threads = cfg.threads or (cfg.ray.cpus_per_worker if config.get("reporter") == "ray" else None)
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config["out"])
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    reporter = RayReporter() if config.get("reporter") == "ray" else LocalReporter(run_dir, config.get("resume", False))

    store = GraphStore(config["graph"])
    selected = select_relations(store, cfg)
    edge_types = [et for et, _ in selected]
    model = build_model(store, cfg, edge_types)
    loss_module: nn.Module = TwHINLoss(model, cfg)
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    optimizers = make_optimizers(model, cfg)

    relations = []
    for et in edge_types:
        s, d = store.relation(et).coo()
        relations.append(RelationEdges(et, s.astype(np.int64, copy=False), np.asarray(d, dtype=np.int64),
                                       edge_weights(store, et, cfg)))
    schedule = RelationBatchSchedule(relations, [w for _, w in selected], cfg.batch_size, seed=cfg.seed,
                                     rank=rank, world_size=world, holdout_fraction=cfg.holdout_fraction)

    start_epoch, history, best, best_state, bad_epochs, starts = 0, [], -1.0, None, 0, []
    state = reporter.latest()
    if state is not None:
        model.load_state_dict(state["model"])
        for opt, s in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        start_epoch = int(state["epoch"]) + 1
        history = json.loads(state["history"])
        best, bad_epochs = float(state["best"]), int(state["bad_epochs"])
        starts = json.loads(state["starts"])
        log.info("rank %d: resumed after epoch %d", rank, start_epoch - 1)
    starts.append(start_epoch)  # epochs this run (re)started at: [0] unless it resumed

    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + rank)
    fault = config.get("fault")
    n_neg, n_all = cfg.negatives.uniform, cfg.negatives.exhaustive_max_nodes
    t_start = time.perf_counter()
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        inject_fault(fault, epoch, rank)
        gen.manual_seed(cfg.seed * 1000003 + rank * 7919 + epoch)
        t0, loss_sum, n_steps, n_pos = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(schedule.epoch(epoch), total=schedule.steps_per_epoch, desc=f"epoch {epoch}", unit="batch",
                   disable=not (config.get("progress") and rank == 0), leave=False)
        for rel, heads, tails in bar:
            et = edge_types[rel]
            neg_t = typed_negatives(model.num_nodes[et[2]], n_neg, gen, n_all)
            neg_h = typed_negatives(model.num_nodes[et[0]], n_neg, gen, n_all)
            loss_sum += train_step(loss_module, optimizers, rel, heads, tails, neg_t, neg_h)
            n_steps += 1
            n_pos += heads.shape[0]
        dt = time.perf_counter() - t0
        metrics = {"epoch": epoch, "loss": loss_sum / max(n_steps, 1), "steps": n_steps,
                   "positives_per_s": n_pos * world / max(dt, 1e-9), "seconds": dt, "workers": world}
        if cfg.holdout_fraction > 0:
            mrr = sampled_validation_mrr(model, schedule, cfg.seed, cfg.validation_candidates)
            metrics["valid_sampled_mrr"] = mrr
            if mrr > best:
                best, bad_epochs = mrr, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
        history.append(metrics)
        if rank == 0:
            log.info("epoch %d: loss %.4f, %.0f positives/s%s", epoch, metrics["loss"], metrics["positives_per_s"],
                     f", valid sampled MRR {metrics['valid_sampled_mrr']:.4f}" if "valid_sampled_mrr" in metrics else "")
        stop = cfg.holdout_fraction > 0 and bad_epochs >= cfg.patience
        ckpt = {"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers], "epoch": epoch,
                "history": json.dumps(history), "best": best, "bad_epochs": bad_epochs, "starts": json.dumps(starts)}
        reporter.report(metrics, ckpt, rank)
        if stop:
            stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    summary = {"epochs_run": len(history), "stopped_early": stopped_early, "best_valid_sampled_mrr": best if best >= 0 else None,
               "seconds": time.perf_counter() - t_start, "starts": starts, "world_size": world, "history": history}
    if rank == 0:
        save_run(run_dir, model, cfg, store, selected, summary)
    return summary


def save_run(run_dir: Path, model: TwHIN, cfg: TwHINConfig, store: GraphStore, selected, summary: dict) -> None:
    """Write ``model.pt`` and ``run.json`` into ``run_dir`` (each atomically)."""
    save_checkpoint(run_dir, {"model": model.state_dict()}, name=MODEL_FILE)
    write_json_atomic(run_dir / RUN_FILE, {
        "model": "twhin",
        "config": cfg.model_dump(mode="json"),
        "graph": str(Path(store.path).resolve()),
        "graph_checksum": store.checksum,
        "num_nodes": model.num_nodes,
        "edge_types": [list(et) for et in model.edge_types],
        "relation_weights": {":".join(et): w for et, w in selected},
        "summary": summary,
    })


def load_run(run_dir: str | Path, graph: str | Path | None = None) -> tuple[TwHIN, dict, GraphStore]:
    """Open a finished run: ``(model, run_info, graph store)``; the graph's checksum must
    match the one trained on."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file() or not (run_dir / MODEL_FILE).is_file():
        raise GraphrecError(f"{run_dir}: not a finished training run (needs {RUN_FILE} and {MODEL_FILE})")
    info = json.loads((run_dir / RUN_FILE).read_text())
    store = GraphStore(graph or info["graph"])
    if store.checksum != info["graph_checksum"]:
        raise GraphrecError(f"{store.path}: graph checksum {store.checksum[:12]} differs from the one {run_dir} was "
                            f"trained on ({info['graph_checksum'][:12]})")
    cfg = parse_config(info["config"])
    model = TwHIN(info["num_nodes"], [tuple(e) for e in info["edge_types"]], dim=cfg.dim, score=cfg.score,
                  p_norm=cfg.p_norm, init_scale=cfg.init_scale, max_norm=cfg.max_norm)
    model.load_state_dict(torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=True)["model"])
    model.eval()
    return model, info, store


def fit_twhin(cfg: TwHINConfig, graph: str | Path, out: str | Path, use_ray: bool = True, resume: bool = False,
              overwrite: bool = False, progress: bool = False, fault: dict | None = None) -> dict:
    """Train TwHIN on ``graph`` into the run directory ``out``; returns ``run.json``
    (see :func:`graphrec.train.runs.run_training` for the run-directory rules)."""
    return run_training(train_loop_per_worker, cfg, graph, out, use_ray=use_ray, resume=resume, overwrite=overwrite,
                        progress=progress, fault=fault)
