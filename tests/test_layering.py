"""Lower layers never import higher ones (DEVELOPERS.md: data flows one way)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "graphrec"
# each package may import only the packages listed (plus itself and the base modules)
ALLOWED = {
    "graph": set(),
    "sampling": {"graph"},
    "models": {"graph", "sampling"},
    "run": {"graph", "sampling", "models"},
    "train": {"graph", "sampling", "models", "eval", "run"},
    "infer": {"graph", "sampling", "models", "run"},
    "retrieval": {"graph", "models", "infer", "run"},
    "eval": {"graph"},
    "analytics": {"graph"},
    "datasets": set(),
}
BASE = {"errors", "io", "ray_env", "config_base", "registry", "__init__"}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("graphrec"):
            yield node.module
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("graphrec"):
                    yield a.name


def test_layers():
    bad = []
    for layer, allowed in ALLOWED.items():
        for f in (PKG / layer).rglob("*.py"):
            for mod in _imports(f):
                parts = mod.split(".")
                target = parts[1] if len(parts) > 1 else "__init__"
                if target in BASE or target == layer or target in allowed:
                    continue
                bad.append(f"{f.relative_to(PKG)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_models_know_no_ray():
    for f in list((PKG / "models").rglob("*.py")) + list((PKG / "graph").rglob("*.py")):
        assert "import ray" not in f.read_text(), f
