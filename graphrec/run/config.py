"""Typed run configs (pydantic; unknown keys and wrong types are errors).

The choices of pluggable parts come from their registries (``score`` from
:data:`graphrec.models.scores.SCORES`, ``loss`` from :data:`graphrec.models.losses.LOSSES`),
so a newly registered part is a valid config value at once. ``configs/README.md`` is
generated from these classes (``graphrec config docs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from graphrec.config_base import StrictConfig, load_model, parse_model
from graphrec.models.losses import LOSSES
from graphrec.models.pinsage import POOLINGS
from graphrec.models.scores import SCORES
from graphrec.models.twhin import REGULARIZERS

ScoreName = Literal[SCORES.names()]  # type: ignore[valid-type]
LossName = Literal[LOSSES.names()]  # type: ignore[valid-type]
RegularizerName = Literal[REGULARIZERS]  # type: ignore[valid-type]
PoolingName = Literal[POOLINGS]  # type: ignore[valid-type]


def _choices(summaries: dict[str, str]) -> str:
    """``name: summary; ...`` of a registry's entries, as plain text for a description."""
    return "; ".join(f"{name}: {text.replace('``', '').rstrip('.')}" for name, text in summaries.items())


class NegativesConfig(StrictConfig):
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


class CheckpointConfig(StrictConfig):
    """Checkpoints of a run (``RUN_DIR/checkpoints``, each with its SHA-256): written at the
    end of every epoch and, with ``every_steps``, within epochs too, so that a long epoch
    resumes at the step it stopped at (the same batches, negatives and optimizer state)."""

    every_steps: int = Field(0, ge=0, description="also checkpoint every this many steps within an epoch (0: at the "
                             "end of each epoch only)")
    keep: int = Field(2, ge=1, description="checkpoints kept (older ones are deleted once a newer one is written)")


class RayConfig(StrictConfig):
    """Ray Train settings of a run: data-parallel workers, their CPUs and fault tolerance."""

    workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel processes)")
    cpus_per_worker: int = Field(1, ge=1, description="CPUs reserved per worker (also its torch threads)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint before giving up")
    address: str | None = Field(None, description="Ray cluster address (e.g. auto or 127.0.0.1:6379); None "
                                "starts Ray embedded in this process")
    object_store_mb: int = Field(256, ge=64, description="object store size of an embedded Ray, MiB")


class EdgeWeightsConfig(StrictConfig):
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


class ValidationConfig(StrictConfig):
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


