"""End-to-end jobs composed from the package's layers.

- :func:`run_job` (``graphrec run configs/quickstart.yaml``): the whole pipeline as one
  job — generate (or read) tables -> build the graph -> chronological split -> train
  TwHIN and PinSage (Ray Train) -> layer-wise PinSage inference (Ray tasks) -> export ->
  FAISS index -> evaluate -> batch recommendations -> ``report.md`` with plots.
- :func:`run_demo` (``graphrec demo``): synthetic tables -> graph -> split -> analytics.

Every artefact is written under one output directory.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from graphrec.analytics import bipartite_projection_stats, connected_components, graph_summary, pagerank_topk
from graphrec.analytics.degrees import powerlaw_exponent
from graphrec.config_base import StrictConfig, load_model, load_yaml
from graphrec.datasets import PinterestConfig, generate_pinterest
from graphrec.errors import GraphrecError
from graphrec.eval.split import chronological_split
from graphrec.graph import build_graph, load_schema
from graphrec.io import atomic_dir, write_json
from graphrec.retrieval.index import IndexConfig

log = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parents[1] / "graphs" / "pinterest-synthetic.yaml"


def run_demo(out: str | Path, cfg: PinterestConfig | None = None, schema_path: str | Path = SCHEMA,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Generate -> build -> split -> analytics. Returns (and writes ``summary.json``).
    ``out`` is built beside its final place and swapped in when complete."""
    with atomic_dir(out, overwrite=overwrite, kind="demo") as stage, _log_paths_as(stage, out):
        summary = _run_demo(stage, cfg, schema_path, progress)
    _repoint_manifests(out, stage)
    return summary


_MANIFESTS = ("run.json", "manifest.json", "split.json", "inference.json")


def _repoint_manifests(out: str | Path, stage: Path) -> None:
    """After the staged job directory became ``out``: absolute paths its manifests
    recorded inside the staging directory are rewritten to ``out`` (each file atomically;
    readers resolve the relative references anyway, so an interruption here is harmless)."""
    old, new = str(stage.resolve()), str(Path(out).resolve())

    def fix(v):
        if isinstance(v, str):  # the staging path is unique (a random suffix): replace it anywhere
            return v.replace(old, new)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    for name in _MANIFESTS:
        for path in Path(out).rglob(name):
            doc = json.loads(path.read_text())
            fixed = fix(doc)
            if fixed != doc:
                write_json(path, fixed)


