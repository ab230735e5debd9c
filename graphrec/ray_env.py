"""Starting or joining Ray the same way everywhere (training, inference, the pipeline):
local Ray with explicit logical CPUs and a small object store, or a cluster address —
and what of Ray's own output reaches the user.

Users see results, not framework chatter. Unless debugging (``graphrec --debug`` or
``GRAPHREC_DEBUG=1``, which Ray workers inherit):

- Ray Train's own INFO lines (resource requests, worker-group start, "Reporting training
  result", "Checkpoint successfully created", process-group setup) are not printed:
  :func:`train_log_level` is ``WARNING`` for ``ray.train.LoggingConfig``;
- lines forwarded from Ray workers to the driver (``log_to_driver``) that are known to be
  harmless at WARNING level or above (:data:`RAY_NOISE`, e.g. Ray Train's placement-group
  cleaner polling the State API when there is no dashboard) are dropped by
  :func:`is_ray_noise`; every other line, warnings and errors included, still prints;
- the same patterns filter the driver's own Ray loggers (:class:`RayNoiseFilter` on
  :data:`NOISY_RAY_LOGGERS`);
- known-harmless Python warnings of the workers (:data:`WORKER_WARNINGS`) are ignored
  there through ``PYTHONWARNINGS`` in the job's runtime environment.

With debugging on, nothing is filtered and Ray Train logs at INFO. Ray's complete logs
stay in its session directory (``/tmp/ray/session_latest/logs``) either way.
"""

from __future__ import annotations

import json
import logging
import os
import re

DEBUG_ENV = "GRAPHREC_DEBUG"

#: Forwarded or logged lines that are Ray's normal operation, not problems (regexes,
#: searched). Ray prints them at WARNING or ERROR level, or from a logger that Ray Train's
#: log level does not reach, so a level filter cannot tell.
RAY_NOISE: tuple[str, ...] = (
    # Ray Train V2's placement-group cleaner polls the State API, which needs the
    # dashboard; without one (local Ray) it warns every few seconds for the whole run
    r"Failed to query Ray Train Controller actor state",
    # core_worker.cc ERROR about Ray Train's own PreemptionWatcher actor (ray#53727)
    r"Actor with class name: 'PreemptionWatcher' .* has constructor arguments in the object store",
    # every local ray.init when RAY_AUTH_MODE is unset (Ray enables token auth by default)
    r"Token authentication is enabled for this Ray cluster\. Set RAY_AUTH_MODE=disabled",
    # Ray Train worker INFO per ray.train.report, from a logger named by file path
    # (logging.getLogger(__file__)), so LoggingConfig(log_level) misses it
    r"Reporting training result \d+: TrainingReport\(",
    # serve.shutdown() kills its controller while the raylet still retries the controller's
    # own graceful_shutdown task (`graphrec serve` stopping)
    r"Task ServeController\.graceful_shutdown failed",
)
#: Driver-side loggers that emit :data:`RAY_NOISE` (``ray.init(configure_logging=False)``
#: removes the ``ray`` logger's handler, so a filter there would see nothing: records
#: of child loggers reach ``logging.lastResort``; a logger's own filter sees them).
NOISY_RAY_LOGGERS: tuple[str, ...] = (
    "ray",
    "ray._private.authentication.authentication_token_setup",
    "ray.train.v2._internal.execution.controller.placement_group_cleaner",
)
_NOISE_RE = re.compile("|".join(f"(?:{p})" for p in RAY_NOISE))

#: ``PYTHONWARNINGS`` entries for Ray workers: warnings the training loops trigger on
#: purpose (the same ones pyproject's pytest ``filterwarnings`` ignores).
WORKER_WARNINGS: tuple[str, ...] = (
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",
    "ignore:Sparse CSR tensor support is in beta state:UserWarning",
)


def quiet_known_warnings() -> None:
    """In this process, ignore the harmless warnings of :data:`WORKER_WARNINGS` (what the
    Ray workers get through ``PYTHONWARNINGS``) unless debugging."""
    if debug_enabled():
        return
    import builtins
    import warnings

    for entry in WORKER_WARNINGS:
        action, message, category = entry.split(":", 2)
        warnings.filterwarnings(action, message=message, category=getattr(builtins, category, Warning))


