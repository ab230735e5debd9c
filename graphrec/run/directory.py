"""A run directory, and the one way to open a finished run: ``open_run(run_dir) -> Run``.

Layout (every model)::

    run.json          model name, config, graph reference and checksum, files, summary
                      (written last: its presence means the run is finished)
    model.pt          {"model": state_dict} (+ model.pt.sha256)
    checkpoints/      ckpt-EEEEE-SSSSSSSSS/state.pt of an unfinished run (train/engine.py)
    ray/              Ray Train's own state when trained on Ray
    .graphrec         marker: a directory graphrec wrote (``--overwrite`` may replace it)

PinSage runs add ``neighborhoods/``, ``item_embeddings.npy`` and ``user_embeddings.npy``.
The graph is referenced both absolutely and relative to the run directory, so a run
moved together with its graph still opens; either way its checksum must match.

**Partitioned TwHIN runs** (``partitions: P > 1``) keep their node tables where training
left them, in ``partitions/`` (:class:`~graphrec.run.tables.PartitionTables`), and
``model.pt`` holds only what is not in them: ``{"rel_emb.weight": [R, d_r]}``. run.json
adds::

    "partitions": P,
    "partition_tables": {"path": "partitions",            # relative to the run directory
                         "partitioning": {"num_partitions": P, "min_nodes": m, "seed": s, "regroup": k},
                         "version": V, "dim": d},          # the tables' committed version
    "files": {"model.pt": sha256, "partitions/checkpoint_version.json": sha256, ...}

The tables' commit file names every table file with its SHA-256, so its digest in
``files`` pins the whole state: :class:`TwHINRun` reads exactly that version (a run whose
tables changed after it finished is refused) and, with ``verify``, checks each table
file against its SHA-256 as it reads it. Nothing assembles a partitioned run's tables at
open time: :meth:`TwHINRun.node_vector_chunks` streams any TwHIN run's node vectors in
bounded memory, and :attr:`TwHINRun.model` assembles the full model on first use (graphs
that fit: evaluation, notebooks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.graph.partition import NodePartitioning, PartitionSpec
from graphrec.graph.store import GraphStore, parse_edge_type
from graphrec.io import portable_path, resolve_portable, write_json
from graphrec.models.pinsage import PinSage
from graphrec.models.scores import ScoreFunction, make_score
from graphrec.models.twhin import TwHIN
from graphrec.run.checkpoint import (CorruptCheckpoint, checkpoint_digest, load_checkpoint, save_checkpoint,
                                     sha256_file)
from graphrec.run.config import PinSageConfig, TwHINConfig, parse_config
from graphrec.run.storage import VERSION_FILE, Manifest, StorageError
from graphrec.run.tables import PartitionTables
from graphrec.sampling.features import FeatureSpec, NodeFeatureTable
from graphrec.sampling.walks import ImportanceNeighborhoods, RandomWalkSampler, Step, importance_neighbors

RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
CHECKPOINTS_DIR = "checkpoints"
RAY_DIR = "ray"
NEIGHBORHOODS_DIR = "neighborhoods"
ITEM_VECTORS = "item_embeddings.npy"
USER_VECTORS = "user_embeddings.npy"
PARTITION_TABLES_KEY = "partition_tables"  # run.json: where a partitioned run's node tables are
RELATIONS_STATE = "rel_emb.weight"  # the one entry of a partitioned TwHIN run's model.pt
CHUNK_ROWS = 1 << 20  # TwHINRun.node_vector_chunks: most rows per chunk by default


# ---------------------------------------------------------------- building models from configs


def twhin_model(cfg: TwHINConfig, num_nodes: dict[str, int], edge_types, sparse: bool = False) -> TwHIN:
    """The TwHIN a config describes (``cfg.dim`` resolved), initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return TwHIN(num_nodes, [tuple(e) for e in edge_types], dim=int(cfg.dim), score=cfg.score, p_norm=cfg.p_norm,
                 init_scale=cfg.init_scale, sparse=sparse, max_norm=cfg.max_norm)


def pinsage_model(cfg: PinSageConfig, num_items: int, spec: FeatureSpec, sparse_ids: bool = False) -> PinSage:
    """The PinSage a config describes, initialised from ``cfg.seed`` (``sparse_ids``: for
    training, an ID table with sparse gradients)."""
    torch.manual_seed(cfg.seed)
    return PinSage(num_items, spec, dim=cfg.dim, hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers,
                   id_dim=cfg.id_dim, feature_dim=cfg.feature_dim, pooling=cfg.pooling,
                   normalize_output=cfg.normalize_output, learned_norm=cfg.learned_norm, sparse_ids=sparse_ids,
                   id_dropout=cfg.id_dropout)


