"""The online retrieval service: a :class:`~graphrec.retrieval.retriever.Retriever` on
Ray Serve, answering JSON over HTTP (``graphrec serve``; ``serve deploy`` with
``configs/serve.yaml`` on a cluster).

Endpoints (``k`` defaults to :attr:`ServiceConfig.default_k`):

- ``GET /similar?id=ID&k=K`` → ``{"id", "results": [{"id", "score"}, ...]}``;
- ``GET /recommend?user=ID&k=K[&exclude_seen=true]`` → ``{"user", "results"}``;
- ``POST /recommend`` ``{"items": [ID, ...], "k": K}`` → ``{"items", "results",
  "unknown"}`` (a session's items, oldest first; unknown ones are left out and listed);
- ``GET /healthz`` → ``{"status": "ok", "index", "count", "dim", "version"}``;
- ``POST /reload`` ``{"index": DIR}`` → loads ``DIR`` beside the serving index, swaps
  it in, and answers once every replica serves it.

Unknown ids answer 404, a bad ``k`` or body 422, a request the index cannot answer
(``exclude_seen`` without its graph, users of an index built without ``--query``, a
reload of a bad directory or another dimension) 400 — each ``{"error": ...}``; the
service never crashes on input.

Throughput: each kind of request is batched (``@serve.batch``: up to
``max_batch_size`` requests that arrived while the previous batch searched, waiting at
most ``batch_wait_timeout_s`` for more) into one FAISS search, run on a worker thread
so the replica's event loop keeps accepting requests.

Reload: the replica that takes ``POST /reload`` loads the new index on a loader thread
(searches go on against the old one), checks it, swaps its reference (a batch reads the
reference once, so it never mixes two indexes), and publishes ``(version, DIR)`` to
the :class:`IndexVersion` deployment; every other replica polls it every
``poll_interval_s`` and does the same. Replicas started later (a restart) load the
published version too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import Field
from ray import serve

from graphrec.config_base import StrictConfig, parse_model
from graphrec.errors import GraphrecError

log = logging.getLogger(__name__)

APP_NAME = "graphrec"


class ServiceConfig(StrictConfig):
    """One retrieval service: the index it serves and how it batches and scales (the
    ``args`` of ``graphrec.retrieval.service:build_app`` in a Serve config file)."""

    index: str = Field(..., description="index directory to serve (`graphrec index`; built with --query for "
                                        "user recommendations)")
    graph: str | None = Field(None, description="graph store whose interactions exclude_seen leaves out (default: "
                                                "the graph the index's embeddings were exported from, if unchanged)")
    replicas: int = Field(1, ge=1, description="Serve replicas, each holding the index")
    replica_cpus: float = Field(1.0, ge=0, description="logical CPUs each replica reserves")
    search_threads: int = Field(1, ge=1, description="FAISS (OpenMP) threads per replica")
    default_k: int = Field(10, ge=1, description="k when a request gives none")
    max_k: int = Field(1000, ge=1, description="largest k a request may ask for (larger: 422)")
    max_session_items: int = Field(1000, ge=1, description="most items a POST /recommend body may list (more: 422)")
    max_batch_size: int = Field(64, ge=1, description="most requests of one kind answered by one FAISS search")
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="how long a batch waits for more requests once it "
                                        "has one (0: take what queued while the previous batch searched)")
    max_ongoing_requests: int = Field(256, ge=1, description="requests a replica accepts at once (Serve queues the "
                                      "rest); at least the batch size, or batches never fill")
    allow_reload: bool = Field(True, description="accept POST /reload (false where clients that may not swap the "
                               "index reach the port; 403 then)")
    poll_interval_s: float = Field(0.5, gt=0, description="how often a replica checks for a reloaded index")
    reload_timeout_s: float = Field(120.0, gt=0, description="POST /reload waits this long for every replica")


class IndexVersion:
    """The index every replica should serve, ``(version, index_dir)``, and the version
    each replica serves (one replica of its own deployment)."""

    def __init__(self, index: str):
        self.version, self.index, self.serving = 0, index, {}

    def current(self) -> tuple[int, str]:
        return self.version, self.index

    def publish(self, index: str) -> int:
        self.version += 1
        self.index = index
        return self.version

    def report(self, replica: str, version: int) -> None:
        self.serving[replica] = version

    def replicas_at(self, version: int) -> int:
        return sum(v >= version for v in self.serving.values())


def _json(status: int, body: dict):
    from starlette.responses import Response

    return Response(json.dumps(body), status_code=status, media_type="application/json")


class BadRequest(Exception):
    """Input the service refuses: ``status`` and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_k(value, cfg: ServiceConfig) -> int:
    """``k`` from a query string or JSON body: an integer in ``1..max_k`` (422 else)."""
    if value is None:
        return cfg.default_k
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(422, f"k must be an integer, got {value!r}")
    try:
        k = int(value)
    except ValueError:
        raise BadRequest(422, f"k must be an integer, got {value!r}") from None
    if not 1 <= k <= cfg.max_k:
        raise BadRequest(422, f"k must be between 1 and {cfg.max_k}, got {k}")
    return k


