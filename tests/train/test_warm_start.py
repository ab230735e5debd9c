import json

import numpy as np
import torch

from graphrec.cli import main
from graphrec.eval.split import cold_item_split
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import open_run, twhin_model
from graphrec.train.runs import fit
from graphrec.train.twhin import select_relations
from graphrec.train.warm_start import drift_report, warm_start

FAST = dict(dim=16, epochs=2, batch_size=256, lr=0.1)


def test_warm_start_from_an_older_graph(small_pins_graph, tmp_path, capsys):
    """The older graph lacks 20% of the pins (the newest); the newer one has them all."""
    new = small_pins_graph
    old = cold_item_split(new, "user:saves:pin", 0.2, out=tmp_path / "s").train
    fit(TwHINConfig(**FAST), old.path, tmp_path / "r1", use_ray=False)
    r1 = open_run(tmp_path / "r1").model
    cfg = TwHINConfig(**FAST)
    model = twhin_model(cfg, {t: new.num_nodes(t) for t in new.node_types}, [et for et, _ in select_relations(new, cfg)])
    carried, counts = warm_start(model, new, r1, old)
    rows = old.lookup("pin", new.node_ids("pin"))
    known = np.flatnonzero(rows >= 0)
    torch.testing.assert_close(model.node_embeddings("pin")[known], r1.node_embeddings("pin")[rows[known]])
    torch.testing.assert_close(model.node_embeddings("user"), r1.node_embeddings("user"))
    assert counts["carried"] == sum(old.num_nodes(t) for t in old.node_types) and counts["relations"] == len(r1.edge_types)
    # a new pin starts from the mean of its neighbours the old run knew (its boards, author; no saves in the old run)
    v = int(np.flatnonzero(rows < 0)[0])
    nbrs = [model.global_ids(rel.dst_type, torch.from_numpy(np.asarray(rel.indices[rel.indptr[v]:rel.indptr[v + 1]],
                                                                          np.int64)))
            for rel in new.relations() if rel.src_type == "pin"]
    nbrs = torch.cat(nbrs)
    nbrs = nbrs[carried[nbrs]]
    expect = torch.stack([model.node_emb.weight[int(i)] for i in nbrs]).mean(0)
    torch.testing.assert_close(model.node_embeddings("pin")[v], expect)
    assert counts["from_neighbours"] > 0
    torch.testing.assert_close(model.relation_embedding(("user", "saves", "pin")),
                               r1.relation_embedding(("user", "saves", "pin")))
    # a model compared with itself has not drifted
    same = drift_report(r1, old, r1, old)
    assert same["mean_cosine"] > 0.9999 and same["knn_overlap@10"] == 1.0

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST}))
    capsys.readouterr()
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "frozen"), "--no-ray", "--init-from", str(tmp_path / "r1"), "--freeze-existing"]) == 0
    out = capsys.readouterr().out
    assert "drift from" in out and "mean cosine 1.000" in out and "kNN overlap@10 1.000" in out
    frozen = open_run(tmp_path / "frozen")
    torch.testing.assert_close(frozen.model.node_embeddings("pin")[known], r1.node_embeddings("pin")[rows[known]],
                               rtol=0, atol=0)
    ws = frozen.info["summary"]["warm_start"]
    assert ws["frozen"] and ws["drift"]["nodes"] == counts["carried"] and ws["init"] == counts
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "free"), "--no-ray", "--init-from", str(tmp_path / "r1")]) == 0
    d = open_run(tmp_path / "free").info["summary"]["warm_start"]["drift"]
    assert 0 < d["mean_cosine"] < 0.9999 and 0 <= d["knn_overlap@10"] <= 1 and set(d["by_type"]) >= {"pin", "user"}
    # refusals: exit 2, one line, nothing written
    capsys.readouterr()
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "bad"), "--no-ray", "--freeze-existing"]) == 2
    assert "freeze_existing needs init_from" in capsys.readouterr().err
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "bad"), "--no-ray", "--init-from", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    cfg_path.write_text(json.dumps({"model": "twhin", **FAST, "dim": 8}))
    assert main(["-q", "train", "twhin", "--config", str(cfg_path), "--graph", str(new.path), "--out",
                 str(tmp_path / "bad"), "--no-ray", "--init-from", str(tmp_path / "r1")]) == 2
    assert "this config trains dim 8" in capsys.readouterr().err and not (tmp_path / "bad").exists()