def pinsage_features(store: GraphStore, cfg: PinSageConfig, reference: GraphStore | None = None
                     ) -> NodeFeatureTable | None:
    """The item feature table PinSage reads (``cfg.features``: names, ``None`` = all, ``[]``
    = none); ``None`` when the item type has no usable feature. ``reference``: the store
    the model trained on, when ``store`` is another (newer) graph: its features are then
    encoded with the reference's vocabularies and statistics (see
    :class:`~graphrec.sampling.features.NodeFeatureTable`)."""
    if cfg.features == []:
        return None
    names = cfg.features
    if names is None and reference is not None:
        names = reference.feature_names(cfg.item_type)
    if names is not None:
        have = store.feature_names(cfg.item_type)
        missing = [n for n in names if n not in have]
        if missing:
            raise GraphrecError(f"{store.path}: features {missing} are not features of node type {cfg.item_type!r} "
                                f"(has {have})")
    table = NodeFeatureTable(store, cfg.item_type, names, reference=reference)
    spec = table.spec
    return table if (spec.categorical or spec.multi_categorical or spec.numeric) else None


def pinsage_sampler(store: GraphStore, cfg: PinSageConfig) -> RandomWalkSampler:
    """The metapath random walks a PinSage config describes, on ``store``."""
    return RandomWalkSampler(store, [(m.path, m.weight) for m in cfg.walks.metapaths], cfg.walks.restart_prob)


def fixed_neighborhoods(sampler: RandomWalkSampler, cfg: PinSageConfig, stream: int = 101) -> ImportanceNeighborhoods:
    """Importance neighbourhoods of every item under ``cfg.walks`` (deterministic given
    ``cfg.seed`` and the generator ``stream``)."""
    w = cfg.walks
    rng = np.random.default_rng([cfg.seed, stream])
    return importance_neighbors(sampler, np.arange(sampler.num_nodes), w.top_t, w.num_walks, w.walk_length, rng)


def check_pinsage_graph(cfg: PinSageConfig, store: GraphStore) -> None:
    """Refuse a config this graph cannot train or embed (before a run directory, an
    inference directory or a worker exists)."""
    for m in cfg.walks.metapaths:
        for r in m.path:
            if Step.parse(r).edge_type not in store.edge_types:
                raise GraphrecError(f"walks.metapaths: relation {r!r} is not in {store.path} "
                                    f"(has {[':'.join(e) for e in store.edge_types]})")
    if parse_edge_type(cfg.interactions) not in store.edge_types:
        raise GraphrecError(f"interactions: relation {cfg.interactions!r} is not in {store.path}")
    pinsage_features(store, cfg)
    if cfg.cold_simulation > 0 and cfg.walks.refresh != "fixed":
        raise GraphrecError("cold_simulation needs walks.refresh: fixed (side neighbourhoods are tabled once)")


# ---------------------------------------------------------------- writing


def write_run(run_dir: str | Path, model: str, cfg, store: GraphStore, model_state: dict, summary: dict,
              tables: PartitionTables | None = None, **info) -> dict:
    """Finish a run: ``model.pt`` (+ checksum) first, then ``run.json`` (last, so that its
    presence means the run is complete). ``info``: model-specific entries of run.json.
    ``tables``: the node tables of a partitioned TwHIN run (their committed head is the
    finished state; ``model_state`` then holds the rest): recorded as ``partitions``,
    ``partition_tables`` and their commit file's digest in ``files`` (module docstring).
    Returns run.json's content."""
    run_dir = Path(run_dir)
    save_checkpoint(run_dir, {"model": model_state}, name=MODEL_FILE)
    files = {MODEL_FILE: checkpoint_digest(run_dir, MODEL_FILE)}  # hashed once, by save_checkpoint
    for name in (ITEM_VECTORS, USER_VECTORS):
        if (run_dir / name).is_file():
            files[name] = sha256_file(run_dir / name)
    if tables is not None:
        record, digest = _tables_record(run_dir, tables)
        info = {**info, "partitions": tables.part.spec.num_partitions, PARTITION_TABLES_KEY: record}
        files[_tables_commit_file(record["path"])] = digest
    doc = {"model": model, "config": cfg.model_dump(mode="json"),
           "graph": str(Path(store.path).resolve()),
           "graph_relpath": portable_path(store.path, run_dir)["relpath"],
           "graph_checksum": store.checksum, **info, "files": files, "summary": summary}
    write_json(run_dir / RUN_FILE, doc)
    return doc