def parse_flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    v = value.lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise BadRequest(422, f"{name} must be true or false, got {value!r}")


def _id_list(body: dict, cfg: ServiceConfig) -> list:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise BadRequest(422, "body must have \"items\": a non-empty list of item ids")
    if len(items) > cfg.max_session_items:
        raise BadRequest(422, f"at most {cfg.max_session_items} items, got {len(items)}")
    if not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in items):
        raise BadRequest(422, "items must be strings or integers")
    return items


class RetrievalService:
    """The Serve deployment (HTTP ingress): one :class:`Retriever` per replica, requests
    batched per kind, reloads followed through :class:`IndexVersion`."""

    async def __init__(self, config: dict, versions):
        import faiss
        import torch

        self.cfg = ServiceConfig(**config)
        faiss.omp_set_num_threads(self.cfg.search_threads)
        torch.set_num_threads(1)
        self.versions = versions
        self._search = ThreadPoolExecutor(1, thread_name_prefix="graphrec-search")
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="graphrec-load")
        self.replica = serve.get_replica_context().replica_id.unique_id
        version, index = await versions.current.remote()
        self.version, self.retriever = version, await self._load(index)
        await versions.report.remote(self.replica, version)
        for method in (self._similar, self._users, self._session):
            method.set_max_batch_size(self.cfg.max_batch_size)
            method.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        self._reloading = asyncio.Lock()
        self._failed = None
        self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def _load(self, index: str):
        from graphrec.retrieval.retriever import Retriever

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._loader, lambda: Retriever(index, graph=self.cfg.graph))

    async def _follow(self) -> None:
        """Serve the published index version (another replica took the reload)."""
        while True:
            await asyncio.sleep(self.cfg.poll_interval_s)
            try:
                version, index = await self.versions.current.remote()
            except Exception:  # noqa: BLE001 - IndexVersion restarting or the app stopping: ask again later
                continue
            if version <= self.version or version == self._failed:
                continue
            try:
                async with self._reloading:
                    if version > self.version:
                        self.retriever, self.version = await self._load(index), version
                        log.warning("replica %s serves %s (version %d)", self.replica, index, version)
                await self.versions.report.remote(self.replica, self.version)
            except Exception as err:  # noqa: BLE001 - keep following; the old index keeps serving
                self._failed = version  # not retried every poll; a later version is tried again
                log.warning("replica %s: could not load version %s (%s); still serving %s", self.replica, version,
                            err, self.retriever.dir)

    # ---- batched searches: one FAISS call per batch, off the event loop ----------------

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._search, fn, *args)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _similar(self, requests: list[tuple]) -> list:
        r = self.retriever
        return await self._run(r.similar, [q for q, _ in requests], [k for _, k in requests])

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _users(self, requests: list[tuple]) -> list:
        r = self.retriever
        return await self._run(r.recommend_users, [u for u, _, _ in requests], [k for _, k, _ in requests],
                               [x for _, _, x in requests])

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _session(self, requests: list[tuple]) -> list:
        r = self.retriever
        return await self._run(r.recommend_session, [items for items, _ in requests], [k for _, k in requests])

    # ---- HTTP ---------------------------------------------------------------------------

    async def __call__(self, request):
        try:
            return await self._route(request)
        except BadRequest as err:
            return _json(err.status, {"error": str(err)})
        except GraphrecError as err:
            return _json(400, {"error": str(err)})
        except Exception as err:  # noqa: BLE001 - a request never takes the replica down
            log.exception("request %s %s failed", request.method, request.url.path)
            return _json(500, {"error": f"{type(err).__name__}: {err}"})

    async def _route(self, request):
        path, method, q = request.url.path.rstrip("/") or "/", request.method, request.query_params
        if path == "/similar" and method == "GET":
            if not q.get("id"):
                raise BadRequest(422, "give ?id=ITEM")
            hits = await self._similar((q["id"], parse_k(q.get("k"), self.cfg)))
            if hits is None:
                raise BadRequest(404, f"unknown item id {q['id']!r}")
            return _json(200, {"id": hits.query, "results": hits.to_json()})
        if path == "/recommend" and method == "GET":
            if not q.get("user"):
                raise BadRequest(422, "give ?user=USER")
            k, exclude = parse_k(q.get("k"), self.cfg), parse_flag(q.get("exclude_seen"), "exclude_seen")
            r = self.retriever
            if r.user_vectors is None or (exclude and r.seen is None):
                raise BadRequest(400, r.seen_error)
            hits = await self._users((q["user"], k, exclude))
            if hits is None:
                raise BadRequest(404, f"unknown user id {q['user']!r}")
            return _json(200, {"user": hits.query, "results": hits.to_json()})
        if path == "/recommend" and method == "POST":
            body = await self._body(request)
            items, k = _id_list(body, self.cfg), parse_k(body.get("k"), self.cfg)
            hits = await self._session((items, k))
            if hits is None:
                raise BadRequest(404, f"none of the items is known: {items[:10]}")
            return _json(200, {"items": items, "results": hits.to_json(), "unknown": hits.unknown})
        if path == "/healthz" and method == "GET":
            r = self.retriever
            return _json(200, {"status": "ok", "index": str(r.dir), "count": r.count, "dim": r.dim,
                               "version": self.version})
        if path == "/reload" and method == "POST":
            if not self.cfg.allow_reload:
                raise BadRequest(403, "reloading is turned off for this service (allow_reload: false)")
            body = await self._body(request)
            if not isinstance(body.get("index"), str) or not body["index"]:
                raise BadRequest(422, "body must have \"index\": an index directory")
            return await self._reload(body["index"])
        if path in ("/similar", "/recommend", "/healthz", "/reload"):
            raise BadRequest(405, f"{method} is not allowed on {path}")
        raise BadRequest(404, f"no endpoint {path} (see /healthz, /similar, /recommend, /reload)")

    @staticmethod
    async def _body(request) -> dict:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(422, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise BadRequest(422, "the body must be a JSON object")
        return body

    async def _reload(self, index: str):
        path = str(Path(index).resolve())
        async with self._reloading:
            try:
                new = await self._load(path)
            except GraphrecError as err:
                raise BadRequest(400, f"not reloaded, still serving {self.retriever.dir}: {err}") from None
            except Exception as err:  # noqa: BLE001 - a corrupt index file, ...
                raise BadRequest(400, f"not reloaded, still serving {self.retriever.dir}: "
                                      f"{type(err).__name__}: {err}") from None
            if new.dim != self.retriever.dim:
                raise BadRequest(400, f"not reloaded: {path} has dimension {new.dim}, the served index "
                                      f"{self.retriever.dim}")
            version = await self.versions.publish.remote(path)
            self.retriever, self.version = new, version
            await self.versions.report.remote(self.replica, version)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.reload_timeout_s
        while (ready := await self.versions.replicas_at.remote(version)) < self.cfg.replicas:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        return _json(200, {"status": "ok", "index": path, "count": new.count, "dim": new.dim, "version": version,
                           "replicas": ready})


def build_app(args: dict):
    """The Serve application (``import_path: graphrec.retrieval.service:build_app`` in a
    Serve config file; ``args``: a :class:`ServiceConfig`)."""
    cfg = parse_model(args, ServiceConfig, origin="build_app args")
    # stopping waits for in-flight requests (searches take milliseconds), not Serve's default 20 s
    stopping = {"graceful_shutdown_wait_loop_s": 0.2, "graceful_shutdown_timeout_s": 5.0}
    versions = serve.deployment(IndexVersion, name="IndexVersion", num_replicas=1,
                                ray_actor_options={"num_cpus": 0}, **stopping).bind(cfg.index)
    ingress = serve.deployment(RetrievalService, name="RetrievalService", num_replicas=cfg.replicas,
                               max_ongoing_requests=cfg.max_ongoing_requests,
                               ray_actor_options={"num_cpus": cfg.replica_cpus}, **stopping)
    return ingress.bind(cfg.model_dump(), versions)


def check_index(cfg: ServiceConfig) -> None:
    """Open the index once here, so a bad directory is one line before Ray starts."""
    from graphrec.retrieval.retriever import Retriever

    Retriever(cfg.index, graph=cfg.graph)


INGRESS = ("proxy", "direct")


def direct_ingress_env(port: int, replicas: int) -> dict[str, str]:
    """Ray Serve's direct ingress (``RAY_SERVE_ENABLE_DIRECT_INGRESS``, Ray ≥ 2.5x): each
    replica runs the HTTP server itself, replica ``i`` on ``port + i`` (Serve allocates
    ports from ``[port, port + replicas)``), so a request skips the proxy actor and its
    hop to the replica; the replicas drain 0.5 s on stop (no external load balancer
    to deregister from here)."""
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + replicas),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0.5"}


