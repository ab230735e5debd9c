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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.graph.store import GraphStore, parse_edge_type
from graphrec.io import portable_path, resolve_portable, write_json
from graphrec.models.pinsage import PinSage
from graphrec.models.twhin import TwHIN
from graphrec.run.checkpoint import (CorruptCheckpoint, checkpoint_digest, load_checkpoint, save_checkpoint,
                                     sha256_file)
from graphrec.run.config import PinSageConfig, TwHINConfig, parse_config
from graphrec.sampling.features import FeatureSpec, NodeFeatureTable
from graphrec.sampling.walks import ImportanceNeighborhoods

RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
CHECKPOINTS_DIR = "checkpoints"
RAY_DIR = "ray"
NEIGHBORHOODS_DIR = "neighborhoods"
ITEM_VECTORS = "item_embeddings.npy"
USER_VECTORS = "user_embeddings.npy"


# ---------------------------------------------------------------- building models from configs


def twhin_model(cfg: TwHINConfig, num_nodes: dict[str, int], edge_types, sparse: bool = False) -> TwHIN:
    """The TwHIN a config describes (``cfg.dim`` resolved), initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return TwHIN(num_nodes, [tuple(e) for e in edge_types], dim=int(cfg.dim), score=cfg.score, p_norm=cfg.p_norm,
                 init_scale=cfg.init_scale, sparse=sparse, max_norm=cfg.max_norm)


def pinsage_model(cfg: PinSageConfig, num_items: int, spec: FeatureSpec) -> PinSage:
    """The PinSage a config describes, initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return PinSage(num_items, spec, dim=cfg.dim, hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers,
                   id_dim=cfg.id_dim, feature_dim=cfg.feature_dim, pooling=cfg.pooling,
                   normalize_output=cfg.normalize_output, learned_norm=cfg.learned_norm)


def pinsage_features(store: GraphStore, cfg: PinSageConfig) -> NodeFeatureTable | None:
    """The item feature table PinSage reads (``cfg.features``: names, ``None`` = all, ``[]``
    = none); ``None`` when the item type has no usable feature."""
    if cfg.features == []:
        return None
    names = cfg.features
    if names is not None:
        have = store.feature_names(cfg.item_type)
        missing = [n for n in names if n not in have]
        if missing:
            raise GraphrecError(f"features: {missing} not features of node type {cfg.item_type!r} (has {have})")
    table = NodeFeatureTable(store, cfg.item_type, names)
    spec = table.spec
    return table if (spec.categorical or spec.multi_categorical or spec.numeric) else None


# ---------------------------------------------------------------- writing


def write_run(run_dir: str | Path, model: str, cfg, store: GraphStore, model_state: dict, summary: dict,
              **info) -> dict:
    """Finish a run: ``model.pt`` (+ checksum) first, then ``run.json`` (last, so that its
    presence means the run is complete). ``info``: model-specific entries of run.json.
    Returns run.json's content."""
    run_dir = Path(run_dir)
    save_checkpoint(run_dir, {"model": model_state}, name=MODEL_FILE)
    files = {MODEL_FILE: checkpoint_digest(run_dir, MODEL_FILE)}  # hashed once, by save_checkpoint
    for name in (ITEM_VECTORS, USER_VECTORS):
        if (run_dir / name).is_file():
            files[name] = sha256_file(run_dir / name)
    doc = {"model": model, "config": cfg.model_dump(mode="json"),
           "graph": str(Path(store.path).resolve()),
           "graph_relpath": portable_path(store.path, run_dir)["relpath"],
           "graph_checksum": store.checksum, **info, "files": files, "summary": summary}
    write_json(run_dir / RUN_FILE, doc)
    return doc


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
    """A finished TwHIN run; ``model`` is a :class:`~graphrec.models.twhin.TwHIN`."""

    model_name = "twhin"
    config_class = TwHINConfig

    def _build_model(self) -> TwHIN:
        return twhin_model(self.config, self.info["num_nodes"], self.info["edge_types"])


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

    def features(self) -> NodeFeatureTable | None:
        return pinsage_features(self.store, self.config)


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
