"""Starting or joining Ray the same way everywhere (training, inference, the pipeline):
local Ray with explicit logical CPUs and a small object store, or a cluster address."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 256) -> bool:
    """Start (or join, with ``address``) Ray unless it is running; returns whether this
    call started it. Local Ray gets ``num_cpus`` logical CPUs (default: the machine's)
    and a small object store."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, configure_logging=False, log_to_driver=True)
    return True
