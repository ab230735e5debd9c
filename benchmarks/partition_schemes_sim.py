"""Exploratory (looks at test; chooses nothing): partitioned-training candidate schemes
simulated in one process on the full Kinships table, to explain the partitioned quality
gap (benchmarks/RESULTS.md, "Quality parity").

    PYTHONPATH=. python benchmarks/partition_schemes_sim.py SCHEME P SEED EPOCHS SPLIT_DIR [CHUNKS]

CHUNKS (default 1): PyTorch-BigGraph's ``num_edge_chunks`` — each epoch makes CHUNKS
rounds over the buckets, training 1/CHUNKS of each bucket's batches per round.

SPLIT_DIR: a `graphrec split` of Kinships (benchmarks/partitioned_quality.py prepares one
under WORK/kinships/split). SCHEME:

* ``p1``: every entity a candidate (1-N), as P=1;
* ``own``: PBG's buckets (i, j), a side's candidates its own partition;
* ``pairs``: pair buckets {a, b}, candidates both held partitions, within-partition
  blocks in every pair (what ``partition_buckets: pairs`` does);
* ``pairs1``: the same, but each within-partition edge in one random pair;
* ``pairsfrozen``: pairs plus every other partition as frozen candidates (no gradient);
* ``pairsdelayed``: pairs plus the other partitions from a bucket-start snapshot, their
  gradients replayed as Adagrad steps at the bucket's end;
* ``pairsz``: pair buckets, each (positive, side, candidate partition) once per epoch: a
  positive's own term in the pair holding both its ends (within-partition edges in one
  random pair), against the held partitions plus the *stale* log-normaliser of the
  others; in every other pair holding its query node, a negative-only term
  ``exp(LSE_o - stale LSE)`` over the other held partition ``o`` — the full softmax's
  gradient with normalisers at most an epoch old (per (node, relation, partition));
* ``pairsfull`` / ``pairs1full``: the order and edges of ``pairs`` / ``pairs1`` but every
  entity a (live) candidate: what the bucket order and the repeated within-partition
  blocks cost on their own.

Prints the best-on-valid epoch's valid and test filtered MRR (evaluated every 2 epochs).
"""
import sys, json, itertools
sys.path.insert(0, ".")
import numpy as np, torch
import torch.nn.functional as F
from pathlib import Path
from graphrec.eval import load_split
from graphrec.run.config import TwHINConfig, load_config
from graphrec.run.directory import twhin_model
from graphrec.train.twhin import TwHINLoss, select_relations, resolve_auto, train_step
from graphrec.train.evaluate import link_prediction_on_split
scheme, P, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
epochs = int(sys.argv[4])
CHUNKS = int(sys.argv[6]) if len(sys.argv) > 6 else 1  # optional: edge chunks per epoch
torch.set_num_threads(1)
split = load_split(Path(sys.argv[5]))
store = split.train
cfg = load_config("configs/twhin-kg.yaml", TwHINConfig).model_copy(update={"seed": seed})
sel = select_relations(store, cfg)
ets = [tuple(e) for e, _ in sel]
cfg = resolve_auto(cfg, store, ets)
N = store.num_nodes(ets[0][0])
model = twhin_model(cfg, {t: store.num_nodes(t) for t in store.node_types}, ets, sparse=True)
opts = [torch.optim.Adagrad(model.node_emb.parameters(), lr=cfg.lr), torch.optim.Adagrad(model.rel_emb.parameters(), lr=cfg.lr)]
lm = TwHINLoss(model, cfg)


def full_softmax_step(et, h, t, E):
    """One step of the model's loss (both sides, N3) against every row of ``E`` [N, d] as
    candidates (some of them frozen or stale, as the caller built ``E``)."""
    hv, tv = model.node_emb(h), model.node_emb(t)
    rv = model.relation_embedding(et)
    loss = (F.cross_entropy(model.score_fn.tails(hv, rv, E), t) + F.cross_entropy(model.score_fn.heads(E, rv, tv), h)) / 2
    loss = loss + cfg.regularization * model.n3(hv, rv, tv)
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in opts:
        o.step()

rng = np.random.default_rng(seed)
part = rng.permutation(N) % P  # partition of each node
R = len(ets)
part_t = torch.from_numpy(part).long()
members = [torch.from_numpy(np.flatnonzero(part == c)).long() for c in range(P)]
# stale log-normalisers per (query node, relation, candidate partition): tail side (query h), head side (query t)
LSE = {"t": torch.log(torch.tensor([len(m) for m in members], dtype=torch.float32)).repeat(N, R, 1),
       "h": torch.log(torch.tensor([len(m) for m in members], dtype=torch.float32)).repeat(N, R, 1)}


