"""Every config documents itself (DEVELOPERS.md: every field documented), and
configs/README.md is generated from the config classes."""

import importlib
import pkgutil

import pytest
from pydantic import BaseModel

import graphrec
from graphrec import config_docs

# graph/schema.py is being changed on the store-integrity branch of issue 13; its field
# descriptions land after that merge (strict: this fails once they are complete).
PENDING = {"graphrec.graph.schema"}


def _models() -> dict[str, list[type[BaseModel]]]:
    """Every pydantic model defined in a graphrec module, by module."""
    out: dict[str, list[type[BaseModel]]] = {}
    for info in pkgutil.walk_packages(graphrec.__path__, "graphrec."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == info.name:
                out.setdefault(info.name, []).append(obj)
    return out


MODELS = _models()


def _undocumented(models) -> list[str]:
    bad = []
    for cls in models:
        if not (cls.__dict__.get("__doc__") or "").strip():
            bad.append(f"{cls.__module__}.{cls.__name__}: no docstring")
        for name, field in cls.model_fields.items():
            if not (field.description or "").strip():
                bad.append(f"{cls.__module__}.{cls.__name__}.{name}: no description")
    return bad


def test_the_config_modules_are_found():
    assert {"graphrec.run.config", "graphrec.pipeline", "graphrec.retrieval.index", "graphrec.datasets.pinterest",
            "graphrec.graph.schema"} <= set(MODELS)


@pytest.mark.parametrize("module", sorted(set(MODELS) - PENDING))
def test_every_field_and_class_is_documented(module):
    bad = _undocumented(MODELS[module])
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(PENDING))
@pytest.mark.xfail(strict=True, reason="field descriptions pending (see PENDING)")
def test_pending_modules_are_documented(module):
    assert not _undocumented(MODELS[module])


def test_every_config_is_in_the_reference():
    documented = {s.cls for name in config_docs.CONFIGS for s in config_docs.sections(config_docs.config_class(name))}
    missing = [f"{c.__module__}.{c.__name__}" for ms in MODELS.values() for c in ms
               if c not in documented and c.model_fields]  # field-less bases (StrictConfig) document nothing
    assert not missing, f"configs outside every tree of graphrec.config_docs.CONFIGS: {missing}"


def test_readme_is_up_to_date():
    text = config_docs.README.read_text()
    assert text == config_docs.readme_with_reference(text), (
        f"configs/README.md is out of date with the config classes: run `{config_docs.UPDATE_COMMAND}`")