@contextmanager
def _log_paths_as(stage: Path, out: str | Path):
    """Log lines name the paths the outputs will have (``out/...``), not the staging
    directory they are built in until the job completes."""

    class _Rename(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            if str(stage) in msg:
                record.msg, record.args = msg.replace(str(stage), str(out)), None
            return True

    flt = _Rename()
    handlers = list(logging.getLogger().handlers)  # handler filters see every record that is printed
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def _run_demo(out: Path, cfg: PinterestConfig | None, schema_path: str | Path, progress: bool) -> dict:
    cfg = cfg or PinterestConfig(users=5000, pins=10000, boards=800, authors=400, saves=200_000, clusters=20)
    t0 = time.perf_counter()
    generate_pinterest(cfg, out / "data", overwrite=True, progress=progress)
    store = build_graph(load_schema(schema_path), out / "graph", data_dir=out / "data", overwrite=True, progress=progress)
    split = chronological_split(store, ("user", "saves", "pin"), out=out / "split", overwrite=True)
    comps = connected_components(store)
    saves = store.relation(("user", "saves", "pin"))
    summary = {
        "graph": graph_summary(store),
        "split": split.counts,
        "components": {"count": comps.num_components, "largest_fraction": comps.largest_fraction},
        "powerlaw_alpha": {
            "user_saves": powerlaw_exponent(saves.out_degree(), d_min=5),
            "pin_saved": powerlaw_exponent(saves.in_degree(), d_min=5),
        },
        "pagerank_top_pins": pagerank_topk(store, k=5, node_type="pin").to_dict(orient="records"),
        "pin_projection": bipartite_projection_stats(store, ("user", "saves", "pin"), side="dst"),
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "summary.json", summary)
    return summary


# ---- the whole pipeline as one job (`graphrec run configs/quickstart.yaml`) ------------


ROOT = Path(__file__).resolve().parents[1]


class DataSection(StrictConfig):
    """Exactly one of ``generate`` (synthetic Pinterest-like tables) or ``dir`` (tables)."""

    generate: PinterestConfig | None = Field(None, description="generate synthetic Pinterest-like tables with these "
                                             "settings")
    dir: str | None = Field(None, description="directory of existing tables the schema's relative paths resolve "
                            "against (relative to the job config's directory, else the project root)")

    @model_validator(mode="after")
    def _one(self):
        if (self.generate is None) == (self.dir is None):
            raise ValueError("give exactly one of data.generate or data.dir")
        return self


class SplitSection(StrictConfig):
    """The chronological per-user split the models are trained and evaluated on."""

    relation: str = Field("user:saves:pin", description="interaction relation split per user by time, src:name:dst")
    fractions: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, valid, test fractions per user")
    min_interactions: int = Field(3, ge=1, description="users with fewer interactions keep them all in train")
    cut_side_relations: bool = Field(
        True, description="drop each user's edges of other timestamped relations from the user type made at or after "
        "the user's first held-out interaction (no leakage from the held-out period)")


class ModelSection(StrictConfig):
    """A run config file (relative to the job config's directory, else the project root)
    and overrides deep-merged into it (validated like the file)."""

    config: str = Field(description="run config YAML (configs/twhin-*.yaml or configs/pinsage-*.yaml)")
    overrides: dict[str, Any] = Field({}, description="keys deep-merged into the run config before validation, "
                                      "e.g. {epochs: 2, negatives: {uniform: 50}}")


class RaySection(StrictConfig):
    """Ray for the whole job: training workers of every model and inference tasks."""

    enabled: bool = Field(True, description="train with Ray Train and infer with Ray tasks (false: all in this "
                          "process)")
    workers: int = Field(2, ge=1, description="Ray Train workers of every model (overrides their ray.workers)")
    address: str | None = Field(None, description="Ray cluster address (None: a local Ray with workers + 1 CPUs)")


class ClusterLabels(StrictConfig):
    """Ground-truth clusters of a node type, for the recovery score (a table column)."""

    node_type: str = Field("pin", description="node type whose embeddings are clustered")
    table: str = Field("pins.parquet", description="table of the data directory holding the labels")
    id: str = Field("pin_id", description="id column of the table (the node type's ids)")
    column: str = Field("cluster", description="ground-truth cluster column (skipped when absent)")


class JobConfig(StrictConfig):
    """The end-to-end job: data -> graph -> split -> TwHIN and PinSage -> inference ->
    export -> FAISS index -> evaluation -> report."""

    name: str = Field("quickstart", description="job name; the default output directory is out/NAME")
    data: DataSection = Field(description="where the tables come from (required)")
    graph_schema: str = Field(alias="schema", description="graph schema YAML that builds the graph from the tables "
                              "(required; e.g. graphs/pinterest-synthetic.yaml)")
    split: SplitSection = Field(SplitSection(), description="chronological split")
    twhin: ModelSection | None = Field(None, description="train TwHIN with this run config (None: skip)")
    pinsage: ModelSection | None = Field(None, description="train PinSage with this run config (None: skip)")
    ray: RaySection = Field(RaySection(), description="Ray settings of the job")
    seed: int | None = Field(None, description="seed of every model, overriding the model configs' own (None: keep "
                             "them); `graphrec run --seed` sets it")
    inference_shard_size: int = Field(65536, ge=1, description="items per layer-wise PinSage inference shard "
                                      "(bounds the memory of one task)")
    index: IndexConfig = Field(IndexConfig(), description="FAISS index of every model's item vectors")
    ks: list[int] = Field([1, 5, 10, 20, 50, 100], description="cut-offs K of the metrics")
    select_metric: str = Field("recall@20", description="user→item metric on *valid* that picks the model whose "
                               "index writes candidates.parquet (one of recall/ndcg/hit@K for K in ks, or mrr)")
    recommend_k: int = Field(100, ge=1, description="candidates per user in candidates.parquet")
    clusters: ClusterLabels | None = Field(ClusterLabels(), description="ground-truth clusters for the "
                                           "cluster-recovery score (None: skip)")

    @model_validator(mode="after")
    def _models(self):
        if self.twhin is None and self.pinsage is None:
            raise ValueError("the job trains nothing: give twhin and/or pinsage")
        if any(k < 1 for k in self.ks) or not self.ks:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        known = {"mrr"} | {f"{m}@{k}" for m in ("recall", "ndcg", "hit") for k in self.ks}
        if self.select_metric not in known:
            raise ValueError(f"select_metric {self.select_metric!r} is not computed (choose from {sorted(known)})")
        return self


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    return base / p if (base / p).exists() else ROOT / p


def load_job_config(path: str | Path) -> tuple[JobConfig, Path]:
    """The job config at ``path`` and the directory its relative paths start from."""
    path = Path(path)
    return load_model(path, JobConfig, "config"), path.resolve().parent


def _model_config(section: ModelSection, model: str, base: Path, ray: RaySection, seed: int | None = None):
    from graphrec.run.config import RUN_CONFIGS, parse_config

    path = _resolve(section.config, base)
    if not path.is_file():
        raise GraphrecError(f"{model}.config: file not found: {path}")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise GraphrecError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")

    def merge(a, b):
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}

    data = merge(data, section.overrides)
    data = merge(data, {"ray": {"workers": ray.workers, **({"address": ray.address} if ray.address else {})}})
    if seed is not None:
        data["seed"] = seed
    cfg = parse_config(data, RUN_CONFIGS[model], origin=f"{path} (+ {model}.overrides)")
    if cfg.model != model:
        raise GraphrecError(f"{path}: a {cfg.model!r} config, not {model!r}")
    return cfg