def side_scores(side, hv, rv, tv, cand_rows):
    E = model.node_emb(cand_rows)
    return model.score_fn.tails(hv, rv, E) if side == "t" else model.score_fn.heads(E, rv, tv)


def z_step(kind, r, h, t):
    """One pairsz batch (relation r): "pos" — the positives' own terms against both held
    partitions (fresh) and the others (stale); "negt"/"negh" — negative-only terms of the
    tail / head side over the other held partition."""
    hv, tv, rv = model.node_emb(h), model.node_emb(t), model.relation_embedding(ets[r])
    loss = 0.0
    if kind == "pos":
        for side, q in (("t", h), ("h", t)):  # every positive here has both ends in the bucket's pair
            fresh = []
            parts_here = sorted(cur_pair)
            for c in parts_here:
                fresh.append(torch.logsumexp(side_scores(side, hv, rv, tv, members[c]), 1))
            stale = LSE[side][q, r][:, [c for c in range(P) if c not in parts_here]]
            total = torch.logsumexp(torch.cat([torch.stack(fresh, 1), stale], 1), 1)
            s_pos = model.score_fn.pair(hv, rv, tv)
            loss = loss + (total - s_pos).mean() / 2
            with torch.no_grad():
                for k, c in enumerate(parts_here):
                    LSE[side][q, r, c] = fresh[k].detach()
        loss = loss + cfg.regularization * model.n3(hv, rv, tv)
    else:
        side, q = ("t", h) if kind == "negt" else ("h", t)
        qp = part_t[q]
        a, b = sorted(cur_pair)
        other = torch.where(qp == a, torch.tensor(b), torch.tensor(a))
        terms = []
        for c in (a, b):
            m = other == c
            if not m.any():
                continue
            f = torch.logsumexp(side_scores(side, hv[m], rv, tv[m], members[c]), 1)
            total = torch.logsumexp(LSE[side][q[m], r], 1).detach()
            terms.append(torch.exp(f - total))
            with torch.no_grad():
                LSE[side][q[m], r, c] = f.detach()
        loss = torch.cat(terms).sum() / h.shape[0] / 2
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in opts:
        o.step()


edges = []
for r, et in enumerate(ets):
    rel = store.relation(et); s, d = rel.coo()
    edges.append((np.asarray(s), np.asarray(d)))
B = cfg.batch_size
def batches_of(r, s, d, cand):
    out = []
    perm = rng.permutation(len(s))
    for lo in range(0, len(s), B):
        sel_ = perm[lo:lo+B]
        out.append((r, s[sel_], d[sel_], cand))
    return out
