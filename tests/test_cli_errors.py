"""Every user error of the CLI: exit status 2, one line ``error: ...`` on stderr naming
the offending file, key, option or name, no traceback, nothing half-written.

One row per bad input in ``CASES``: ``(id, argv, needles)``. ``argv`` is formatted with
``g`` (a built store), ``bad`` (the store with a truncated array), ``flip`` (the store
with a same-size byte flip), ``data`` (its tables), ``schema`` (its schema YAML),
``file`` (a plain file), ``tmp`` (an empty directory for outputs), ``cfg`` /
``badcfg`` / ``typocfg`` / ``pscfg`` (run configs: good, a bad value, an unknown key, a
PinSage config naming an unknown relation), ``run`` (a finished TwHIN run on ``g``),
``emb`` (its export), ``index`` (its index), ``quickstart`` (the job config). Add a row
for every new command or bad-input class.
"""

import shutil

import pytest
import yaml

from graphrec.cli import main
from graphrec.graph import build_graph, parse_schema
from tests.conftest import ROOT

INDICES = "relations/user__rated__item/indices.npy"

CASES = [
    # build
    ("build-no-schema-file", ["build", "--schema", "{tmp}/nope.yaml", "--out", "{tmp}/o"], ["nope.yaml"]),
    ("build-schema-not-mapping", ["build", "--schema", "{file}", "--out", "{tmp}/o"], ["expected a mapping"]),
    ("build-schema-unknown-key", ["build", "--schema", "{tmp}/extra.yaml", "--data", "{data}", "--out", "{tmp}/o"],
     ["unknown key", "colour"]),
    ("build-schema-missing-key", ["build", "--schema", "{tmp}/noid.yaml", "--data", "{data}", "--out", "{tmp}/o"],
     ["`id`"]),
    ("build-missing-table", ["build", "--schema", "{schema}", "--out", "{tmp}/o"], [".parquet: file not found"]),
    ("build-data-not-dir", ["build", "--schema", "{schema}", "--data", "{tmp}/nodata", "--out", "{tmp}/o"],
     ["--data", "nodata"]),
    ("build-out-exists", ["build", "--schema", "{schema}", "--data", "{data}", "--out", "{g}"], ["already exists"]),
    ("build-out-under-file", ["build", "--schema", "{schema}", "--data", "{data}", "--out", "{file}/o"],
     ["cannot create"]),
    ("build-no-triples-file", ["build", "--triples", "{tmp}/kg.tsv", "--out", "{tmp}/o"], ["kg.tsv", "not found"]),
    ("build-both-inputs", ["build", "--schema", "{schema}", "--triples", "{file}", "--out", "{tmp}/o"],
     ["exactly one of --schema or --triples"]),
    ("build-missing-out", ["build", "--schema", "{schema}"], ["--out"]),
    # info
    ("info-not-a-store", ["info", "{tmp}"], ["not a graph store"]),
    ("info-missing-path", ["info", "{tmp}/nowhere"], ["nowhere", "not a graph store"]),
    ("info-truncated-array", ["info", "{bad}"], ["indices.npy", "truncated"]),
    ("info-verify-byte-flip", ["info", "--verify", "{flip}"], ["indices.npy", "sha256"]),
    # split
    ("split-unknown-relation", ["split", "{g}", "--relation", "user:nope:item", "--out", "{tmp}/s"],
     ["user:nope:item", "user:rated:item"]),
    ("split-unknown-node-type", ["split", "{g}", "--relation", "usr:rated:item", "--out", "{tmp}/s"],
     ["usr:rated:item"]),
    ("split-malformed-relation", ["split", "{g}", "--relation", "user-rated-item", "--out", "{tmp}/s"],
     ["--relation", "src:name:dst"]),
    ("split-reverse-view", ["split", "{g}", "--relation", "item:rev_rated:user", "--out", "{tmp}/s"], ["reverse view"]),
    ("split-fractions-sum", ["split", "{g}", "--random", "--fractions", "0.5", "0.6", "0.1", "--out", "{tmp}/s"],
     ["fractions", "summing to 1"]),
    ("split-fractions-nan", ["split", "{g}", "--random", "--fractions", "nan", "0.5", "0.5", "--out", "{tmp}/s"],
     ["fractions"]),
    ("split-fractions-negative", ["split", "{g}", "--relation", "user:rated:item", "--fractions", "1.2", "-0.1",
                                  "-0.1", "--out", "{tmp}/s"], ["fractions"]),
    ("split-fractions-no-train", ["split", "{g}", "--random", "--fractions", "0", "0.5", "0.5", "--out", "{tmp}/s"],
     ["train fraction"]),
    ("split-min-interactions", ["split", "{g}", "--random", "--min-interactions", "0", "--out", "{tmp}/s"],
     ["--min-interactions"]),
    ("split-no-mode", ["split", "{g}", "--out", "{tmp}/s"], ["--relation or --random"]),
    ("split-not-a-store", ["split", "{tmp}", "--random", "--out", "{tmp}/s"], ["not a graph store"]),
    ("split-truncated-array", ["split", "{bad}", "--random", "--out", "{tmp}/s"], ["indices.npy", "truncated"]),
    ("split-out-exists", ["split", "{g}", "--random", "--out", "{g}"], ["already exists"]),
    ("split-out-under-file", ["split", "{g}", "--random", "--out", "{file}/s"], ["cannot create"]),
    ("split-given-missing-file", ["split", "{g}", "--valid-triples", "{tmp}/v.tsv", "--test-triples", "{file}",
                                  "--out", "{tmp}/s"], ["v.tsv", "not found"]),
    ("split-given-only-one", ["split", "{g}", "--valid-triples", "{file}", "--out", "{tmp}/s"],
     ["both --valid-triples and --test-triples"]),
    # partition
    ("partition-not-a-store", ["partition", "{tmp}", "--partitions", "2"], ["not a graph store"]),
    ("partition-zero", ["partition", "{g}", "--partitions", "0"], ["--partitions"]),
    ("partition-truncated-array", ["partition", "{bad}", "--partitions", "2"], ["indices.npy", "truncated"]),
    # generate
    ("generate-bad-count", ["generate", "pinterest", "--users", "0", "--out", "{tmp}/p"], ["--users", "greater than 0"]),
    ("generate-bad-clusters", ["generate", "pinterest", "--clusters", "-2", "--out", "{tmp}/p"], ["--clusters"]),
    ("generate-not-a-number", ["generate", "pinterest", "--users", "many", "--out", "{tmp}/p"], ["--users", "many"]),
    ("generate-out-exists", ["generate", "pinterest", "--out", "{g}"], ["already exists"]),
    ("generate-unknown-dataset", ["generate", "netflix", "--out", "{tmp}/p"], ["netflix"]),
    # demo
    ("demo-out-exists", ["demo", "--out", "{file}"], ["already exists"]),
    # train
    ("train-truncated-array", ["train", "twhin", "--config", "{cfg}", "--graph", "{bad}", "--out", "{tmp}/r",
                               "--no-ray"], ["indices.npy", "truncated"]),
    ("train-no-config", ["train", "twhin", "--config", "{tmp}/nope.yaml", "--graph", "{g}", "--out", "{tmp}/r"],
     ["nope.yaml"]),
    ("train-bad-config-value", ["train", "twhin", "--config", "{badcfg}", "--graph", "{g}", "--out", "{tmp}/r"],
     ["badcfg.yaml", "dim"]),
    ("train-unknown-config-key", ["train", "twhin", "--config", "{typocfg}", "--graph", "{g}", "--out", "{tmp}/r"],
     ["typocfg.yaml", "negatives.unifrom", "unknown key"]),
    ("train-wrong-model-config", ["train", "pinsage", "--config", "{cfg}", "--graph", "{g}", "--out", "{tmp}/r"],
     ["twhin", "pinsage"]),
    ("train-not-a-store", ["train", "twhin", "--config", "{cfg}", "--graph", "{tmp}", "--out", "{tmp}/r"],
     ["not a graph store"]),
    ("train-into-user-directory", ["train", "twhin", "--config", "{cfg}", "--graph", "{g}", "--out", "{data}",
                                   "--no-ray"], ["did not write"]),
    ("train-finished-run", ["train", "twhin", "--config", "{cfg}", "--graph", "{g}", "--out", "{run}", "--no-ray"],
     ["finished run", "--overwrite"]),
    ("train-out-under-file", ["train", "twhin", "--config", "{cfg}", "--graph", "{g}", "--out", "{file}/run",
                              "--no-ray"], ["plain.txt"]),
    ("train-bad-workers", ["train", "twhin", "--config", "{cfg}", "--graph", "{g}", "--out", "{tmp}/r",
                           "--workers", "0"], ["--workers"]),
    ("train-unknown-relation", ["train", "pinsage", "--config", "{pscfg}", "--graph", "{g}", "--out", "{tmp}/r",
                                "--no-ray"], ["user:nope:item"]),
    # export / infer / evaluate
    ("export-not-a-run", ["export", "--run", "{tmp}", "--out", "{tmp}/e"], ["not a finished training run"]),
    ("export-truncated-graph", ["export", "--run", "{run}", "--graph", "{bad}", "--out", "{tmp}/e"],
     ["indices.npy", "truncated"]),
    ("export-unknown-retrieval", ["export", "--run", "{run}", "--retrieval", "user:nope:item", "--out", "{tmp}/e"],
     ["user:nope:item"]),
    ("export-out-exists", ["export", "--run", "{run}", "--out", "{g}"], ["already exists"]),
    ("export-inference-of-twhin", ["export", "--run", "{run}", "--inference", "{tmp}", "--out", "{tmp}/e"],
     ["--inference"]),
    ("infer-not-pinsage", ["infer", "--run", "{run}", "--out", "{tmp}/i"], ["not pinsage"]),
    ("evaluate-not-a-split", ["evaluate", "--run", "{run}", "--split", "{tmp}"], ["split"]),
    # index / search / recommend
    ("index-not-embeddings", ["index", "--embeddings", "{tmp}", "--target", "item", "--out", "{tmp}/x"],
     ["manifest.json"]),
    ("index-unknown-target", ["index", "--embeddings", "{emb}", "--target", "nope", "--out", "{tmp}/x"], ["nope"]),
    ("index-out-exists", ["index", "--embeddings", "{emb}", "--target", "item", "--out", "{g}"], ["already exists"]),
    ("index-bad-train-sample", ["index", "--embeddings", "{emb}", "--target", "item", "--train-sample", "5",
                                "--out", "{tmp}/x"], ["--train-sample", "1000"]),
    ("search-unknown-ids", ["search", "--index", "{index}", "--id", "zzz"], ["none of the ids"]),
    ("search-not-an-index", ["search", "--index", "{tmp}", "--id", "10"], ["manifest.json"]),
    ("recommend-no-users", ["recommend", "--index", "{index}", "--out", "{tmp}/c.parquet"], ["--users", "--all"]),
    # the whole pipeline
    ("run-no-config", ["run", "{tmp}/nope.yaml", "--out", "{tmp}/q"], ["nope.yaml"]),
    ("run-overwrite-user-directory", ["run", "{quickstart}", "--out", "{data}", "--overwrite"], ["did not write"]),
    # top level
    ("unknown-command", ["frobnicate"], ["frobnicate"]),
    ("unknown-option", ["info", "--colour", "{g}"], ["--colour"]),
]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    from tests.conftest import TINY_SCHEMA, write_tiny_tables

    root = tmp_path_factory.mktemp("cli_errors")
    data = write_tiny_tables(root / "data")
    g = root / "g"
    build_graph(parse_schema(TINY_SCHEMA), g, data_dir=data, progress=False)
    bad, flip = root / "bad", root / "flip"
    shutil.copytree(g, bad)
    shutil.copytree(g, flip)
    p = bad / INDICES
    p.write_bytes(p.read_bytes()[:-4])
    p = flip / INDICES
    b = bytearray(p.read_bytes())
    b[-1] ^= 1
    p.write_bytes(bytes(b))
    schema = root / "schema.yaml"
    schema.write_text(yaml.safe_dump(TINY_SCHEMA))
    extra = yaml.safe_load(yaml.safe_dump(TINY_SCHEMA))
    extra["nodes"]["user"]["colour"] = "red"
    (root / "extra.yaml").write_text(yaml.safe_dump(extra))
    noid = yaml.safe_load(yaml.safe_dump(TINY_SCHEMA))
    del noid["nodes"]["user"]["id"]
    (root / "noid.yaml").write_text(yaml.safe_dump(noid))
    file = root / "plain.txt"
    file.write_text("not a directory\n")
    cfg = root / "cfg.yaml"
    cfg.write_text("dim: 8\nepochs: 1\nbatch_size: 4\n")
    (root / "badcfg.yaml").write_text("dim: -3\n")
    (root / "typocfg.yaml").write_text("negatives: {unifrom: 3}\n")
    (root / "pscfg.yaml").write_text("model: pinsage\ninteractions: user:nope:item\nwalks:\n  metapaths:\n"
                                     "    - path: [item:rev_rated:user, user:rated:item]\n")
    run, emb, index = root / "run", root / "emb", root / "index"
    assert main(["-q", "train", "twhin", "--config", str(cfg), "--graph", str(g), "--out", str(run), "--no-ray"]) == 0
    assert main(["-q", "export", "--run", str(run), "--out", str(emb), "--retrieval", "user:rated:item"]) == 0
    assert main(["-q", "index", "--embeddings", str(emb), "--target", "item", "--query", "user:rated:item",
                 "--out", str(index)]) == 0
    return {"g": g, "bad": bad, "flip": flip, "data": data, "schema": schema, "file": file, "root": root, "cfg": cfg,
            "badcfg": root / "badcfg.yaml", "typocfg": root / "typocfg.yaml", "pscfg": root / "pscfg.yaml",
            "run": run, "emb": emb, "index": index, "quickstart": ROOT / "configs" / "quickstart.yaml"}


@pytest.mark.parametrize("argv, needles", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_exit_2(argv, needles, fixtures, tmp_path, capsys, monkeypatch):
    for name in ("extra.yaml", "noid.yaml"):
        shutil.copy(fixtures["root"] / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)  # relative table paths must not resolve by accident
    values = {k: str(v) for k, v in fixtures.items()} | {"tmp": str(tmp_path)}
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main([a.format(**values) for a in argv])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, err + captured.out
    assert "Traceback" not in err and "internal error" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "output left behind"