def run_job(config_path: str | Path, out: str | Path | None = None, overwrite: bool = False,
            progress: bool = True, address: str | None = None, seed: int | None = None) -> dict:
    """Run the whole pipeline of a job config; returns (and writes) ``summary.json`` and
    writes ``report.md``. Local Ray (started once, ``workers + 1`` logical CPUs) unless
    ``ray.address`` (or ``address``, e.g. ``"auto"`` inside ``ray job submit``) names a
    cluster, or ``ray.enabled`` is false."""
    from graphrec.graph.store import parse_edge_type

    cfg, base = load_job_config(config_path)
    if address:
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": address, "enabled": True})})
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    out = Path(out) if out is not None else Path("out") / cfg.name
    models = {m: _model_config(s, m, base, cfg.ray, cfg.seed) for m, s in (("twhin", cfg.twhin), ("pinsage", cfg.pinsage))
              if s is not None}
    try:
        relation = parse_edge_type(cfg.split.relation)
    except ValueError as err:
        raise GraphrecError(f"split.relation: {err}") from None
    schema = load_schema(_resolve(cfg.graph_schema, base))
    # built beside ``out`` and swapped in only when complete: a failed or killed job leaves
    # ``out`` as it was, and --overwrite replaces only a directory graphrec wrote
    with atomic_dir(out, overwrite=overwrite, kind="pipeline") as stage, _log_paths_as(stage, out):
        summary = _run_job(cfg, models, relation, schema, base, config_path, stage, progress, published=out)
    _repoint_manifests(out, stage)
    return summary