def _tables_commit_file(path: str) -> str:
    """The key of a partitioned run's tables in run.json's ``files``: their commit file."""
    return f"{path.rstrip('/')}/{VERSION_FILE}"


def _tables_record(run_dir: Path, tables: PartitionTables) -> tuple[dict, str]:
    """``(run.json's partition_tables entry, sha256 of the tables' commit file)`` for the
    tables' committed head (their path relative to ``run_dir`` when inside it)."""
    storage = tables.ckpt.storage
    raw = storage.get_bytes(VERSION_FILE)
    head = Manifest.from_dict(json.loads(raw), storage.url(VERSION_FILE))
    path = storage.uri if storage.is_local else storage.location
    if storage.is_local:
        root, base = Path(storage.root).resolve(), run_dir.resolve()
        if root == base or base in root.parents:
            path = Path(os.path.relpath(root, base)).as_posix()
    record = {"path": path, "partitioning": dataclasses.asdict(tables.part.spec), "version": head.version,
              "dim": tables.dim}
    return record, hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------- opening


def read_run_info(run_dir: str | Path) -> dict:
    """``run.json`` of a finished run; :class:`GraphrecError` when ``run_dir`` is not one."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise GraphrecError(f"{run_dir}: no such run directory")
    if not path.is_file() or not (run_dir / MODEL_FILE).is_file():
        raise GraphrecError(f"{run_dir}: not a finished training run (needs {RUN_FILE} and {MODEL_FILE})")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GraphrecError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(info, dict) or info.get("model") not in RUN_KINDS:
        raise GraphrecError(f"{path}: unknown model {info.get('model') if isinstance(info, dict) else info!r} "
                            f"(known: {sorted(RUN_KINDS)})")
    return info


def run_model(run_dir: str | Path) -> str:
    """``twhin`` | ``pinsage``: the model of a finished run directory."""
    return read_run_info(run_dir)["model"]


class Run:
    """A finished training run: ``dir``, ``info`` (run.json), ``config`` (typed), ``store``
    (the graph it was trained on, checksum-checked) and ``model`` (eval mode, CPU)."""

    model_name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, run_dir: Path, info: dict, store: GraphStore, verify: bool = False):
        self.dir, self.info, self.store = Path(run_dir), info, store
        self.config = parse_config(info["config"], self.config_class, origin=str(self.dir / RUN_FILE))
        self._open(verify)

    def _open(self, verify: bool) -> None:
        """Load what the run serves at open time (by default its model, from model.pt)."""
        self.model = self._build_model()
        self.model.load_state_dict(self._load_model_state(verify))
        self.model.eval()

    def _build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def _load_model_state(self, verify: bool) -> dict:
        expected = self.info.get("files", {}).get(MODEL_FILE)
        path = self.dir / MODEL_FILE
        try:
            recorded = checkpoint_digest(self.dir, MODEL_FILE)  # None: a run from before checksums
            if verify and expected is not None and recorded is not None and expected != recorded:
                raise CorruptCheckpoint(f"{path}: its checksum file differs from the one in {RUN_FILE}")
            state = load_checkpoint(self.dir, MODEL_FILE, verify=recorded is not None)  # one hash of the file
        except CorruptCheckpoint as err:
            raise GraphrecError(f"{err} (the run's model file is damaged; retrain or restore it)") from None
        return state["model"]

    @property
    def summary(self) -> dict:
        return self.info["summary"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.dir)!r}, graph={str(self.store.path)!r})"


class TwHINRun(Run):
    """A finished TwHIN run, unpartitioned or partitioned (module docstring).

    * :meth:`node_vector_chunks` — every node vector of a type in bounded memory, the same
      way for both kinds of run; :meth:`relation_vectors`, :attr:`score_fn`,
      :attr:`node_types`, :attr:`num_nodes`, :attr:`edge_types`, :attr:`dim` — the rest
      of the model without its tables;
    * :attr:`model` — the whole :class:`~graphrec.models.twhin.TwHIN` (eval mode, CPU):
      loaded at open time for an unpartitioned run, assembled from the tables on first
      use for a partitioned one (graphs whose tables fit in memory);
    * :attr:`tables` — a partitioned run's :class:`~graphrec.run.tables.PartitionTables`
      (``None`` otherwise), read at the version run.json pins (:attr:`tables_manifest`).
    """

    model_name = "twhin"
    config_class = TwHINConfig

    def _open(self, verify: bool) -> None:
        state = self._load_model_state(verify)
        self.tables: PartitionTables | None = None
        self.tables_manifest: Manifest | None = None
        self._model: TwHIN | None = None
        if PARTITION_TABLES_KEY not in self.info:
            model = self._build_model()
            model.load_state_dict(state)
            self._model = model.eval()
            self._relations = model.rel_emb.weight.detach()
            return
        path = self.dir / MODEL_FILE
        rel = state.get(RELATIONS_STATE) if isinstance(state, dict) else None
        want = (len(self.edge_types), self.score_fn.relation_dim(self.dim))
        if not isinstance(rel, torch.Tensor) or set(state) != {RELATIONS_STATE} or tuple(rel.shape) != want:
            raise GraphrecError(f"{path}: a partitioned run's model file holds {{{RELATIONS_STATE!r}: {list(want)}}}, "
                                f"found {_describe_state(state)}")
        self._relations = rel
        self.tables, self.tables_manifest = self._open_tables(verify)

    def _open_tables(self, verify: bool) -> tuple[PartitionTables, Manifest]:
        """The tables run.json points at, pinned to the commit whose digest it records."""
        where = self.dir / RUN_FILE
        record = self.info[PARTITION_TABLES_KEY]
        try:
            spec = PartitionSpec(**record["partitioning"])
            path = str(record["path"])
        except (KeyError, TypeError) as err:
            raise GraphrecError(f"{where}: {PARTITION_TABLES_KEY} is malformed ({err!r})") from None
        root = path if "://" in path or Path(path).is_absolute() else str(self.dir / path)
        part = NodePartitioning({t: int(n) for t, n in self.num_nodes.items()}, spec)
        tables = PartitionTables(root, part, self.dim, verify_paths=None if verify else set())
        storage = tables.ckpt.storage
        key = _tables_commit_file(path)
        expected = self.info.get("files", {}).get(key)
        try:
            raw = storage.get_bytes(VERSION_FILE)
        except StorageError as err:
            raise GraphrecError(f"{err} (the partitioned run's tables; restore {root} or retrain)") from None
        if expected is None or hashlib.sha256(raw).hexdigest() != expected:
            raise GraphrecError(f"{storage.url(VERSION_FILE)}: sha256 differs from the one in {where} (the run's "
                                "tables were changed or damaged after it finished; restore them or retrain)")
        manifest = Manifest.from_dict(json.loads(raw), storage.url(VERSION_FILE))
        for t in part.node_types:  # run.json's partitioning must be the tables' (rows line up)
            for p, size in enumerate(part.sizes(t)):
                name = tables.name(t, p, "emb")
                entry = manifest.files.get(name)
                if entry is None or entry.shape != (int(size), self.dim):
                    raise GraphrecError(f"{storage.url(VERSION_FILE)}: {name} is "
                                        f"{'missing' if entry is None else list(entry.shape)}, the partitioning in "
                                        f"{where} needs {[int(size), self.dim]} (node type {t!r}, partition {p})")
        return tables, manifest

    def _build_model(self) -> TwHIN:
        return twhin_model(self.config, self.info["num_nodes"], self.info["edge_types"])

    # ---- the model without its tables

    @property
    def partitioned(self) -> bool:
        return self.tables is not None

    @property
    def node_types(self) -> list[str]:
        return list(self.info["num_nodes"])

    @property
    def num_nodes(self) -> dict[str, int]:
        return {t: int(n) for t, n in self.info["num_nodes"].items()}

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return [tuple(e) for e in self.info["edge_types"]]

    @property
    def dim(self) -> int:
        return int(self.config.dim)

    @property
    def score_fn(self) -> ScoreFunction:
        return make_score(self.config.score, self.config.p_norm)

    def relation_vectors(self) -> dict[tuple[str, str, str], torch.Tensor]:
        """``{edge_type: [d_r]}`` in training order (views of the relation table)."""
        return {et: self._relations[i] for i, et in enumerate(self.edge_types)}

    def node_vector_chunks(self, node_type: str, max_rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every node vector of ``node_type`` exactly once, as ``(internal ids int64 [n],
        vectors float32 [n, dim])`` chunks of ``n ≤ max_rows`` rows (read-only; do not
        keep them past the next chunk if memory matters).

        Unpartitioned run: slices of the loaded table in internal-id order. Partitioned
        run: partition by partition in the tables' row order (ids follow the
        partitioning's permutation), each partition read on its own (memory-mapped when
        local) and never a whole-type array: memory is bounded by one partition."""
        if node_type not in self.info["num_nodes"]:
            raise GraphrecError(f"{self.dir}: no node type {node_type!r} (has {self.node_types})")
        max_rows = max(1, int(max_rows))
        if self.tables is None:
            table = self.model.node_embeddings(node_type).detach().numpy()
            for lo in range(0, table.shape[0], max_rows):
                hi = min(lo + max_rows, table.shape[0])
                yield np.arange(lo, hi, dtype=np.int64), table[lo:hi]
            return
        for ids, emb in self.tables.chunks(node_type, self.tables_manifest):
            ids = np.asarray(ids, dtype=np.int64)
            for lo in range(0, ids.shape[0], max_rows):
                yield ids[lo : lo + max_rows], emb[lo : lo + max_rows]
            del emb

    # ---- the whole model

    @property
    def model(self) -> TwHIN:
        """The whole TwHIN (eval mode); a partitioned run's is assembled on first use and
        kept (its tables must fit in memory)."""
        if self._model is None:
            self._model = self._assemble()
        return self._model

    def _assemble(self) -> TwHIN:
        model = self.tables.fill(self._build_model(), self.tables_manifest, relations=False)
        with torch.no_grad():
            model.rel_emb.weight.copy_(self._relations)
        return model.eval()


