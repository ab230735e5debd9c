"""The end-to-end job's ``report.md`` and the PNG plots it embeds (matplotlib, Agg).

Plots: training loss per epoch of each model; Recall@K (user→item) and HitRate@K
(item→item) curves of each model and of the popularity baseline; a 2-D PCA projection of the pin embeddings coloured
by the planted cluster. Everything drawn from the numbers the job computed (passed in),
so the report shows exactly what ``summary.json`` holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(histories: dict[str, list[dict]], path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.5), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items(), strict=True):
        ax.plot([h["epoch"] + 1 for h in hist], [h["loss"] for h in hist], marker="o")
        ax.set(title=f"{name} training loss", xlabel="epoch", ylabel="loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, dict[str, float]], metric: str, ks, path: Path, title: str) -> Path:
    """``curves``: ``{model: {f"{metric}@{k}": value}}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, vals in curves.items():
        ax.plot(ks, [vals[f"{metric}@{k}"] for k in ks], marker="o", label=name)
    ax.set(title=title, xlabel="K", ylabel=f"{metric}@K", xscale="log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pca_2d(emb: np.ndarray) -> np.ndarray:
    """First two principal components ``[N, 2]`` of ``emb`` (centred SVD)."""
    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def plot_projection(embs: dict[str, np.ndarray], labels: np.ndarray, path: Path, max_points: int = 5000,
                    seed: int = 0) -> Path:
    plt = _plt()
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    pick = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    fig, axes = plt.subplots(1, len(embs), figsize=(5 * len(embs), 4.5), squeeze=False)
    for ax, (name, emb) in zip(axes[0], embs.items(), strict=True):
        xy = pca_2d(np.asarray(emb)[pick])
        ax.scatter(xy[:, 0], xy[:, 1], c=labels[pick], cmap="tab20", s=4, alpha=0.7)
        ax.set(title=f"{name}: pin embeddings (PCA), colour = planted cluster", xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: list[list], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(out)


def write_report(out: Path, summary: dict, histories: dict, pin_embs: dict, labels: np.ndarray | None) -> Path:
    """Write ``out/report.md`` and its plots from the job's ``summary``."""
    ks = summary["evaluation"]["ks"]
    figs = {"loss": plot_losses(histories, out / "loss.png")}
    u2i = {m: r["user_to_item"] for m, r in summary["evaluation"]["models"].items()}
    i2i = {m: r["item_to_item"] for m, r in summary["evaluation"]["models"].items() if "item_to_item" in r}
    figs["recall"] = plot_curves(u2i, "recall", ks, out / "recall_at_k.png", "user→item Recall@K (test)")
    figs["hit"] = plot_curves(i2i, "hit", ks, out / "hitrate_at_k.png", "item→item HitRate@K (test)")
    if labels is not None:
        figs["proj"] = plot_projection(pin_embs, labels, out / "pin_projection.png")
    g, s = summary["graph"], summary["split"]
    lines = [f"# graphrec job report: {summary['name']}", "",
             f"Graph: {g['total_nodes']:,} nodes, {g['total_edges']:,} edges "
             f"({', '.join(f'{t} {n:,}' for t, n in g['nodes'].items())}). Split `{summary['split_relation']}` "
             f"per user by time: train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}. "
             f"Job time {summary['seconds']:.0f}s ({', '.join(f'{k} {v:.0f}s' for k, v in summary['timings'].items())}).",
             "", "## Training", "", f"![loss]({figs['loss'].name})", ""]
    lines.append(_table([[m, t["epochs_run"], f"{t['seconds']:.1f}", t.get("workers", 1)]
                         for m, t in summary["training"].items()],
                        ["model", "epochs", "seconds", "workers"]))
    ev = summary["evaluation"]
    sel = summary.get("recommend") or {}
    metric = (sel.get("selected_by") or "user_to_item recall@20").split()[1]
    pop = ev["models"].get("popularity", {}).get("user_to_item", {})
    any_u2i = next(iter(ev["models"].values()))["user_to_item"]
    lines += ["", "## Retrieval quality (test)", "",
              "Protocols (every model and the popularity baseline on the same ones; ties count as a random order):",
              ""]
    lines += [f"- **{group}** — {text}" for group, text in ev["protocols"].items()]
    lines += ["", f"User→item ({any_u2i['protocol']}): {any_u2i['users']:,} test users evaluated, "
              f"{any_u2i['users_skipped']:,} skipped (every test item already seen); "
              f"{any_u2i['heldout_repeats']:.1%} of the test (user, pin) pairs are repeats, which are not targets. "
              "Popularity = interactions per pin in the training graph.", "",
              f"![recall]({figs['recall'].name}) ![hit]({figs['hit'].name})", ""]
    rows = []
    for m, r in ev["models"].items():
        v = ev.get("valid", {}).get(m, {}).get("user_to_item", {}).get(metric)
        ratio = r["user_to_item"][metric] / pop[metric] if pop.get(metric) else float("nan")
        rows.append([m, v if v is not None else "-", *[r["user_to_item"][f"recall@{k}"] for k in ks],
                     r["user_to_item"]["ndcg@20"] if "ndcg@20" in r["user_to_item"] else "-",
                     f"{ratio:.2f}x" if m != "popularity" else "1x",
                     *[r["item_to_item"][f"hit@{k}"] for k in ks]])
    lines.append(_table(rows, ["model", f"valid {metric}", *[f"R@{k}" for k in ks], "NDCG@20",
                               f"{metric} / popularity", *[f"i2i HR@{k}" for k in ks]]))
    rep = {m: r["user_to_item_with_repeats"] for m, r in ev["models"].items() if "user_to_item_with_repeats" in r}
    if rep:
        lines += ["", "Repeat consumption (a separate protocol, not the one above: nothing excluded, every test pin a "
                  "target, repeats included):", ""]
        lines.append(_table([[m, r["users"], *[r[f"recall@{k}"] for k in ks]] for m, r in rep.items()],
                            ["model", "users", *[f"R@{k}" for k in ks]]))
    if "cluster_recovery" in summary:
        lines += ["", "## Planted-cluster recovery (pins)", "",
                  "NMI of spherical k-means (k = number of planted clusters) on the pin embeddings vs the planted "
                  "clusters, and the fraction of each pin's top-10 inner-product neighbours in its own cluster; the "
                  "same for a random Gaussian embedding of the same shape.", ""]
        cr = summary["cluster_recovery"]
        lines.append(_table([[m, r["nmi"], r["random_nmi"], r["neighbor_purity@10"], r["random_neighbor_purity@10"],
                              r["chance_purity"]] for m, r in cr.items()],
                            ["model", "NMI", "NMI (random)", "top-10 purity", "purity (random)", "chance"]))
        lines += ["", f"![projection]({figs['proj'].name})"]
    if summary.get("index"):
        lines += ["", "## Indexes and candidates", ""]
        for m, ix in summary["index"].items():
            lines.append(f"- {m}: `{ix['path']}` — {ix['count']:,} pins, {ix['kind']}, dim {ix['dim']}, inner product")
        if summary.get("recommend"):
            r = summary["recommend"]
            lines.append(f"- `{r['path']}`: top-{r['k']} pins for {r['users']:,} users ({r['rows']:,} rows), "
                         f"seen pins excluded, from **{r['model']}**: the best {r['selected_by']} "
                         f"({', '.join(f'{m} {v:.4f}' for m, v in r['valid'].items())})")
    serve = (summary.get("recommend") or {}).get("serve")
    if serve:
        lines += ["", "## Serving", "",
                  f"The selected index over HTTP on Ray Serve (`graphrec serve --help`; Ctrl-C stops), then e.g. "
                  f"`curl 'http://127.0.0.1:8000/recommend?user={serve['user']}&k=10&exclude_seen=true'` or "
                  f"`curl 'http://127.0.0.1:8000/similar?id={serve['item']}&k=10'`:", "",
                  "```bash", f"graphrec serve --index {serve['index']}", "```"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
