"""Typed run configs (pydantic; unknown keys and wrong types are errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphrec.errors import SchemaError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NegativesConfig(_Strict):
    uniform: int = Field(100, ge=0, description="uniform typed negatives shared by each batch, per side")
    in_batch: bool = Field(True, description="use the other positives of the batch as negatives (TwHIN)")
    chunk_size: int = Field(0, ge=0, description="in-batch negatives within chunks of this many positives (0: whole batch)")
    corrupt: Literal["both", "tail", "head"] = "both"
    exhaustive_max_nodes: int = Field(0, ge=0, description="corrupt node types of at most this many nodes with every "
                                      "node of the type (an exact softmax) instead of a uniform sample")


class RayConfig(_Strict):
    workers: int = Field(1, ge=1)
    cpus_per_worker: int = Field(1, ge=1)
    max_failures: int = Field(2, ge=0)
    address: str | None = Field(None, description="Ray cluster address; None starts Ray embedded")
    object_store_mb: int = Field(256, ge=64)


class EdgeWeightsConfig(_Strict):
    """Per-edge sampling weights of a relation's positives (edges are drawn with
    probability ∝ weight). The factors multiply:

    * ``attribute``: an edge attribute of the store (e.g. ``weight`` = the rating);
    * ``recency_half_life``: ``floor + (1 − floor) · 0.5^(age / half_life)`` with ``age``
      the number of the source node's edges after this one by ``timestamp`` (0 for its
      latest), so each user's recent interactions are drawn more often."""

    attribute: str | None = None
    recency_half_life: float | None = Field(None, gt=0)
    recency_floor: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _some(self):
        if self.attribute is None and self.recency_half_life is None:
            raise ValueError("set attribute and/or recency_half_life")
        return self


class TwHINConfig(_Strict):
    """One TwHIN run. ``relations`` maps ``src:name:dst`` patterns (fnmatch, e.g.
    ``entity:*:entity``) to sampling weights: relation ``r`` contributes ``w_r · E_r``
    positives per epoch (default 1; 0 leaves it out)."""

    model: Literal["twhin"] = "twhin"
    dim: int = Field(100, gt=0)
    score: Literal["translation_dot", "transe", "distmult", "complex", "rotate"] = "translation_dot"
    p_norm: Literal[1, 2] = 2
    init_scale: float | None = Field(None, gt=0)
    max_norm: float | None = Field(None, gt=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(1000, ge=1)
    negatives: NegativesConfig = NegativesConfig()
    loss: Literal["softmax", "softplus", "margin"] = "softmax"
    margin: float = Field(1.0, gt=0)
    regularization: float = Field(0.0, ge=0, description="L2 on the node rows each batch touches")
    optimizer: Literal["adagrad", "sparse_adam"] = "adagrad"
    lr: float = Field(0.1, gt=0)
    relation_lr: float | None = Field(None, gt=0)
    relations: dict[str, float] = Field(default_factory=dict)
    edge_weights: dict[str, EdgeWeightsConfig] = Field(
        default_factory=dict, description="src:name:dst pattern -> per-edge sampling weights (last match wins)")
    include_reverse: bool = False
    holdout_fraction: float = Field(0.0, ge=0, lt=1)
    patience: int = Field(3, ge=1)
    validation_candidates: int = Field(1000, ge=1)
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _check(self):
        for pat, w in self.relations.items():
            if w < 0:
                raise ValueError(f"relations[{pat!r}]: weight must be >= 0")
            if pat.count(":") != 2:
                raise ValueError(f"relations[{pat!r}]: write relation patterns as src:name:dst")
        for pat in self.edge_weights:
            if pat.count(":") != 2:
                raise ValueError(f"edge_weights[{pat!r}]: write relation patterns as src:name:dst")
        if self.score in ("complex", "rotate") and self.dim % 2:
            raise ValueError(f"score {self.score} needs an even dim")
        n = self.negatives
        if n.uniform == 0 and not n.in_batch and n.exhaustive_max_nodes == 0:
            raise ValueError("negatives: enable in_batch, set uniform > 0 or exhaustive_max_nodes > 0")
        return self


def load_config(path: str | Path, cls=TwHINConfig, overrides: dict | None = None):
    """Read a YAML run config (``yaml.safe_load``) into ``cls``; errors name the key."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SchemaError(f"config {path}: not valid YAML: {err}") from None
    if overrides:
        data = {**data, **overrides}
    return parse_config(data, cls, origin=str(path))


def parse_config(data: dict, cls=TwHINConfig, origin: str = "<dict>"):
    if not isinstance(data, dict):
        raise SchemaError(f"config {origin}: expected a mapping")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        lines = [f"invalid config {origin}:"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "<root>"
            lines.append(f"  {loc}: {'unknown key' if e['type'] == 'extra_forbid' or e['type'] == 'extra_forbidden' else e['msg']}")
        raise SchemaError("\n".join(lines)) from None


class MetapathConfig(_Strict):
    """A closed walk through the graph, e.g. ``[item:rated_by:user, user:rated:item]``."""

    path: list[str] = Field(min_length=1)
    weight: float = Field(1.0, gt=0)


class WalksConfig(_Strict):
    """Random walks that define PinSage's importance neighbourhoods."""

    metapaths: list[MetapathConfig] = Field(min_length=1)
    restart_prob: float = Field(0.5, ge=0, lt=1)
    num_walks: int = Field(100, ge=1, description="walks per item")
    walk_length: int = Field(2, ge=1, description="metapath rounds per walk")
    top_t: int = Field(50, ge=1, description="importance neighbours kept per item (the paper's T)")
    refresh: Literal["fixed", "per_batch"] = Field(
        "fixed", description="fixed: neighbourhoods of every item walked once and saved (used again by inference); "
        "per_batch: walked afresh for each minibatch (catalogues too large to precompute)")


class PositivesConfig(_Strict):
    """Co-engagement positives: items of one user at most ``window`` interactions and
    ``max_gap`` seconds apart. ``sampling: all`` trains on every such pair each epoch;
    ``per_interaction`` draws ``per_interaction`` partners per interaction afresh each
    epoch (an epoch then costs the same whatever the window)."""

    window: int = Field(3, ge=1)
    max_gap: float | None = Field(None, gt=0)
    sampling: Literal["all", "per_interaction"] = "all"
    per_interaction: int = Field(1, ge=1)


class HardNegativesConfig(_Strict):
    max_per_query: int = Field(3, ge=0, description="hard negatives per query in the last epochs (0: none)")
    schedule: Literal["curriculum", "constant"] = Field(
        "curriculum", description="curriculum: none in epoch 1, one more per query each epoch (the paper)")
    band: tuple[float, float] = Field((0.05, 0.2), description="PPR rank band as fractions of the catalogue")
    alpha: float = Field(0.3, gt=0, lt=1, description="PPR restart probability")
    method: Literal["auto", "power", "montecarlo"] = "auto"

    @model_validator(mode="after")
    def _band(self):
        lo, hi = self.band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"band must satisfy 0 <= lo < hi <= 1, got {self.band}")
        return self


