"""The ``graphrec`` command line.

Every command has ``--help``. Errors caused by input (bad schema, missing file or
column, unknown ids) print one clear message and exit with status 2; unexpected errors
exit with status 1. Tracebacks are shown only with ``graphrec --debug ...``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from graphrec.config_docs import CONFIGS
from graphrec.errors import GraphrecError

log = logging.getLogger("graphrec")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _setup_logging(verbose: bool, debug: bool = False) -> None:
    """graphrec's own progress at INFO (unless ``--quiet``); other libraries' INFO chatter
    (faiss's loader, ...) only with ``--debug``, their warnings always."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if debug else logging.WARNING,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False, console=_stderr_console())],
    )
    logging.getLogger("graphrec").setLevel(logging.INFO if verbose else logging.WARNING)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors and Ray's full logs (GRAPHREC_DEBUG=1).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors (no progress log).")
@click.version_option(package_name="graphrec")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """graphrec: heterogeneous graphs in, embeddings and retrieval indexes out."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:  # Ray's full output, in this process and (through the environment) its Ray workers
        from graphrec.ray_env import set_debug

        set_debug()
    ctx.obj["progress"] = not quiet and sys.stderr.isatty()
    _setup_logging(verbose=not quiet, debug=debug)
    from graphrec.ray_env import quiet_known_warnings

    quiet_known_warnings()


# ---- build / info ------------------------------------------------------------------


@cli.command()
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False), help="Graph schema YAML.")
@click.option("--triples", "triples_path", type=click.Path(dir_okay=False),
              help="Build from a plain triple file (head, relation, tail TSV) instead of a schema.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Directory that relative table paths in the schema are resolved against.")
@click.option("--out", required=True, type=click.Path(), help="Graph store directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (only once the new graph is complete).")
@click.pass_context
def build(ctx, schema_path, triples_path, data_dir, out, overwrite):
    """Build a graph store from tables and a schema."""
    from graphrec.graph import build_graph, load_schema, triples_schema

    if (schema_path is None) == (triples_path is None):
        raise click.UsageError("give exactly one of --schema or --triples")
    schema = load_schema(schema_path) if schema_path else triples_schema(triples_path)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise GraphrecError(f"--data {data_dir}: directory not found")
    store = build_graph(schema, out, data_dir=data_dir, overwrite=overwrite, progress=ctx.obj["progress"])
    stored = sum(r.num_edges for r in store.relations() if not r.is_reverse)
    click.echo(f"built {store.path}: {stored:,} edges in {len(store.edge_types)} relation types "
               f"({store.num_edges():,} counting reverse views), checksum {store.checksum[:12]}")


@cli.command()
@click.argument("graph_dir", type=click.Path())
@click.option("--partitions", "num_partitions", type=click.IntRange(min=1), required=True,
              help="Partitions P of every node type with at least --min-nodes nodes.")
@click.option("--min-nodes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Smaller node types stay whole (0: partition every type).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the node assignment.")
@click.option("--regroup", type=click.IntRange(min=1), default=1, show_default=True,
              help="The TwHIN config's partition_regroup k: types of at least P x k nodes stored as P x k "
                   "partitions, dealt into P every epoch.")
@click.option("--rebuild", is_flag=True, help="Rebuild the buckets even when valid ones exist.")
def partition(graph_dir, num_partitions, min_nodes, seed, regroup, rebuild):
    """Bucket a store's edges by (source partition, destination partition) for
    partitioned training; written once beside the store (GRAPH/partitions/) and reused."""
    import time

    from graphrec.graph import GraphStore
    from graphrec.graph.partition import EdgeBuckets, PartitionSpec

    store = GraphStore(graph_dir)
    spec = PartitionSpec(num_partitions, min_nodes, seed, regroup)
    t0 = time.perf_counter()
    b = EdgeBuckets.open_or_build(store, spec, rebuild=rebuild)
    dt = time.perf_counter() - t0
    part = b.partitioning
    click.echo("node types: " + ", ".join(f"{t} {part.parts(t)} x ~{int(part.sizes(t).max(initial=0)):,}"
                                         for t in part.node_types))
    for r in b.manifest["relations"]:
        sizes = b.relation(tuple(r["edge_type"])).sizes()
        click.echo(f"  {':'.join(r['edge_type'])}: {sizes.size} buckets, {int(sizes.min()):,}-{int(sizes.max()):,} "
                   "edges each")
    n = sum(store.num_edges(tuple(r["edge_type"])) for r in b.manifest["relations"])
    click.echo(f"{n:,} edges in {len(b.manifest['relations'])} relations -> {b.dir} ({dt:.1f}s, "
               f"{n / max(dt, 1e-9):,.0f} edges/s)")


@cli.command()
@click.argument("graph_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--verify", is_flag=True,
              help="Also check every file's sha256 against the manifest (reads the whole store; headers and sizes "
                   "are always checked).")
def info(graph_dir, as_json, verify):
    """Counts per node and relation type, and degree statistics."""
    import json

    from graphrec.analytics.degrees import graph_summary
    from graphrec.graph import GraphStore

    store = GraphStore(graph_dir, verify=verify)
    summary = graph_summary(store)
    if verify:
        summary["verified"] = True
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"[bold]{summary['name']}[/bold]  {graph_dir}  checksum {summary['checksum'][:12]}")
    nt = RichTable("node type", "nodes", "id type", "features", title="Node types")
    for name, n in summary["node_types"].items():
        nt.add_row(name, f"{n['count']:,}", n["id_dtype"], ", ".join(n["features"]) or "-")
    console.print(nt)
    rt = RichTable("relation", "edges", "out-deg min/median/mean/max", "in-deg min/median/mean/max", "", title="Relations")
    for r in summary["relations"]:
        o, i = r["out_degree"], r["in_degree"]
        fmt = lambda d: f"{d['min']}/{d['median']:g}/{d['mean']:.2f}/{d['max']}"  # noqa: E731
        rt.add_row(r["relation"], f"{r['edges']:,}", fmt(o), fmt(i), "reverse" if r["reverse"] else "")
    console.print(rt)
    console.print(f"total: {summary['total_nodes']:,} nodes, {summary['total_edges']:,} edges "
                  f"in {len(summary['relations'])} relation types")
    if verify:
        console.print(f"verified: {len(store.manifest['files'])} arrays match their sha256 checksums")


# ---- split --------------------------------------------------------------------------


def _edge_type(text: str, option: str):
    from graphrec.graph import parse_edge_type

    try:
        return parse_edge_type(text)
    except ValueError as err:
        raise GraphrecError(f"{option}: {err}") from None


@cli.command()
@click.argument("graph_dir", type=click.Path())
@click.option("--relation", help="Interaction relation to split chronologically per user, src:name:dst (e.g. user:rated:item).")
@click.option("--random", "random_", is_flag=True, help="Split every relation's edges uniformly at random (link prediction).")
@click.option("--fractions", nargs=3, type=float, default=None,
              help="Train, valid and test fractions [default: 0.8 0.1 0.1 per user; 0.9 0.05 0.05 with --random].")
@click.option("--min-interactions", type=click.IntRange(min=1), default=3, show_default=True,
              help="Users with fewer interactions keep them all in train.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random.")
@click.option("--cut-side-relations/--keep-side-relations", default=True, show_default=True,
              help="--relation: drop each user's edges of other timestamped relations (e.g. follows) made at or after "
                   "the user's first held-out interaction from the train graph, so nothing from the held-out period "
                   "leaks into training.")
@click.option("--valid-triples", type=click.Path(dir_okay=False), default=None,
              help="Given split: a benchmark's valid triples (head, relation, tail TSV); GRAPH is its train graph.")
@click.option("--test-triples", type=click.Path(dir_okay=False), default=None,
              help="Given split: the benchmark's test triples (with --valid-triples).")
@click.option("--cold-items", type=float, default=None,
              help="With --relation: the cold-start protocol. This fraction of the items, the newest by first "
                   "interaction, leave the train graph entirely; their interactions are OUT/cold_test.parquet and "
                   "OUT/cold_graph holds them without interactions (for `graphrec infer --graph`).")
@click.option("--cold-valid-items", type=float, default=0.0, show_default=True,
              help="With --cold-items: the fraction of items just older than the cold test items held out the same "
                   "way as cold validation items (OUT/cold_valid.parquet: their interactions before the first cold "
                   "test item appeared, a backtest), to choose settings on.")
@click.option("--out", required=True, type=click.Path(), help="Split directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def split(graph_dir, relation, random_, fractions, min_interactions, seed, cut_side_relations, valid_triples,
          test_triples, cold_items, cold_valid_items, out, overwrite):
    """Train/valid/test split: per-user chronological (--relation), random (--random) or
    given by a benchmark's files (--valid-triples/--test-triples).

    Writes OUT/train (a graph store without the held-out edges) and OUT/valid.parquet,
    OUT/test.parquet (relation, src, dst internal ids, original ids, edge attributes).
    """
    from graphrec.eval.split import chronological_split, cold_item_split, given_split, random_split
    from graphrec.graph import GraphStore

    if cold_items is not None:
        if not relation or random_ or valid_triples or test_triples:
            raise click.UsageError("--cold-items needs --relation (the interactions) and excludes --random and "
                                   "--valid-triples/--test-triples")
        res = cold_item_split(GraphStore(graph_dir), _edge_type(relation, "--relation"), cold_items, cold_valid_items,
                              fractions=fractions or (0.8, 0.1, 0.1), min_interactions=min_interactions, out=out,
                              overwrite=overwrite)
        c = res.counts
        click.echo(f"cold-item split {relation}: {c['cold_test_items']:,} cold test items ({c['cold_test']:,} "
                   f"interactions), {c['cold_valid_items']:,} cold valid items ({c['cold_valid']:,}); warm items "
                   f"{c['warm_items']:,}: train {c['train']:,}, valid {c['valid']:,}, test {c['test']:,} -> {out}")
        return
    if cold_valid_items:
        raise click.UsageError("--cold-valid-items needs --cold-items")
    given = valid_triples is not None or test_triples is not None
    if given:
        if relation or random_:
            raise click.UsageError("--valid-triples/--test-triples exclude --relation and --random")
        if valid_triples is None or test_triples is None:
            raise click.UsageError("give both --valid-triples and --test-triples")
        res = given_split(GraphStore(graph_dir), valid_triples, test_triples, out=out, overwrite=overwrite)
        c = res.counts
        d = c["dropped_unknown"]
        click.echo(f"given split: train {c['train']:,}, valid {c['valid']:,}, test {c['test']:,} triples "
                   f"({d['valid'] + d['test']:,} naming unknown entities left out) -> {out}")
        return
    if bool(relation) == bool(random_):
        raise click.UsageError("give exactly one of --relation or --random")
    if random_:
        res = random_split(GraphStore(graph_dir), fractions=fractions or (0.9, 0.05, 0.05), seed=seed, out=out,
                           overwrite=overwrite)
        c = res.counts
        click.echo(f"random split: train {c['train']:,}, valid {c['valid']:,}, test {c['test']:,} edges -> {out}")
        return
    res = chronological_split(GraphStore(graph_dir), _edge_type(relation, "--relation"),
                              fractions=fractions or (0.8, 0.1, 0.1), min_interactions=min_interactions,
                              out=out, overwrite=overwrite, cut_side_relations=cut_side_relations)
    c = res.counts
    cut = "".join(f", {n:,} {r} edges cut" for r, n in c["side_cut"].items())
    click.echo(f"split {relation}: train {c['train']:,}, valid {c['valid']:,}, test {c['test']:,} edges "
               f"({c['users_split']:,} users split, {c['users_train_only']:,} train-only{cut}) -> {out}")


# ---- train / export / evaluate -------------------------------------------------------


@cli.group()
def train():
    """Train a model on a graph store."""


def _train_options(f):
    for opt in reversed([
        click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Run config YAML."),
        click.option("--graph", required=True, type=click.Path(), help="Graph store to train on (e.g. SPLIT/train)."),
        click.option("--out", required=True, type=click.Path(), help="Run directory."),
        click.option("--workers", type=int, default=None, help="Ray Train workers (overrides ray.workers)."),
        click.option("--epochs", type=int, default=None, help="Override the config's epochs."),
        click.option("--no-ray", is_flag=True, help="Run the training loop in this process, without Ray."),
        click.option("--address", default=None, help="Ray cluster address (default: start Ray embedded)."),
        click.option("--resume", is_flag=True, help="Continue from the run's last checkpoint."),
        click.option("--overwrite", is_flag=True, help="Replace a finished run in OUT."),
    ]):
        f = opt(f)
    return click.pass_context(f)


def _train(model, ctx, config_path, graph, out, workers, epochs, no_ray, address, resume, overwrite, partitions=None,
           update=None):
    from graphrec.train.runs import fit, load_run_config, summarize

    cfg = load_run_config(model, config_path, workers=workers, epochs=epochs, address=address)
    update = dict(update or {})
    if partitions is not None:
        update["partitions"] = partitions
    if update:
        cfg = cfg.model_validate({**cfg.model_dump(), **update})
    info = fit(cfg, graph, out, use_ray=not no_ray, resume=resume, overwrite=overwrite, progress=ctx.obj["progress"])
    click.echo(f"{summarize(info)} -> {out}")


class _ConfigKeysCommand(click.Command):
    """A command whose ``--help`` ends with the keys of its config (built only when shown)."""

    def __init__(self, *args, config_name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.config_name = config_name

    def format_epilog(self, ctx, formatter):
        from graphrec.config_docs import render_keys

        formatter.write_paragraph()
        formatter.write_text(f"Config keys (YAML; `graphrec config show {self.config_name}` describes each):")
        with formatter.indentation():
            for line in render_keys(self.config_name):
                formatter.write(f"{' ' * formatter.current_indent}{line}\n")


@train.command("twhin", cls=_ConfigKeysCommand, config_name="twhin")
@_train_options
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Partitions P of the large node types (overrides the config's partitions; out-of-core).")
@click.option("--init-from", default=None, type=click.Path(),
              help="Warm start from this finished TwHIN run on an older graph (overrides init_from): known nodes keep "
                   "their vectors, new ones start from their neighbours'; run.json gets a drift report.")
@click.option("--freeze-existing", is_flag=True, default=None, help="With --init-from: train only the new nodes "
              "and the relations (sets freeze_existing).")
def train_twhin_cmd(ctx, init_from, freeze_existing, **kw):
    """TwHIN knowledge-graph embeddings of every node and relation type."""
    update = {k: v for k, v in (("init_from", str(Path(init_from).resolve()) if init_from else None),
                                ("freeze_existing", freeze_existing)) if v is not None}
    _train("twhin", ctx, update=update, **kw)


@train.command("pinsage", cls=_ConfigKeysCommand, config_name="pinsage")
@_train_options
def train_pinsage_cmd(ctx, **kw):
    """PinSage item embeddings over random-walk importance neighbourhoods."""
    _train("pinsage", ctx, **kw)


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A finished training run.")
@click.option("--out", required=True, type=click.Path(), help="Embedding directory to create.")
@click.option("--retrieval", multiple=True, help="src:rel:dst to export query/candidate vectors for (repeatable).")
@click.option("--graph", default=None, type=click.Path(), help="Graph store (default: the one the run trained on).")
@click.option("--inference", default=None, type=click.Path(),
              help="PinSage: take the vectors from this `graphrec infer` directory.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.pass_context
def export(ctx, run_dir, out, retrieval, graph, inference, overwrite):
    """Export node, relation and retrieval embeddings as Parquet + manifest (streamed in
    bounded memory; a partitioned run one partition at a time)."""
    import json as _json

    from graphrec.infer.export import export_run

    path = export_run(run_dir, out, retrieval=list(retrieval) or None, graph=graph, inference=inference,
                      overwrite=overwrite, progress=ctx.obj["progress"])
    m = _json.loads((Path(path) / "manifest.json").read_text())
    click.echo(f"exported {m['model']}: {sum(m['node_counts'].values()):,} node embeddings "
               f"({', '.join(m['node_counts'])}), retrieval: {', '.join(m['retrieval']) or 'none'} -> {out}")


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A finished training run.")
@click.option("--split", "split_dir", required=True, type=click.Path(), help="The split the run's graph came from.")
@click.option("--part", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@click.option("--k", "ks", type=int, multiple=True, default=(10, 20), show_default=True)
@click.option("--link-prediction/--no-link-prediction", default=None,
              help="Filtered link prediction [default: on for random and given splits].")
@click.option("--repeats", is_flag=True,
              help="Also report user_to_item_with_repeats (repeat consumption: seen items not excluded).")
@click.option("--inference", default=None, type=click.Path(),
              help="Cold-item splits: the `graphrec infer --run RUN --graph SPLIT/cold_graph` directory whose vectors "
                   "rank the cold items (cold_items protocol; content and random baselines are reported without it).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics on stdout.")
def evaluate(run_dir, split_dir, part, ks, link_prediction, repeats, inference, as_json):
    """The run's metrics next to the popularity baseline, on the same protocol.

    Chronological splits: user→item under the new-items protocol (each user's seen items
    excluded and not targets), item→item for PinSage; random/given splits: filtered link
    prediction. Ties count as a random order.
    """
    import json as _json

    from graphrec.eval.split import load_split
    from graphrec.train.evaluate import evaluate_run

    if any(k < 1 for k in ks):
        raise GraphrecError(f"--k must be positive, got {list(ks)}")
    cold_vectors = None
    if inference is not None:
        from graphrec.infer.layerwise import read_inference
        from graphrec.run.directory import open_run

        cold_vectors = read_inference(inference, open_run(run_dir, expect="pinsage"))
    out = evaluate_run(run_dir, load_split(split_dir), part, ks, link_prediction, repeats, cold_vectors=cold_vectors)
    if as_json:
        click.echo(_json.dumps(out, indent=1))
        return
    _print_evaluation(out)


def _print_evaluation(out: dict) -> None:
    """Metric groups as tables: one row per model (popularity last), one column per metric."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(width=None if sys.stdout.isatty() else 200)
    models = out["models"]
    groups = [g for g in out["protocols"] if any(g in m for m in models.values())]
    for group in groups:
        rows = [(name, m[group]) for name, m in models.items() if group in m]
        keys = [k for k, v in rows[0][1].items() if isinstance(v, float) and not k.startswith(("heldout", "tail_", "head_"))]
        table = RichTable("model", *keys, title=f"{group} ({out['part']})")
        for name, metrics in rows:
            table.add_row(name, *(f"{metrics[k]:.4f}" for k in keys))
        console.print(table)
        counts = rows[0][1]
        if "users" in counts:
            console.print(f"  {counts['users']:,} users evaluated, {counts['users_skipped']:,} skipped (no target), "
                          f"{counts['heldout_repeats']:.1%} of held-out pairs were repeats")
        console.print(f"  protocol: {out['protocols'][group]}")