class TwHINConfig(StrictConfig):
    """One TwHIN run. ``relations`` maps ``src:name:dst`` patterns (fnmatch, e.g.
    ``entity:*:entity``) to sampling weights: relation ``r`` contributes ``w_r · E_r``
    positives per epoch (default 1; 0 leaves it out)."""

    model: Literal["twhin"] = Field("twhin", description="model kind")
    dim: int | Literal["auto"] = Field(
        100, description="embedding dimension (even for complex/rotate: dim/2 complex coordinates); auto: the largest "
        "even dim <= 1000 with K x dim <= 1,000,000 (K as for batch_size auto), i.e. 1000 when every type has at most "
        "1,000 candidates and 244 with 4,096: a bounded scoring cost per positive")
    score: ScoreName = Field("translation_dot", description="score function f(h, r, t), higher = more plausible "
                             "(graphrec.models.scores.SCORES): " + _choices(SCORES.summaries()))
    p_norm: Literal[1, 2] = Field(2, description="norm p of transe (only 2 has an exact inner-product form for "
                                  "ANN retrieval)")
    init_scale: float | None = Field(None, gt=0, description="std of the normal initialisation (None: 1/sqrt(dim))")
    max_norm: float | None = Field(None, gt=0, description="renormalise looked-up node rows to at most this norm")
    epochs: int = Field(10, ge=1, description="epochs to train (an upper bound when validation early-stops)")
    batch_size: int | Literal["auto"] = Field(
        1000, description="positives per step, all of one relation; auto: clamp(K / 4, 100, 1000) with K the most "
        "candidates a corrupted side is scored against (the type's size up to negatives.exhaustive_max_nodes, else "
        "negatives.uniform): small graphs take many small steps, and a batch sharing thousands of negatives is big "
        "enough to amortise looking them up and updating them. A batch of b < batch_size positives (a relation group's "
        "last, or a partitioned bucket's) weighs b / batch_size, so every positive weighs the same however the "
        "positives are cut into batches")
    negatives: NegativesConfig = Field(NegativesConfig(), description="negatives of each batch")
    loss: LossName = Field("softmax", description="loss of a positive score p against its negatives' scores n_j "
                           "(graphrec.models.losses.LOSSES): " + _choices(LOSSES.summaries()))
    margin: float = Field(1.0, gt=0, description="margin γ of the margin loss (unused by the others)")
    regularization: float = Field(0.0, ge=0, description="weight λ of the regulariser (0: none)")
    regularizer: RegularizerName = Field("l2", description="l2: λ·mean ‖θ‖² over the node rows each batch looks "
                                             "up; n3: λ·mean over positives of Σ|h|³+|r|³+|t|³ (Lacroix et al. 2018)")
    optimizer: Literal["adagrad", "row_adagrad", "sparse_adam"] = Field(
        "adagrad", description="optimiser of the sparse node table: adagrad (an accumulator per coordinate), "
        "row_adagrad (one per row, PyTorch-BigGraph's: half the optimizer memory and partition I/O) or sparse_adam "
        "(relations: Adagrad, or Adam with sparse_adam)")
    lr: float = Field(0.1, gt=0, description="learning rate of the node table")
    relation_lr: float | None = Field(None, gt=0, description="learning rate of the relation vectors (None: lr)")
    relations: dict[str, float] = Field(default_factory=dict, description="src:name:dst pattern -> sampling weight "
                                        "(last match wins; 0 leaves the relation out)")
    edge_weights: dict[str, EdgeWeightsConfig] = Field(
        default_factory=dict, description="src:name:dst pattern -> per-edge sampling weights (last match wins)")
    include_reverse: bool = Field(False, description="also train on the reverse views of relations")
    validation: ValidationConfig = Field(ValidationConfig(), description="early stopping on filtered validation MRR")
    partitions: int = Field(1, ge=1, description="partitions P of the large node types (PyTorch-BigGraph-style "
                            "out-of-core training, one bucket of partitions in memory at a time; 1: every table "
                            "in memory)")
    partition_min_nodes: int = Field(0, ge=0, description="node types with fewer nodes (or fewer than P) stay whole "
                                     "and are shared by every bucket (0: partition every type)")
    batches: Literal["relation", "types"] = Field(
        "relation", description="what a batch of positives holds: relation — positives of one relation; types — of "
        "every relation between the same two node types, each positive scored with its own relation vector against "
        "the batch's shared candidates (PyTorch-BigGraph's batches: fewer, fuller steps on graphs of many relations; "
        "relation weights still set each relation's positives per epoch)")
    partition_buckets: Literal["blocks", "pairs"] = Field(
        "blocks", description="partitioned training's buckets. blocks: PyTorch-BigGraph's (i, j) — partition i of the "
        "source types and j of the destination types, each edge once per epoch, a side's candidates from its own "
        "partition (P^2 buckets). pairs: a bucket is a pair of partitions {a, b} holding both of every partitioned "
        "type; it trains the edges between them once and those within each (a to a) in every pair, so each "
        "positive's candidates are two partitions of its type, every partition equally often (P (P-1)/2 buckets, "
        "2 (P-1)/P of the positives per epoch). pairs pay off under 1-N scoring of small types (negatives."
        "exhaustive_max_nodes), where blocks contrast a positive with 1/P of its type; with sampled negatives they "
        "only cost more")
    partition_regroup: int = Field(
        1, ge=1, description="with P > 1, store each partitioned type as P x k sub-partitions (k = this value) and "
        "deal them into the P partitions afresh every epoch (a seeded shuffle per type and epoch), so that over the "
        "epochs every two sub-partitions meet in one bucket's candidates: a bucket's softmax is blind to a score "
        "level shared by all the items of its partition, and fixed partitions let such levels drift apart. A "
        "partition is then k sub-partitions of the same total size (the same memory and I/O per bucket); the "
        "edge buckets and tables are those of P x k partitions (a type needs at least P x k nodes and "
        "partition_min_nodes to be split). 1: fixed partitions, PyTorch-BigGraph's")
    partition_logit_correction: bool = Field(
        True, description="with P > 1, add log(k_1 / k_P) to the scores of a bucket's uniform or exhaustive "
        "negatives (not in-batch ones), k_1 the negatives a positive is scored against at P = 1 and k_P in the bucket: "
        "under 1-N scoring (negatives.exhaustive_max_nodes) a type's N - 1 other nodes against the held partitions' "
        "n - 1, so each bucket's softmax estimates P = 1's over the whole type (the sampled-softmax correction; 0 where "
        "both sample negatives.uniform). False: PyTorch-BigGraph's uncorrected loss")
    partition_storage: str | None = Field(
        None, description="where a partitioned run keeps its node tables and their versioned checkpoints: a "
        "directory or a pyarrow.fs URI every worker can reach (s3://bucket/prefix?endpoint_override=host:port, "
        "gs://..., hdfs://...), for a cluster without a shared filesystem; None: RUN_DIR/partitions. run.json "
        "records it to reopen the tables, so credentials come from the environment (AWS_ACCESS_KEY_ID, ...), "
        "never the URI")
    holdout_fraction: float = Field(0.0, ge=0, lt=1, description="fraction of each relation's edges held out of "
                                    "training for validation (validation.source holdout/auto, or the sampled check)")
    init_from: str | None = Field(None, description="a finished TwHIN run (on an older graph of the same schema) "
                                  "to warm-start from: its nodes (matched by type and original id) start from their "
                                  "vectors there, new nodes from the mean of their known neighbours' vectors (random "
                                  "where none), relation vectors carried over; run.json gets a drift report "
                                  "(`graphrec train twhin --init-from RUN`). Either run may be partitioned: a "
                                  "partitioned run's tables are read and written partition by partition")
    freeze_existing: bool = Field(False, description="with init_from: the carried-over nodes' vectors receive no "
                                  "gradient (only new nodes and relations train)")
    carry_optimizer_state: bool = Field(True, description="with init_from: the carried-over nodes and relations "
                                        "also take their optimizer state (Adagrad sums, Adam moments) from the "
                                        "earlier run's last checkpoint (a partitioned run's: its tables), so they "
                                        "keep the step sizes they had reached "
                                        "while new nodes start at the full learning rate (false, or no checkpoint "
                                        "left: fresh state for every row)")
    patience: int = Field(3, ge=1, description="evaluations without improvement before training stops")
    validation_candidates: int = Field(1000, ge=1, description="uniform candidates of the sampled holdout MRR "
                                       "(validation.source none)")
    seed: int = Field(0, description="seed of initialisation, schedules and negatives")
    threads: int | None = Field(None, ge=1, description="torch threads (None: torch's default or ray.cpus_per_worker)")
    checkpoints: CheckpointConfig = Field(CheckpointConfig(), description="when checkpoints are written and how "
                                          "many are kept")
    ray: RayConfig = Field(RayConfig(), description="Ray Train settings")

    @field_validator("partition_storage")
    @classmethod
    def _no_credentials(cls, v):
        from graphrec.run.storage import redact

        if v is not None and redact(v) != v:
            raise ValueError(f"{redact(v)}: put credentials in the environment (AWS_ACCESS_KEY_ID, "
                             "AWS_SECRET_ACCESS_KEY, ...), not in the URI: run.json records it")
        return v

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
        if SCORES.get(self.score).complex_valued and isinstance(self.dim, int) and self.dim % 2:
            raise ValueError(f"score {self.score} needs an even dim")
        n = self.negatives
        if n.uniform == 0 and not n.in_batch and n.exhaustive_max_nodes == 0:
            raise ValueError("negatives: enable in_batch, set uniform > 0 or exhaustive_max_nodes > 0")
        if self.validation.source == "holdout" and self.holdout_fraction <= 0:
            raise ValueError("validation.source holdout needs holdout_fraction > 0")
        return self


