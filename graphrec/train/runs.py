"""One way to start a training run of any model: the CLI, ``jobs/`` scripts and the
pipeline go through :func:`fit`. (Opening a finished run: :func:`graphrec.run.directory.open_run`.)

Run-directory rules: a finished run is never replaced unless ``overwrite`` (or continued
with ``resume``), nor are checkpoints of an unfinished one; ``overwrite`` applies only to
a directory graphrec wrote (its ``.graphrec`` marker or ``run.json``); one job at a time
per run directory (:class:`graphrec.io.OutputLock`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore
from graphrec.io import OutputLock, is_graphrec_dir, mark_graphrec_dir, write_json
from graphrec.run.checkpoint import CheckpointDir
from graphrec.config_base import load_yaml
from graphrec.run.config import RUN_CONFIGS, load_config
from graphrec.run.directory import CHECKPOINTS_DIR, MODEL_FILE, RAY_DIR, RUN_FILE
from graphrec.run.tables import PARTITION_TABLES_DIR

MODELS = tuple(RUN_CONFIGS)


IDENTITY_FILE = "identity.json"
#: config keys a resumed run may change (how long and where it runs, not what it computes)
RESUMABLE_CHANGES = frozenset({"epochs", "patience", "ray", "threads", "checkpoints", "loader_workers"})


def run_identity(cfg, store: GraphStore) -> dict:
    """What a run's checkpoints are checkpoints *of*: the config (less
    :data:`RESUMABLE_CHANGES`) and the graph's checksum."""
    config = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RESUMABLE_CHANGES}
    return {"config": config, "graph_checksum": store.checksum}


