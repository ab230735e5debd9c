"""End-to-end jobs composed from the package's layers.

``run_demo`` is the built-in default job (``make demo`` / ``graphrec demo``): synthetic
Pinterest-like tables -> graph store -> chronological split -> analytics, with every
artefact written under one output directory.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from graphrec.analytics import bipartite_projection_stats, connected_components, graph_summary, pagerank_topk
from graphrec.analytics.degrees import powerlaw_exponent
from graphrec.datasets import PinterestConfig, generate_pinterest
from graphrec.eval.split import chronological_split
from graphrec.graph import build_graph, load_schema

log = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parents[1] / "graphs" / "pinterest-synthetic.yaml"


def run_demo(out: str | Path, cfg: PinterestConfig | None = None, schema_path: str | Path = SCHEMA,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Generate -> build -> split -> analytics. Returns (and writes ``summary.json``)."""
    out = Path(out)
    if out.exists() and not overwrite:
        from graphrec.errors import GraphrecError

        raise GraphrecError(f"{out} already exists (pass --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg or PinterestConfig(users=5000, pins=10000, boards=800, authors=400, saves=200_000, clusters=20)
    t0 = time.perf_counter()
    generate_pinterest(cfg, out / "data", overwrite=True, progress=progress)
    store = build_graph(load_schema(schema_path), out / "graph", data_dir=out / "data", overwrite=True, progress=progress)
    split = chronological_split(store, ("user", "saves", "pin"), out=out / "split", overwrite=True)
    comps = connected_components(store)
    saves = store.relation(("user", "saves", "pin"))
    summary = {
        "graph": graph_summary(store),
        "split": split.counts,
        "components": {"count": comps.num_components, "largest_fraction": comps.largest_fraction},
        "powerlaw_alpha": {
            "user_saves": powerlaw_exponent(saves.out_degree(), d_min=5),
            "pin_saved": powerlaw_exponent(saves.in_degree(), d_min=5),
        },
        "pagerank_top_pins": pagerank_topk(store, k=5, node_type="pin").to_dict(orient="records"),
        "pin_projection": bipartite_projection_stats(store, ("user", "saves", "pin"), side="dst"),
        "seconds": time.perf_counter() - t0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