def load_config(path: str | Path, cls=TwHINConfig, overrides: dict | None = None):
    """Read a YAML run config (``yaml.safe_load``) into ``cls`` (``overrides`` replace
    top-level keys); errors are one line naming the file and the dotted key."""
    return load_model(path, cls, "config", overrides)


def parse_config(data: dict, cls=TwHINConfig, origin: str = "config"):
    """Validate a run config given as a mapping into ``cls``."""
    return parse_model(data, cls, origin)


class MetapathConfig(StrictConfig):
    """A closed walk through the graph, e.g. ``[item:rated_by:user, user:rated:item]``."""

    path: list[str] = Field(min_length=1, description="relations walked in order, each src:name:dst (~src:name:dst "
                            "walks it backwards, from dst to src); starts and ends at item_type")
    weight: float = Field(1.0, gt=0, description="relative probability of picking this metapath in a walk round "
                          "(weights are normalised over the metapaths)")


class WalksConfig(StrictConfig):
    """Random walks that define PinSage's importance neighbourhoods."""

    metapaths: list[MetapathConfig] = Field(min_length=1, description="metapaths a walk round follows, one picked "
                                            "per round by weight")
    restart_prob: float = Field(0.5, ge=0, lt=1, description="probability of jumping back to the start item before "
                                "each round (0: never)")
    num_walks: int = Field(100, ge=1, description="walks started from each item")
    walk_length: int = Field(2, ge=1, description="metapath rounds per walk (each round records one visited item)")
    top_t: int = Field(50, ge=1, description="importance neighbours kept per item (the paper's T)")
    refresh: Literal["fixed", "per_batch"] = Field(
        "fixed", description="fixed: neighbourhoods of every item walked once and saved (used again by inference); "
        "per_batch: walked afresh for each minibatch (catalogues too large to precompute)")


