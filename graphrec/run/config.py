"""Typed run configs (pydantic; unknown keys and wrong types are errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphrec.errors import SchemaError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NegativesConfig(_Strict):
    """Negatives of each batch (one relation ``(S, r, T)``), shared by its positives and
    scored with one matmul per side. For each corrupted side of type ``X``: every node of
    ``X`` when ``N_X <= exhaustive_max_nodes`` (an exact softmax over the type, "1-N
    scoring"), otherwise ``uniform`` ids drawn uniformly from ``X``; plus, with
    ``in_batch``, the batch's other positives."""

    uniform: int = Field(100, ge=0, description="uniform typed negatives shared by each batch, per side (for types "
                         "larger than exhaustive_max_nodes)")
    in_batch: bool = Field(True, description="use the other positives of the batch as negatives (TwHIN)")
    chunk_size: int = Field(0, ge=0, description="in-batch negatives within chunks of this many positives (0: whole batch)")
    corrupt: Literal["both", "tail", "head"] = Field("both", description="which side of each positive is corrupted: "
                                                     "tail (predict t from h, r), head, or both (the loss is their mean)")
    exhaustive_max_nodes: int = Field(0, ge=0, description="corrupt node types of at most this many nodes with every "
                                      "node of the type (an exact softmax) instead of a uniform sample")


class RayConfig(_Strict):
    workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel processes)")
    cpus_per_worker: int = Field(1, ge=1, description="CPUs reserved per worker (also its torch threads)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint before giving up")
    address: str | None = Field(None, description="Ray cluster address; None starts Ray embedded")
    object_store_mb: int = Field(256, ge=64, description="object store size of an embedded Ray, MiB")


class EdgeWeightsConfig(_Strict):
    """Per-edge sampling weights of a relation's positives (edges are drawn with
    probability ∝ weight). The factors multiply:

    * ``attribute``: an edge attribute of the store (e.g. ``weight`` = the rating);
    * ``recency_half_life``: ``floor + (1 − floor) · 0.5^(age / half_life)`` with ``age``
      the number of the source node's edges after this one by ``timestamp`` (0 for its
      latest), so each user's recent interactions are drawn more often."""

    attribute: str | None = Field(None, description="edge attribute whose value multiplies the weight")
    recency_half_life: float | None = Field(None, gt=0, description="half-life of the recency factor, in interactions")
    recency_floor: float = Field(0.0, ge=0, le=1, description="recency factor of the oldest edges")

    @model_validator(mode="after")
    def _some(self):
        if self.attribute is None and self.recency_half_life is None:
            raise ValueError("set attribute and/or recency_half_life")
        return self


class ValidationConfig(_Strict):
    """Early stopping on the **filtered MRR** of validation triples (the protocol of
    :func:`graphrec.eval.link_prediction.filtered_link_prediction`: head and tail
    corruption over every node of the type, train and validation triples filtered).
    The model is evaluated every ``max(every, ceil(min_positives / positives_per_epoch))``
    epochs (and after the last); training stops after ``patience`` evaluations without a better
    MRR and the **best-on-valid state** is the one saved.

    ``source``:

    * ``split``: the ``valid.parquet`` of the split whose ``train/`` is the training
      graph (``graphrec split ... --out SPLIT``, trained on ``SPLIT/train``); an error
      when the graph is not a split's train;
    * ``holdout``: ``holdout_fraction`` of each relation's edges, held out of training;
    * ``auto``: ``split`` when the graph is a split's train with validation triples,
      otherwise ``holdout``;
    * ``none``: no filtered validation (a ``holdout_fraction`` > 0 then early-stops on
      the sampled, unfiltered tail MRR of the held-out edges against
      ``validation_candidates`` uniform nodes, a cheap check for huge graphs)."""

    source: Literal["none", "split", "holdout", "auto"] = Field("none", description="where the validation triples "
                                                                "come from (see the class docstring)")
    every: int = Field(1, ge=1, description="epochs between two evaluations (at least; see min_positives)")
    min_positives: int = Field(0, ge=0, description="positives trained between two evaluations, at least: evaluate "
                               "every max(every, ceil(min_positives / positives per epoch)) epochs, so that patience "
                               "means a similar amount of training on a tiny graph and a big one")
    max_triples: int = Field(2000, ge=1, description="evaluate at most this many validation triples (a seed-fixed "
                             "uniform sample of them), to bound the cost on big graphs")


