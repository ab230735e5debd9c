"""Config reference generated from the config classes themselves.

Every field of every config carries its type, default, constraints and ``description``
(:mod:`graphrec.config_base`); this module renders a config class tree as

* Markdown (:func:`render_markdown`): the reference section of ``configs/README.md``,
  between :data:`BEGIN` and :data:`END` (``graphrec config docs --update configs/README.md``;
  ``tests/test_config_docs.py`` fails when the file is out of date);
* plain text (:func:`render_text`): ``graphrec config show twhin|pinsage|pipeline|schema``;
* a compact key list (:func:`render_keys`): the epilog of ``graphrec train twhin --help``.

``python -m graphrec.config_docs [--update PATH]`` does the same as ``graphrec config docs``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from graphrec.errors import GraphrecError
from graphrec.io import atomic_file


@dataclass(frozen=True)
class DocumentedConfig:
    """One top-level config kind: where its class lives and which file it describes."""

    module: str
    cls: str
    what: str

    def load(self) -> type[BaseModel]:
        return getattr(importlib.import_module(self.module), self.cls)


CONFIGS: dict[str, DocumentedConfig] = {
    "twhin": DocumentedConfig("graphrec.run.config", "TwHINConfig",
                              "TwHIN run config (`configs/twhin-*.yaml`, `graphrec train twhin --config`)"),
    "pinsage": DocumentedConfig("graphrec.run.config", "PinSageConfig",
                                "PinSage run config (`configs/pinsage-*.yaml`, `graphrec train pinsage --config`)"),
    "pipeline": DocumentedConfig("graphrec.pipeline", "JobConfig",
                                 "end-to-end job (`configs/quickstart.yaml`, `graphrec run`)"),
    "schema": DocumentedConfig("graphrec.graph.schema", "GraphSchema",
                               "graph schema (`graphs/*.yaml`, `graphrec build --schema`)"),
    "serve": DocumentedConfig("graphrec.retrieval.service", "ServiceConfig",
                              "retrieval service (`configs/serve.yaml`, `graphrec serve --config`, the `args` of a "
                              "Serve config's `graphrec.retrieval.service:build_app`)"),
}
"""The config kinds documented in ``configs/README.md`` and by ``graphrec config show``
(nested sections, e.g. the job's ``index`` and ``data.generate``, are part of their tree)."""

BEGIN = ("<!-- BEGIN GENERATED REFERENCE: edit the config classes, then run "
         "`graphrec config docs --update configs/README.md` -->")
END = "<!-- END GENERATED REFERENCE -->"
README = Path(__file__).resolve().parents[1] / "configs" / "README.md"
UPDATE_COMMAND = "graphrec config docs --update configs/README.md"


def config_class(name: str) -> type[BaseModel]:
    """The config class documented as ``name``; a ``GraphrecError`` listing the names otherwise."""
    if name not in CONFIGS:
        raise GraphrecError(f"unknown config {name!r} (choose from {', '.join(CONFIGS)})")
    return CONFIGS[name].load()


# ---- walking a config tree --------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A model in a config tree: its dotted ``path`` (``""`` for the root; ``<name>`` for a
    mapping key, ``[]`` for a list item) and class."""

    path: str
    cls: type[BaseModel]


def sections(root: type[BaseModel]) -> list[Section]:
    """Every model of ``root``'s tree, each once (at its first path), depth first in field order."""
    out: list[Section] = []
    seen: set[type] = set()

    def visit(cls: type[BaseModel], path: str) -> None:
        if cls in seen:
            return
        seen.add(cls)
        out.append(Section(path, cls))
        for key, field in fields(cls):
            model, suffix = _nested_model(field.annotation)
            if model is not None:
                visit(model, f"{path}.{key}{suffix}" if path else f"{key}{suffix}")

    visit(root, "")
    return out


