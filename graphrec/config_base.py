"""The one base of every config: strict pydantic models, YAML loading, one-line errors.

Every config of graphrec (run configs, graph schemas, the pipeline job, index and dataset
settings) derives from :class:`StrictConfig`: unknown keys and wrong types are errors,
and every field carries a ``description`` (``tests/test_config_docs.py``), from which
``configs/README.md`` and ``graphrec config show`` are generated
(:mod:`graphrec.config_docs`).

Validation errors become one line naming the file and the dotted key::

    configs/x.yaml: validation.sorce: unknown key (did you mean 'source'?)

A base module: importable from any layer.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from graphrec.errors import SchemaError

M = TypeVar("M", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every graphrec config: unknown keys are errors (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")


class FrozenConfig(StrictConfig):
    """A :class:`StrictConfig` that is immutable once validated (hashable, safe to share)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- errors -----------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def format_validation_error(err: ValidationError, origin: str, cls: type[BaseModel] | None = None) -> str:
    """One line for a pydantic ``ValidationError``: ``ORIGIN: dotted.key: message``, the
    errors joined by ``"; "``. Unknown keys read ``unknown key`` (with the closest known
    key of ``cls``'s model at that place, if any); wrong values show what was given; the
    alternatives of a union field make one message (``Input should be a valid boolean or
    a valid string``)."""
    errors = err.errors()
    tagged = _union_tagged(errors)
    messages: dict[str, list[str]] = {}
    given: dict[str, str] = {}
    for i, e in enumerate(errors):
        loc = e["loc"][:-1] if i in tagged else e["loc"]
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            hint = _closest_key(cls, loc) if cls is not None and loc else None
            if hint:
                msg += f" (did you mean {hint!r}?)"
        else:
            msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            value = e.get("input")
            if e["type"] not in ("missing", "value_error", "assertion_error") \
                    and isinstance(value, (*_SCALARS, list)) and len(repr(value)) <= 60:
                given.setdefault(key, repr(value))
        msgs = messages.setdefault(key, [])
        if msg not in msgs:
            msgs.append(msg)
    parts = []
    for key, msgs in messages.items():
        if len(msgs) > 1 and all(m.startswith("Input should be ") for m in msgs):
            msgs = ["Input should be " + " or ".join(m.removeprefix("Input should be ") for m in msgs)]
        msg = "; ".join(msgs) + (f" (got {given[key]})" if key in given else "")
        parts.append(f"{key}: {msg}" if key else msg)
    return f"{origin}: " + "; ".join(parts)


def _union_tagged(errors: list) -> set[int]:
    """Indices of errors whose last ``loc`` element is a union member's tag (``bool``,
    ``literal['auto']``, a model name) rather than a key: several errors at one place
    that differ only there."""
    by_prefix: dict[tuple, list[int]] = {}
    for i, e in enumerate(errors):
        if e["loc"] and e["type"] not in ("extra_forbidden", "missing"):
            by_prefix.setdefault(tuple(e["loc"][:-1]), []).append(i)
    out: set[int] = set()
    for idx in by_prefix.values():
        tags = [errors[i]["loc"][-1] for i in idx]
        if len(idx) > 1 and all(isinstance(t, str) and _looks_like_tag(t) for t in tags):
            out.update(idx)
    return out


def _looks_like_tag(tag: str) -> bool:
    return (tag in {"bool", "str", "int", "float", "list", "dict", "tuple", "set", "none"} or "[" in tag
            or tag.startswith("function-") or tag[:1].isupper())


def _closest_key(cls: type[BaseModel], loc: tuple) -> str | None:
    """Closest field name (or alias) of the model at ``loc[:-1]`` to the unknown key
    ``loc[-1]``, walking fields, list indices and mapping keys from ``cls``."""
    model, skip = cls, 0
    for part in loc[:-1]:
        if skip:  # a list index or mapping key of the container just entered
            skip -= 1
            continue
        field = _field_by_key(model, part) if isinstance(part, str) else None
        if field is None:
            return None
        model, skip = _model_in(field.annotation)
        if model is None:
            return None
    keys = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    return close[0] if close else None


def _field_by_key(model: type[BaseModel], key: str):
    for name, f in model.model_fields.items():
        if key in (name, f.alias):
            return f
    return None


def _model_in(annotation) -> tuple[type[BaseModel] | None, int]:
    """The pydantic model inside ``annotation`` (``M``, ``M | None``, ``list[M]``,
    ``dict[str, M]``) and how many container levels (index or key) lead to it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    origin = typing.get_origin(annotation)
    if origin is None:
        return None, 0
    args = typing.get_args(annotation)
    level = 1 if origin in (list, dict, tuple, set) else 0
    if origin is dict:
        args = args[1:]
    for a in args:
        m, n = _model_in(a)
        if m is not None:
            return m, n + level
    return None, 0


# ---- loading ----------------------------------------------------------------------------


def load_yaml(path: str | Path, what: str = "config") -> Any:
    """``yaml.safe_load`` of a file; a missing file or bad YAML is one-line ``SchemaError``
    (``config file not found: PATH``, ``config PATH: not valid YAML at line L, column C: ...``)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{what} file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).replace("\n", " ")
        raise SchemaError(f"{what} {path}: not valid YAML{where}: {problem}") from None


def parse_model(data: Any, cls: type[M], origin: str = "<dict>") -> M:
    """Validate ``data`` (a mapping, e.g. from YAML) into ``cls``; errors are one
    :class:`SchemaError` line naming ``origin`` and the dotted key."""
    if not isinstance(data, dict):
        raise SchemaError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise SchemaError(format_validation_error(err, origin, cls)) from None


def load_model(path: str | Path, cls: type[M], what: str = "config", overrides: dict | None = None) -> M:
    """Read a YAML file into ``cls`` (``overrides`` replace top-level keys first); an
    empty file is an empty mapping."""
    data = load_yaml(path, what)
    data = {} if data is None else data
    if overrides and isinstance(data, dict):
        data = {**data, **overrides}
    return parse_model(data, cls, origin=str(path))