class PinSageNegativesConfig(_Strict):
    shared: int = Field(500, ge=1, description="uniform negatives shared by the whole minibatch")
    hard: HardNegativesConfig = HardNegativesConfig()


class UserVectorsConfig(_Strict):
    """User vectors for user→item retrieval (scored by dot product with item vectors).

    ``recency``: the recency-weighted mean of the user's item embeddings, weight
    ``0.5^(age / half_life)`` with age counted in interactions from the latest one
    (``half_life: null``: plain mean). ``learned``: a user table trained jointly with the
    item encoder by the same max-margin loss on (user, engaged item) pairs against the
    minibatch's shared negatives, weighted ``loss_weight`` next to the item-pair loss."""

    kind: Literal["recency", "learned"] = "recency"
    half_life: float | None = Field(20.0, gt=0, description="recency: None = plain mean")
    loss_weight: float = Field(1.0, gt=0, description="learned: weight of the user→item loss")


class PinSageConfig(_Strict):
    """One PinSage run: item type, the interaction relation positives come from, walks,
    model, negatives and optimisation."""

    model: Literal["pinsage"] = "pinsage"
    item_type: str = "item"
    interactions: str = Field("user:rated:item", description="user→item relation: positives and user vectors")
    features: list[str] | None = Field(None, description="item features to embed (None: all in the store; []: none)")
    walks: WalksConfig
    dim: int = Field(128, gt=0)
    hidden_dim: int = Field(128, gt=0)
    num_layers: int = Field(2, ge=0)
    id_dim: int = Field(64, ge=0, description="learned ID embedding size (0: features only)")
    feature_dim: int = Field(16, gt=0)
    pooling: Literal["importance", "mean", "max"] = "importance"
    normalize_output: bool = True
    learned_norm: bool = Field(False, description="scale the unit output by a learned magnitude in (0, 1)")
    positives: PositivesConfig = PositivesConfig()
    negatives: PinSageNegativesConfig = PinSageNegativesConfig()
    margin: float = Field(0.1, gt=0)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(100, ge=0, description="linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(512, ge=1)
    loader_workers: int = Field(1, ge=0, description="DataLoader processes preparing minibatches (0: in the trainer)")
    holdout_fraction: float = Field(0.02, ge=0, lt=1, description="co-engagement pairs held out for early stopping")
    patience: int = Field(3, ge=1)
    user_vectors: UserVectorsConfig = UserVectorsConfig()
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _check(self):
        if self.interactions.count(":") != 2:
            raise ValueError(f"interactions: write the relation as src:name:dst, got {self.interactions!r}")
        if self.interactions.split(":")[2] != self.item_type:
            raise ValueError(f"interactions {self.interactions!r} must end at item_type {self.item_type!r}")
        for m in self.walks.metapaths:
            for r in m.path:
                if r.count(":") != 2:
                    raise ValueError(f"walks.metapaths: write relations as src:name:dst, got {r!r}")
            if m.path[0].split(":")[0] != self.item_type or m.path[-1].split(":")[2] != self.item_type:
                raise ValueError(f"walks.metapaths: {m.path} must start and end at item_type {self.item_type!r}")
        return self


RUN_CONFIGS = {"twhin": TwHINConfig, "pinsage": PinSageConfig}
