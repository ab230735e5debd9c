"""PinSage training: ``train_loop_per_worker(config)`` runs single-process or as one of
N Ray Train workers (:mod:`graphrec.train.ray_runner` wraps it; nothing here imports
Ray unless ``config["reporter"] == "ray"``).

Per epoch, a ``DataLoader`` over :class:`~graphrec.sampling.PinSageBatches` prepares
whole minibatches (co-engagement pairs, shared uniform negatives, curriculum PPR hard
negatives, the re-indexed K-layer neighbourhood subgraph and its features) in
``loader_workers`` background processes while this process trains on the current one
(producer–consumer). Every training worker takes its own shard of the batches;
``DistributedDataParallel`` (gloo) all-reduces the gradients. The learning rate warms up
linearly over ``warmup_steps``. Early stopping watches item→item HitRate@10 of held-out
co-engagement pairs, computed with layer-wise full-catalogue inference.

``config`` keys: ``pinsage`` (a :class:`~graphrec.run.config.PinSageConfig` as dict),
``graph``, ``out``, ``reporter`` (``local`` | ``ray``), ``resume``, ``progress``, ``fault``
(tests only, see :func:`~graphrec.train.reporting.inject_fault`).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore, parse_edge_type
from graphrec.models.pinsage import PinSage, max_margin_loss, recency_weighted_mean
from graphrec.sampling.features import FeatureSpec, NodeFeatureTable
from graphrec.sampling.pinsage import (CoEngagement, PinSageBatch, PinSageBatches, PPRHardNegatives,
                                      collate_identity, walk_neighborhood)
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, importance_neighbors
from graphrec.run.checkpoint import save_checkpoint
from graphrec.run.config import PinSageConfig, parse_config
from graphrec.train.reporting import LocalReporter, RayReporter, dist_info, inject_fault, write_json_atomic
from graphrec.train.runs import MODEL_FILE, RUN_FILE, run_training

log = logging.getLogger(__name__)

NEIGHBORHOODS_DIR = "neighborhoods"
ITEM_VECTORS = "item_embeddings.npy"
USER_VECTORS = "user_embeddings.npy"


def make_sampler(store: GraphStore, cfg: PinSageConfig) -> RandomWalkSampler:
    return RandomWalkSampler(store, [(m.path, m.weight) for m in cfg.walks.metapaths], cfg.walks.restart_prob)


def make_features(store: GraphStore, cfg: PinSageConfig) -> NodeFeatureTable | None:
    if cfg.features == []:
        return None
    names = cfg.features
    if names is not None:
        have = store.feature_names(cfg.item_type)
        missing = [n for n in names if n not in have]
        if missing:
            raise GraphrecError(f"features: {missing} not features of node type {cfg.item_type!r} (has {have})")
    table = NodeFeatureTable(store, cfg.item_type, names)
    spec = table.spec
    return table if (spec.categorical or spec.multi_categorical or spec.numeric) else None


def build_model(num_items: int, spec: FeatureSpec, cfg: PinSageConfig) -> PinSage:
    torch.manual_seed(cfg.seed)
    return PinSage(num_items, spec, dim=cfg.dim, hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers, id_dim=cfg.id_dim,
                   feature_dim=cfg.feature_dim, pooling=cfg.pooling, normalize_output=cfg.normalize_output,
                   learned_norm=cfg.learned_norm)


def fixed_neighborhoods(sampler: RandomWalkSampler, cfg: PinSageConfig) -> ImportanceNeighborhoods:
    """Importance neighbourhoods of every item (deterministic given ``cfg.seed``)."""
    w = cfg.walks
    rng = np.random.default_rng([cfg.seed, 101])
    return importance_neighbors(sampler, np.arange(sampler.num_nodes), w.top_t, w.num_walks, w.walk_length, rng)


def hard_negatives_for_epoch(cfg: PinSageConfig, epoch: int) -> int:
    """Hard negatives per query in ``epoch`` (0-based): the curriculum adds one per
    epoch after a first epoch without any."""
    h = cfg.negatives.hard
    return min(epoch, h.max_per_query) if h.schedule == "curriculum" else h.max_per_query


def positive_pairs(rel, timestamps, cfg: PinSageConfig):
    """Co-engagement positives: ``(pairs_of_epoch(epoch) -> (query, pos), held-out
    (query, pos) for early stopping, training pairs per epoch)``.

    ``all``: every pair within the window, a fixed ``holdout_fraction`` of them held
    out. ``per_interaction``: each epoch draws ``per_interaction`` partners per
    interaction afresh (seeded by ``(seed, epoch)``); a ``holdout_fraction`` of the
    interactions are never queries in training and give the held-out pairs."""
    p = cfg.positives
    eng = CoEngagement(rel.indptr, rel.indices, timestamps, p.window, p.max_gap)
    if eng.num_interactions == 0:
        raise GraphrecError(f"{cfg.interactions}: the interaction relation is empty")
    if p.sampling == "all":
        query, pos = eng.all_pairs()
        if query.shape[0] == 0:
            raise GraphrecError(f"{cfg.interactions}: no co-engagement pairs (window {p.window}, max_gap {p.max_gap})")
        perm = np.random.default_rng([cfg.seed, 7]).permutation(query.shape[0])
        n_hold = min(int(round(cfg.holdout_fraction * query.shape[0])), 20000)
        hold, keep = perm[:n_hold], perm[n_hold:]
        query_t, pos_t = query[keep], pos[keep]
        return (lambda epoch: (query_t, pos_t)), (query[hold], pos[hold]), int(keep.shape[0])
    perm = np.random.default_rng([cfg.seed, 7]).permutation(eng.num_interactions)
    n_hold = min(int(round(cfg.holdout_fraction * eng.num_interactions)), 20000)
    held, train_q = perm[:n_hold], np.sort(perm[n_hold:])
    held_pairs = eng.sample(np.random.default_rng([cfg.seed, 8]), 1, queries=held)

    def pairs_of_epoch(epoch: int):
        q, x = eng.sample(np.random.default_rng([cfg.seed, epoch, 11]), p.per_interaction, queries=train_q)
        if q.shape[0] == 0:
            raise GraphrecError(f"{cfg.interactions}: no co-engagement pairs (window {p.window}, max_gap {p.max_gap})")
        return q, x

    return pairs_of_epoch, held_pairs, int(train_q.shape[0] * p.per_interaction)


class PinSageLoss(nn.Module):
    """``forward(batch) -> loss`` so that DDP sees the training computation as the
    module's forward; holds everything trained (the item encoder and, for learned user
    vectors, the user table).

    Loss: the max-margin loss of the batch's item pairs, plus ``user_weight`` times the
    same loss of (user vector, engaged item) pairs against the shared negatives when
    ``num_users`` is given (user vectors L2-normalised like the item outputs)."""

    def __init__(self, model: PinSage, margin: float, num_users: int = 0, user_weight: float = 1.0):
        super().__init__()
        self.model, self.margin, self.user_weight = model, margin, user_weight
        self.user_emb = nn.Embedding(num_users, model.dim) if num_users > 0 else None
        if self.user_emb is not None:
            nn.init.normal_(self.user_emb.weight, std=1.0 / model.dim ** 0.5)

    def user_vectors(self, index: torch.Tensor | None = None) -> torch.Tensor:
        u = self.user_emb.weight if index is None else self.user_emb(index)
        return F.normalize(u, dim=1) if self.model.normalize_output else u

    def forward(self, batch: PinSageBatch):
        z = self.model(batch.nodes, batch.feats, batch.blocks)
        hard = z[batch.hard] if batch.hard.shape[1] > 0 else None
        loss = max_margin_loss(z[batch.query], z[batch.pos], z[batch.shared], hard, self.margin, batch.shared_mask)
        if self.user_emb is not None and batch.users is not None and batch.users.numel() > 0:
            loss = loss + self.user_weight * max_margin_loss(self.user_vectors(batch.users), z[batch.user_pos],
                                                             z[batch.shared], None, self.margin, batch.user_mask)
        return loss


def item_embeddings(model: PinSage, features: NodeFeatureTable | None, nbh: ImportanceNeighborhoods) -> torch.Tensor:
    """``[N, dim]`` embeddings of every item with the fixed neighbourhoods ``nbh``."""
    model.eval()
    try:
        return model.inference(lambda nodes: features.gather(nodes.numpy()) if features is not None else None,
                               nbh.neighbors, nbh.weights)
    finally:
        model.train()


def pair_hit_rate(emb: torch.Tensor, query: np.ndarray, pos: np.ndarray, k: int = 10) -> tuple[float, float]:
    """HitRate@k and MRR of ``pos`` among all items ranked by ``emb[query] · emb`` (the
    query itself excluded)."""
    hits, rr, n = 0.0, 0.0, query.shape[0]
    for lo in range(0, n, 2048):
        q = torch.from_numpy(query[lo : lo + 2048])
        p = torch.from_numpy(pos[lo : lo + 2048])
        s = emb[q] @ emb.T
        s[torch.arange(q.shape[0]), q] = float("-inf")
        rank = 1 + (s > s[torch.arange(q.shape[0]), p][:, None]).sum(1)
        hits += float((rank <= k).sum())
        rr += float((1.0 / rank.double()).sum())
    return hits / max(n, 1), rr / max(n, 1)


def train_loop_per_worker(config: dict) -> dict:
    """Train PinSage on the graph store ``config["graph"]``; see the module docstring."""
    cfg = config["pinsage"] if isinstance(config["pinsage"], PinSageConfig) else parse_config(config["pinsage"], PinSageConfig)
    threads = cfg.threads or (cfg.ray.cpus_per_worker if config.get("reporter") == "ray" else None)
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config["out"])
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    reporter = RayReporter() if config.get("reporter") == "ray" else LocalReporter(run_dir, config.get("resume", False))

    store = GraphStore(config["graph"])
    inter = parse_edge_type(cfg.interactions)
    rel = store.relation(inter)
    n_items = store.num_nodes(cfg.item_type)
    sampler = make_sampler(store, cfg)
    features = make_features(store, cfg)
    spec = features.spec if features is not None else FeatureSpec()

    ts = rel.edge_attr("timestamp") if "timestamp" in rel.attr_names else None
    pairs_of_epoch, (vq, vp), n_train_pairs = positive_pairs(rel, ts, cfg)
    n_hold = int(vq.shape[0])

    t0 = time.perf_counter()
    nbh = fixed_neighborhoods(sampler, cfg)
    t_walk = time.perf_counter() - t0
    hard = None
    if cfg.negatives.hard.max_per_query > 0:
        h = cfg.negatives.hard
        hard = PPRHardNegatives(store, sampler, band=h.band, alpha=h.alpha, method=h.method, seed=cfg.seed)
        if hard.method == "power":
            hard.band_table()  # once, before the loader workers fork
    log.info("rank %d: %d items, %d training pairs, %d held out; neighbourhoods in %.1fs; %s", rank, n_items,
             n_train_pairs, n_hold, t_walk, hard)

    model = build_model(n_items, spec, cfg)
    learned_users = cfg.user_vectors.kind == "learned"
    trainer = PinSageLoss(model, cfg.margin, num_users=rel.num_src if learned_users else 0,
                          user_weight=cfg.user_vectors.loss_weight)
    loss_module: nn.Module = trainer
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    opt = torch.optim.Adam(trainer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(cfg.warmup_steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))

    start_epoch, history, best, best_state, bad_epochs, starts = 0, [], -1.0, None, 0, []
    state = reporter.latest()
    if state is not None:
        trainer.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        history = json.loads(state["history"])
        best, bad_epochs = float(state["best"]), int(state["bad_epochs"])
        starts = json.loads(state["starts"])
        if "best_model" in state:
            best_state = state["best_model"]
        log.info("rank %d: resumed after epoch %d", rank, start_epoch - 1)
    starts.append(start_epoch)

    if cfg.walks.refresh == "fixed":
        neighborhood = nbh
    else:  # walked afresh for each minibatch, from the batch's own generator
        w = cfg.walks
        neighborhood = functools.partial(walk_neighborhood, sampler, w.top_t, w.num_walks, w.walk_length)

    interactions = None
    if learned_users:
        u, i = rel.coo()
        interactions = (u.astype(np.int64), np.asarray(i, dtype=np.int64))
    t_start, stopped_early = time.perf_counter(), False
    for epoch in range(start_epoch, cfg.epochs):
        inject_fault(config.get("fault"), epoch, rank)
        n_hard = hard_negatives_for_epoch(cfg, epoch) if hard is not None else 0
        query, pos = pairs_of_epoch(epoch)
        ds = PinSageBatches(query, pos, n_items, cfg.batch_size, cfg.num_layers, neighborhood, features,
                            cfg.negatives.shared, hard, n_hard, epoch, seed=cfg.seed, rank=rank, world=world,
                            interactions=interactions)
        loader = DataLoader(ds, batch_size=None, collate_fn=collate_identity, num_workers=cfg.loader_workers,
                            prefetch_factor=4 if cfg.loader_workers > 0 else None)
        t0, loss_sum, n_steps, wait = time.perf_counter(), 0.0, 0, 0.0
        bar = tqdm(total=len(ds), desc=f"epoch {epoch}", unit="batch", leave=False,
                   disable=not (config.get("progress") and rank == 0))
        t_wait = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - t_wait
            loss = loss_module(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            n_steps += 1
            bar.update()
            t_wait = time.perf_counter()
        bar.close()
        dt = time.perf_counter() - t0
        metrics = {"epoch": epoch, "loss": loss_sum / max(n_steps, 1), "steps": n_steps, "hard_negatives": n_hard,
                   "pairs_per_s": n_steps * cfg.batch_size * world / max(dt, 1e-9), "seconds": dt,
                   "loader_wait_fraction": wait / max(dt, 1e-9), "lr": sched.get_last_lr()[0], "workers": world}
        if n_hold > 0:
            emb = item_embeddings(model, features, nbh)
            hr, mrr = pair_hit_rate(emb, vq, vp)
            metrics["valid_hr@10"], metrics["valid_mrr"] = hr, mrr
            if hr > best:
                best, bad_epochs = hr, 0
                best_state = copy.deepcopy(trainer.state_dict())
            else:
                bad_epochs += 1
        history.append(metrics)
        if rank == 0:
            log.info("epoch %d: loss %.4f, %.0f pairs/s, waited %.0f%% on batches, %d hard negatives%s", epoch,
                     metrics["loss"], metrics["pairs_per_s"], 100 * metrics["loader_wait_fraction"], n_hard,
                     f", valid HR@10 {metrics['valid_hr@10']:.4f}" if "valid_hr@10" in metrics else "")
        stop = n_hold > 0 and bad_epochs >= cfg.patience
        ckpt = {"model": trainer.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "history": json.dumps(history), "best": best, "bad_epochs": bad_epochs,
                "starts": json.dumps(starts)}
        if best_state is not None:
            ckpt["best_model"] = best_state
        reporter.report(metrics, ckpt, rank)
        if stop:
            stopped_early = True
            break
    if best_state is not None:
        trainer.load_state_dict(best_state)
    summary = {"epochs_run": len(history), "stopped_early": stopped_early,
               "best_valid_hr@10": best if best >= 0 else None, "seconds": time.perf_counter() - t_start,
               "neighborhood_seconds": t_walk, "train_pairs": n_train_pairs, "heldout_pairs": int(n_hold),
               "starts": starts, "world_size": world, "history": history}
    if rank == 0:
        items = item_embeddings(model, features, nbh)
        if learned_users:
            with torch.no_grad():  # users without a train interaction get no vector (zeros)
                users = trainer.user_vectors() * torch.from_numpy(np.diff(np.asarray(rel.indptr)) > 0)[:, None]
        else:
            users = recency_weighted_mean(items, rel.indptr, rel.indices, ts, cfg.user_vectors.half_life)
        save_run(run_dir, model, cfg, store, spec, nbh, items, users, summary)
    return summary


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    tmp.replace(path)


def save_run(run_dir: Path, model: PinSage, cfg: PinSageConfig, store: GraphStore, spec: FeatureSpec,
             nbh: ImportanceNeighborhoods, items: torch.Tensor, users: torch.Tensor, summary: dict) -> None:
    """Write the finished run: neighbourhoods, item and user vectors, ``model.pt`` and
    (last, so that its presence means the run is complete) ``run.json``."""
    tmp = run_dir / f".{NEIGHBORHOODS_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    nbh.save(tmp)
    shutil.rmtree(run_dir / NEIGHBORHOODS_DIR, ignore_errors=True)
    tmp.rename(run_dir / NEIGHBORHOODS_DIR)
    _save_npy_atomic(run_dir / ITEM_VECTORS, items.numpy().astype(np.float32))
    _save_npy_atomic(run_dir / USER_VECTORS, users.numpy().astype(np.float32))
    save_checkpoint(run_dir, {"model": model.state_dict()}, name=MODEL_FILE)
    user_type = parse_edge_type(cfg.interactions)[0]
    write_json_atomic(run_dir / RUN_FILE, {
        "model": "pinsage",
        "config": cfg.model_dump(mode="json"),
        "graph": str(Path(store.path).resolve()),
        "graph_checksum": store.checksum,
        "item_type": cfg.item_type,
        "user_type": user_type,
        "num_items": model.num_nodes,
        "num_users": int(users.shape[0]),
        "feature_spec": spec.to_dict(),
        "summary": summary,
    })


class PinSageRun:
    """A finished PinSage run: ``model``, ``info`` (run.json), ``store``, fixed
    ``neighborhoods`` and the final ``item_vectors`` / ``user_vectors`` (float32)."""

    def __init__(self, run_dir: str | Path, graph: str | Path | None = None):
        run_dir = Path(run_dir)
        if not (run_dir / RUN_FILE).is_file() or not (run_dir / MODEL_FILE).is_file():
            raise GraphrecError(f"{run_dir}: not a finished training run (needs {RUN_FILE} and {MODEL_FILE})")
        info = json.loads((run_dir / RUN_FILE).read_text())
        if info.get("model") != "pinsage":
            raise GraphrecError(f"{run_dir}: a {info.get('model')!r} run, not pinsage")
        self.store = GraphStore(graph or info["graph"])
        if self.store.checksum != info["graph_checksum"]:
            raise GraphrecError(f"{self.store.path}: graph checksum {self.store.checksum[:12]} differs from the one "
                                f"{run_dir} was trained on ({info['graph_checksum'][:12]})")
        self.dir, self.info = run_dir, info
        self.config: PinSageConfig = parse_config(info["config"], PinSageConfig)
        self.model = build_model(info["num_items"], FeatureSpec.from_dict(info["feature_spec"]), self.config)
        self.model.load_state_dict(torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=True)["model"])
        self.model.eval()
        self.neighborhoods = ImportanceNeighborhoods.load(run_dir / NEIGHBORHOODS_DIR)
        self.item_vectors = np.load(run_dir / ITEM_VECTORS)
        self.user_vectors = np.load(run_dir / USER_VECTORS)


def fit_pinsage(cfg: PinSageConfig, graph: str | Path, out: str | Path, use_ray: bool = True, resume: bool = False,
                overwrite: bool = False, progress: bool = False, fault: dict | None = None) -> dict:
    """Train PinSage on ``graph`` into the run directory ``out``; returns ``run.json``
    (see :func:`graphrec.train.runs.run_training` for the run-directory rules)."""

    def validate(store: GraphStore) -> None:  # fail before starting workers
        for m in cfg.walks.metapaths:
            for r in m.path:
                if parse_edge_type(r) not in store.edge_types:
                    raise GraphrecError(f"walks.metapaths: relation {r!r} is not in {store.path} "
                                        f"(has {[':'.join(e) for e in store.edge_types]})")
        if parse_edge_type(cfg.interactions) not in store.edge_types:
            raise GraphrecError(f"interactions: relation {cfg.interactions!r} is not in {store.path}")

    return run_training(train_loop_per_worker, cfg, graph, out, use_ray=use_ray, resume=resume, overwrite=overwrite,
                        progress=progress, fault=fault, validate=validate)
