"""TwHIN training: ``train_loop_per_worker(config)`` runs single-process or as one of N
Ray Train workers (:mod:`graphrec.train.ray_runner` wraps it). The loop builds the
relations' batch schedule, the model, its loss and optimizers and the validation, then
composes them with :class:`~graphrec.train.engine.Trainer`, which does setup, resume,
checkpoints, early stopping and reporting the same way for every model.

Batches hold positives of one relation or, with ``batches: types``, of every relation
between two node types (:class:`~graphrec.sampling.RelationBatchSchedule`).

Distribution: every worker trains on its shard of each relation's edges with the same
step schedule; gradients are
all-reduced by ``DistributedDataParallel`` over gloo, which supports the sparse
gradient of the node table (only the rows a step touched travel). See
``benchmarks/RESULTS.md`` for the measured scaling.

Early stopping (``validation`` of the config): every few epochs the filtered MRR of
validation triples — the split's ``valid.parquet`` when the graph is ``SPLIT/train``, or a
held-out fraction of the graph's edges — is measured with
:func:`graphrec.eval.link_prediction.filtered_link_prediction` (train + validation
triples filtered; test triples are never read); training stops after ``patience``
evaluations without improvement and the best-on-valid state is the one saved (it is
checkpointed too, so a resumed run keeps it). ``dim: auto`` / ``batch_size: auto`` are
resolved from the graph's type sizes before the model is built
(:func:`resolve_auto`), and the resolved values are saved with the run.

``config`` keys: ``twhin`` (a :class:`~graphrec.run.config.TwHINConfig` or its dict),
``graph`` (graph store path), ``out`` (run directory), ``reporter`` (``local`` | ``ray``),
``progress`` (bool).
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graphrec.errors import GraphrecError
from graphrec.eval.link_prediction import KnownTriples, filtered_link_prediction
from graphrec.eval.split import load_split
from graphrec.graph.csr import row_ages
from graphrec.graph.store import GraphStore
from graphrec.models.twhin import TwHIN
from graphrec.run.config import TwHINConfig, parse_config
from graphrec.run.directory import twhin_model, write_run
from graphrec.sampling import RelationBatchSchedule, RelationEdges, typed_negatives, uniform_typed_negatives
from graphrec.train.engine import Trainer, worker_context
from graphrec.train.optimizers import RowAdagrad

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


class TwHINLoss(nn.Module):
    """``forward(rel, heads, tails, neg_tails, neg_heads) -> loss`` so that DDP sees the
    training computation as the module's forward.

    A batch of ``b`` positives short of the configured ``B = batch_size`` (a relation
    group's last batch of an epoch; with partitions, every bucket's last batch of each
    group) has its loss scaled by ``b / B``: the step is ``Σ_i ℓ_i / B`` for every batch,
    so each positive weighs the same however the positives are cut into batches.
    Partitioned training cuts each relation group into ``P²`` buckets, and a group
    smaller than a bucket's ``B`` would otherwise take ``P²`` full-weight steps per epoch
    instead of ``⌈E / B⌉`` (ML-100K at P = 4: the side relations 2–8× their weight;
    valid Recall@20 0.2348 against 0.2315, benchmarks/RESULTS.md).

    ``neg_offsets``: ``{node type of the model: c}``, the log-weight of that type's
    uniform or exhaustive candidates when it is the corrupted side (``neg_offset`` of
    :meth:`TwHIN.loss`; partitioned training's ``partition_logit_correction``)."""

    def __init__(self, model: TwHIN, cfg: TwHINConfig, neg_offsets: dict[str, float] | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.neg_offsets = dict(neg_offsets or {})

    def forward(self, rel: int, heads, tails, neg_tails, neg_heads, relations=None):
        c = self.cfg
        loss = self.model.loss(self.model.edge_types[rel], heads, tails, neg_tails=neg_tails, neg_heads=neg_heads,
                               in_batch=c.negatives.in_batch, loss=c.loss, margin=c.margin, corrupt=c.negatives.corrupt,
                               chunk_size=c.negatives.chunk_size, regularization=c.regularization,
                               regularizer=c.regularizer, relations=relations, neg_offset=self._offsets(rel))
        b, full = int(heads.shape[0]), c.batch_size  # "auto" not yet resolved: nothing to compare with
        return loss * (b / full) if isinstance(full, int) and b < full else loss

    def _offsets(self, rel: int) -> tuple[float, float]:
        s, _, d = self.model.edge_types[rel]
        return self.neg_offsets.get(d, 0.0), self.neg_offsets.get(s, 0.0)


def make_optimizers(model: TwHIN, cfg: TwHINConfig):
    rel_lr = cfg.relation_lr or cfg.lr
    if cfg.optimizer in ("adagrad", "row_adagrad"):
        node = RowAdagrad if cfg.optimizer == "row_adagrad" else torch.optim.Adagrad
        return [node(model.node_emb.parameters(), lr=cfg.lr), torch.optim.Adagrad(model.rel_emb.parameters(), lr=rel_lr)]
    return [torch.optim.SparseAdam(list(model.node_emb.parameters()), lr=cfg.lr),
            torch.optim.Adam(model.rel_emb.parameters(), lr=rel_lr)]


def train_step(loss_module: nn.Module, optimizers, rel: int, heads, tails, neg_tails, neg_heads,
               relations=None) -> float:
    """One optimisation step on a batch of one relation (or, with ``relations`` ``[B]``,
    of several between the same node types as ``rel``); returns the loss."""
    loss = loss_module(rel, heads, tails, neg_tails, neg_heads, relations)
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
        _, _, dst_type = et
        cand = uniform_typed_negatives(model.num_nodes[dst_type], candidates, g)
        pos = model(et, src, dst)
        neg = model.score_tails(et, src, cand)
        rank = 1 + (neg > pos[:, None]).sum(1)
        rr_sum += float((1.0 / rank.double()).sum())
        n += src.shape[0]
    return rr_sum / max(n, 1)


def split_of_train_graph(store: GraphStore):
    """The split (:class:`graphrec.eval.split.Split`) whose ``train/`` is ``store``, or
    ``None`` when ``store`` is not a split's train graph (``SPLIT/train`` next to
    ``SPLIT/split.json`` and ``SPLIT/valid.parquet``, same checksum)."""
    path = Path(store.path).resolve()
    parent = path.parent
    if path.name != "train" or not (parent / "split.json").is_file() or not (parent / "valid.parquet").is_file():
        return None
    split = load_split(parent)
    if split.train.checksum != store.checksum:
        raise GraphrecError(f"{parent}: its train/ graph checksum differs from the training graph's")
    return split


class FilteredValidation:
    """Filtered MRR of validation triples ``{edge_type: (src, dst)}`` with the known
    triples (train graph + validation, never test) filtered; ``sides`` as trained."""

    def __init__(self, triples: dict, known: KnownTriples, sides: tuple[str, ...], source: str):
        self.triples, self.known, self.sides, self.source = triples, known, sides, source

    @property
    def num_triples(self) -> int:
        return int(sum(s.shape[0] for s, _ in self.triples.values()))

    @torch.no_grad()
    def mrr(self, model: TwHIN) -> float:
        """Filtered MRR of ``model`` on the validation triples."""
        return self.evaluate(lambda et, h: model.score_tails(et, h), lambda et, t: model.score_heads(et, t))

    @torch.no_grad()
    def evaluate(self, score_tails, score_heads) -> float:
        """Filtered MRR of any scorer (the callables of
        :func:`~graphrec.eval.link_prediction.filtered_link_prediction`), e.g. a peer
        library's model in a benchmark."""
        return filtered_link_prediction(score_tails, score_heads, self.triples, self.known, ks=(),
                                        sides=self.sides)["mrr"]


AUTO_SCORE_BUDGET = 1_000_000  # dim auto: candidates x dim per positive and corrupted side
AUTO_DIM_MAX = 1000


def max_candidates(cfg: TwHINConfig, num_nodes: dict, edge_types) -> int:
    """``K``: the most candidates any corrupted side of the trained relations is scored
    against — the node type's size when it is at most ``negatives.exhaustive_max_nodes``
    (1-N scoring), otherwise ``negatives.uniform`` (in-batch negatives not counted)."""
    n = cfg.negatives
    k = 0
    for src, _, dst in edge_types:
        # tail corruption scores nodes of the destination type, head corruption of the source
        for t in ([dst] if n.corrupt in ("both", "tail") else []) + ([src] if n.corrupt in ("both", "head") else []):
            size = int(num_nodes[t])
            k = max(k, size if 0 < size <= n.exhaustive_max_nodes else n.uniform)
    return k


def resolve_batch_size(cfg: TwHINConfig, num_nodes: dict, edge_types) -> int:
    """``cfg.batch_size``, or for ``auto`` ``clamp(K // 4, 100, 1000)`` (``K``:
    :func:`max_candidates`): small graphs take many small steps; a batch that shares
    thousands of negatives is big enough to amortise looking them up and updating them."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    return int(min(1000, max(100, max_candidates(cfg, num_nodes, edge_types) // 4)))


def resolve_dim(cfg: TwHINConfig, num_nodes: dict, edge_types) -> int:
    """``cfg.dim``, or for ``auto`` the largest even ``dim <= 1000`` with ``K · dim <=
    1,000,000`` (``K``: :func:`max_candidates`), so scoring a positive costs at most 10⁶
    multiply-adds per side whatever the graph (1000 for types of <= 1,000 nodes)."""
    if cfg.dim != "auto":
        return int(cfg.dim)
    k = max(1, max_candidates(cfg, num_nodes, edge_types))
    return int(max(2, min(AUTO_DIM_MAX, AUTO_SCORE_BUDGET // k) // 2 * 2))


def resolve_auto(cfg: TwHINConfig, store: GraphStore, edge_types) -> TwHINConfig:
    """``cfg`` with ``dim``/``batch_size`` ``auto`` replaced by their values on this graph
    (the resolved config is the one saved with the run)."""
    num_nodes = {t: store.num_nodes(t) for t in store.node_types}
    return cfg.model_copy(update={"dim": resolve_dim(cfg, num_nodes, edge_types),
                                  "batch_size": resolve_batch_size(cfg, num_nodes, edge_types)})


def evaluation_period(cfg: TwHINConfig, positives_per_epoch: int) -> int:
    """Epochs between two validations: ``max(every, ceil(min_positives / positives_per_epoch))``."""
    v = cfg.validation
    return max(v.every, -(-v.min_positives // max(positives_per_epoch, 1)))


def resolve_validation_source(cfg: TwHINConfig, store: GraphStore) -> tuple[str, object]:
    """``(source, split or None)`` with ``auto`` resolved: ``split`` when ``store`` is a
    split's train graph, else ``holdout``. Raises :class:`GraphrecError` when the config
    asks for something the graph cannot give."""
    source = cfg.validation.source
    if source == "none":
        return "none", None
    split = split_of_train_graph(store) if source in ("split", "auto") else None
    if source == "split" and split is None:
        raise GraphrecError(f"validation.source split: {store.path} is not the train/ graph of a split with "
                            "valid.parquet (train on SPLIT/train, or use validation.source holdout/auto)")
    if split is not None:
        return "split", split
    if cfg.holdout_fraction <= 0:
        raise GraphrecError(f"validation.source {source}: {store.path} is not a split's train/ graph, and "
                            "holdout_fraction is 0 (set holdout_fraction > 0 to hold out validation edges)")
    return "holdout", None


def build_validation(cfg: TwHINConfig, store: GraphStore, edge_types, source: str, split,
                     schedule: RelationBatchSchedule) -> FilteredValidation:
    """Validation triples of the trained relations (at most ``validation.max_triples``
    of them, a seed-fixed uniform sample) and their filter: every edge of the training
    graph plus, for ``split``, the validation triples (test triples are never read)."""
    if source == "split":
        held = {et: v for et, v in split.heldout_triples("valid").items() if et in set(edge_types)}
    else:
        held = {rel.edge_type: schedule.holdout(i) for i, rel in enumerate(schedule.relations)}
    held = {et: (np.asarray(s, np.int64), np.asarray(d, np.int64)) for et, (s, d) in held.items() if len(s)}
    if not held:
        raise GraphrecError(f"validation ({source}): no validation triple of a trained relation")
    known = KnownTriples({(s, r, d): store.num_nodes(s) for s, r, d in held},
                         {(s, r, d): store.num_nodes(d) for s, r, d in held})
    ets = sorted(held)
    sizes = np.array([held[et][0].shape[0] for et in ets])
    cap = cfg.validation.max_triples
    keep = np.ones(int(sizes.sum()), dtype=bool)
    if keep.size > cap:  # a seed-fixed uniform sample of all validation triples
        keep[:] = False
        keep[np.random.default_rng([cfg.seed, 104729]).choice(keep.size, cap, replace=False)] = True
    bounds = np.r_[0, np.cumsum(sizes)]
    triples = {}
    for i, et in enumerate(ets):
        s, d = held[et]
        rs, rd = store.relation(et).coo()  # every edge of the graph (holdout edges included)
        known.add(et, rs, rd)
        if source == "split":
            known.add(et, s, d)
        k = keep[bounds[i] : bounds[i + 1]]
        if k.any():
            triples[et] = (s[k], d[k])
    corrupt = cfg.negatives.corrupt
    sides = ("tail", "head") if corrupt == "both" else (corrupt,)
    return FilteredValidation(triples, known, sides, source)


def check_config(cfg: TwHINConfig, store: GraphStore) -> None:
    """Refuse a config this graph cannot train (before a run directory or worker exists)."""
    select_relations(store, cfg)
    resolve_validation_source(cfg, store)
    if cfg.freeze_existing and cfg.init_from is None:
        raise GraphrecError("freeze_existing needs init_from (the run whose nodes are frozen)")
    if cfg.init_from is not None:
        from graphrec.run.directory import open_run

        previous = open_run(cfg.init_from, expect="twhin")  # a clear error for a missing or unfinished run
        if previous.tables is not None:  # a partitioned run: its table files are all there before anything starts
            previous.tables.ckpt.check_files(previous.tables_manifest)
        resolved = resolve_auto(cfg, store, [et for et, _ in select_relations(store, cfg)])
        if int(resolved.dim) != previous.dim or resolved.score != previous.config.score:
            raise GraphrecError(f"init_from {cfg.init_from}: a run of dim {previous.dim} and score "
                                f"{previous.config.score!r}; this config trains dim {resolved.dim} and score "
                                f"{resolved.score!r}")


def warm_optimizer_state(optimizers, model: TwHIN, source, previous, cfg: TwHINConfig, rank: int) -> str:
    """With ``carry_optimizer_state``, the earlier run's optimizer state of the carried rows
    (``source``: the row map :func:`graphrec.train.warm_start.warm_start` returned) and
    relations (:func:`graphrec.train.warm_start.carry_optimizer_state`); returns what
    happened, for the log and ``run.json``."""
    from graphrec.train.warm_start import carry_optimizer_state, previous_optimizer_state, previous_relation_rows

    if not cfg.carry_optimizer_state:
        how = "fresh (carry_optimizer_state: false)"
    else:
        prev = previous.model
        state, how = previous_optimizer_state(previous, cfg.optimizer,
                                              [prev.node_emb.weight.shape[0], prev.rel_emb.weight.shape[0]])
        if state is not None:
            carry_optimizer_state(optimizers, state, [source, previous_relation_rows(model, prev)])
    if rank == 0:
        (log.info if how.startswith(("carried", "fresh (carry")) else log.warning)("warm start: optimizer state %s", how)
    return how


def train_loop_per_worker(config: dict) -> dict:
    """Train TwHIN on the graph store ``config["graph"]``; see the module docstring."""
    ctx = worker_context(config, "twhin", parse_config)
    store, rank, world = ctx.store, ctx.rank, ctx.world
    selected = select_relations(store, ctx.cfg)
    edge_types = [et for et, _ in selected]
    cfg = resolve_auto(ctx.cfg, store, edge_types)
    if cfg.partitions > 1:
        raise GraphrecError("partitions > 1 trains through graphrec.train.partitioned (graphrec.train.runs.fit)")
    model = twhin_model(cfg, {t: store.num_nodes(t) for t in store.node_types}, edge_types, sparse=True)
    previous = None
    if cfg.init_from is not None:  # every worker initialises the same way (no broadcast needed)
        from graphrec.run.directory import open_run
        from graphrec.train.warm_start import freeze_rows, warm_start

        previous = open_run(cfg.init_from, expect="twhin")
        source, init_counts = warm_start(model, store, previous.model, previous.store)
        if cfg.freeze_existing:
            freeze_rows(model.node_emb.weight, source >= 0)
        if rank == 0:
            log.info("warm start from %s: %d nodes carried over%s, %d from their neighbours, %d random; %d relations",
                     cfg.init_from, init_counts["carried"], " (frozen)" if cfg.freeze_existing else "",
                     init_counts["from_neighbours"], init_counts["random"], init_counts["relations"])
    loss_module: nn.Module = TwHINLoss(model, cfg)
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    optimizers = make_optimizers(model, cfg)
    if previous is not None:
        init_counts["optimizer"] = warm_optimizer_state(optimizers, model, source, previous, cfg, rank)

    relations = []
    for et in edge_types:
        s, d = store.relation(et).coo()
        relations.append(RelationEdges(et, s.astype(np.int64, copy=False), np.asarray(d, dtype=np.int64),
                                       edge_weights(store, et, cfg)))
    source, split = resolve_validation_source(cfg, store)
    holdout = cfg.holdout_fraction if source in ("holdout", "none") else 0.0
    schedule = RelationBatchSchedule(relations, [w for _, w in selected], cfg.batch_size, seed=cfg.seed,
                                     rank=rank, world_size=world, holdout_fraction=holdout, group_by=cfg.batches)
    validation = build_validation(cfg, store, edge_types, source, split, schedule) if source != "none" else None
    sampled_check = validation is None and holdout > 0
    positives = sum(int(round(w * (rel.num_edges - schedule.holdout_ids[i].shape[0])))
                    for i, (rel, w) in enumerate(zip(schedule.relations, schedule.weights, strict=True)))
    every = evaluation_period(cfg, positives)
    if validation is not None and rank == 0:
        log.info("early stopping on filtered MRR of %d %s validation triples (every %d epochs, patience %d)",
                 validation.num_triples, source, every, cfg.patience)

    monitor = "valid_mrr" if validation is not None else "valid_sampled_mrr" if sampled_check else None
    trainer = Trainer(ctx, {"model": model}, optimizers, epochs=cfg.epochs, patience=cfg.patience, monitor=monitor,
                      seed=cfg.seed, checkpoint_every_steps=cfg.checkpoints.every_steps,
                      keep_checkpoints=cfg.checkpoints.keep, items_name="positives")
    gen = trainer.generator
    n_neg, n_all = cfg.negatives.uniform, cfg.negatives.exhaustive_max_nodes

    def step(batch) -> tuple[float, int]:
        rel, heads, tails, relations = batch
        src, _, dst = edge_types[rel]
        neg_t = typed_negatives(model.num_nodes[dst], n_neg, gen, n_all)
        neg_h = typed_negatives(model.num_nodes[src], n_neg, gen, n_all)
        return (train_step(loss_module, optimizers, rel, heads, tails, neg_t, neg_h, relations),
                int(heads.shape[0]))

    def validate(epoch: int) -> dict | None:
        if validation is not None:
            if (epoch + 1) % every == 0 or epoch + 1 == cfg.epochs:
                return {"valid_mrr": validation.mrr(model)}
            return None
        if sampled_check:
            return {"valid_sampled_mrr": sampled_validation_mrr(model, schedule, cfg.seed, cfg.validation_candidates)}
        return None

    summary = trainer.fit(lambda epoch, start: schedule.epoch(epoch, start), step,
                          lambda epoch: schedule.steps_per_epoch, validate)
    summary.update({"batch_size": cfg.batch_size,
                    "validation": None if monitor is None else
                    {"source": validation.source if validation is not None else "holdout (sampled)",
                     "metric": "filtered_mrr" if validation is not None else "sampled_mrr",
                     "triples": validation.num_triples if validation is not None else None,
                     "every_epochs": every if validation is not None else 1}})
    if previous is not None:
        from graphrec.train.warm_start import drift_report

        summary["warm_start"] = {"from": str(cfg.init_from), "frozen": cfg.freeze_existing, "init": init_counts,
                                 "drift": drift_report(model, store, previous.model, previous.store, seed=cfg.seed)}
    if rank == 0:
        write_run(ctx.run_dir, "twhin", cfg, store, model.state_dict(), summary, num_nodes=model.num_nodes,
                  edge_types=[list(et) for et in model.edge_types],
                  relation_weights={":".join(et): w for et, w in selected})
    return summary
