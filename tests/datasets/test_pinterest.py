import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from graphrec.analytics import powerlaw_exponent
from graphrec.datasets import PinterestConfig, generate_pinterest
from graphrec.graph import build_graph, load_schema
from tests.conftest import ROOT

CFG = PinterestConfig(users=3000, pins=4000, boards=300, authors=200, saves=60_000, clusters=10, seed=3, chunk_edges=7000)


@pytest.fixture(scope="module")
def pins_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pins") / "data"
    generate_pinterest(CFG, out, progress=False)
    return out


def test_tables_and_counts(pins_dir):
    for name in ("users", "pins", "boards", "authors", "saves", "pin_board", "author_pin", "follows_board", "follows_author"):
        assert (pins_dir / f"{name}.parquet").is_file()
    saves = pq.read_table(pins_dir / "saves.parquet")
    assert saves.num_rows == 60_000
    assert pq.ParquetFile(pins_dir / "saves.parquet").num_row_groups >= 60_000 // 7000 // 2  # written in chunks
    assert saves.schema.names == ["user_id", "pin_id", "timestamp"]


def test_deterministic_and_chunk_size_only_changes_layout(pins_dir, tmp_path):
    again = tmp_path / "again"
    generate_pinterest(CFG, again, progress=False)
    assert pq.read_table(again / "saves.parquet").equals(pq.read_table(pins_dir / "saves.parquet"))
    other_seed = tmp_path / "other"
    generate_pinterest(CFG.model_copy(update={"seed": 4}), other_seed, progress=False)
    assert not pq.read_table(other_seed / "saves.parquet").equals(pq.read_table(pins_dir / "saves.parquet"))


def test_power_law_degrees_and_planted_clusters(pins_dir):
    saves = pd.read_parquet(pins_dir / "saves.parquet")
    users = pd.read_parquet(pins_dir / "users.parquet")
    pins = pd.read_parquet(pins_dir / "pins.parquet")
    user_deg = saves.user_id.value_counts().values
    pin_deg = saves.pin_id.value_counts().values
    # heavy tails: max degree far above the median, MLE exponent in the power-law range
    assert user_deg.max() > 20 * np.median(user_deg)
    assert pin_deg.max() > 20 * np.median(pin_deg)
    assert 1.3 < powerlaw_exponent(user_deg, d_min=5) < 3.5
    # planted clusters: a save lands in the user's primary cluster ~p_primary of the time
    m = saves.merge(users[["user_id", "cluster"]], on="user_id").merge(
        pins[["pin_id", "cluster"]], on="pin_id", suffixes=("_user", "_pin"))
    agree = (m.cluster_user == m.cluster_pin).mean()
    assert abs(agree - (CFG.p_primary + (1 - CFG.p_primary - CFG.p_secondary) / CFG.clusters)) < 0.03
    # pin categories carry (noisy) signal about the cluster
    assert (pins.category.str[3:].astype(int) == pins.cluster).mean() > CFG.feature_signal


def test_schema_builds_it(pins_dir, tmp_path):
    g = build_graph(load_schema(ROOT / "graphs" / "pinterest-synthetic.yaml"), tmp_path / "g", data_dir=pins_dir, progress=False)
    assert g.num_nodes("user") == 3000 and g.num_nodes("pin") == 4000
    assert g.num_edges(("user", "saves", "pin")) == 60_000
    assert g.num_edges(("pin", "created_by", "author")) == 4000
    assert g.feature("pin", "tags").offsets[-1] == 3 * 4000


def test_bad_config():
    with pytest.raises(ValueError, match="must be >= clusters"):
        PinterestConfig(pins=5, clusters=10)
    with pytest.raises(ValueError):
        PinterestConfig(users=10, typo=3)