def ingress_ports(ingress: str, port: int, replicas: int) -> tuple[int, list[int]]:
    """``(the HTTP port of Serve's proxy, the replicas' own ports)``: ``proxy``: ``port``,
    none; ``direct``: ``port + replicas``, ``port .. port + replicas − 1``."""
    if ingress == "proxy":
        return port, []
    return port + replicas, list(range(port, port + replicas))


DELETE_TIMEOUT_S = 20.0


def _cluster_http_options():
    """The HTTP options Serve runs with (cluster-wide: set by whoever started Serve
    there), or ``None`` where this Ray version does not say."""
    try:
        from ray.serve.context import _get_global_client

        return _get_global_client().http_config
    except Exception:  # noqa: BLE001 - a private API: no warning rather than a failure
        return None


def _bounded(fn, timeout: float, message: str) -> None:
    """``fn()`` on a daemon thread, waited for at most ``timeout`` seconds (then a warning):
    stopping must not hang on a cluster that is already going away."""
    import threading

    errors = []

    def run():
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        log.warning(message)
    elif errors:
        log.warning("stopping: %s", errors[0])


def check_ports_free(host: str, ports, reuse_address: bool = True) -> None:
    """Refuse, in one line, ports this service could not listen on, before Ray starts
    (Serve would otherwise retry its proxy or replicas for a long while). Direct-ingress
    replicas bind without ``SO_REUSEADDR`` (Ray 2.60), so for them (``reuse_address=False``)
    a port whose connections of an earlier server are still closing (``TIME_WAIT``,
    about a minute) is refused too; Serve's proxy (uvicorn) sets it."""
    import socket

    for p in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, p))
            except OSError as err:
                closing = "" if reuse_address else ", or an earlier server's connections are closing (about a minute)"
                raise GraphrecError(f"cannot listen on {host}:{p} ({err.strerror}): another server uses it{closing}; "
                                    "choose another --port") from None


