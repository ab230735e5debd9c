"""Knowledge-graph link prediction: graphrec (``configs/twhin-kg.yaml``) vs PyKEEN 1.11.1,
same splits, same evaluator, in one run.

    python benchmarks/kge_peers.py [--datasets kinships umls nations mlkg] [--seeds 0 1 2] [--threads 1]
                                   [--peer-datasets kinships mlkg] [--no-peer] [--baselines-only]
                                   [--json FILE]

Needs the ``bench`` extra (``pip install -e '.[bench]' -c constraints.txt``, with
``torch==2.13.0`` in ``constraints.txt``) for PyKEEN.

Datasets (each skipped with a message when its files are absent):

* ``kinships``: ``$GRAPHREC_KG_DATA/kinships/{train,valid,test}.txt`` (default
  ``../shared/datasets/kg``), the benchmark's own split (``graphrec split --valid-triples
  --test-triples``);
* ``umls``, ``nations``: the copies bundled with the installed PyKEEN wheel, given split;
* ``mlkg``: ``$GRAPHREC_DATA/ml-100k.kg`` (default ``../shared/datasets/ml-100k``), random
  90/5/5 split with seed 0 (``graphrec split --random``).

Protocol, identical for both libraries:

* training graph ``SPLIT/train``; PyKEEN gets the same triples as a ``CoreTriplesFactory``
  over graphrec's internal ids, so both models rank the same entities;
* early stopping: every ``validation.every`` epochs the filtered MRR (head and tail
  corruption, train + valid triples filtered, at most ``validation.max_triples``
  validation triples) of **the same** :class:`graphrec.train.twhin.FilteredValidation`;
  training stops after ``patience`` evaluations without a better MRR (or at the epoch
  cap) and the best-on-valid state is kept — the rule of the shipped config;
* test: :func:`graphrec.eval.link_prediction.filtered_link_prediction` with PyKEEN's
  trained ``predict_t`` / ``predict_h`` as the score callables; head and tail corruption,
  train + valid + test triples filtered; MRR and Hits@1/3/10. "valid MRR (all filtered)"
  is the valid triples under that same protocol (comparable with test); "valid MRR
  (stopping)" the early-stopping figure (test triples not filtered, so lower on dense
  graphs where a query has test answers too);
* time: training seconds only (evaluations excluded for both), same thread count. "Time
  to reach X" is the training time until the first evaluation with valid MRR >= X.

graphrec runs the shipped ``configs/twhin-kg.yaml`` unchanged (only ``seed``/``threads``
set). PyKEEN gets a small set of sensible setups per dataset (``PEERS``; 1-N/LCWA
training with reciprocal relations and softmax cross-entropy where affordable, the
RotatE recipe of Sun et al. with self-adversarial negative sampling); the setup with the
best seed-0 **valid** MRR is retrained with every seed and reported on test.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KG_DATA = Path(os.environ.get("GRAPHREC_KG_DATA", ROOT.parent / "shared" / "datasets" / "kg"))
ML_DATA = Path(os.environ.get("GRAPHREC_DATA", ROOT.parent / "shared" / "datasets" / "ml-100k"))

# PyKEEN setups, per dataset kind: "small" (1-N over every entity is cheap: at most
# exhaustive_max_nodes entities) and "large". ``embedding_dim`` of PyKEEN's ComplEx/RotatE
# counts complex coordinates, so it gets half of graphrec's (real, resolved) dim: the same
# number of parameters. ComplEx uses ``xavier_normal_`` initialisation: with PyKEEN's default
# (standard normal) it did not start learning Kinships in 100 epochs (valid MRR 0.06).
# graphrec's own recipe in PyKEEN (LCWA, N3 as ``LpRegularizer(p=3)``, Adagrad 0.1) was
# tried and left out: valid MRR fell from 0.11 over 20 epochs (PyKEEN regularises every
# entity an LCWA batch scores, not only the positives' factors).
PEERS = {
    "small": {
        "ComplEx, LCWA 1-N + reciprocal, softmax CE, Adam 1e-2": dict(
            model="ComplEx", loop="lcwa", loss="crossentropy", optimizer="adam", lr=1e-2, batch=256),
        "ComplEx, LCWA 1-N + reciprocal, softmax CE, Adam 1e-3": dict(
            model="ComplEx", loop="lcwa", loss="crossentropy", optimizer="adam", lr=1e-3, batch=256),
        "RotatE, sLCWA 64 negatives, self-adversarial NSSA, Adam 1e-3": dict(
            model="RotatE", loop="slcwa", negatives=64, loss="nssa", optimizer="adam", lr=1e-3, batch=256),
    },
    "large": {
        "ComplEx, sLCWA 64 negatives, softmax CE, Adam 1e-2": dict(
            model="ComplEx", loop="slcwa", negatives=64, loss="crossentropy", optimizer="adam", lr=1e-2, batch=1000),
        "RotatE, sLCWA 64 negatives, self-adversarial NSSA, Adam 1e-3": dict(
            model="RotatE", loop="slcwa", negatives=64, loss="nssa", optimizer="adam", lr=1e-3, batch=1000),
    },
}


def prepare(name: str, work: Path):
    """Build the graph and split of dataset ``name`` under ``work``; ``None`` if absent."""
    from graphrec.eval.split import given_split, random_split
    from graphrec.graph import build_graph, triples_schema

    if name == "mlkg":
        path = ML_DATA / "ml-100k.kg"
        if not path.is_file():
            return None
        graph = build_graph(triples_schema(path), work / name / "graph", progress=False)
        random_split(graph, fractions=(0.9, 0.05, 0.05), seed=0, out=work / name / "split")
        return work / name / "split"
    if name == "kinships":
        d = KG_DATA / "kinships"
    else:
        try:
            import pykeen
        except ImportError:
            return None
        d = Path(pykeen.__file__).parent / "datasets" / name
    if not all((d / f"{p}.txt").is_file() for p in ("train", "valid", "test")):
        return None
    graph = build_graph(triples_schema(d / "train.txt"), work / name / "graph", progress=False)
    given_split(graph, d / "valid.txt", d / "test.txt", out=work / name / "split")
    return work / name / "split"


def test_metrics(score_tails, score_heads, split, ets) -> dict:
    """Test MRR/Hits@K, plus ``valid_mrr_all_filtered``: the valid triples under the test
    protocol (every known triple filtered), comparable with the test figure."""
    from graphrec.train.evaluate import link_prediction_on_split

    scorers = (score_tails, score_heads)
    r = link_prediction_on_split(None, split, "test", ks=(1, 3, 10), edge_types=ets, scorers=scorers)
    v = link_prediction_on_split(None, split, "valid", ks=(), edge_types=ets, scorers=scorers)
    return {**{k: r[k] for k in ("mrr", "hits@1", "hits@3", "hits@10")}, "valid_mrr_all_filtered": v["mrr"]}


def curve_stats(curve: list[tuple[float, float]], total: float | None = None) -> dict:
    """``curve``: ``[(cumulative train seconds, valid MRR)]`` per evaluation (empty for a
    config without validation: then only ``total`` seconds)."""
    if not curve:
        return {"best_valid_mrr": None, "seconds_to_best": total, "train_seconds": total, "evaluations": 0,
                "curve": []}
    best_i = int(np.argmax([m for _, m in curve]))
    return {"best_valid_mrr": curve[best_i][1], "seconds_to_best": curve[best_i][0], "train_seconds": curve[-1][0],
            "evaluations": len(curve), "curve": [(round(s, 2), round(m, 4)) for s, m in curve]}


def seconds_to_reach(curve, target: float):
    for s, m in curve:
        if m >= target:
            return s
    return None


# ---- graphrec ------------------------------------------------------------------------
def run_graphrec(cfg, split_path: Path, out: Path) -> dict:
    from graphrec.eval import load_split
    from graphrec.run.directory import open_run
    from graphrec.train.runs import fit

    info = fit(cfg, split_path / "train", out, use_ray=False, overwrite=True)
    t, curve = 0.0, []
    for h in info["summary"]["history"]:
        t += h["seconds"]
        if "valid_mrr" in h:
            curve.append((t, h["valid_mrr"]))
    model = open_run(out).model
    split = load_split(split_path)
    res = curve_stats(curve, t)
    res["test"] = test_metrics(lambda et, h: model.score_tails(et, h), lambda et, t_: model.score_heads(et, t_), split,
                               list(model.edge_types))
    res["epochs_run"] = info["summary"]["epochs_run"]
    res["every_epochs"] = (info["summary"]["validation"] or {}).get("every_epochs", 1)
    res["dim"], res["batch_size"] = info["config"]["dim"], info["config"]["batch_size"]  # resolved on this graph
    return res


# ---- PyKEEN --------------------------------------------------------------------------
def run_pykeen(spec: dict, split, validation, ets, dim: int, seed: int, every: int, patience: int, max_epochs: int,
               time_limit: float) -> dict:
    """Train one PyKEEN setup epoch by epoch with graphrec's early-stopping rule."""
    from pykeen.losses import CrossEntropyLoss, NSSALoss
    from pykeen.models import ComplEx, RotatE
    from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop
    from pykeen.triples import CoreTriplesFactory

    store = split.train
    n = store.num_nodes(ets[0][0])
    rows = []
    for i, et in enumerate(ets):
        s, d = store.relation(et).coo()
        rows.append(np.stack([np.asarray(s, np.int64), np.full(len(s), i), np.asarray(d, np.int64)], 1))
    mapped = torch.from_numpy(np.concatenate(rows))
    reciprocal = spec["loop"] == "lcwa"
    tf = CoreTriplesFactory(mapped_triples=mapped, num_entities=n, num_relations=len(ets),
                            create_inverse_triples=reciprocal)
    torch.manual_seed(seed)
    loss = CrossEntropyLoss() if spec["loss"] == "crossentropy" else NSSALoss()
    kw = dict(triples_factory=tf, embedding_dim=dim // 2, loss=loss, random_seed=seed)
    if spec["model"] == "ComplEx":
        kw.update(entity_initializer="xavier_normal_", relation_initializer="xavier_normal_")
        model = ComplEx(**kw)
    else:
        model = RotatE(**kw)
    opt = (torch.optim.Adam if spec["optimizer"] == "adam" else torch.optim.Adagrad)(model.get_grad_params(),
                                                                                      lr=spec["lr"])
    if spec["loop"] == "lcwa":
        loop = LCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt)
    else:
        loop = SLCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt,
                                 negative_sampler_kwargs=dict(num_negs_per_pos=spec["negatives"]))
    rel_id = {et: i for i, et in enumerate(ets)}

    # PyKEEN's prediction API (predict_t / predict_h): with reciprocal relations it maps
    # relation r to its internal id and scores heads through the inverse relation
    def score_tails(et, h):
        return model.predict_t(torch.stack([h, torch.full_like(h, rel_id[et])], 1))

    def score_heads(et, t):
        return model.predict_h(torch.stack([torch.full_like(t, rel_id[et]), t], 1))

    elapsed, curve, best, best_state, bad = 0.0, [], -1.0, None, 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loop.train(triples_factory=tf, num_epochs=epoch, batch_size=spec["batch"], continue_training=epoch > 1,
                   use_tqdm=False)
        elapsed += time.perf_counter() - t0
        if epoch % every and epoch != max_epochs and elapsed < time_limit:
            continue
        model.eval()
        mrr = validation.evaluate(score_tails, score_heads)
        curve.append((elapsed, mrr))
        if mrr > best:
            best, best_state, bad = mrr, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= patience or elapsed >= time_limit:
            break
    model.load_state_dict(best_state)
    model.eval()
    res = curve_stats(curve)
    res["epochs_run"] = epoch
    res["stopped_by_time_limit"] = elapsed >= time_limit
    res["test"] = test_metrics(score_tails, score_heads, split, ets)
    return res


def mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, "n": len(xs)}


def fmt(ms, digits=3):
    if ms is None:
        return "—"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}" if ms["n"] > 1 else f"{ms['mean']:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["kinships", "mlkg"],
                    choices=["kinships", "umls", "nations", "mlkg"])
    ap.add_argument("--config", default=str(ROOT / "configs" / "twhin-kg.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every training run (both libraries)")
    ap.add_argument("--no-peer", action="store_true", help="graphrec only (the shipped config's figures)")
    ap.add_argument("--baselines-only", action="store_true", help="only the popularity baseline (nothing trained)")
    ap.add_argument("--peer-datasets", nargs="+", default=["kinships", "mlkg"],
                    help="datasets PyKEEN is trained on too (the others: graphrec only)")
    ap.add_argument("--peers", nargs="*", default=None, help="only these PyKEEN setups (names of PEERS)")
    ap.add_argument("--peer-max-epochs", type=int, default=500)
    ap.add_argument("--peer-time-limit", type=float, default=3600.0, help="training seconds per PyKEEN run")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from graphrec.eval import load_split
    from graphrec.run.config import load_config
    from graphrec.train.evaluate import link_prediction_on_split
    from graphrec.train.twhin import build_validation, resolve_validation_source

    base = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="kge-peers-"))
    results = {"config": args.config, "threads": args.threads, "seeds": args.seeds, "datasets": {}}
    for name in args.datasets:
        split_path = prepare(name, work)
        if split_path is None:
            print(f"{name}: data not found, skipped", flush=True)
            continue
        split = load_split(split_path)
        store = split.train
        ets = [r.edge_type for r in store.relations() if not r.is_reverse]
        ds = {"entities": store.num_nodes(ets[0][0]), "relations": len(ets),
              "train": int(sum(store.relation(et).num_edges for et in ets)),
              "valid": int(sum(len(s) for s, _ in split.heldout_triples("valid").values())),
              "test": int(sum(len(s) for s, _ in split.heldout_triples("test").values()))}
        print(f"{name}: {ds}", flush=True)
        pop = link_prediction_on_split(None, split, "test", ks=(1, 3, 10), edge_types=ets)  # entity degree per relation
        ds["popularity"] = {k: pop[k] for k in ("mrr", "hits@1", "hits@3", "hits@10")}
        print(f"  popularity: test MRR {pop['mrr']:.4f} H@1 {pop['hits@1']:.4f} H@10 {pop['hits@10']:.4f}", flush=True)
        if args.baselines_only:
            results["datasets"][name] = ds
            continue
        ours = []
        for seed in args.seeds:
            cfg = base.model_copy(update={"seed": seed, "threads": args.threads})
            r = run_graphrec(cfg, split_path, work / name / f"run-{seed}")
            print(f"  graphrec seed {seed}: valid {r['test']['valid_mrr_all_filtered']:.4f} (all filtered) "
                  f"test MRR {r['test']['mrr']:.4f} "
                  f"H@10 {r['test']['hits@10']:.4f}, {r['train_seconds']:.0f} s ({r['epochs_run']} epochs)", flush=True)
            ours.append(r)
        ds["graphrec"] = {"runs": ours}
        if not args.no_peer and name in args.peer_datasets:
            source, sp = resolve_validation_source(base, store)
            validation = build_validation(base, store, ets, source, sp, None)  # graphrec's own validation
            every = ours[0]["every_epochs"]  # the shipped config's evaluation period on this graph
            kind = "small" if ds["entities"] <= base.negatives.exhaustive_max_nodes else "large"
            cands = {k: v for k, v in PEERS[kind].items() if args.peers is None or k in args.peers}
            tried = {}
            for pname, spec in cands.items():
                r = run_pykeen(spec, split, validation, ets, ours[0]["dim"], args.seeds[0], every, base.patience,
                               args.peer_max_epochs, args.peer_time_limit)
                print(f"  PyKEEN {pname}, seed {args.seeds[0]}: valid {r['best_valid_mrr']:.4f} "
                      f"({r['train_seconds']:.0f} s, {r['epochs_run']} epochs)", flush=True)
                tried[pname] = r
            pick = max(tried, key=lambda k: tried[k]["best_valid_mrr"])
            runs = [tried[pick]]
            for seed in args.seeds[1:]:
                r = run_pykeen(cands[pick], split, validation, ets, ours[0]["dim"], seed, every, base.patience,
                               args.peer_max_epochs, args.peer_time_limit)
                runs.append(r)
            for seed, r in zip(args.seeds, runs, strict=True):
                print(f"  PyKEEN pick seed {seed}: valid {r['best_valid_mrr']:.4f} test MRR {r['test']['mrr']:.4f} "
                      f"H@10 {r['test']['hits@10']:.4f}", flush=True)
            ds["pykeen"] = {"pick": pick, "valid_by_setup_seed0": {k: v["best_valid_mrr"] for k, v in tried.items()},
                            "tried": tried, "runs": runs}
            # time for each to reach the other's best valid MRR (per seed, same seed pairs)
            for a, b in (("graphrec", "pykeen"), ("pykeen", "graphrec")):
                ds[f"{a}_seconds_to_{b}_best"] = [
                    seconds_to_reach(ra["curve"], rb["best_valid_mrr"])
                    for ra, rb in zip(ds[a]["runs"], ds[b]["runs"], strict=True)]
        for lib in ("graphrec", "pykeen"):
            if lib in ds:
                rs = ds[lib]["runs"]
                ds[lib]["summary"] = {
                    "valid_mrr": mean_std([r["best_valid_mrr"] for r in rs]),
                    "valid_mrr_all_filtered": mean_std([r["test"]["valid_mrr_all_filtered"] for r in rs]),
                    **{f"test_{k}": mean_std([r["test"][k] for r in rs]) for k in ("mrr", "hits@1", "hits@3", "hits@10")},
                    "train_seconds": mean_std([r["train_seconds"] for r in rs]),
                    "seconds_to_best": mean_std([r["seconds_to_best"] for r in rs])}
        results["datasets"][name] = ds
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))

    print("\n| dataset | library (setup) | valid MRR (stopping) | valid MRR (all filtered) | test MRR | test Hits@1 "
          "| test Hits@10 | train s (to best) | s to reach the peer's best valid MRR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ds in results["datasets"].items():
        p = ds["popularity"]
        print(f"| {name} | popularity (entity degree in the relation) | — | — | {p['mrr']:.3f} | {p['hits@1']:.3f} "
              f"| {p['hits@10']:.3f} | 0 | — |")
        for lib in ("graphrec", "pykeen"):
            if lib not in ds:
                continue
            s = ds[lib]["summary"]
            setup = Path(args.config).name if lib == "graphrec" else ds["pykeen"]["pick"]
            other = "pykeen" if lib == "graphrec" else "graphrec"
            reach = ds.get(f"{lib}_seconds_to_{other}_best")
            reach_s = "—" if reach is None else " / ".join("never" if x is None else f"{x:.0f}" for x in reach)
            print(f"| {name} | {lib} ({setup}) | {fmt(s['valid_mrr'])} | {fmt(s['valid_mrr_all_filtered'])} "
                  f"| {fmt(s['test_mrr'])} | {fmt(s['test_hits@1'])} "
                  f"| {fmt(s['test_hits@10'])} | {fmt(s['train_seconds'], 0)} ({fmt(s['seconds_to_best'], 0)}) "
                  f"| {reach_s} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