def fields(cls: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    """``(key as written in YAML, field)`` of a model, in declaration order."""
    for name, field in cls.model_fields.items():
        yield field.alias or name, field


def _nested_model(annotation) -> tuple[type[BaseModel] | None, str]:
    """The model inside a field's annotation and the path suffix that reaches it
    (``""``, ``.<name>`` for a mapping value, ``[]`` for a list item)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        m, s = _nested_model(args[1])
        return m, (".<name>" + s if m is not None else "")
    if origin in (list, tuple, set):
        for a in args:
            m, s = _nested_model(a)
            if m is not None:
                return m, "[]" + s
        return None, ""
    if origin in (typing.Union, types.UnionType):
        for a in args:
            m, s = _nested_model(a)
            if m is not None:
                return m, s
    return None, ""


# ---- one field in words -----------------------------------------------------------------


def type_text(annotation: Any) -> str:
    """A field type as users write it in YAML: ``int``, ``auto | int``, ``list[str]``,
    ``dict[str, Feature]``, ``float | null``, ``twhin``."""
    if annotation is type(None) or annotation is None:
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin is dict:
        return f"dict[{type_text(args[0])}, {type_text(args[1])}]"
    if origin is list:
        return f"list[{type_text(args[0])}]"
    if origin is tuple:
        return "[" + ", ".join(type_text(a) for a in args) + "]"
    if isinstance(annotation, type):
        return {"str": "str", "int": "int", "float": "float", "bool": "bool"}.get(annotation.__name__,
                                                                                   annotation.__name__)
    return str(annotation).replace("typing.", "")


_BOUNDS = ((at.Ge, "ge", "≥"), (at.Gt, "gt", ">"), (at.Le, "le", "≤"), (at.Lt, "lt", "<"),
           (at.MinLen, "min_length", "length ≥"), (at.MaxLen, "max_length", "length ≤"))


def constraints_text(field: FieldInfo) -> str:
    """Bounds of a field (``≥ 1``, ``> 0, < 1``, ``length ≥ 1``), empty when none."""
    out = []
    for m in field.metadata:
        for kind, attr, sym in _BOUNDS:
            if isinstance(m, kind):
                out.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(out)


def default_text(field: FieldInfo) -> str:
    """The default as YAML (``100``, ``null``, ``true``, ``[]``), ``required`` when there is
    none, ``(section)`` for a nested model's own defaults."""
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return "required"
    return _yaml_value(value)


def _yaml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def doc_text(cls: type) -> str:
    """A class docstring with reST markup turned into Markdown-ish text."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    doc = re.sub(r":(?:func|class|mod|data|meth|attr):`~?([^`]+)`", r"`\1`", doc)
    return doc.replace("``", "`")


# ---- renderers --------------------------------------------------------------------------


def render_markdown(name: str, cls: type[BaseModel] | None = None, level: int = 3) -> str:
    """Markdown reference of config ``name``: one heading, docstring and table (key, type,
    default, description) per section of the tree."""
    cls = cls or config_class(name)
    what = CONFIGS[name].what if name in CONFIGS else cls.__name__
    out = []
    for sec in sections(cls):
        if sec.path:
            out.append(f"{'#' * (level + 1)} `{name}.{sec.path}` ({sec.cls.__name__})\n")
        else:
            out.append(f"{'#' * level} `{name}` ({cls.__name__})\n")
            out.append(f"*{what[0].upper()}{what[1:]}.*\n")
        doc = doc_text(sec.cls)
        if doc:
            out.append(doc + "\n")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        for key, field in fields(sec.cls):
            t = type_text(field.annotation)
            c = constraints_text(field)
            d = default_text(field)
            cells = [f"`{key}`", t + (f" ({c})" if c else ""), d if d in ("required", "(section)") else f"`{d}`",
                     (field.description or "").replace("\n", " ")]
            out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_text(name: str, cls: type[BaseModel] | None = None, width: int = 100) -> str:
    """Plain-text reference of config ``name``, nested like the YAML it describes."""
    cls = cls or config_class(name)
    what = CONFIGS[name].what if name in CONFIGS else cls.__name__
    out = [f"{name}: {what.replace('`', '')} ({cls.__name__})", ""]
    out += _wrap(doc_text(cls).replace("`", ""), "  ", width)
    seen: set[type] = {cls}

    def walk(model: type[BaseModel], indent: str) -> None:
        for key, field in fields(model):
            t = type_text(field.annotation)
            c = constraints_text(field)
            out.append("")
            out.append(f"{indent}{key}: {t}{f' ({c})' if c else ''}  [default: {default_text(field)}]")
            out.extend(_wrap(field.description or "", indent + "    ", width))
            nested, suffix = _nested_model(field.annotation)
            if nested is not None:
                if nested in seen:
                    out.append(f"{indent}    ({nested.__name__}: described above)")
                    continue
                seen.add(nested)
                label = {"": "", "[]": "each item: ", ".<name>": "each value: "}.get(suffix, f"{suffix}: ")
                doc = doc_text(nested).replace("`", "")
                if doc:
                    out.extend(_wrap(f"{label}{nested.__name__}: {doc}", indent + "    ", width))
                walk(nested, indent + "  ")

    walk(cls, "  ")
    return "\n".join(out) + "\n"


def _wrap(text: str, indent: str, width: int) -> list[str]:
    lines = []
    for para in text.split("\n\n"):
        para = " ".join(para.split())
        if para:
            lines += textwrap.wrap(para, width=width, initial_indent=indent, subsequent_indent=indent,
                                   break_on_hyphens=False) or [indent]
    return lines


def render_keys(name: str, cls: type[BaseModel] | None = None) -> list[str]:
    """One line per key of config ``name``, dotted for nested sections:
    ``negatives.uniform: int (≥ 0) = 100``."""
    cls = cls or config_class(name)
    lines = []

    def walk(model: type[BaseModel], prefix: str, seen: frozenset) -> None:
        for key, field in fields(model):
            nested, suffix = _nested_model(field.annotation)
            path = f"{prefix}{key}"
            if nested is not None and nested not in seen:
                walk(nested, f"{path}{suffix}.", seen | {nested})
                continue
            c = constraints_text(field)
            lines.append(f"{path}: {type_text(field.annotation)}{f' ({c})' if c else ''} = {default_text(field)}")

    walk(cls, "", frozenset({cls}))
    return lines


def render_reference() -> str:
    """The generated part of ``configs/README.md``: every kind of :data:`CONFIGS`."""
    out = [BEGIN, "", "## Reference", "",
           "Generated from the config classes (every field's type, default and description); "
           "`graphrec config show NAME` prints the same as text.", ""]
    for name in CONFIGS:
        out.append(render_markdown(name))
    out.append(END)
    return "\n".join(out) + "\n"


def readme_with_reference(text: str) -> str:
    """``text`` (a README) with the part between :data:`BEGIN` and :data:`END` replaced by
    the current reference (appended when the markers are absent)."""
    ref = render_reference()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + ref + (("\n" + tail) if tail else "")
    return text.rstrip("\n") + "\n\n" + ref


def update_readme(path: str | Path = README) -> bool:
    """Rewrite the reference in the README at ``path`` (atomically); True when it changed."""
    path = Path(path)
    if not path.is_file():
        raise GraphrecError(f"{path}: file not found")
    old = path.read_text()
    new = readme_with_reference(old)
    if new == old:
        return False
    with atomic_file(path, overwrite=True) as tmp:
        tmp.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m graphrec.config_docs [--update PATH]``: print the reference, or update a README."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--update"]:
        target = argv[1] if len(argv) > 1 else README
        print(f"{target}: {'updated' if update_readme(target) else 'up to date'}")
    else:
        sys.stdout.write(render_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
