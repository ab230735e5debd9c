"""The training skeleton every model's ``train_loop_per_worker`` composes.

A loop builds its data, model and optimizers, then hands them to :class:`Trainer`, which
owns the run state and does the rest the same way for every model:

* **setup** (:func:`worker_context`): the typed config, torch threads, rank and world
  size, the graph store;
* **resume**: the newest checkpoint under ``RUN_DIR/checkpoints`` that verifies (corrupt
  ones are skipped with a warning), the same one on every rank; the modules, optimizers,
  schedulers, the epoch's random generator, the history, the early-stopping state and
  the **best-on-valid state** are restored, and training continues at the exact
  ``(epoch, step)`` it stopped at;
* **checkpoints**: at the end of every epoch and, with ``checkpoint_every_steps`` (the
  config's ``checkpoints.every_steps``), every N steps within an epoch (rank 0 writes;
  the last ``keep_checkpoints`` kept);
* **early stopping** on a validation metric (``monitor``): after ``patience``
  validations without improvement; the best state is the one saved;
* **reporting**: progress bar and one log line per epoch with throughput; metrics to
  Ray Train (``ray.train.report``) when running under it;
* **summary**: ``epochs_run``, ``stopped_early``, ``best_epoch``, ``best_<monitor>``,
  ``seconds``, ``starts`` (the epochs this run (re)started at), ``world_size``,
  ``history``.

Checkpoints are written by the trainer itself (not through Ray Train's checkpoint
registry), so a restarted worker group, a ``--resume`` after the whole job was killed
and a local run resume the same way. On a cluster ``RUN_DIR`` must be storage every node
reads (README: running on a cluster).

Test hooks never appear in signatures: ``GRAPHREC_FAULT`` (JSON ``{"epoch", "rank",
"marker"[, "step", "delay_s"]}``) makes a worker die once, as a crashed process.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from graphrec.graph.store import GraphStore
from graphrec.run.checkpoint import CheckpointDir
from graphrec.run.directory import CHECKPOINTS_DIR

log = logging.getLogger(__name__)

FAULT_ENV = "GRAPHREC_FAULT"


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of this worker (``(0, 1)`` outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def inject_fault(epoch: int, step: int, rank: int) -> None:
    """Tests only: with ``GRAPHREC_FAULT={"epoch", "rank", "marker"[, "step", "delay_s"]}``
    in the environment, that worker dies once (a hard exit, as a crashed process) at that
    step (default 0) of that epoch; ``marker`` records it so the restart runs on."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    fault = json.loads(spec)
    if (fault["epoch"] == epoch and fault["rank"] == rank and int(fault.get("step", 0)) == step
            and not Path(fault["marker"]).exists()):
        time.sleep(float(fault.get("delay_s", 0.0)))
        Path(fault["marker"]).write_text("killed")
        os._exit(1)


@dataclass
class WorkerContext:
    """What every training worker sets up the same way."""

    cfg: object
    run_dir: Path
    store: GraphStore
    rank: int
    world: int
    on_ray: bool
    progress: bool


def worker_context(config: dict, model: str, parse: Callable[[dict], object]) -> WorkerContext:
    """Setup shared by every ``train_loop_per_worker``: the typed config
    (``config[model]``, a config object or its dict), torch threads (``cfg.threads``, or
    ``cfg.ray.cpus_per_worker`` on Ray), the run directory, rank/world, the graph store."""
    raw = config[model]
    cfg = raw if not isinstance(raw, dict) else parse(raw)
    on_ray = config.get("reporter") == "ray"
    threads = cfg.threads or (cfg.ray.cpus_per_worker if on_ray else None)
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config["out"])
    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    return WorkerContext(cfg, run_dir, GraphStore(config["graph"]), rank, world, on_ray, bool(config.get("progress")))


@dataclass
class EpochStats:
    """Running totals of one epoch (checkpointed mid-epoch so that a resumed epoch
    reports the whole epoch)."""

    loss_sum: float = 0.0
    steps: int = 0
    items: int = 0
    seconds: float = 0.0
    wait_seconds: float = 0.0


