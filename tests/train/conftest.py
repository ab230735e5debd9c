import pytest

from graphrec.datasets import PinterestConfig, generate_pinterest
from graphrec.graph import build_graph, load_schema
from tests.conftest import ROOT


@pytest.fixture(scope="session")
def small_pins_graph(tmp_path_factory):
    d = tmp_path_factory.mktemp("pins")
    generate_pinterest(PinterestConfig(users=400, pins=600, boards=60, authors=40, saves=8000, clusters=6, seed=2),
                       d / "data", progress=False)
    return build_graph(load_schema(ROOT / "graphs" / "pinterest-synthetic.yaml"), d / "graph", data_dir=d / "data",
                       progress=False)
