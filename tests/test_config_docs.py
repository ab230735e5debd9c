"""Every config documents itself (DEVELOPERS.md: every field documented), and
configs/README.md is generated from the config classes."""

import importlib
import pkgutil

import pytest
from pydantic import BaseModel

import graphrec
from graphrec import config_docs



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


@pytest.mark.parametrize("module", sorted(MODELS))
def test_every_field_and_class_is_documented(module):
    bad = _undocumented(MODELS[module])
    assert not bad, "\n".join(bad)


def test_every_config_is_in_the_reference():
    documented = {s.cls for name in config_docs.CONFIGS for s in config_docs.sections(config_docs.config_class(name))}
    missing = [f"{c.__module__}.{c.__name__}" for ms in MODELS.values() for c in ms
               if c not in documented and c.model_fields]  # field-less bases (StrictConfig) document nothing
    assert not missing, f"configs outside every tree of graphrec.config_docs.CONFIGS: {missing}"


def test_readme_is_up_to_date():
    text = config_docs.README.read_text()
    assert text == config_docs.readme_with_reference(text), (
        f"configs/README.md is out of date with the config classes: run `{config_docs.UPDATE_COMMAND}`")


def test_cli_shows_the_reference(capsys, tmp_path):
    from graphrec.cli import main

    assert main(["train", "twhin", "--help"]) == 0
    out = capsys.readouterr().out
    assert "graphrec config show twhin" in out and "negatives.uniform: int (≥ 0) = 100" in out
    assert "score: translation_dot | transe | distmult | complex | rotate = translation_dot" in out
    assert main(["train", "pinsage", "--help"]) == 0
    assert "walks.metapaths[].path: list[str] (length ≥ 1) = required" in capsys.readouterr().out
    for name in config_docs.CONFIGS:
        assert main(["config", "show", name]) == 0
        out = capsys.readouterr().out
        cls = config_docs.config_class(name)
        assert all(f"{key}:" in out for key, _ in config_docs.fields(cls))
    assert main(["config", "show", "pinsage", "--markdown"]) == 0
    assert "#### `pinsage.walks` (WalksConfig)" in capsys.readouterr().out
    assert main(["config", "show", "nope"]) == 2
    # --update rewrites only the generated part of a README, and says when nothing changed
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{config_docs.BEGIN}\nstale\n{config_docs.END}\n\nfooter\n")
    assert main(["config", "docs", "--update", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# intro\n\n") and text.endswith(f"{config_docs.END}\n\nfooter\n") and "stale" not in text
    assert "### `twhin` (TwHINConfig)" in text
    capsys.readouterr()
    assert main(["config", "docs", "--update", str(readme)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_renderers_describe_types_defaults_and_bounds():
    from graphrec.run.config import RayConfig, TwHINConfig

    f = TwHINConfig.model_fields
    assert config_docs.type_text(f["dim"].annotation) == "int | auto"
    assert config_docs.type_text(f["threads"].annotation) == "int | null"
    assert config_docs.constraints_text(f["holdout_fraction"]) == "≥ 0, < 1"
    assert config_docs.default_text(f["relations"]) == "{}" and config_docs.default_text(f["ray"]) == "(section)"
    md = config_docs.render_markdown("twhin")
    assert "| `workers` | int (≥ 1) | `1` | Ray Train workers (data-parallel processes) |" in md
    assert [s.path for s in config_docs.sections(TwHINConfig)] == ["", "negatives", "edge_weights.<name>", "validation",
                                                                    "checkpoints", "ray"]
    assert config_docs.sections(TwHINConfig)[-1].cls is RayConfig


def test_validation_errors_are_one_line_with_the_dotted_key(tmp_path):
    from graphrec.errors import SchemaError
    from graphrec.run.config import PinSageConfig, load_config

    p = tmp_path / "x.yaml"
    cases = {
        "validation: {sorce: split}\n": f"{p}: validation.sorce: unknown key (did you mean 'source'?)",
        "score: dot\n": f"{p}: score: Input should be 'translation_dot', 'transe', 'distmult', 'complex' or 'rotate' "
                        "(got 'dot')",
        "edge_weights: {'u:r:i': {atribute: w}}\n": f"{p}: edge_weights.u:r:i.atribute: unknown key "
                                                    "(did you mean 'attribute'?)",
        "relations: {'a:b:c': -1}\n": f"{p}: relations['a:b:c']: weight must be >= 0",
        "dim: [1]\n": f"{p}: dim: must be an integer >= 1 or auto, got [1]",
        "- 1\n": f"{p}: expected a mapping at the top level, got list",
        "dim: 8\n  bad: indent\n": f"config {p}: not valid YAML at line 2, column 6: mapping values are not allowed here",
    }
    for text, want in cases.items():
        p.write_text(text)
        with pytest.raises(SchemaError) as err:
            load_config(p)
        assert str(err.value) == want
    p.write_text("walks: {metapaths: [{path: ['item:a:item'], wieght: 2}]}\nray: {adress: x}\n")
    with pytest.raises(SchemaError) as err:
        load_config(p, PinSageConfig)
    assert str(err.value) == (f"{p}: walks.metapaths.0.wieght: unknown key (did you mean 'weight'?); "
                              "ray.adress: unknown key (did you mean 'address'?)")
    with pytest.raises(SchemaError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