class Trainer:
    """Run state and the epoch loop shared by every model.

    Args:
        ctx: the worker's :class:`WorkerContext`.
        modules: ``{name: module}`` whose state is checkpointed and saved (the best state
            too); e.g. ``{"model": twhin}``.
        optimizers, schedulers: stepped by the loop's ``step`` function; checkpointed here.
        epochs, patience: from the config; ``patience`` counts validations.
        monitor: the metric (a key of ``validate``'s result) early stopping maximises,
            or ``None`` (no early stopping).
        checkpoint_every_steps: also checkpoint every N steps within an epoch (0: per
            epoch only); keep_checkpoints: how many to keep.
        seed: seeds :attr:`generator` per epoch (``seed·1000003 + rank·7919 + epoch``),
            whose state mid-epoch checkpoints carry.
    """

    def __init__(self, ctx: WorkerContext, modules: dict[str, nn.Module], optimizers: list, schedulers: list = (),
                 *, epochs: int, patience: int, monitor: str | None, seed: int, checkpoint_every_steps: int = 0,
                 keep_checkpoints: int = 2, items_name: str = "positives"):
        self.ctx = ctx
        self.modules, self.optimizers, self.schedulers = modules, list(optimizers), list(schedulers)
        self.epochs, self.patience, self.monitor = epochs, patience, monitor
        self.seed, self.every_steps, self.items_name = seed, checkpoint_every_steps, items_name
        self.checkpoints = CheckpointDir(ctx.run_dir / CHECKPOINTS_DIR, keep=keep_checkpoints)
        self.generator = torch.Generator()
        self.epoch, self.step = 0, 0
        self.history: list[dict] = []
        self.best, self.best_epoch, self.bad = float("-inf"), -1, 0
        self.best_state: dict | None = None
        self.starts: list[int] = []
        self.stopped_early = False
        self._partial = EpochStats()
        self._resume()

    # ------------------------------------------------------------------ state

    def _state(self, rng_states: list) -> dict:
        state = {"modules": {k: m.state_dict() for k, m in self.modules.items()},
                 "optimizers": [o.state_dict() for o in self.optimizers],
                 "schedulers": [s.state_dict() for s in self.schedulers],
                 "epoch": self.epoch, "step": self.step, "history": json.dumps(self.history),
                 "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad,
                 "stopped_early": self.stopped_early, "starts": json.dumps(self.starts),
                 "partial": json.dumps(self._partial.__dict__), "world_size": self.ctx.world,
                 "rng": torch.stack(rng_states)}
        if self.best_state is not None:
            state["best_modules"] = self.best_state
        return state

    def _resume(self) -> None:
        found = self.checkpoints.latest() if self.ctx.rank == 0 else None
        tag = found[0] if found else None
        if self.ctx.world > 1:  # every rank resumes from the checkpoint rank 0 chose
            box = [tag]
            torch.distributed.broadcast_object_list(box, src=0)
            tag = box[0]
            if self.ctx.rank != 0 and tag is not None:
                found = (tag, self.checkpoints.load(tag))
            torch.distributed.barrier()  # every rank has read it before rank 0 may prune it
        if found is None:
            self.starts.append(0)
            return
        _, state = found
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(s)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = json.loads(state["history"])
        self.best, self.best_epoch, self.bad = float(state["best"]), int(state["best_epoch"]), int(state["bad_epochs"])
        self.stopped_early = bool(state.get("stopped_early", False))
        self.best_state = state.get("best_modules")
        self.starts = json.loads(state["starts"])
        self._partial = EpochStats(**json.loads(state["partial"]))
        rng = state["rng"]
        if int(state.get("world_size", 1)) == self.ctx.world:
            self.generator.set_state(rng[self.ctx.rank].clone())  # each rank's own negatives stream
        elif self.step > 0:
            log.warning("resuming mid-epoch with %d workers instead of %d: the rest of epoch %d draws other "
                        "negatives than an uninterrupted run would", self.ctx.world, int(state["world_size"]),
                        self.epoch)
            self.generator.manual_seed(self.seed * 1000003 + self.ctx.rank * 7919 + self.epoch + 7 * self.step)
        self.starts.append(self.epoch)
        if self.ctx.rank == 0:
            log.info("resumed at epoch %d, step %d (%s)", self.epoch, self.step, tag)

    def _checkpoint(self) -> None:
        """Rank 0 writes the checkpoint; every rank must call this (it gathers each rank's
        generator state, so that every rank resumes its own stream of negatives)."""
        rng = self.generator.get_state()  # a fixed-size uint8 tensor: one plain all_gather, no pickling
        states = [rng]
        if self.ctx.world > 1:
            states = [torch.empty_like(rng) for _ in range(self.ctx.world)]
            torch.distributed.all_gather(states, rng)
        if self.ctx.rank == 0:
            self.checkpoints.save(self.epoch, self.step, self._state(states))

    # ------------------------------------------------------------------ loop

    def fit(self, batches: Callable[[int, int], Iterable], step: Callable[[object], tuple[float, int]],
            steps_per_epoch: Callable[[int], int], validate: Callable[[int], dict | None] | None = None,
            epoch_metrics: Callable[[int], dict] | None = None) -> dict:
        """Train until ``epochs`` or early stopping; returns the summary.

        ``batches(epoch, start_step)``: the epoch's batches from ``start_step`` on (the
        same sequence every time for a given epoch); ``step(batch) -> (loss, items)``
        trains on one; ``steps_per_epoch(epoch)``: their number; ``validate(epoch)``:
        metrics to record (``None`` when not validating this epoch); ``epoch_metrics(epoch)``:
        extra values recorded with the epoch (e.g. hard negatives per query, learning rate)."""
        ctx, t_start = self.ctx, time.perf_counter()
        if self.stopped_early:
            self.epoch = self.epochs
        while self.epoch < self.epochs:
            epoch = self.epoch
            if self.step == 0:
                self.generator.manual_seed(self.seed * 1000003 + ctx.rank * 7919 + epoch)
                self._partial = EpochStats()
            stats, total = self._partial, steps_per_epoch(epoch)
            inject_fault(epoch, self.step, ctx.rank)
            bar = tqdm(total=total, initial=self.step, desc=f"epoch {epoch}", unit="batch", leave=False,
                       disable=not (ctx.progress and ctx.rank == 0))
            t0 = t_wait = time.perf_counter()
            for batch in batches(epoch, self.step):
                stats.wait_seconds += time.perf_counter() - t_wait
                loss, items = step(batch)
                stats.loss_sum += loss
                stats.steps += 1
                stats.items += items
                self.step += 1
                bar.update()
                if self.every_steps and self.step % self.every_steps == 0 and self.step < total:
                    stats.seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self._checkpoint()
                    inject_fault(epoch, self.step, ctx.rank)
                t_wait = time.perf_counter()
            bar.close()
            stats.seconds += time.perf_counter() - t0
            metrics = {"epoch": epoch, "loss": stats.loss_sum / max(stats.steps, 1), "steps": stats.steps,
                       **(epoch_metrics(epoch) if epoch_metrics else {}),
                       self.items_name: stats.items * ctx.world,
                       f"{self.items_name}_per_s": stats.items * ctx.world / max(stats.seconds, 1e-9),
                       "seconds": stats.seconds, "loader_wait_fraction": stats.wait_seconds / max(stats.seconds, 1e-9),
                       "workers": ctx.world}
            if validate is not None:
                t1 = time.perf_counter()
                valid = validate(epoch) if ctx.rank == 0 else None
                if ctx.world > 1:  # one decision for every rank: rank 0's metrics (no rank stops alone)
                    box = [valid]
                    torch.distributed.broadcast_object_list(box, src=0)
                    valid = box[0]
                if valid:
                    metrics.update(valid)
                    metrics["valid_seconds"] = time.perf_counter() - t1
            value = metrics.get(self.monitor) if self.monitor else None
            if value is not None:
                if value > self.best:
                    self.best, self.best_epoch, self.bad = float(value), epoch, 0
                    self.best_state = {k: copy.deepcopy(m.state_dict()) for k, m in self.modules.items()}
                else:
                    self.bad += 1
            self.history.append(metrics)
            if ctx.rank == 0:
                rate = metrics[f"{self.items_name}_per_s"]
                shown = "".join(f", {k.replace('_', ' ')} {v:.4f}" for k, v in metrics.items()
                                if k.startswith("valid_") and k != "valid_seconds")
                log.info("epoch %d: loss %.4f, %.0f %s/s%s", epoch, metrics["loss"], rate, self.items_name, shown)
            self.stopped_early = value is not None and self.bad >= self.patience
            self.epoch, self.step = epoch + 1, 0
            self._checkpoint()
            self._report(metrics)
            if self.stopped_early:
                break
        if self.best_state is not None:  # the best-on-valid state is the one saved
            for k, m in self.modules.items():
                m.load_state_dict(self.best_state[k])
        return {"epochs_run": len(self.history), "stopped_early": self.stopped_early,
                "monitor": self.monitor, "best_epoch": self.best_epoch if self.best_epoch >= 0 else None,
                **({f"best_{self.monitor}": self.best if self.best_epoch >= 0 else None} if self.monitor else {}),
                "seconds": time.perf_counter() - t_start, "starts": self.starts, "world_size": ctx.world,
                "history": self.history}

    def _report(self, metrics: dict) -> None:
        if self.ctx.on_ray:
            import ray.train

            ray.train.report(metrics)