class PositivesConfig(StrictConfig):
    """Co-engagement positives: items of one user at most ``window`` interactions and
    ``max_gap`` seconds apart. ``sampling: all`` trains on every such pair each epoch;
    ``per_interaction`` draws ``per_interaction`` partners per interaction afresh each
    epoch (an epoch then costs the same whatever the window)."""

    window: int = Field(3, ge=1, description="pair items at most this many interactions apart in the user's history")
    max_gap: float | None = Field(None, gt=0, description="and at most this many seconds apart (None: no time limit)")
    sampling: Literal["all", "per_interaction"] = Field("all", description="all: every pair each epoch; "
                                                        "per_interaction: per_interaction partners drawn per "
                                                        "interaction afresh each epoch")
    per_interaction: int = Field(1, ge=1, description="partners drawn per interaction (sampling: per_interaction)")


class HardNegativesConfig(StrictConfig):
    """PinSage's hard negatives: items ranked within ``band`` of the query's personalised
    PageRank (related to the query, yet not its positives), added per query on a curriculum."""

    max_per_query: int = Field(3, ge=0, description="hard negatives per query in the last epochs (0: none)")
    schedule: Literal["curriculum", "constant"] = Field(
        "curriculum", description="curriculum: none in epoch 1, one more per query each epoch (the paper)")
    band: tuple[float, float] = Field((0.05, 0.2), description="PPR rank band as fractions of the catalogue")
    band_ranks: tuple[int, int] | None = Field(
        None, description="PPR rank band as absolute ranks [lo, hi) instead of band (PinSage's 2000-5000): stays near "
        "the query at any catalogue size, where a fraction band lies beyond what Monte-Carlo walks rank")
    alpha: float = Field(0.3, gt=0, lt=1, description="PPR restart probability")
    method: Literal["auto", "power", "montecarlo"] = Field(
        "auto", description="PPR computation: power iteration (exact, for small catalogues), Monte-Carlo random walks, "
        "or auto (power iteration up to 20,000 items, Monte-Carlo beyond)")
    mc_walks: int = Field(200, ge=1, description="Monte-Carlo PPR: walks per query (visits = mc_walks x mc_length "
                          "bound the ranks resolved; training logs the band's coverage)")
    mc_length: int = Field(10, ge=1, description="Monte-Carlo PPR: rounds per walk")

    @model_validator(mode="after")
    def _band(self):
        lo, hi = self.band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"band must satisfy 0 <= lo < hi <= 1, got {self.band}")
        if self.band_ranks is not None and not 1 <= self.band_ranks[0] < self.band_ranks[1]:
            raise ValueError(f"band_ranks must satisfy 1 <= lo < hi, got {list(self.band_ranks)}")
        return self


class PinSageNegativesConfig(StrictConfig):
    """Negatives of a PinSage minibatch: uniform items shared by every query, plus hard ones."""

    shared: int = Field(500, ge=1, description="uniform negatives shared by the whole minibatch")
    hard: HardNegativesConfig = Field(HardNegativesConfig(), description="PPR-ranked hard negatives per query")