best = (-1, None)
for ep in range(epochs):
    # pairsz: each within-partition edge's positive pair {its partition, partner}
    partner = [(part[s] + 1 + rng.integers(0, P - 1, size=len(s))) % P for s, _ in edges]
    work = []  # list of bucket batch lists
    if scheme == "p1":
        for r, (s, d) in enumerate(edges):
            work += batches_of(r, s, d, None)
        rng.shuffle(work); work = [work]
    elif scheme == "own":
        blocks = []
        for i in range(P):
            for j in range(P):
                b = []
                for r, (s, d) in enumerate(edges):
                    m = (part[s] == i) & (part[d] == j)
                    b += batches_of(r, s[m], d[m], (np.flatnonzero(part == i), np.flatnonzero(part == j)))
                rng.shuffle(b); blocks.append(b)
        rng.shuffle(blocks); work = blocks
    elif scheme in ("pairs1", "pairs1full"):
        blocks = []
        pairs = list(itertools.combinations(range(P), 2))
        for a, b_ in pairs:
            held = np.flatnonzero((part == a) | (part == b_))
            bl = []
            for r, (s, d) in enumerate(edges):
                ps, pd = part[s], part[d]
                other = (ps + 1 + rng.integers(0, P - 1, size=len(s))) % P  # a random partner partition per edge
                diag = (ps == pd) & (((ps == a) & (other == b_)) | ((ps == b_) & (other == a)))
                m = ((ps == a) & (pd == b_)) | ((ps == b_) & (pd == a)) | diag
                bl += batches_of(r, s[m], d[m], (held, held))
            rng.shuffle(bl); blocks.append(bl)
        rng.shuffle(blocks); work = blocks
    elif scheme in ("pairs", "pairsfrozen", "pairsdelayed", "pairsfull"):
        blocks = []
        for a, b_ in itertools.combinations(range(P), 2):
            held = np.flatnonzero((part == a) | (part == b_))
            bl = []
            for r, (s, d) in enumerate(edges):
                ps, pd = part[s], part[d]
                m = ((ps == a) & (pd == b_)) | ((ps == b_) & (pd == a)) | ((ps == pd) & ((ps == a) | (ps == b_)))
                bl += batches_of(r, s[m], d[m], (held, held))
            rng.shuffle(bl); blocks.append(bl)
        rng.shuffle(blocks); work = blocks
    elif scheme == "pairsz":
        work = []
        pairs = list(itertools.combinations(range(P), 2))
        for a, b_ in pairs:
            bl = []
            for r, (s, d) in enumerate(edges):
                ps, pd = part[s], part[d]
                pos = ((ps == a) & (pd == b_)) | ((ps == b_) & (pd == a)) | ((ps == pd) & (
                    ((ps == a) & (partner[r] == b_)) | ((ps == b_) & (partner[r] == a))))
                posp = np.where(ps == pd, np.minimum(ps, partner[r]), np.minimum(ps, pd)), \
                    np.where(ps == pd, np.maximum(ps, partner[r]), np.maximum(ps, pd))
                here = (posp[0] == a) & (posp[1] == b_)
                assert (here == pos).all()
                bl += [("pos",) + x[:3] for x in batches_of(r, s[pos], d[pos], None)]
                for side, q in (("negt", ps), ("negh", pd)):  # query node's partition held, positive elsewhere
                    m = ((q == a) | (q == b_)) & ~here
                    bl += [(side,) + x[:3] for x in batches_of(r, s[m], d[m], None)]
            rng.shuffle(bl); work.append(((a, b_), bl))
        rng.shuffle(work)
        work = [[("z", pair, x) for x in bl] for pair, bl in work]
    if CHUNKS > 1 and scheme != "p1":  # PBG's num_edge_chunks: C rounds over the buckets, 1/C of each
        rounds = []
        for k in range(CHUNKS):
            rnd = [bl[k::CHUNKS] for bl in work]
            rng.shuffle(rnd)
            rounds += rnd
        work = rounds
    for bl in work:
        if scheme == "pairsdelayed" and bl:
            snap = model.node_emb.weight.detach().clone()
            pending = []
        if scheme == "pairsz":
            for _, pair, (kind, r, h, t) in bl:
                cur_pair = pair
                z_step(kind, r, torch.from_numpy(h).long(), torch.from_numpy(t).long())
            continue
        for r, h, t, cand in bl:
            h, t = torch.from_numpy(h).long(), torch.from_numpy(t).long()
            if cand is None or scheme.endswith("full"):
                nt = nh = torch.arange(N)
            else:
                nh, nt = torch.from_numpy(cand[0]).long(), torch.from_numpy(cand[1]).long()
            if scheme in ("pairsdelayed", "pairsfrozen"):
                held = torch.zeros(N, dtype=torch.bool)
                held[torch.from_numpy(cand[0]).long()] = True
                live = model.node_emb(torch.arange(N))
                # the other partitions: a bucket-start snapshot whose gradients are kept (delayed) or frozen rows
                other = snap.clone().requires_grad_(True) if scheme == "pairsdelayed" else live.detach()
                full_softmax_step(ets[r], h, t, torch.where(held[:, None], live, other))
                if scheme == "pairsdelayed":
                    pending.append((torch.nonzero(~held).squeeze(1), other.grad[~held].clone()))
                continue
            train_step(lm, opts, r, h, t, nt, nh)
        if scheme == "pairsdelayed" and bl:
            # replay the non-held rows' gradients as Adagrad steps on their rows (as the next holder would)
            opt = opts[0]
            w = model.node_emb.weight
            st = opt.state[w]
            for rows, g in pending:
                if "sum" not in st:
                    break
                st["sum"][rows] += g * g
                with torch.no_grad():
                    w[rows] -= cfg.lr * g / (st["sum"][rows].sqrt() + 1e-10)
    if ep % 2 == 1:
        with torch.no_grad():
            va = link_prediction_on_split(model, split, "valid", ks=())["mrr"]
        if va > best[0]:
            te = link_prediction_on_split(model, split, "test", ks=())["mrr"]
            best = (va, te, ep)
print(json.dumps({"scheme": scheme, "P": P, "seed": seed, "valid": best[0], "test": best[1], "epoch": best[2]}))
