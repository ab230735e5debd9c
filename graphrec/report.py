"""The end-to-end job's ``report.md`` and the PNG plots it embeds (matplotlib, Agg).

Plots: training loss per epoch of each model; Recall@K (user→item) and HitRate@K
(item→item) curves of each model; a 2-D PCA projection of the pin embeddings coloured
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
    i2i = {m: r["item_to_item"] for m, r in summary["evaluation"]["models"].items()}
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
    lines.append(_table([[m, t["epochs_run"], t["seconds"], t.get("workers", 1)] for m, t in summary["training"].items()],
                        ["model", "epochs", "seconds", "workers"]))
    lines += ["", "## Retrieval quality (test)", "",
              "User→item: full ranking of all pins by the exported retrieval vectors, train and valid items masked. "
              "Item→item: query = the user's last train pin, targets = the user's test pins.", "",
              f"![recall]({figs['recall'].name}) ![hit]({figs['hit'].name})", ""]
    rows = [[m, *[r["user_to_item"][f"recall@{k}"] for k in ks], *[r["item_to_item"][f"hit@{k}"] for k in ks]]
            for m, r in summary["evaluation"]["models"].items()]
    lines.append(_table(rows, ["model", *[f"R@{k}" for k in ks], *[f"i2i HR@{k}" for k in ks]]))
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
                         "seen pins excluded")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
