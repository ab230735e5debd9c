"""open_run: one way to open any finished run; runs move with their graph; damaged
model files are named."""

import shutil

import numpy as np
import pytest
import torch

from graphrec.errors import GraphrecError
from graphrec.run.config import PinSageConfig, TwHINConfig
from graphrec.run.directory import PinSageRun, TwHINRun, open_run, run_model
from graphrec.train.runs import fit


@pytest.fixture(scope="module")
def twhin_run(small_pins_graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "twhin"
    fit(TwHINConfig(dim=8, epochs=1, batch_size=256), small_pins_graph.path, out, use_ray=False)
    return out


def test_open_run_of_either_model(twhin_run, small_pins_graph, tmp_path):
    run = open_run(twhin_run)
    assert isinstance(run, TwHINRun) and run_model(twhin_run) == "twhin"
    assert run.store.checksum == small_pins_graph.checksum and not run.model.training
    assert run.model.node_embeddings("pin").shape == (600, 8)
    with pytest.raises(GraphrecError, match="not pinsage"):
        open_run(twhin_run, expect="pinsage")
    cfg = PinSageConfig(item_type="pin", interactions="user:saves:pin", dim=8, hidden_dim=8, epochs=1, batch_size=256,
                        walks={"metapaths": [{"path": ["pin:saved_by:user", "user:saves:pin"]}], "num_walks": 5,
                               "top_t": 5}, loader_workers=0)
    fit(cfg, small_pins_graph.path, tmp_path / "ps", use_ray=False)
    ps = open_run(tmp_path / "ps", verify=True)
    assert isinstance(ps, PinSageRun) and ps.item_vectors.shape == (600, 8)
    assert ps.neighborhoods.neighbors.shape[0] == 600


def test_a_run_moved_with_its_graph_still_opens(twhin_run, small_pins_graph, tmp_path):
    shutil.copytree(small_pins_graph.path, tmp_path / "moved" / "graph")
    shutil.copytree(twhin_run, tmp_path / "moved" / "run")
    info = open_run(twhin_run).info
    info["graph"] = str(tmp_path / "gone")  # the absolute path no longer exists
    info["graph_relpath"] = "../graph"
    import json

    (tmp_path / "moved" / "run" / "run.json").write_text(json.dumps(info))
    run = open_run(tmp_path / "moved" / "run")
    assert run.store.path.resolve() == (tmp_path / "moved" / "graph").resolve()


def test_damaged_model_file_is_named(twhin_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(twhin_run, copy)
    data = bytearray((copy / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model.pt").write_bytes(bytes(data))
    with pytest.raises(GraphrecError, match=r"model\.pt"):
        open_run(copy)
    (copy / "run.json").write_text("{not json")
    with pytest.raises(GraphrecError, match="not valid JSON"):
        open_run(copy)
    with pytest.raises(GraphrecError, match="no such run directory"):
        open_run(tmp_path / "nope")


def test_open_run_is_bitwise_the_trained_model(twhin_run):
    state = torch.load(twhin_run / "model.pt", weights_only=True)["model"]
    run = open_run(twhin_run)
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in state.items())
    assert np.isfinite(run.model.node_emb.weight.detach().numpy()).all()