# ---- infer / index / search / recommend ----------------------------------------------


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A finished PinSage run.")
@click.option("--graph", default=None, type=click.Path(),
              help="Embed every item and user of this newer graph (same schema; nodes matched to the run's by "
                   "original id; items the run never saw embedded from their features and neighbourhoods).")
@click.option("--out", default=None, type=click.Path(),
              help="Inference directory [default: RUN/inference, with --graph RUN/inference-<graph checksum>].")
@click.option("--shard-size", type=int, default=65536, show_default=True, help="Nodes per shard (bounds memory).")
@click.option("--ray/--no-ray", "use_ray", default=False, show_default=True,
              help="Run shards as Ray tasks (local Ray unless --address).")
@click.option("--address", default=None, help="Ray cluster address (e.g. auto under `ray job submit`).")
@click.pass_context
def infer(ctx, run_dir, graph, out, shard_size, use_ray, address):
    """Layer-wise PinSage inference of every item, sharded and resumable."""
    from graphrec.infer.layerwise import infer_pinsage

    work = infer_pinsage(run_dir, out, shard_size=shard_size, use_ray=use_ray or bool(address), address=address,
                         progress=ctx.obj["progress"], graph=graph)
    click.echo(f"item and user embeddings -> {work} (embeddings.npy, user_embeddings.npy); "
               f"`graphrec export --run {run_dir} --inference {work}` exports them")