class PinSageRun(Run):
    """A finished PinSage run: ``model`` (:class:`~graphrec.models.pinsage.PinSage`), the
    fixed ``neighborhoods`` and the final ``item_vectors`` / ``user_vectors`` (float32,
    memory-mapped)."""

    model_name = "pinsage"
    config_class = PinSageConfig

    def __init__(self, run_dir: Path, info: dict, store: GraphStore, verify: bool = False):
        super().__init__(run_dir, info, store, verify)
        self.neighborhoods = ImportanceNeighborhoods.load(self.dir / NEIGHBORHOODS_DIR)
        self.item_vectors = self._vectors(ITEM_VECTORS, verify)
        self.user_vectors = self._vectors(USER_VECTORS, verify)

    def _build_model(self) -> PinSage:
        return pinsage_model(self.config, self.info["num_items"], FeatureSpec.from_dict(self.info["feature_spec"]))

    def _vectors(self, name: str, verify: bool) -> np.ndarray:
        path = self.dir / name
        expected = self.info.get("files", {}).get(name)
        if verify and expected is not None and sha256_file(path) != expected:
            raise GraphrecError(f"{path}: sha256 differs from the one in {RUN_FILE} (damaged; retrain the run)")
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise GraphrecError(f"{path}: cannot be read ({err})") from None

    @property
    def interactions(self) -> tuple[str, str, str]:
        return parse_edge_type(self.config.interactions)

    def features(self, store: GraphStore | None = None) -> NodeFeatureTable | None:
        """The item features the model reads: of its own graph, or of ``store`` (a newer
        graph) encoded as its own graph's were."""
        if store is None or store is self.store:
            return pinsage_features(self.store, self.config)
        table = pinsage_features(store, self.config, reference=self.store)
        spec = table.spec.to_dict() if table is not None else FeatureSpec().to_dict()
        if spec != FeatureSpec.from_dict(self.info["feature_spec"]).to_dict():
            raise GraphrecError(f"{store.path}: item features {spec} differ from the run's {self.info['feature_spec']}")
        return table