def _run_job(cfg, models, relation, schema, base: Path, config_path, out: Path, progress: bool,
             published: Path | None = None) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    from graphrec.analytics.clusters import cluster_recovery
    from graphrec.eval.split import load_split
    from graphrec.infer.export import export_run, read_vectors_by_internal_id
    from graphrec.infer.layerwise import infer_pinsage
    from graphrec.report import write_report
    from graphrec.retrieval import Index, build_index, recommend
    from graphrec.train.evaluate import popularity_on_split, protocols_used, vectors_on_split
    from graphrec.train.runs import fit

    timings: dict[str, float] = {}
    t_job = time.perf_counter()

    def step(name):
        class _T:
            def __enter__(self):
                log.info("== %s", name)
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timings[name] = time.perf_counter() - self.t

        return _T()

    started_ray = False
    if cfg.ray.enabled:
        from graphrec.ray_env import init_ray

        started_ray = init_ray(cfg.ray.address, num_cpus=cfg.ray.workers + 1)
    try:
        with step("data"):
            if cfg.data.generate is not None:
                data_dir = out / "data"
                generate_pinterest(cfg.data.generate, data_dir, overwrite=True, progress=progress)
            else:
                data_dir = _resolve(cfg.data.dir, base)
        with step("build"):
            store = build_graph(schema, out / "graph", data_dir=data_dir, overwrite=True, progress=progress)
        with step("split"):
            chronological_split(store, relation, cfg.split.fractions, cfg.split.min_interactions, out=out / "split",
                                overwrite=True, cut_side_relations=cfg.split.cut_side_relations)
            split = load_split(out / "split")
        training, histories, evaluation, valid_eval, pin_embs, index_info = {}, {}, {}, {}, {}, {}
        for m, mcfg in models.items():
            with step(f"train {m}"):
                info = fit(mcfg, out / "split" / "train", out / "runs" / m, use_ray=cfg.ray.enabled, progress=progress)
                s = info["summary"]
                training[m] = {"epochs_run": s["epochs_run"], "seconds": s["seconds"], "workers": s.get("world_size", 1)}
                histories[m] = s["history"]
            inference = None
            if m == "pinsage":
                with step("infer pinsage"):
                    inference = infer_pinsage(out / "runs" / m, shard_size=cfg.inference_shard_size,
                                              use_ray=cfg.ray.enabled, progress=progress)
            with step(f"export {m}"):
                emb = export_run(out / "runs" / m, out / "embeddings" / m, retrieval=[cfg.split.relation],
                                 inference=inference)
            with step(f"index {m}"):
                man = build_index(emb, relation[2], out / "index" / m, query=cfg.split.relation, cfg=cfg.index)
                index_info[m] = {"path": str(Path("index") / m), "count": man["count"], "kind": man["kind"],
                                 "dim": man["dim"]}
            with step(f"evaluate {m}"):
                # rows by internal id of the split's train store (the run's graph): an export's
                # row order is not the store's for every run (a partitioned one follows partitions)
                train_store = split.train
                q = read_vectors_by_internal_id(emb / "retrieval" / relation_dir(relation) / "query.parquet",
                                                train_store, relation[0])
                c = read_vectors_by_internal_id(emb / "retrieval" / relation_dir(relation) / "candidate.parquet",
                                                train_store, relation[2])
                items = read_vectors_by_internal_id(emb / "nodes" / f"{relation[2]}.parquet", train_store,
                                                    relation[2])
                evaluation[m] = vectors_on_split(q, c, items, split, "test", cfg.ks, repeats=True)
                valid_eval[m] = vectors_on_split(q, c, items, split, "valid", cfg.ks)
                pin_embs[m] = items
        with step("evaluate popularity"):
            evaluation["popularity"] = popularity_on_split(split, "test", cfg.ks, repeats=True)
            valid_eval["popularity"] = popularity_on_split(split, "valid", cfg.ks)
        rec = None
        best = max(models, key=lambda m: valid_eval[m]["user_to_item"][cfg.select_metric])
        with step("recommend"):
            r = recommend(Index(out / "index" / best), out / "candidates.parquet", k=cfg.recommend_k,
                          exclude_seen=out / "split" / "train", progress=progress)
            rec = {"path": "candidates.parquet", "model": best, "k": cfg.recommend_k, "users": r["users"], "rows": r["rows"],
                   "selected_by": f"user_to_item {cfg.select_metric} on valid",
                   "valid": {m: valid_eval[m]["user_to_item"][cfg.select_metric] for m in valid_eval}}
            first = pq.read_table(out / "candidates.parquet", columns=["user", "item"]).slice(0, 1).to_pylist()
            # the report ends with the command that serves this index (where `out` will be)
            rec["serve"] = {"index": str((published or out) / "index" / best),
                            "user": first[0]["user"] if first else None, "item": first[0]["item"] if first else None}
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    summary = {"name": cfg.name, "config": str(Path(config_path).resolve()), "split_relation": cfg.split.relation,
               "graph": {"total_nodes": int(sum(store.num_nodes(t) for t in store.node_types)),
                         "total_edges": int(store.num_edges()), "nodes": {t: store.num_nodes(t) for t in store.node_types}},
               "split": split_counts(out / "split"), "training": training,
               "evaluation": {"part": "test", "ks": cfg.ks, "protocols": protocols_used(split, True, True, False),
                              "models": evaluation, "valid": valid_eval},
               "index": index_info, "recommend": rec}
    labels = None
    if cfg.clusters is not None:
        table = data_dir / cfg.clusters.table
        if table.is_file() and cfg.clusters.column in pq.read_schema(table).names:
            t = pq.read_table(table, columns=[cfg.clusters.id, cfg.clusters.column]).to_pandas()
            ids = store.original_ids(cfg.clusters.node_type)
            lab = t.set_index(cfg.clusters.id)[cfg.clusters.column].reindex(ids).to_numpy()
            if np.isnan(lab.astype(float)).any():
                raise GraphrecError(f"{table}: {cfg.clusters.column} missing for some {cfg.clusters.node_type} ids")
            labels = lab.astype(np.int64)
            with step("cluster recovery"):
                summary["cluster_recovery"] = {m: cluster_recovery(e, labels, k=10) for m, e in pin_embs.items()}
        else:
            log.warning("no %s column in %s: no cluster-recovery score", cfg.clusters.column, table)
    summary["timings"] = timings
    summary["seconds"] = time.perf_counter() - t_job
    write_report(out, summary, histories, pin_embs, labels)
    write_json(out / "summary.json", summary)
    return summary


def relation_dir(et) -> str:
    from graphrec.graph.store import relation_key

    return relation_key(et)


def split_counts(split_dir: Path) -> dict:
    info = json.loads((split_dir / "split.json").read_text())
    return info["counts"]