@cli.command()
@click.option("--embeddings", "emb_dir", required=True, type=click.Path(), help="An exported embedding directory.")
@click.option("--target", required=True, help="Node type to index (the candidates).")
@click.option("--query", default=None, help="src:rel:dst whose candidate vectors to index (for user→item recommend).")
@click.option("--kind", type=click.Choice(["auto", "flat", "hnsw", "ivf"]), default="auto", show_default=True)
@click.option("--flat-max", type=int, default=200_000, show_default=True,
              help="auto: exact Flat up to this many vectors, IVF (MIPS-augmented) above.")
@click.option("--hnsw-m", type=int, default=32, show_default=True)
@click.option("--ef-search", type=int, default=128, show_default=True)
@click.option("--nlist", type=int, default=None, help="IVF lists [default: 4·sqrt(N)].")
@click.option("--nprobe", type=int, default=32, show_default=True)
@click.option("--pq-m", type=int, default=None, help="IVF-PQ sub-quantisers [default: IVF-Flat].")
@click.option("--train-sample", type=int, default=None,
              help="IVF: vectors sampled to train the lists and PQ [default: max(200000, 39·nlist)].")
@click.option("--chunk-size", type=int, default=1 << 16, show_default=True,
              help="Vectors read and added per step (IVF builds hold one chunk, the sample and the index).")
