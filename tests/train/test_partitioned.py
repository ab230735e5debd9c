"""Partitioned (out-of-core) TwHIN training in one process (train/partitioned.py)."""

import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import GraphrecError
from graphrec.eval import load_split, random_split
from graphrec.run.config import TwHINConfig
from graphrec.run.directory import open_run
from graphrec.train.evaluate import link_prediction_on_split
from graphrec.run.tables import PartitionTables
from graphrec.train.engine import FAULT_ENV
from graphrec.train.partitioned import BucketTrainer
from graphrec.train.runs import fit

CFG = dict(dim=32, epochs=8, batch_size=256, lr=0.2, relations={"*:*:*": 0, "user:saves:pin": 1})


@pytest.fixture(scope="module")
def split(small_pins_graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("part") / "split"
    random_split(small_pins_graph, fractions=(0.9, 0.05, 0.05), out=out)
    return load_split(out)


# blocks contrast a positive with its own partition only (half the pins at P=2): a little looser;
# regroup: each partition is that many storage partitions, dealt afresh every epoch
@pytest.mark.parametrize("scheme,parts,buckets,tolerance,regroup", [("pairs", 4, 6, 0.03, 1), ("blocks", 2, 4, 0.05, 1),
                                                                    ("blocks", 2, 4, 0.05, 3)])
def test_partitioned_training_matches_one_partition_in_quality_and_holds_at_most_two_per_type(
        split, tmp_path, monkeypatch, scheme, parts, buckets, tolerance, regroup):
    fit(TwHINConfig(**CFG), split.train.path, tmp_path / "p1", use_ray=False)
    reads: list[list[str]] = []
    orig_train, orig_read = BucketTrainer.train, PartitionTables.read_into

    def train(self, *args, **kw):
        reads.append([])
        return orig_train(self, *args, **kw)

    def read_into(self, name, out, manifest=None):
        reads[-1].append(name)
        return orig_read(self, name, out, manifest)

    monkeypatch.setattr(BucketTrainer, "train", train)
    monkeypatch.setattr(PartitionTables, "read_into", read_into)
    cfg = TwHINConfig(**CFG, partitions=parts, partition_buckets=scheme, partition_regroup=regroup)
    info = fit(cfg, split.train.path, tmp_path / "p2", use_ray=False)
    assert info["partitions"] == parts and info["summary"]["history"][-1]["buckets"] == buckets
    assert len(reads) == buckets * CFG["epochs"]
    losses = [h["loss"] for h in info["summary"]["history"]]
    assert losses[-1] < losses[0]
    assert json.loads((tmp_path / "p2" / "run.json").read_text())["partition_tables"]["partitioning"]["regroup"] == \
        regroup
    # a bucket reads the partitions it trains (embeddings and Adagrad state): pairs two of each
    # type, blocks one of each side's (user -> pin: one user and one pin partition), each
    # partition `regroup` storage partitions
    held = []
    for names in reads:
        per_type: dict[str, set] = {}
        for n in names:
            k, p, what = n.split("/")
            if what == "emb":
                per_type.setdefault(k, set()).add(p)
        assert len(per_type) == 2 and all(len(ps) == (2 if scheme == "pairs" else 1) * regroup
                                          for ps in per_type.values())
        held.append({k: frozenset(ps) for k, ps in per_type.items()})
    # with regroup > 1 the storage partitions are dealt into other groups in another epoch
    epochs = [{frozenset(h.items()) for h in held[e * buckets : (e + 1) * buckets]} for e in range(CFG["epochs"])]
    assert (len({frozenset(e) for e in epochs}) > 1) == (regroup > 1)
    mrr1 = link_prediction_on_split(open_run(tmp_path / "p1").model, split)["mrr"]
    mrr2 = link_prediction_on_split(open_run(tmp_path / "p2").model, split)["mrr"]
    assert mrr2 > 0.03 * 3  # far above random (~0.01 over 600 pins)
    assert abs(mrr2 - mrr1) < tolerance, (mrr1, mrr2)


def test_partitioned_run_exports_like_any_run_and_is_deterministic(split, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 2\nbatch_size: 256\n")
    for name in ("a", "b"):
        assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(split.train.path), "--out",
                     str(tmp_path / name), "--no-ray", "--partitions", "2"]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["partitions"] == 2
    a, b = open_run(tmp_path / "a").model, open_run(tmp_path / "b").model
    assert torch.equal(a.node_emb.weight, b.node_emb.weight)
    assert np.isfinite(a.node_emb.weight.detach().numpy()).all()
    assert main(["-q", "export", "--run", str(tmp_path / "a"), "--out", str(tmp_path / "emb"), "--retrieval",
                 "user:saves:pin"]) == 0
    assert (tmp_path / "emb" / "nodes" / "pin.parquet").is_file()
    # --resume of the finished run with another optimizer: refused (its tables hold the other's state)
    other = tmp_path / "other.yaml"
    other.write_text("dim: 16\nepochs: 2\nbatch_size: 256\noptimizer: row_adagrad\n")
    before = (tmp_path / "a" / "run.json").read_bytes()
    assert main(["-q", "train", "twhin", "--config", str(other), "--graph", str(split.train.path), "--out",
                 str(tmp_path / "a"), "--no-ray", "--partitions", "2", "--resume"]) == 2
    assert (tmp_path / "a" / "run.json").read_bytes() == before


def test_what_partitioned_training_does_not_do_is_refused(split, tmp_path):
    with pytest.raises(GraphrecError, match="drop --no-ray"):
        fit(TwHINConfig(**CFG, partitions=2, ray={"workers": 2}), split.train.path, tmp_path / "r", use_ray=False)
    with pytest.raises(GraphrecError, match="adagrad"):
        fit(TwHINConfig(**CFG, partitions=2, optimizer="sparse_adam"), split.train.path, tmp_path / "r",
            use_ray=False)
    with pytest.raises(GraphrecError, match="valid triples only"):
        fit(TwHINConfig(**CFG, partitions=2, validation={"source": "holdout"}, holdout_fraction=0.1),
            split.train.path, tmp_path / "r", use_ray=False)
    assert not (tmp_path / "r").exists()


def test_two_ray_workers_train_disjoint_buckets_concurrently_and_survive_a_killed_worker(split, tmp_path, monkeypatch):
    """P=4 on two Ray workers: the lock server lets them train buckets with disjoint
    partitions at the same time; worker 1 is killed after writing (not committing) its
    second bucket of epoch 1: the bucket goes back to the pool, is trained once more and
    committed, the epoch completes, and the result is as good as one process's (P=4 in
    one process, and close to P=1: the partition-restricted negatives cost a little on a
    graph with 100 users per partition)."""
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, json.dumps({"epoch": 1, "rank": 1, "step": 1, "marker": str(marker)}))
    base = {**CFG, "epochs": 4, "negatives": {"in_batch": False}}
    cfg = TwHINConfig(**base, partitions=4, partition_buckets="pairs", ray={"workers": 2, "max_failures": 1})
    info = fit(cfg, split.train.path, tmp_path / "ray", use_ray=True)
    assert marker.exists()  # the fault fired
    s = info["summary"]
    assert s["world_size"] == 2 and info["partitions"] == 4 and len(s["history"]) == 4
    rows = [json.loads(line) for line in (tmp_path / "ray" / "buckets.jsonl").read_text().splitlines()]
    for epoch in range(4):  # every bucket committed exactly once per epoch, the killed one included
        got = sorted(tuple(r["bucket"]) for r in rows if r["epoch"] == epoch)
        assert got == [(i, j) for i in range(4) for j in range(i + 1, 4)], epoch  # the 6 pairs
    assert {r["worker"] for r in rows} == {0, 1}
    overlaps = [(a, b) for a in rows for b in rows if a["worker"] == 0 and b["worker"] == 1
                and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlaps, "the two workers never trained at the same time"
    assert all(not ({*a["bucket"]} & {*b["bucket"]}) for a, b in overlaps)  # never the same partition
    run = open_run(tmp_path / "ray", verify=True)
    fit(TwHINConfig(**base), split.train.path, tmp_path / "p1", use_ray=False)
    fit(TwHINConfig(**base, partitions=4, partition_buckets="pairs"), split.train.path, tmp_path / "p4", use_ray=False)
    mrr1, mrr4, mrr_ray = (link_prediction_on_split(open_run(tmp_path / n).model, split)["mrr"]
                           for n in ("p1", "p4", "ray"))
    assert abs(mrr_ray - mrr4) < 0.03 and mrr_ray > 0.85 * mrr1, (mrr1, mrr4, mrr_ray)


def test_partitioned_early_stopping_keeps_the_best_epoch(split, tmp_path):
    cfg = TwHINConfig(**{**CFG, "epochs": 30, "lr": 0.5}, partitions=2, patience=2,
                      validation={"source": "split", "max_triples": 500})
    info = fit(cfg, split.train.path, tmp_path / "es", use_ray=False)
    s = info["summary"]
    assert s["monitor"] == "valid_mrr" and s["best_epoch"] is not None
    mrrs = [h["valid_mrr"] for h in s["history"]]
    assert s["best_valid_mrr"] == max(mrrs) and s["history"][s["best_epoch"]]["valid_mrr"] == max(mrrs)
    if s["stopped_early"]:
        assert len(mrrs) - 1 - s["best_epoch"] == 2
    # the saved model is the best epoch's: its validation MRR is the best one
    from graphrec.train.partitioned import assemble  # noqa: F401 - the same evaluator as training
    from graphrec.train.twhin import build_validation

    run = open_run(tmp_path / "es")
    val = build_validation(run.config, run.store, [tuple(e) for e in run.model.edge_types], "split", split, None)
    assert val.mrr(run.model) == pytest.approx(s["best_valid_mrr"], abs=1e-6)


@pytest.mark.slow
def test_killed_partitioned_job_resumes_after_the_last_committed_bucket(split, tmp_path):
    """SIGKILL right after the 10th commit (epoch 1, bucket 2 of 6); --resume continues
    from there and gives bitwise the model of an uninterrupted run."""
    from tests.reliability.test_kill import kill_at

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 3\nbatch_size: 256\npartitions: 4\npartition_buckets: pairs\nthreads: 1\n")  # same threads in every process: same sums
    argv = ["train", "twhin", "--config", str(cfg), "--graph", str(split.train.path), "--out", str(tmp_path / "run"),
            "--no-ray"]
    # commit 1 is the initial tables; then the 6 buckets of epoch 0, its record, 2 buckets of epoch 1
    kill_at(tmp_path, argv, module="graphrec.run.storage", owner="PartitionCheckpoints", attr="commit", n=10,
            after_call=True)
    assert not (tmp_path / "run" / "run.json").exists()
    assert main(["-q", *argv]) == 2  # an unfinished run's state is never silently discarded
    assert main(["-q", *argv, "--resume"]) == 0
    whole = [a if a != str(tmp_path / "run") else str(tmp_path / "whole") for a in argv]
    assert main(["-q", *whole]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["summary"]["starts"] == [0, 1] and [h["epoch"] for h in info["summary"]["history"]] == [0, 1, 2]
    a, b = open_run(tmp_path / "run").model, open_run(tmp_path / "whole").model
    assert torch.equal(a.node_emb.weight, b.node_emb.weight) and torch.equal(a.rel_emb.weight, b.rel_emb.weight)


def test_graphrec_evaluate_scores_a_partitioned_run_from_its_tables(split, tmp_path, capsys):
    """`graphrec evaluate` opens a partitioned run (model.pt: relation vectors only) and
    assembles its tables on demand: the metrics are those of the assembled model."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 16\nepochs: 2\nbatch_size: 256\npartitions: 2\n")
    assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(split.train.path), "--out",
                 str(tmp_path / "run"), "--no-ray"]) == 0
    assert set(torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]) == {"rel_emb.weight"}
    capsys.readouterr()
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--split", str(split.path), "--json"]) == 0
    lp = json.loads(capsys.readouterr().out)["models"]["twhin"]["link_prediction"]
    assert lp["mrr"] == pytest.approx(link_prediction_on_split(open_run(tmp_path / "run").model, split)["mrr"])


def test_reverse_views_train_on_their_base_buckets(split, tmp_path):
    """``include_reverse``: a reverse view's buckets are its base's, transposed."""
    cfg = TwHINConfig(**{**CFG, "epochs": 2, "relations": {"*:*:*": 0, "pin:saved_by:user": 1}},
                      include_reverse=True, partitions=2)
    info = fit(cfg, split.train.path, tmp_path / "rev", use_ray=False)
    h = info["summary"]["history"]
    assert info["edge_types"] == [["pin", "saved_by", "user"]]
    assert int(round(h[0]["positives_per_s"] * h[0]["seconds"])) == pytest.approx(
        split.train.relation(("user", "saves", "pin")).num_edges, rel=0.01)
    assert h[-1]["loss"] < h[0]["loss"]


@pytest.mark.parametrize("min_nodes", [0, 500])  # 500: users (400) stay whole, pins (600) are partitioned
def test_pairs_train_within_partition_blocks_in_every_pair(split, tmp_path, min_nodes):
    """``pairs``: an epoch trains every between-partition edge once and every
    within-partition edge in each of the P - 1 pairs of its partition; a relation with
    one partitioned end takes 2/P of each of its blocks per pair: 2 (P - 1) / P of its
    edges either way (up to rounding per bucket)."""
    from graphrec.graph.partition import EdgeBuckets, PartitionSpec

    p = 3
    cfg = TwHINConfig(**{**CFG, "epochs": 1}, partitions=p, partition_min_nodes=min_nodes, partition_buckets="pairs")
    fit(cfg, split.train.path, tmp_path / "run", use_ray=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "buckets.jsonl").read_text().splitlines()]
    assert sorted(tuple(r["bucket"]) for r in rows) == [(0, 1), (0, 2), (1, 2)]
    sizes = EdgeBuckets.open_or_build(split.train, PartitionSpec(p, min_nodes, 0)).relation(
        ("user", "saves", "pin")).sizes()
    trained = sum(r["positives"] for r in rows)
    if min_nodes == 0:
        assert sizes.shape == (p, p)
        assert trained == sizes.sum() - np.trace(sizes) + (p - 1) * np.trace(sizes)
    else:
        assert sizes.shape == (1, p)
        assert trained == sum(round(2 / p * sizes[0, q]) for a in range(p) for b in range(a + 1, p) for q in (a, b))


def test_types_batches_mix_the_relations_between_two_types(kg_split, tmp_path):
    """``batches: types``: the three relations of a one-type graph share batches
    (each positive scored with its own relation): the same positives per epoch as one
    relation per batch, in fewer steps, and a model as good on the split's test triples."""
    kg = dict(score="complex", dim=16, batch_size=200, lr=0.5, epochs=12, partitions=2, partition_buckets="pairs",
              negatives={"uniform": 0, "exhaustive_max_nodes": 1000, "in_batch": False})
    split = load_split(kg_split / "split")
    out = {}
    for mode in ("relation", "types"):
        info = fit(TwHINConfig(**kg, batches=mode), split.train.path, tmp_path / mode, use_ray=False)
        rows = [json.loads(line) for line in (tmp_path / mode / "buckets.jsonl").read_text().splitlines()]
        out[mode] = (sum(r["positives"] for r in rows), info["summary"]["history"][0]["steps"],
                     link_prediction_on_split(open_run(tmp_path / mode).model, split)["mrr"])
    assert out["types"][0] == out["relation"][0]
    assert out["types"][1] < out["relation"][1]
    assert out["types"][2] > 0.3 and abs(out["types"][2] - out["relation"][2]) < 0.1, out


def test_row_adagrad_keeps_one_accumulator_per_row(split, tmp_path):
    """``optimizer: row_adagrad``: the partitions' optimizer state is ``[rows]`` (half the
    tables' bytes), and the model learns as with per-coordinate Adagrad."""
    info = fit(TwHINConfig(**CFG, partitions=2, optimizer="row_adagrad"), split.train.path, tmp_path / "row",
               use_ray=False)
    losses = [h["loss"] for h in info["summary"]["history"]]
    assert losses[-1] < losses[0]
    tables = PartitionTables(tmp_path / "row" / "partitions", None, 1)
    head = tables.head
    sums = [n for n in head.files if n.endswith("/sum") and n.startswith("type")]
    assert sums and all(len(head.files[n].shape) == 1 for n in sums)
    assert all(head.files[n.replace("/sum", "/emb")].shape[0] == head.files[n].shape[0] for n in sums)
    assert link_prediction_on_split(open_run(tmp_path / "row").model, split)["mrr"] > 0.09


def test_tables_on_an_s3_server_train_export_and_refuse_what_they_must(split, tmp_path, s3_server, monkeypatch, capsys):
    """``partition_storage: s3://...`` against a real S3-compatible server on loopback (moto):
    the tables live there and nowhere in the run directory, run.json records the URI (no
    credentials: those come from the environment), and the run exports exactly like the
    same run with local tables. A location holding another run's tables or foreign files
    is refused, and so are credentials in the URI."""
    import uuid

    from graphrec.run.storage import RunStorage
    from tests.conftest import s3_credentials_env, s3_uri

    s3_credentials_env(monkeypatch)
    uri = s3_uri(s3_server, f"tables-{uuid.uuid4().hex[:8]}", credentials=False)
    base = "dim: 16\nepochs: 2\nbatch_size: 256\npartitions: 2\n"
    (tmp_path / "local.yaml").write_text(base)
    (tmp_path / "s3.yaml").write_text(base + f"partition_storage: '{uri}'\n")

    def train(config, out, *extra):
        return main(["-q", "train", "twhin", "--config", str(tmp_path / config), "--graph", str(split.train.path),
                     "--out", str(tmp_path / out), "--no-ray", *extra])

    assert train("s3.yaml", "s3") == 0 and train("local.yaml", "local") == 0
    info = json.loads((tmp_path / "s3" / "run.json").read_text())
    assert info["partition_tables"]["path"] == uri and not (tmp_path / "s3" / "partitions").exists()
    assert any(p.endswith(".npy") for p in RunStorage(uri).list("files"))
    a, b = open_run(tmp_path / "s3").model, open_run(tmp_path / "local").model
    assert torch.equal(a.node_emb.weight, b.node_emb.weight)  # same seed, same model, wherever the tables live
    for run in ("s3", "local"):
        assert main(["-q", "export", "--run", str(tmp_path / run), "--out", str(tmp_path / f"emb-{run}")]) == 0
    assert ((tmp_path / "emb-s3" / "nodes" / "pin.parquet").read_bytes()
            == (tmp_path / "emb-local" / "nodes" / "pin.parquet").read_bytes())
    capsys.readouterr()
    # another run directory into the same location: refused, the first run's tables untouched
    assert train("s3.yaml", "other") == 2
    assert "holds a partitioned run's tables" in capsys.readouterr().err
    assert torch.equal(open_run(tmp_path / "s3").model.node_emb.weight, a.node_emb.weight)
    # foreign files at the location: refused, left alone
    foreign = s3_uri(s3_server, f"foreign-{uuid.uuid4().hex[:8]}", credentials=False)
    RunStorage(foreign).put_bytes("notes.txt", b"not graphrec's")
    (tmp_path / "foreign.yaml").write_text(base + f"partition_storage: '{foreign}'\n")
    assert train("foreign.yaml", "f") == 2
    assert "graphrec did not write" in capsys.readouterr().err
    assert RunStorage(foreign).list() == ["notes.txt"]
    # credentials in the URI: refused before anything is written
    (tmp_path / "creds.yaml").write_text(base + f"partition_storage: '{s3_uri(s3_server, 'x')}'\n")
    assert train("creds.yaml", "c") == 2
    err = capsys.readouterr().err
    assert "credentials in the environment" in err and "graphrec-test-secret" not in err
    assert not (tmp_path / "c").exists() and not (tmp_path / "f").exists() and not (tmp_path / "other").exists()


def test_a_bucket_weighs_its_candidates_as_the_whole_types(split):
    """``partition_logit_correction``: a type scored 1-N over its N nodes at P = 1 and over
    a bucket's n held rows gets log((N - 1) / (n - 1)); a type sampled at both P gets
    nothing; switched off, nothing anywhere."""
    import math

    from graphrec.graph.partition import NodePartitioning, PartitionSpec

    train = split.train
    n_users, n_pins = train.num_nodes("user"), train.num_nodes("pin")
    base = {**CFG, "partitions": 2}
    def offsets(**over):
        t = BucketTrainer.__new__(BucketTrainer)  # only what logit_offsets reads
        t.cfg = TwHINConfig(**{**base, **over})
        t.part = NodePartitioning({"user": n_users, "pin": n_pins}, PartitionSpec(2, 0, 0))
        local = {"user#0": ("user", (0,)), "pin#1": ("pin", (1,))}
        rows = {"user#0": int(t.part.sizes("user")[0]), "pin#1": int(t.part.sizes("pin")[1])}
        return t.logit_offsets(local, rows), rows

    got, rows = offsets(negatives={"uniform": 0, "exhaustive_max_nodes": 1000, "in_batch": False})
    assert got == pytest.approx({"user#0": math.log((n_users - 1) / (rows["user#0"] - 1)),
                                 "pin#1": math.log((n_pins - 1) / (rows["pin#1"] - 1))})
    # pins (600) sampled at P = 1, every held row in the bucket: log(uniform / (n - 1))
    got, rows = offsets(negatives={"uniform": 50, "exhaustive_max_nodes": 500, "in_batch": False})
    assert got == pytest.approx({"user#0": math.log((n_users - 1) / (rows["user#0"] - 1)),
                                 "pin#1": math.log(50 / (rows["pin#1"] - 1))})
    got, _ = offsets(negatives={"uniform": 50, "exhaustive_max_nodes": 0, "in_batch": True})
    assert got == {}
    got, _ = offsets(negatives={"uniform": 0, "exhaustive_max_nodes": 1000, "in_batch": False},
                     partition_logit_correction=False)
    assert got == {}
