"""Writes notebooks/graph_analytics.ipynb (kept as code so the notebook diff stays reviewable).

    python notebooks/make_graph_analytics.py
"""

from pathlib import Path

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s))  # noqa: E731

md("""# Graph analytics

Builds the MovieLens-100K heterogeneous graph (users, items, Freebase entities) from
`$GRAPHREC_DATA` (default `../shared/datasets/ml-100k`) — or, when that data is absent, a
small synthetic Pinterest-like graph — and looks at its structure: counts, degree
distributions, connected components, PageRank and the item co-engagement projection.""")

code("""import os, tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import pandas as pd

from graphrec.analytics import (bipartite_projection_stats, connected_components, degree_distribution,
                                graph_summary, pagerank_topk, powerlaw_exponent, projection_clustering)
from graphrec.datasets import PinterestConfig, generate_pinterest, ml100k_dir
from graphrec.graph import build_graph, load_schema

ROOT = Path.cwd() if (Path.cwd() / "graphs").is_dir() else Path.cwd().parent
work = Path(tempfile.mkdtemp(prefix="graphrec-nb-"))
data_dir = ml100k_dir()
if (data_dir / "ml-100k.inter").is_file():
    DATASET, schema, interaction = "ml-100k", ROOT / "graphs" / "movielens-100k.yaml", ("user", "rated", "item")
else:
    DATASET, schema, interaction = "synthetic", ROOT / "graphs" / "pinterest-synthetic.yaml", ("user", "saves", "pin")
    data_dir = work / "data"
    generate_pinterest(PinterestConfig(users=2000, pins=4000, boards=300, authors=200, saves=40_000), data_dir, progress=False)
g = build_graph(load_schema(schema), work / "graph", data_dir=data_dir, progress=False)
print(DATASET, g)""")

md("## Counts")
code("""s = graph_summary(g)
nodes = pd.DataFrame([{"node type": t, "nodes": v["count"], "features": ", ".join(v["features"])} for t, v in s["node_types"].items()])
rels = pd.DataFrame([{"relation": r["relation"], "edges": r["edges"], "mean out-degree": r["out_degree"]["mean"],
                      "max in-degree": r["in_degree"]["max"]} for r in s["relations"] if not r["reverse"]])
display(nodes)
display(rels.sort_values("edges", ascending=False).reset_index(drop=True))""")

md("## Degree distributions\nLog-log degree histograms of the interaction relation; a straight line suggests a power law (MLE exponent in the legend).")
code("""rel = g.relation(interaction)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, direction, who in zip(axes, ("out", "in"), (interaction[0], interaction[2])):
    deg, cnt = degree_distribution(rel, direction)
    keep = deg > 0
    alpha = powerlaw_exponent(rel.out_degree() if direction == "out" else rel.in_degree(), d_min=5)
    ax.loglog(deg[keep], cnt[keep], "o", ms=3, label=f"alpha = {alpha:.2f}")
    ax.set(xlabel=f"{who} degree", ylabel=f"number of {who}s", title=f"{':'.join(interaction)} ({direction})")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend()
plt.tight_layout(); plt.show()""")

code("""other = [r for r in g.relations() if not r.is_reverse and r.edge_type != interaction and r.num_edges > 500][:6]
fig, ax = plt.subplots(figsize=(7, 4.5))
for r in other:
    deg, cnt = degree_distribution(r, "in")
    keep = deg > 0
    ax.loglog(deg[keep], cnt[keep], ".-", lw=0.8, label=r.edge_type[1])
ax.set(xlabel="in-degree", ylabel="nodes", title="in-degree of the side relations")
ax.legend(fontsize=7); plt.show()""")

md("## Connected components")
code("""comps = connected_components(g)
print(f"{comps.num_components} components; the largest holds {comps.largest_fraction:.1%} of {comps.sizes.sum():,} nodes")
sizes, counts = comps.size_distribution()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(sizes, counts, "s")
ax.set(xlabel="component size", ylabel="components", title="component size distribution")
plt.show()
# which node types sit outside the giant component?
giant = np.bincount(comps.labels).argmax()
outside = {t: int((comps.labels[off: off + g.num_nodes(t)] != giant).sum()) for t, off in comps.offsets.items()}
outside""")

md("## PageRank\nTop nodes of the undirected whole graph (power iteration on scipy.sparse).")
code("""top = pagerank_topk(g, k=10, node_type=interaction[2])
if DATASET == "ml-100k":
    items = pd.read_csv(data_dir / "ml-100k.item", sep="\\t", dtype=str, quoting=3)
    items.columns = [c.split(":")[0] for c in items.columns]
    top = top.merge(items[["item_id", "movie_title"]], left_on="id", right_on="item_id", how="left").drop(columns="item_id")
top["in-degree"] = g.relation(interaction).in_degree()[top["index"].values]
display(top)
fig, ax = plt.subplots(figsize=(6, 3.5))
deg = g.relation(interaction).in_degree()
all_pr = pagerank_topk(g, k=g.num_nodes(interaction[2]), node_type=interaction[2])
ax.loglog(deg[all_pr["index"].values] + 1, all_pr["score"].values, ".", ms=3)
ax.set(xlabel=f"{interaction[2]} in-degree + 1", ylabel="PageRank", title="PageRank vs popularity"); plt.show()""")

md("## Item co-engagement projection\n`P = B Bᵀ` over the interaction incidence matrix (scipy.sparse); clustering on the top items with networkx.")
code("""proj = bipartite_projection_stats(g, interaction, side="dst")
cc = projection_clustering(g, interaction, side="dst", top_n=300, min_shared=5)
display(pd.Series({**proj, "avg clustering (top 300, >=5 shared)": cc}).to_frame("value"))""")

md("## Interactions over time")
code("""ts = pd.to_datetime(g.relation(interaction).edge_attr("timestamp"), unit="s")
fig, ax = plt.subplots(figsize=(8, 3))
pd.Series(1, index=ts).resample("W").sum().plot(ax=ax)
ax.set(ylabel="interactions / week", title=f"{':'.join(interaction)} over time"); plt.show()""")

md("## Clean up\nThe graph above was built in a temporary directory; this removes it (skip the cell to keep exploring).")
code("""import shutil
del g
shutil.rmtree(work, ignore_errors=True)
print(f"removed {work}")""")

nb = nbf.v4.new_notebook()
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
out = Path(__file__).with_name("graph_analytics.ipynb")
nbf.write(nb, out)
print(f"wrote {out}")