def _describe_state(state) -> str:
    if not isinstance(state, dict):
        return type(state).__name__
    return "{" + ", ".join(f"{k!r}: {list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}"
                           for k, v in state.items()) + "}"


RUN_KINDS: dict[str, type[Run]] = {"twhin": TwHINRun, "pinsage": PinSageRun}


def run_graph(run_dir: str | Path, info: dict, graph: str | Path | None = None) -> GraphStore:
    """The graph store of a run: ``graph`` if given, else the one run.json references
    (relative to the run directory first); its checksum must match."""
    run_dir = Path(run_dir)
    if graph is None:
        ref = {"path": info["graph"], "relpath": info.get("graph_relpath")}
        graph = resolve_portable(ref, run_dir)
    store = GraphStore(graph)
    if store.checksum != info["graph_checksum"]:
        raise GraphrecError(f"{store.path}: graph checksum {store.checksum[:12]} differs from the one {run_dir} was "
                            f"trained on ({info['graph_checksum'][:12]})")
    return store


def open_run(run_dir: str | Path, graph: str | Path | None = None, expect: str | None = None,
             verify: bool = False) -> Run:
    """Open a finished run of any model. ``graph``: the store to pair it with (default:
    the one it was trained on; its checksum must match). ``expect``: the model name
    required (a clear error otherwise). ``verify``: check the SHA-256 of its files."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if expect is not None and info["model"] != expect:
        raise GraphrecError(f"{run_dir}: a {info['model']!r} run, not {expect}")
    store = run_graph(run_dir, info, graph)
    return RUN_KINDS[info["model"]](run_dir, info, store, verify=verify)