class UserVectorsConfig(StrictConfig):
    """User vectors for user→item retrieval (scored by dot product with item vectors).

    ``recency``: the recency-weighted mean of the user's item embeddings, weight
    ``0.5^(age / half_life)`` with age counted in interactions from the latest one
    (``half_life: null``: plain mean). ``learned``: a user table trained jointly with the
    item encoder by the same max-margin loss on (user, engaged item) pairs against the
    minibatch's shared negatives, weighted ``loss_weight`` next to the item-pair loss."""

    kind: Literal["recency", "learned"] = Field("recency", description="recency: weighted mean of the user's item "
                                                "embeddings; learned: a user table trained jointly")
    half_life: float | None = Field(20.0, gt=0, description="recency: half-life of the weights 0.5^(age / half_life), in "
                                     "interactions (None: plain mean)")
    loss_weight: float = Field(1.0, gt=0, description="learned: weight of the user→item loss")


class PinSageConfig(StrictConfig):
    """One PinSage run: item type, the interaction relation positives come from, walks,
    model, negatives and optimisation."""

    model: Literal["pinsage"] = Field("pinsage", description="model kind")
    item_type: str = Field("item", description="node type of the items PinSage embeds")
    interactions: str = Field("user:rated:item", description="user→item relation: positives and user vectors")
    features: list[str] | None = Field(None, description="item features to embed (None: all in the store; []: none)")
    walks: WalksConfig = Field(description="random walks defining the importance neighbourhoods (required)")
    dim: int = Field(128, gt=0, description="output embedding dimension")
    hidden_dim: int = Field(128, gt=0, description="width of the input projection and of every convolution layer")
    num_layers: int = Field(2, ge=0, description="graph convolution layers K (0: the input projection and dense "
                            "head only)")
    id_dim: int = Field(64, ge=0, description="learned ID embedding size (0: features only)")
    id_dropout: float = Field(0.0, ge=0, lt=1, description="probability of hiding a training node's ID embedding "
                              "(zero vector, as for an item never seen), so the feature and neighbourhood path "
                              "learns to embed items on its own: > 0 for inductive use (`graphrec infer --graph`)")
    cold_simulation: float = Field(0.0, ge=0, lt=1, description="fraction of the items presented as cold in each "
                                   "epoch: no ID vector and neighbours only from the metapaths that avoid the "
                                   "interactions (e.g. a knowledge graph), as an item nobody engaged with looks to "
                                   "`graphrec infer --graph`; trains the inductive path (0: off)")
    feature_dim: int = Field(16, gt=0, description="embedding size of each categorical / multi-categorical feature")
    pooling: PoolingName = Field("importance", description="neighbour aggregation γ: importance-weighted mean "
                                 "(the paper), plain mean or element-wise max")
    normalize_output: bool = Field(True, description="L2-normalise the output embeddings (the paper)")
    learned_norm: bool = Field(False, description="scale the unit output by a learned magnitude in (0, 1)")
    positives: PositivesConfig = Field(PositivesConfig(), description="co-engagement positive pairs")
    negatives: PinSageNegativesConfig = Field(PinSageNegativesConfig(), description="shared and hard negatives")
    margin: float = Field(0.1, gt=0, description="margin Δ of the max-margin loss max(0, z_q·z_n − z_q·z_p + Δ)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (after warm-up)")
    warmup_steps: int = Field(100, ge=0, description="linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay of the dense parameters (0: none; the "
                                "item-ID and user tables train with SparseAdam, without decay)")
    sparse_lr: float | None = Field(None, gt=0, description="SparseAdam learning rate of the item-ID and learned-user "
                                    "tables, whose rows are updated only when a batch uses them (None: lr)")
    epochs: int = Field(10, ge=1, description="epochs to train (an upper bound: early stopping on the holdout)")
    batch_size: int = Field(512, ge=1, description="positive pairs per minibatch")
    loader_workers: int = Field(1, ge=0, description="DataLoader processes preparing minibatches (0: in the trainer)")
    holdout_fraction: float = Field(0.02, ge=0, lt=1, description="co-engagement pairs held out for early stopping "
                                    "on their HR@10 (at most 20,000; 0: no early stopping)")
    patience: int = Field(3, ge=1, description="epochs without a better holdout HR@10 before training stops (the "
                          "best-on-holdout state is kept)")
    user_vectors: UserVectorsConfig = Field(UserVectorsConfig(), description="user vectors for user→item retrieval")
    seed: int = Field(0, description="seed of initialisation, walks, positives and negatives")
    threads: int | None = Field(None, ge=1, description="torch threads (None: torch's default or ray.cpus_per_worker)")
    checkpoints: CheckpointConfig = Field(CheckpointConfig(), description="when checkpoints are written and how "
                                          "many are kept")
    ray: RayConfig = Field(RayConfig(), description="Ray Train settings")

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