@click.option("--out", required=True, type=click.Path(), help="Index directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.pass_context
def index(ctx, emb_dir, target, query, kind, flat_max, hnsw_m, ef_search, nlist, nprobe, pq_m, train_sample,
          chunk_size, out, overwrite):
    """Build a FAISS inner-product index over exported embeddings (IVF streams the vectors in bounded memory)."""
    from pydantic import ValidationError

    from graphrec.retrieval.index import IndexConfig, build_index

    try:
        cfg = IndexConfig(kind=kind, flat_max=flat_max, hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist,
                          nprobe=nprobe, pq_m=pq_m, train_sample=train_sample, chunk_size=chunk_size)
    except ValidationError as err:
        raise GraphrecError("; ".join(f"--{str(e['loc'][0]).replace('_', '-')} {e['input']!r}: {e['msg'].lower()}"
                                      for e in err.errors())) from None
    m = build_index(emb_dir, target, out, query=query, cfg=cfg, overwrite=overwrite, progress=ctx.obj["progress"])
    click.echo(f"indexed {m['count']:,} {target} vectors (dim {m['dim']}, {m['kind']}, inner product) "
               f"in {m['build_seconds']:.1f}s -> {out}")


@cli.command()
@click.option("--index", "index_dir", required=True, type=click.Path(), help="An index directory.")
@click.option("--id", "ids", required=True, multiple=True, help="Item id to find neighbours of (repeatable).")
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def search(index_dir, ids, k, as_json):
    """Item→item: the k most similar items of each --id."""
    from graphrec.retrieval import Index, similar_items

    df, unknown = similar_items(Index(index_dir), list(ids), k)
    if unknown and len(unknown) == len(ids):
        raise GraphrecError(f"none of the ids is in {index_dir}: {', '.join(map(str, unknown[:10]))}")
    for u in unknown:
        click.echo(f"unknown id: {u}", err=True)
    click.echo(df.to_json(orient="records", lines=True).rstrip("\n") if as_json else df.to_string(index=False))


@cli.command()
@click.option("--index", "index_dir", required=True, type=click.Path(), help="An index built with --query.")
@click.option("--users", "users_file", type=click.Path(), default=None, help="User ids (text, CSV or Parquet).")
@click.option("--all", "all_users", is_flag=True, help="Every user with a query vector.")
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--exclude-seen", type=click.Path(), default=None, help="Graph store whose interactions to exclude.")
@click.option("--embeddings", "emb_dir", type=click.Path(), default=None,
              help="Embedding directory of the query vectors [default: the index's].")
@click.option("--out", required=True, type=click.Path(), help="Parquet file to write (user, rank, item, score).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.pass_context
def recommend(ctx, index_dir, users_file, all_users, k, exclude_seen, emb_dir, out, overwrite):
    """Batch user→items: top-k per user, seen items excluded."""
    from graphrec.retrieval import Index
    from graphrec.retrieval import recommend as _recommend
    from graphrec.retrieval.search import read_id_list

    if bool(users_file) == bool(all_users):
        raise click.UsageError("give exactly one of --users FILE or --all")
    users = None if all_users else read_id_list(users_file)
    r = _recommend(Index(index_dir), out, users=users, k=k, exclude_seen=exclude_seen, embeddings=emb_dir,
                   overwrite=overwrite, progress=ctx.obj["progress"])
    if r["unknown_users"]:
        click.echo(f"{len(r['unknown_users'])} unknown user id(s) skipped: {', '.join(r['unknown_users'][:10])}",
                   err=True)
    click.echo(f"{r['rows']:,} recommendations for {r['users']:,} users -> {out}")


@cli.command()
@click.option("--index", "index_dir", default=None, type=click.Path(), help="The index directory to serve.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="A service config YAML (the keys of `graphrec config show serve`); flags override it.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--replicas", type=int, default=None, help="Serve replicas, each holding the index [default: 1].")
@click.option("--graph", default=None, type=click.Path(),
              help="Graph store whose interactions exclude_seen leaves out [default: the embeddings' graph].")
@click.option("--max-batch-size", type=int, default=None, help="Requests per FAISS search [default: 64].")
@click.option("--batch-wait-ms", type=float, default=None,
              help="How long a batch waits for more requests [default: 0: what queued meanwhile].")
@click.option("--ingress", type=click.Choice(["proxy", "direct"]), default="proxy", show_default=True,
              help="proxy: Serve's HTTP proxy on PORT, balancing over the replicas. direct: Ray Serve's direct "
                   "ingress, each replica answers HTTP itself on PORT..PORT+N-1 (no proxy hop: lowest latency, "
                   "most requests/s; local Ray only), Serve's proxy on PORT+N.")
@click.option("--address", default=None, help="Ray cluster address [default: start local Ray].")
def serve(index_dir, config_path, host, port, replicas, graph, max_batch_size, batch_wait_ms, ingress, address):
    """Serve an index over HTTP on Ray Serve until SIGINT/SIGTERM: /similar, /recommend, /healthz, /reload."""
    from graphrec.config_base import load_model, parse_model
    from graphrec.retrieval.service import ServiceConfig, serve_forever

    flags = {"index": index_dir, "replicas": replicas, "graph": graph, "max_batch_size": max_batch_size,
             "batch_wait_timeout_s": None if batch_wait_ms is None else batch_wait_ms / 1000}
    flags = {k: v for k, v in flags.items() if v is not None}
    if config_path:
        cfg = load_model(config_path, ServiceConfig, what="service config", overrides=flags)
    elif "index" not in flags:
        raise click.UsageError("give --index DIR (or --config with an index key)")
    else:
        cfg = parse_model(flags, ServiceConfig, origin="graphrec serve")

    def ready(urls):
        click.echo(f"serving {cfg.index} at {', '.join(urls)} (/similar, /recommend, /healthz, /reload); "
                   "Ctrl-C stops", err=True)

    serve_forever(cfg, host=host, port=port, address=address, ingress=ingress, ready=ready)
    click.echo("stopped", err=True)


@cli.group("kv")
def kv_group():
    """The batch half of serving: `graphrec recommend` output in a key-value store (SQLite)."""


@kv_group.command("load")
@click.option("--recommendations", "recs", required=True, type=click.Path(dir_okay=False),
              help="Parquet file of `graphrec recommend` (user, rank, item, score).")
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="SQLite file to create.")
@click.option("--overwrite", is_flag=True, help="Replace DB if graphrec wrote it.")
def kv_load(recs, db, overwrite):
    """Load recommendations into SQLite: one row per user, the value the JSON list of items."""
    from graphrec.retrieval.kv import load_sqlite

    r = load_sqlite(recs, db, overwrite=overwrite)
    click.echo(f"{r['users']:,} users ({r['rows']:,} recommendations, k {r['k']}) -> {db} in {r['seconds']:.1f}s")


@kv_group.command("get")
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="A store of `graphrec kv load`.")
@click.option("--user", "users", required=True, multiple=True, help="User id to look up (repeatable).")
def kv_get(db, users):
    """Look users up: one JSON line per user ({"user", "results"})."""
    import json

    from graphrec.retrieval.kv import RecommendationStore

    store = RecommendationStore(db)
    found = {u: store.get(u) for u in users}
    missing = [u for u, v in found.items() if v is None]
    if len(missing) == len(users):
        raise GraphrecError(f"{db}: no recommendations for {', '.join(missing[:10])}")
    for u, v in found.items():
        if v is None:
            click.echo(f"unknown user: {u}", err=True)
        else:
            click.echo(json.dumps({"user": u, "results": v}))


# ---- generate -----------------------------------------------------------------------


@cli.group()
def generate():
    """Generate synthetic datasets."""


@generate.command("pinterest")
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--pins", type=int, default=5000, show_default=True)
@click.option("--boards", type=int, default=500, show_default=True)
@click.option("--authors", type=int, default=300, show_default=True)
@click.option("--saves", type=int, default=None, help="Number of user-saves-pin edges [default: 20 per user].")
@click.option("--clusters", type=int, default=20, show_default=True, help="Planted latent interest clusters.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Directory to write the Parquet tables into.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.pass_context
def generate_pinterest_cmd(ctx, users, pins, boards, authors, saves, clusters, seed, out, overwrite):
    """Synthetic Pinterest-like tables (users, pins, boards, authors and their edges)."""
    from pydantic import ValidationError

    from graphrec.datasets.pinterest import PinterestConfig, generate_pinterest

    try:
        cfg = PinterestConfig(users=users, pins=pins, boards=boards, authors=authors,
                              saves=saves if saves is not None else 20 * users, clusters=clusters, seed=seed)
    except ValidationError as err:
        raise GraphrecError("; ".join(f"--{'.'.join(map(str, e['loc']))} {e['input']!r}: {e['msg'].lower()}"
                                      for e in err.errors())) from None
    counts = generate_pinterest(cfg, out, overwrite=overwrite, progress=ctx.obj["progress"])
    click.echo("wrote " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + f" -> {out}")


@cli.command("run")
@click.argument("config_path", type=click.Path(dir_okay=False))
@click.option("--out", default=None, type=click.Path(), help="Output directory [default: out/<name>].")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--seed", type=int, default=None, help="Seed of every model (overrides the configs' seeds).")
@click.pass_context
def run_cmd(ctx, config_path, out, overwrite, seed):
    """The whole pipeline as one job: data -> graph -> split -> TwHIN + PinSage -> infer ->
    export -> index -> evaluate -> report.md."""
    from graphrec.pipeline import run_job

    s = run_job(config_path, out, overwrite=overwrite, progress=ctx.obj["progress"], seed=seed)
    metric = s["recommend"]["selected_by"].split()[1]
    pop = s["evaluation"]["models"]["popularity"]["user_to_item"][metric]
    for m, r in s["evaluation"]["models"].items():
        cr = s.get("cluster_recovery", {}).get(m)
        u2i = r["user_to_item"][metric]
        if m == "popularity":
            click.echo(f"popularity (baseline): test {metric} {u2i:.4f}")
            continue
        click.echo(f"{m}: test {metric} {u2i:.4f} ({u2i / pop:.2f}x popularity; new items only)"
                   + (f", planted-cluster NMI {cr['nmi']:.3f} (random {cr['random_nmi']:.3f})" if cr else ""))
    click.echo(f"candidates.parquet from {s['recommend']['model']} (best {s['recommend']['selected_by']}); "
               f"done in {s['seconds']:.0f}s -> {out or 'out/' + s['name']}/report.md")


@cli.command()
@click.option("--out", default="out/demo", show_default=True, type=click.Path(), help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.pass_context
def demo(ctx, out, overwrite):
    """The built-in default job: synthetic data -> graph -> split -> analytics."""
    from graphrec.pipeline import run_demo

    s = run_demo(out, overwrite=overwrite, progress=ctx.obj["progress"])
    g = s["graph"]
    click.echo(f"graph: {g['total_nodes']:,} nodes, {g['total_edges']:,} edges; "
               + ", ".join(f"{t} {n['count']:,}" for t, n in g["node_types"].items()))
    click.echo(f"split user:saves:pin: train {s['split']['train']:,} / valid {s['split']['valid']:,} / test {s['split']['test']:,}")
    click.echo(f"components: {s['components']['count']} (largest {s['components']['largest_fraction']:.1%}); "
               f"power-law alpha user saves {s['powerlaw_alpha']['user_saves']:.2f}, pin saved {s['powerlaw_alpha']['pin_saved']:.2f}")
    click.echo("PageRank top pins: " + ", ".join(f"{r['id']} ({r['score']:.2e})" for r in s["pagerank_top_pins"]))
    p = s["pin_projection"]
    click.echo(f"pin co-save projection: {p['pairs']:,} pairs, density {p['density']:.3f}, mean degree {p['mean_degree']:.1f}")
    click.echo(f"done in {s['seconds']:.1f}s -> {out} (summary.json)")


# ---- config reference ---------------------------------------------------------------


@cli.group("config")
def config_group():
    """Reference of every config file: keys, types, defaults, descriptions."""


@config_group.command("show")
@click.argument("name", type=click.Choice(list(CONFIGS)))
@click.option("--markdown", is_flag=True, help="Print Markdown (as in configs/README.md) instead of text.")
def config_show(name, markdown):
    """Describe every key of a config: twhin or pinsage run configs, the pipeline job
    (graphrec run), the graph schema (graphrec build --schema)."""
    from graphrec.config_docs import render_markdown, render_text

    click.echo(render_markdown(name) if markdown else render_text(name), nl=False)


@config_group.command("docs")
@click.option("--update", "readme", type=click.Path(dir_okay=False), default=None,
              help="Rewrite the generated reference in this README (e.g. configs/README.md) instead of printing it.")
def config_docs_cmd(readme):
    """The Markdown reference of every config (the generated part of configs/README.md)."""
    from graphrec.config_docs import render_reference, update_readme

    if readme is None:
        click.echo(render_reference(), nl=False)
    else:
        click.echo(f"{readme}: {'updated' if update_readme(readme) else 'up to date'}")


def main(argv=None) -> int:
    """Console entry point: runs the CLI and maps errors to exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="graphrec")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as err:
        # one line, like every other user error: "error: <what>" plus where to look
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"error: {err.format_message()}{hint}", err=True)
        return err.exit_code
    except GraphrecError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - last-resort message without a traceback
        if debug:
            raise
        click.echo(f"internal error: {type(err).__name__}: {err}\n(re-run with `graphrec --debug ...` for the traceback)", err=True)
        return EXIT_INTERNAL_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