def debug_enabled() -> bool:
    """Whether Ray's full output is wanted (``GRAPHREC_DEBUG`` set to a true value)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def set_debug(on: bool = True) -> None:
    """Turn debugging on for this process and everything it starts (Ray workers
    included: they inherit the environment). ``on=False`` leaves a user's
    ``GRAPHREC_DEBUG`` alone."""
    if on:
        os.environ[DEBUG_ENV] = "1"


def is_ray_noise(line: str) -> bool:
    """Whether ``line`` (one line of Ray output, with or without the ``(Actor pid=…)``
    prefix) is a known-harmless framework message (:data:`RAY_NOISE`)."""
    return _NOISE_RE.search(line) is not None


class RayNoiseFilter(logging.Filter):
    """Drops log records whose message :func:`is_ray_noise`; everything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not is_ray_noise(record.getMessage())
        except Exception:  # noqa: BLE001 - a malformed record is not ours to drop
            return True


def filter_forwarded_lines(data: dict) -> dict | None:
    """A log batch forwarded from Ray workers (``{"lines": [...], "pid": ..., ...}``)
    without its noise lines; ``None`` when nothing is left to print."""
    lines = data.get("lines") or []
    kept = [line for line in lines if not is_ray_noise(line)]
    if len(kept) == len(lines):
        return data
    return {**data, "lines": kept} if kept else None


def train_log_level() -> str:
    """Console level of Ray Train's ``ray.train`` loggers (controller and workers)."""
    return "INFO" if debug_enabled() else "WARNING"


def worker_env() -> dict[str, str]:
    """Environment variables for every Ray worker of graphrec's jobs: the debug switch
    and, unless debugging, ``PYTHONWARNINGS`` for :data:`WORKER_WARNINGS`. Keys the
    submitted job's runtime environment already sets are left to it (Ray refuses to
    merge the same key twice)."""
    env = {DEBUG_ENV: "1"} if debug_enabled() else {}
    if not debug_enabled():
        env["PYTHONWARNINGS"] = ",".join(w for w in (*WORKER_WARNINGS, os.environ.get("PYTHONWARNINGS")) if w)
    job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray inside `ray job submit` drivers
    if job:
        try:
            taken = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        except (ValueError, AttributeError):
            taken = {}
        env = {k: v for k, v in env.items() if k not in taken}
    return env


def quiet_ray_output() -> None:
    """Filter :data:`RAY_NOISE` out of what this driver prints: the worker lines Ray
    forwards (``log_to_driver``) and the driver's own ``ray`` loggers. No-op when
    debugging; safe to call more than once."""
    if debug_enabled():
        return
    _filter_ray_loggers()
    try:  # the forwarded lines go through one dispatcher handler, "ray_print_logs"
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray layout: print unfiltered rather than fail
        return
    with dispatcher._lock:
        handlers = list(dispatcher.handlers)
    for name, handler in handlers:
        if name == "ray_print_logs" and not isinstance(handler, _FilteredPrinter):
            dispatcher.remove_handler(name)
            dispatcher.add_handler(name, _FilteredPrinter(handler))


def _filter_ray_loggers() -> None:
    """:class:`RayNoiseFilter` on each of :data:`NOISY_RAY_LOGGERS`."""
    for name in NOISY_RAY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RayNoiseFilter) for f in logger.filters):
            logger.addFilter(RayNoiseFilter())


class _FilteredPrinter:
    """Ray's forwarded-log printer behind :func:`filter_forwarded_lines`."""

    def __init__(self, print_batch):
        self.print_batch = print_batch

    def __call__(self, data: dict) -> None:
        kept = filter_forwarded_lines(data)
        if kept is not None:
            self.print_batch(kept)


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 256) -> bool:
    """Start (or join, with ``address``) Ray unless it is running; returns whether this
    call started it. Local Ray gets ``num_cpus`` logical CPUs (default: the machine's),
    and a small object store (Ray 2.60 turns token authentication on for it unless
    ``RAY_AUTH_MODE`` says otherwise, creating ``~/.ray/auth_token`` if missing). Joining
    a cluster needs ``RAY_AUTH_MODE=token`` and the cluster's token here as on its nodes
    (README, "Running on a cluster"). Either
    way the workers get :func:`worker_env` and the output is quieted
    (:func:`quiet_ray_output`)."""
    import ray

    if ray.is_initialized():
        return False
    if not debug_enabled():
        _filter_ray_loggers()  # before ray.init: it logs too
    env = worker_env()
    runtime_env = {"env_vars": env} if env else None
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, configure_logging=False, log_to_driver=True, runtime_env=runtime_env)
    quiet_ray_output()
    return True