def check_identity(path: Path, identity: dict) -> None:
    """Refuse ``--resume`` with another config or graph than the checkpoints were made with."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # checkpoints of an older graphrec: nothing recorded to compare
    if old.get("graph_checksum") != identity["graph_checksum"]:
        raise GraphrecError(f"{path.parent.parent}: its checkpoints were trained on another graph (checksum "
                            f"{str(old.get('graph_checksum'))[:12]}, this one {identity['graph_checksum'][:12]}); "
                            "--resume needs the same graph")
    a, b = old.get("config", {}), identity["config"]
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        raise GraphrecError(f"{path.parent.parent}: --resume with a config that differs from the checkpoints' in "
                            f"{diff} (only {sorted(RESUMABLE_CHANGES)} may change; --overwrite starts over)")


def _trainer(model: str):
    """``(train_loop_per_worker, check_config)`` of a model."""
    if model == "twhin":
        from graphrec.train import twhin as module
    elif model == "pinsage":
        from graphrec.train import pinsage as module
    else:
        raise GraphrecError(f"unknown model {model!r} (choose from {MODELS})")
    return module.train_loop_per_worker, module.check_config


def load_run_config(model: str, path: str | Path, workers: int | None = None, epochs: int | None = None,
                    address: str | None = None):
    """The typed config of ``model`` from YAML ``path`` with command-line overrides."""
    if model not in RUN_CONFIGS:
        raise GraphrecError(f"unknown model {model!r} (choose from {MODELS})")
    data = load_yaml(path)
    declared = data.get("model", "twhin") if isinstance(data, dict) else None
    if declared is not None and declared != model:
        raise GraphrecError(f"{path}: a {declared!r} config (model: {declared}), not {model!r}")
    cfg = load_config(path, RUN_CONFIGS[model])
    if workers is not None and workers < 1:
        raise GraphrecError("--workers must be >= 1")
    if epochs is not None and epochs < 1:
        raise GraphrecError("--epochs must be >= 1")
    ray_update = {k: v for k, v in (("workers", workers), ("address", address)) if v is not None}
    if ray_update:
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update=ray_update)})
    if epochs is not None:
        cfg = cfg.model_copy(update={"epochs": epochs})
    return cfg


def fit(cfg, graph: str | Path, out: str | Path, use_ray: bool = True, resume: bool = False, overwrite: bool = False,
        progress: bool = False) -> dict:
    """Train the model ``cfg`` describes (``cfg.model``) on the graph store ``graph`` into
    the run directory ``out``; returns the finished run's ``run.json``.

    With ``use_ray`` the model's ``train_loop_per_worker`` runs on ``cfg.ray.workers`` Ray
    Train workers (embedded Ray unless ``cfg.ray.address``); otherwise in this process.
    A TwHIN config with ``partitions > 1`` trains buckets of partitions instead
    (:mod:`graphrec.train.partitioned`: Ray tasks around one coordinator actor, or this
    process).
    ``resume`` continues from the newest valid checkpoint; without it, checkpoints of an
    unfinished run are refused unless ``overwrite`` (which then discards them)."""
    from graphrec.ray_env import quiet_known_warnings

    quiet_known_warnings()  # torch's sparse-gradient notices: noise for notebook and script callers too
    loop, check_config = _trainer(cfg.model)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise GraphrecError(f"{out} is a file, not a run directory")
    store = GraphStore(graph)  # fail early on a bad graph path
    check_config(cfg, store)
    partitioned = getattr(cfg, "partitions", 1) > 1
    if partitioned:
        from graphrec.train.partitioned import check_partitioned, run_partitioned

        check_partitioned(cfg, store, use_ray)
    with OutputLock(out):
        if out.is_dir() and any(out.iterdir()) and not is_graphrec_dir(out):
            raise GraphrecError(f"{out} is a directory graphrec did not write; refusing to train into it "
                                "(choose an empty or new run directory)")
        if (out / MODEL_FILE).exists() and not (overwrite or resume):
            raise GraphrecError(f"{out} holds a finished run ({MODEL_FILE}); pass --overwrite to replace it or --resume")
        tables = partitioned and _partition_tables(cfg, out) is not None  # a partitioned run's state
        has_ckpt = bool(CheckpointDir(out / CHECKPOINTS_DIR).tags()) or (tables and not (out / RUN_FILE).exists())
        if has_ckpt and not (overwrite or resume):
            if tables and getattr(cfg, "partition_storage", None):
                raise GraphrecError(f"partition_storage {cfg.partition_storage} holds a partitioned run's tables; "
                                    "pass --resume to continue that run or --overwrite to replace them")
            raise GraphrecError(f"{out} holds checkpoints of an unfinished run; pass --resume to continue it "
                                "or --overwrite to start over")
        identity = run_identity(cfg, store)
        if resume and (has_ckpt or tables):  # a finished partitioned run resumes from its tables too
            check_identity(out / CHECKPOINTS_DIR / IDENTITY_FILE, identity)
        if not resume:
            shutil.rmtree(out / CHECKPOINTS_DIR, ignore_errors=True)
            shutil.rmtree(out / RAY_DIR, ignore_errors=True)
            shutil.rmtree(out / PARTITION_TABLES_DIR, ignore_errors=True)
            if tables and cfg.partition_storage:  # tables kept elsewhere (overwrite: refused above otherwise)
                _partition_tables(cfg, out).delete_all()
        out.mkdir(parents=True, exist_ok=True)
        mark_graphrec_dir(out, f"run:{cfg.model}")
        (out / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        write_json(out / CHECKPOINTS_DIR / IDENTITY_FILE, identity)
        loop_config = {cfg.model: cfg.model_dump(mode="json"), "graph": str(Path(store.path).resolve()),
                       "out": str(out), "progress": progress}
        import torch

        threads = torch.get_num_threads()
        try:
            if partitioned:  # bucket workers (Ray tasks or this process) around one coordinator
                run_partitioned(cfg, store.path, out, use_ray, progress=progress)
            elif use_ray:
                from graphrec.train.ray_runner import run_with_ray

                run_with_ray(loop, loop_config, cfg.ray, out, name=cfg.model)
            else:
                loop(loop_config)
        finally:  # `threads` in the config is the run's, not the calling session's (a notebook's)
            torch.set_num_threads(threads)
        return json.loads((out / RUN_FILE).read_text())


def _partition_tables(cfg, out: Path):
    """The versioned tables a partitioned run in ``out`` keeps (``RUN_DIR/partitions`` or
    ``partition_storage``) when they hold a committed state, else ``None``; refuses a
    ``partition_storage`` location with files graphrec did not write."""
    from graphrec.run.storage import VERSION_FILE, PartitionCheckpoints, RunStorage, StorageError
    from graphrec.train.partitioned import tables_location

    try:
        storage = RunStorage(tables_location(cfg, out))
        if storage.exists(VERSION_FILE):
            return PartitionCheckpoints(storage, prefix="")
        if cfg.partition_storage and storage.list():
            raise GraphrecError(f"partition_storage {storage.location}: holds files graphrec did not write; "
                                "refusing to keep tables there (choose an empty or new location)")
    except StorageError as err:
        raise GraphrecError(f"partition_storage: {err}") from None
    return None


def summarize(info: dict) -> str:
    """One line about a finished run for the command line."""
    s = info["summary"]
    last = s["history"][-1] if s["history"] else {}
    rate = (f"{last['positives_per_s']:,.0f} positives/s" if "positives_per_s" in last
            else f"{last.get('pairs_per_s', 0):,.0f} pairs/s")
    return (f"trained {info['model']} on {info['graph']}: {s['epochs_run']} epochs"
            f"{' (stopped early)' if s.get('stopped_early') else ''}, final loss {last.get('loss', float('nan')):.4f}, "
            f"{rate}{_best_line(s)}{_drift_line(s)}")


def _drift_line(summary: dict) -> str:
    """``; drift from RUN over 2,625 nodes in both: mean cosine 0.93, kNN overlap@10 0.71``."""
    w = summary.get("warm_start")
    if not w:
        return ""
    d = w["drift"]
    overlap = d.get("knn_overlap@10")
    return (f"; drift from {w['from']} over {d['nodes']:,} nodes in both: mean cosine {d['mean_cosine']:.3f}"
            + (f", kNN overlap@10 {overlap:.3f}" if overlap is not None else ""))


def _best_line(summary: dict) -> str:
    """``; best valid MRR 0.74 at epoch 25 (the state saved)`` for runs that early-stopped on
    a validation metric (``monitor``)."""
    monitor = summary.get("monitor")
    if monitor and summary.get(f"best_{monitor}") is not None and summary.get("best_epoch") is not None:
        name = monitor.replace("valid_", "valid ").replace("_", " ").replace("mrr", "MRR").replace("hr@", "HR@")
        return f"; best {name} {summary[f'best_{monitor}']:.4f} at epoch {summary['best_epoch']} (the state saved)"
    return ""


def job_main(model: str, argv=None) -> int:
    """Entry of ``jobs/train_<model>.py`` for ``ray job submit``: joins the job's Ray
    cluster (``address="auto"``) unless ``--local``, trains, prints the summary."""
    ap = argparse.ArgumentParser(description=f"Train {model} on Ray (ray job submit entry point).")
    ap.add_argument("--config", required=True)
    ap.add_argument("--graph", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    if model == "twhin":
        ap.add_argument("--partitions", type=int, default=None,
                        help="partitions P of the large node types (PyTorch-BigGraph-style buckets on the workers)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--local", action="store_true", help="start Ray embedded instead of joining the job's cluster")
    args = ap.parse_args(argv)
    try:
        cfg = load_run_config(model, args.config, workers=args.workers, epochs=args.epochs)
        if getattr(args, "partitions", None) is not None:
            if args.partitions < 1:
                raise GraphrecError("--partitions must be >= 1")
            cfg = cfg.model_copy(update={"partitions": args.partitions})
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": None if args.local else "auto"})})
        info = fit(cfg, args.graph, args.out, use_ray=True, resume=args.resume, overwrite=args.overwrite)
    except GraphrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in info["summary"].items() if k != "history"}, indent=1))
    return 0
