"""Per-epoch reporting shared by the training loops: checkpoints and metrics, locally
(``RUN_DIR/checkpoints/epoch-NNNN``) or through Ray Train (``ray.train.report``).

A training loop asks its reporter for the ``latest()`` checkpoint state to resume from
and calls ``report(metrics, state, rank)`` once per epoch; only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from graphrec.run.checkpoint import load_checkpoint, save_checkpoint


class LocalReporter:
    """Checkpoints under ``RUN_DIR/checkpoints/epoch-NNNN`` (last two kept)."""

    def __init__(self, run_dir: Path, resume: bool):
        self.dir = run_dir / "checkpoints"
        self.resume = resume

    def latest(self):
        if not self.resume or not self.dir.is_dir():
            return None
        done = sorted(p for p in self.dir.glob("epoch-*") if (p / "state.pt").is_file())
        return load_checkpoint(done[-1]) if done else None

    def report(self, metrics: dict, state: dict | None, rank: int) -> None:
        if rank != 0 or state is None:
            return
        save_checkpoint(self.dir / f"epoch-{metrics['epoch']:04d}", state)
        for old in sorted(self.dir.glob("epoch-*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)


class RayReporter:
    def latest(self):
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return load_checkpoint(d)

    def report(self, metrics: dict, state: dict | None, rank: int) -> None:
        import ray.train

        if state is not None and rank == 0:
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint(d, state)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)


def inject_fault(fault: dict | None, epoch: int, rank: int) -> None:
    """Tests only: ``fault = {"epoch", "rank", "marker"[, "delay_s"]}`` makes that worker die
    once (a hard exit, as a crashed process) at the start of that epoch; ``marker`` records
    it. ``delay_s`` waits before dying, so that Ray Train's controller (which collects the
    workers' reports every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s) has registered the
    previous epochs' checkpoints: without it, a fast epoch under CPU contention can die
    before its reports were collected and the restart legitimately finds no checkpoint."""
    if fault and fault["epoch"] == epoch and fault["rank"] == rank and not Path(fault["marker"]).exists():
        time.sleep(float(fault.get("delay_s", 0.0)))
        Path(fault["marker"]).write_text("killed")
        os._exit(1)


def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)