def serve_forever(cfg: ServiceConfig, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
                  ingress: str = "proxy", ready=None) -> None:
    """Start Ray (local unless ``address``) and Serve on ``host:port``, deploy
    :func:`build_app`, and block until SIGINT or SIGTERM; then delete the application
    (in-flight requests finish) and shut down a Ray this call started. ``ready(urls)``
    is called once the service answers, with the URLs it listens on.

    ``ingress`` (:func:`ingress_ports`): ``proxy``, Serve's HTTP proxy actor; ``direct``,
    each replica answers HTTP itself (:func:`direct_ingress_env`; local Ray only: on a
    cluster, set those variables on every node)."""
    import signal
    import threading

    import ray

    from graphrec.ray_env import debug_enabled, init_ray

    if ingress not in INGRESS:
        raise GraphrecError(f"--ingress {ingress}: choose one of {', '.join(INGRESS)}")
    check_index(cfg)
    if ingress != "proxy" and address:
        raise GraphrecError(f"--ingress {ingress} starts local Ray with Serve's settings for it; on a cluster set "
                            + " ".join(f"{k}=..." for k in direct_ingress_env(port, cfg.replicas))
                            + " on every node instead")
    http_port, replica_ports = ingress_ports(ingress, port, cfg.replicas)
    if address is None and not ray.is_initialized():  # a local Serve: its ports must be free here
        check_ports_free(host, [http_port])
        check_ports_free(host, replica_ports, reuse_address=False)
        if replica_ports:
            os.environ.update(direct_ingress_env(replica_ports[0], cfg.replicas))  # inherited by the Serve actors
    urls = [f"http://{host}:{p}" for p in replica_ports] + [f"http://{host}:{http_port}"]
    stop = threading.Event()
    cpus = max(os.cpu_count() or 1, int(cfg.replicas * cfg.replica_cpus + 0.999))
    started = init_ray(address, num_cpus=cpus)
    serving = False

    def on_signal(*_):
        if not serving:  # still deploying (Serve may retry failing replicas for long): interrupt that
            raise KeyboardInterrupt
        stop.set()

    # after ray.init, whose own SIGTERM handler would end the process without shutting down
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    quiet = {"enable_access_log": False, "log_level": "DEBUG" if debug_enabled() else "WARNING"}
    if not debug_enabled():  # "Started Serve", "Deploying new version", ...: the ready line says it
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        serve.start(http_options={"host": host, "port": http_port}, logging_config=quiet)
        serve.run(build_app(cfg.model_dump()), name=APP_NAME, route_prefix="/", logging_config=quiet)
        http = _cluster_http_options() if address is not None else None
        if http is not None:  # a cluster whose Serve was already running keeps its own HTTP address
            if (http.host, http.port) != (host, port):
                log.warning("Serve was already running on the cluster: its proxies listen on %s:%s, not %s:%s",
                            http.host, http.port, host, port)
                urls = [f"http://{http.host}:{http.port}"]
        serving = True
        if ready is not None:
            ready(urls)
        while not stop.wait(0.5):
            pass
    finally:
        try:  # this app only (drains its replicas): on a cluster, Serve may run others'
            _bounded(lambda: serve.delete(APP_NAME), DELETE_TIMEOUT_S,
                     "Serve did not delete the application in time (its GCS gone? a SIGTERM to the whole "
                     "process group stops Ray's own processes too); shutting down anyway")
        finally:
            if started:
                ray.shutdown()
            for s, h in previous.items():
                signal.signal(s, h)
