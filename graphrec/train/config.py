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
