"""One way to start and open a training run of any model: the CLI, ``jobs/`` scripts
and the pipeline go through here.

A run directory holds ``run.json`` (``model``: ``twhin`` | ``pinsage``, config, graph
checksum, training summary) and ``model.pt`` once finished; checkpoints of an unfinished
run live under ``checkpoints/`` (local) or ``ray/`` (Ray Train).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore
from graphrec.run.config import RUN_CONFIGS, load_config

RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
MODELS = tuple(RUN_CONFIGS)


def load_run_config(model: str, path: str | Path, workers: int | None = None, epochs: int | None = None,
                    address: str | None = None):
    """The typed config of ``model`` from YAML ``path`` with command-line overrides."""
    if model not in RUN_CONFIGS:
        raise GraphrecError(f"unknown model {model!r} (choose from {MODELS})")
    cfg = load_config(path, RUN_CONFIGS[model])
    if cfg.model != model:
        raise GraphrecError(f"{path}: a {cfg.model!r} config, not {model!r}")
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
    """Train the model ``cfg`` describes on ``graph`` into run directory ``out``; returns
    the finished run's ``run.json``."""
    if cfg.model == "twhin":
        from graphrec.train.twhin import fit_twhin as fit_model
    else:
        from graphrec.train.pinsage import fit_pinsage as fit_model
    return fit_model(cfg, graph, out, use_ray=use_ray, resume=resume, overwrite=overwrite, progress=progress)


def run_training(loop: Callable[[dict], dict], cfg, graph: str | Path, out: str | Path, use_ray: bool = True,
                 resume: bool = False, overwrite: bool = False, progress: bool = False, fault: dict | None = None,
                 validate: Callable[[GraphStore], None] | None = None) -> dict:
    """Run ``loop(config)`` (a ``train_loop_per_worker``) for ``cfg`` on ``graph`` into the
    run directory ``out``; returns the finished run's ``run.json``.

    A finished run in ``out`` is never replaced unless ``overwrite`` (or continued with
    ``resume``), nor are checkpoints of an unfinished one. ``validate(store)`` checks the
    config against the graph before anything is touched. With ``use_ray`` the loop runs on
    ``cfg.ray.workers`` Ray Train workers (embedded Ray unless ``cfg.ray.address``);
    otherwise in this process. ``fault``: tests only (see ``reporting.inject_fault``).
    """
    out = Path(out).resolve()
    if (out / MODEL_FILE).exists() and not (overwrite or resume):
        raise GraphrecError(f"{out} holds a finished run ({MODEL_FILE}); pass --overwrite to replace it or --resume")
    has_ckpt = any((out / d).is_dir() and any((out / d).iterdir()) for d in ("checkpoints", "ray"))
    if has_ckpt and not (overwrite or resume):
        raise GraphrecError(f"{out} holds checkpoints of an unfinished run; pass --resume to continue it "
                            "or --overwrite to start over")
    store = GraphStore(graph)  # fail early on a bad graph path
    if validate is not None:
        validate(store)
    if not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(out / "ray", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    loop_config = {cfg.model: cfg.model_dump(mode="json"), "graph": str(Path(store.path).resolve()), "out": str(out),
                   "resume": resume, "progress": progress}
    if fault:
        loop_config["fault"] = fault
    if use_ray:
        from graphrec.train.ray_runner import run_with_ray

        run_with_ray(loop, loop_config, cfg.ray, out, name=cfg.model)
    else:
        loop(loop_config)
    return json.loads((out / RUN_FILE).read_text())


def run_model(run_dir: str | Path) -> str:
    """``twhin`` | ``pinsage``: the model of a finished run directory."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise GraphrecError(f"{run_dir}: not a finished training run (no {RUN_FILE})")
    try:
        model = json.loads(path.read_text()).get("model")
    except json.JSONDecodeError as err:
        raise GraphrecError(f"{path}: not valid JSON ({err})") from None
    if model not in MODELS:
        raise GraphrecError(f"{path}: unknown model {model!r}")
    return model


def summarize(info: dict) -> str:
    """One line about a finished run for the command line."""
    s = info["summary"]
    last = s["history"][-1] if s["history"] else {}
    rate = (f"{last['positives_per_s']:,.0f} positives/s" if "positives_per_s" in last
            else f"{last.get('pairs_per_s', 0):,.0f} pairs/s")
    return (f"trained {info['model']} on {info['graph']}: {s['epochs_run']} epochs"
            f"{' (stopped early)' if s.get('stopped_early') else ''}, final loss {last.get('loss', float('nan')):.4f}, "
            f"{rate}{_best_line(s)}")


def _best_line(summary: dict) -> str:
    """``; best valid MRR 0.74 at epoch 25 (the state saved)`` for runs that early-stopped on
    a validation metric (``best_valid_mrr``/``best_valid_sampled_mrr`` and ``best_epoch``)."""
    for key, name in (("best_valid_mrr", "valid MRR"), ("best_valid_sampled_mrr", "sampled valid MRR")):
        if summary.get(key) is not None and summary.get("best_epoch") is not None:
            return f"; best {name} {summary[key]:.4f} at epoch {summary['best_epoch']} (the state saved)"
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
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--local", action="store_true", help="start Ray embedded instead of joining the job's cluster")
    args = ap.parse_args(argv)
    try:
        cfg = load_run_config(model, args.config, workers=args.workers, epochs=args.epochs)
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": None if args.local else "auto"})})
        info = fit(cfg, args.graph, args.out, use_ray=True, resume=args.resume, overwrite=args.overwrite)
    except GraphrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in info["summary"].items() if k != "history"}, indent=1))
    return 0