class TwHINConfig(_Strict):
    """One TwHIN run. ``relations`` maps ``src:name:dst`` patterns (fnmatch, e.g.
    ``entity:*:entity``) to sampling weights: relation ``r`` contributes ``w_r · E_r``
    positives per epoch (default 1; 0 leaves it out)."""

    model: Literal["twhin"] = Field("twhin", description="model kind")
    dim: int | Literal["auto"] = Field(
        100, description="embedding dimension (even for complex/rotate: dim/2 complex coordinates); auto: the largest "
        "even dim <= 1000 with K x dim <= 1,000,000 (K as for batch_size auto), i.e. 1000 when every type has at most "
        "1,000 candidates and 244 with 4,096: a bounded scoring cost per positive")
    score: Literal["translation_dot", "transe", "distmult", "complex", "rotate"] = Field(
        "translation_dot", description="score function f(h, r, t) (graphrec.models.scores)")
    p_norm: Literal[1, 2] = Field(2, description="norm of transe")
    init_scale: float | None = Field(None, gt=0, description="std of the normal initialisation (None: 1/sqrt(dim))")
    max_norm: float | None = Field(None, gt=0, description="renormalise looked-up node rows to at most this norm")
    epochs: int = Field(10, ge=1, description="epochs to train (an upper bound when validation early-stops)")
    batch_size: int | Literal["auto"] = Field(
        1000, description="positives per step, all of one relation; auto: clamp(K / 4, 100, 1000) with K the most "
        "candidates a corrupted side is scored against (the type's size up to negatives.exhaustive_max_nodes, else "
        "negatives.uniform): small graphs take many small steps, and a batch sharing thousands of negatives is big "
        "enough to amortise looking them up and updating them")
    negatives: NegativesConfig = Field(NegativesConfig(), description="negatives of each batch")
    loss: Literal["softmax", "softplus", "margin"] = Field("softmax", description="loss of a positive against its "
                                                            "negatives (graphrec.models.TwHIN.loss)")
    margin: float = Field(1.0, gt=0, description="margin of the margin loss")
    regularization: float = Field(0.0, ge=0, description="weight λ of the regulariser")
    regularizer: Literal["l2", "n3"] = Field("l2", description="l2: λ·mean ‖θ‖² over the node rows each batch looks "
                                             "up; n3: λ·mean over positives of Σ|h|³+|r|³+|t|³ (Lacroix et al. 2018)")
    optimizer: Literal["adagrad", "sparse_adam"] = Field("adagrad", description="optimiser of the sparse node table "
                                                          "(relations: Adagrad or Adam)")
    lr: float = Field(0.1, gt=0, description="learning rate")
    relation_lr: float | None = Field(None, gt=0, description="learning rate of the relation vectors (None: lr)")
    relations: dict[str, float] = Field(default_factory=dict, description="src:name:dst pattern -> sampling weight "
                                        "(last match wins; 0 leaves the relation out)")
    edge_weights: dict[str, EdgeWeightsConfig] = Field(
        default_factory=dict, description="src:name:dst pattern -> per-edge sampling weights (last match wins)")
    include_reverse: bool = Field(False, description="also train on the reverse views of relations")
    validation: ValidationConfig = Field(ValidationConfig(), description="early stopping on filtered validation MRR")
    holdout_fraction: float = Field(0.0, ge=0, lt=1, description="fraction of each relation's edges held out of "
                                    "training for validation (validation.source holdout/auto, or the sampled check)")
    patience: int = Field(3, ge=1, description="evaluations without improvement before training stops")
    validation_candidates: int = Field(1000, ge=1, description="uniform candidates of the sampled holdout MRR "
                                       "(validation.source none)")
    seed: int = Field(0, description="seed of initialisation, schedules and negatives")
    threads: int | None = Field(None, ge=1, description="torch threads (None: torch's default or ray.cpus_per_worker)")
    checkpoint_every_steps: int = Field(0, ge=0, description="also checkpoint every this many steps within an epoch "
                                        "(0: at the end of each epoch only), so a long epoch resumes mid-way")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept in RUN_DIR/checkpoints (older ones deleted)")
    ray: RayConfig = Field(RayConfig(), description="Ray Train settings")

    @field_validator("dim", "batch_size", mode="before")
    @classmethod
    def _int_or_auto(cls, v):
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"must be an integer >= 1 or auto, got {v!r}")

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
        if self.score in ("complex", "rotate") and isinstance(self.dim, int) and self.dim % 2:
            raise ValueError(f"score {self.score} needs an even dim")
        n = self.negatives
        if n.uniform == 0 and not n.in_batch and n.exhaustive_max_nodes == 0:
            raise ValueError("negatives: enable in_batch, set uniform > 0 or exhaustive_max_nodes > 0")
        if self.validation.source == "holdout" and self.holdout_fraction <= 0:
            raise ValueError("validation.source holdout needs holdout_fraction > 0")
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
    checkpoint_every_steps: int = Field(0, ge=0, description="also checkpoint every this many steps within an epoch "
                                        "(0: at the end of each epoch only), so a long epoch resumes mid-way")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept in RUN_DIR/checkpoints (older ones deleted)")
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
