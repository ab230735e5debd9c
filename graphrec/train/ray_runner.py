"""Running a ``train_loop_per_worker`` under Ray Train.

Local by default: Ray starts embedded with explicit logical CPUs (``workers *
cpus_per_worker + 1``, so the workers never wait on the trainer's reservation even on a
2-core box) and a small object store; with ``address`` it joins a cluster (``ray job
submit`` runs ``jobs/*.py``, which call this with ``address="auto"``). Checkpoints go to
``RUN_DIR/ray`` through Ray Train; ``FailureConfig(max_failures)`` restarts a crashed
worker group from the last reported checkpoint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from graphrec.ray_env import init_ray, train_log_level
from graphrec.run.config import RayConfig

log = logging.getLogger(__name__)


def run_with_ray(loop, loop_config: dict, ray_cfg: RayConfig, run_dir: str | Path, name: str = "train"):
    """Run ``loop(loop_config)`` on ``ray_cfg.workers`` Ray Train workers; returns the
    ``ray.train.Result``."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    run_dir = Path(run_dir).resolve()
    try:  # Ray Train V2: its INFO chatter only with --debug (see graphrec.ray_env)
        from ray.train import LoggingConfig

        logging_kw = {"logging_config": LoggingConfig(log_level=train_log_level())}
    except ImportError:  # V1 (RAY_TRAIN_V2_ENABLED=0) has no LoggingConfig
        logging_kw = {}
    started = init_ray(ray_cfg.address, ray_cfg.workers * ray_cfg.cpus_per_worker + 1, ray_cfg.object_store_mb)
    try:
        trainer = TorchTrainer(
            loop,
            train_loop_config={**loop_config, "reporter": "ray"},
            # gloo: the node table's gradient is sparse, which NCCL cannot all-reduce
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=ray_cfg.workers, use_gpu=False,
                                         resources_per_worker={"CPU": ray_cfg.cpus_per_worker}),
            run_config=RunConfig(name=name, storage_path=str(run_dir / "ray"),
                                 failure_config=FailureConfig(max_failures=ray_cfg.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2), **logging_kw),
        )
        result = trainer.fit()
    finally:
        if started:
            ray.shutdown()
    return result
