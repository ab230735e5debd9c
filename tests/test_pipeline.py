import json

import pandas as pd
import pytest
import yaml

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.pipeline import load_job_config, run_job

TINY = {
    "name": "tiny",
    "data": {"generate": {"users": 300, "pins": 600, "boards": 60, "authors": 30, "saves": 9000, "clusters": 4,
                          "seed": 1}},
    "schema": "graphs/pinterest-synthetic.yaml",
    "twhin": {"config": "configs/twhin-pinterest.yaml", "overrides": {"epochs": 3, "threads": 1}},
    "pinsage": {"config": "configs/pinsage-pinterest.yaml",
                "overrides": {"epochs": 2, "threads": 1, "loader_workers": 0, "walks": {"num_walks": 20},
                              "negatives": {"shared": 100}}},
    "ray": {"enabled": False},
    "inference_shard_size": 256,
    "ks": [1, 10, 20],
    "recommend_k": 5,
}


def test_job_runs_end_to_end_and_reports(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["-q", "run", str(cfg), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    s = json.loads((out / "summary.json").read_text())
    ev = s["evaluation"]
    assert set(ev["models"]) == {"twhin", "pinsage", "popularity"} and "new_items" in ev["protocols"]["user_to_item"]
    pop = ev["models"]["popularity"]["user_to_item"]
    assert 0 < pop["recall@20"] < 1 and pop["protocol"] == "new_items" and pop["users_skipped"] >= 0
    best = max(("twhin", "pinsage"), key=lambda m: ev["valid"][m]["user_to_item"]["recall@20"])
    assert s["recommend"]["model"] == best and "valid" in s["recommend"]["selected_by"]
    for m in ("twhin", "pinsage"):
        r = ev["models"][m]
        assert r["user_to_item_with_repeats"]["protocol"] == "with_repeats"
        assert 0 < r["user_to_item"]["recall@20"] <= 1 and 0 < r["item_to_item"]["hit@10"] <= 1
        assert r["user_to_item"]["recall@1"] <= r["user_to_item"]["recall@10"] <= r["user_to_item"]["recall@20"]
        cr = s["cluster_recovery"][m]
        assert cr["nmi"] > cr["random_nmi"] + 0.1 and cr["neighbor_purity@10"] > cr["random_neighbor_purity@10"]
        assert (out / "index" / m / "index.faiss").is_file() and (out / "embeddings" / m / "manifest.json").is_file()
    assert "sharded layer-wise" in json.loads((out / "embeddings" / "pinsage" / "manifest.json").read_text())["item_vectors"]
    report = (out / "report.md").read_text()
    for png in ("loss.png", "recall_at_k.png", "hitrate_at_k.png", "pin_projection.png"):
        assert (out / png).stat().st_size > 1000 and f"({png})" in report
    assert "Planted-cluster recovery" in report and "popularity" in report and "new_items" in report
    cands = pd.read_parquet(out / "candidates.parquet")
    assert s["recommend"]["rows"] == len(cands) and cands.groupby("user").size().max() == 5
    # the report ends with the command that serves the selected index; what it would serve
    # for the example user equals candidates.parquet (tests/retrieval/test_service.py runs the server)
    last = report.rstrip().splitlines()
    assert last[-1] == "```" and last[-2] == f"graphrec serve --index {out / 'index' / best}"
    from graphrec.retrieval.retriever import Retriever

    retriever, serve = Retriever(out / "index" / best), s["recommend"]["serve"]
    assert retriever.seen is not None  # exclude_seen: the train graph the embeddings name, after the swap
    hits = retriever.recommend_users([serve["user"]], [5], [True])[0]
    assert hits.ids.tolist() == cands[cands["user"] == serve["user"]].sort_values("rank")["item"].tolist()
    with pytest.raises(GraphrecError, match="already exists"):
        run_job(cfg, out)
    # built in a staging sibling, swapped in: no manifest points into the staging directory
    for man in [*out.rglob("*.json")]:
        assert ".out.tmp-" not in man.read_text(), man
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml", "out"]
    from graphrec.run.directory import open_run

    assert open_run(out / "runs" / "pinsage").store.path.resolve() == (out / "split" / "train").resolve()


def test_job_config_errors(tmp_path, capsys):
    bad = {**TINY, "pinsage": {**TINY["pinsage"], "overrides": {"epochz": 2}}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(bad))
    assert main(["-q", "run", str(tmp_path / "a.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "epochz: unknown key" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**TINY, "data": {"generate": TINY["data"]["generate"], "dir": "x"}}))
    with pytest.raises(GraphrecError, match="exactly one of data.generate or data.dir"):
        load_job_config(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**TINY, "ray": {"workerz": 2}}))
    assert main(["-q", "run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "ray.workerz: unknown key" in capsys.readouterr().err


def test_quickstart_config_is_valid():
    from tests.conftest import ROOT

    cfg, _ = load_job_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.twhin is not None and cfg.pinsage is not None and cfg.ray.enabled


def test_job_with_a_partitioned_twhin_reads_its_export_by_id(tmp_path):
    """A partitioned run's export lists nodes partition by partition; the job's evaluation
    and cluster recovery match rows to nodes by id (misaligned rows would score ~random)."""
    import copy

    job = copy.deepcopy(TINY)
    job["twhin"]["overrides"]["partitions"] = 2
    job["ray"]["workers"] = 1  # partitioned training without Ray trains on one worker
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert main(["-q", "run", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert json.loads((out / "runs" / "twhin" / "run.json").read_text())["partitions"] == 2
    s = json.loads((out / "summary.json").read_text())
    pop = s["evaluation"]["models"]["popularity"]["user_to_item"]["recall@20"]
    assert s["evaluation"]["models"]["twhin"]["user_to_item"]["recall@20"] > pop
    cr = s["cluster_recovery"]["twhin"]
    assert cr["nmi"] > cr["random_nmi"] + 0.3 and cr["neighbor_purity@10"] > cr["random_neighbor_purity@10"] + 0.3
