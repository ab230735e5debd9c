"""Knowledge-graph score functions in batched matrix form.

Every score function ``f(h, r, t)`` (higher = more plausible) is a :class:`ScoreFunction`
registered by name in :data:`SCORES` (``@SCORES.register_as("distmult")``; the config's
``score`` choices are the registry's names) and provides

* ``pair(h, r, t)``: ``[B]`` scores of aligned rows (``h, t: [B, d]``, ``r: [d]`` or ``[B, d]``);
* ``tails(h, r, T)``: ``[B, N]`` scores of every head against candidate tails ``T: [N, d]``;
* ``heads(H, r, t)``: ``[B, N]`` scores of candidate heads ``H: [N, d]`` against every tail ``t: [B, d]``;
* ``retrieval(h, r, T)``: ``(query [B, d'], candidate [N, d'])`` with
  ``query @ candidate.T`` ordering candidates exactly as ``tails`` does (equal up to a
  per-query constant), or a ``ValueError`` when no exact inner-product form exists. It
  is the pair of its row-wise halves ``retrieval_queries(h, r) -> [B, d']`` and
  ``retrieval_candidates(T) -> [N, d']``: each row's vector depends on that row (and
  ``r``) alone, so an export computes them a chunk of rows at a time;
* ``node_moduli(x)`` / ``relation_moduli(r)``: the magnitudes ``|x_k|`` of the
  coordinates the score multiplies (``[..., d]`` real, ``[..., d/2]`` complex moduli
  ``sqrt(re² + im²)``), for the N3 regulariser of Lacroix et al. (2018),
  ``Σ_k |h_k|³ + |r_k|³ + |t_k|³``.

``tails``/``heads`` score a whole chunk of positives against one shared set of
candidates with a single matmul (the PyTorch-BigGraph / TwHIN trick), never
materialising a negative triple per positive.

Formulas (``∘`` elementwise, complex vectors stored as ``[re | im]`` halves):

============== ============================================ =========================
name           score                                        inner-product form
============== ============================================ =========================
translation_dot ``(h + r)ᵀ t`` (TwHIN)                      ``q = h + r``
transe          ``−‖h + r − t‖_p``                          p = 2: ``[2q, −1]·[t, ‖t‖²]``
distmult        ``Σ h ∘ r ∘ t``                             ``q = h ∘ r``
complex         ``Re(Σ h ∘ r ∘ conj(t))``                   ``q = [Re(h∘r), Im(h∘r)]``
rotate          ``−Σ_k |h_k e^{iθ_k} − t_k|``               none (sum of moduli)
============== ============================================ =========================
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor, nn

from graphrec.registry import Registry

SCORES: Registry[type[ScoreFunction]] = Registry("score function")
"""Score functions by name (``TwHINConfig.score``); :func:`make_score` builds one."""


def _sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``[A, B]`` via ``‖a‖² − 2 a·b + ‖b‖²`` (one matmul)."""
    d = (a * a).sum(-1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(-1)[None, :]
    return d.clamp_min(0.0)


class ScoreFunction(abc.ABC):
    """A knowledge-graph score ``f(h, r, t)`` (higher = more plausible) in batched form.

    Shapes: ``d`` the node dimension, ``d_r = relation_dim(d)`` the relation's; the
    relation ``r`` is one vector ``[d_r]`` (broadcast over the batch) or ``[B, d_r]``.
    Subclasses implement :meth:`pair`, :meth:`tails` and :meth:`heads` and register
    themselves in :data:`SCORES`.
    """

    #: whether :meth:`retrieval` gives an exact inner-product form (ANN export)
    has_inner_product_form: bool = True
    #: complex-valued coordinates stored as ``[re | im]`` halves (``d`` must be even)
    complex_valued: bool = False

    @property
    def name(self) -> str:
        """The name the function is registered under in :data:`SCORES`."""
        return SCORES.name_of(self)

    def relation_dim(self, dim: int) -> int:
        """Size ``d_r`` of a relation vector for node dimension ``dim``."""
        return dim

    @abc.abstractmethod
    def pair(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Scores ``[B]`` of aligned triples ``(h_i, r, t_i)``; ``h, t: [B, d]``."""

    @abc.abstractmethod
    def tails(self, h: Tensor, r: Tensor, T: Tensor) -> Tensor:
        """Scores ``[B, N]`` of every head ``h_i`` (``[B, d]``) against every candidate
        tail ``T_n`` (``[N, d]``, shared by the batch): ``out[i, n] = f(h_i, r, T_n)``."""

    @abc.abstractmethod
    def heads(self, H: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Scores ``[B, N]`` of every candidate head ``H_n`` (``[N, d]``, shared) against
        every tail ``t_i`` (``[B, d]``): ``out[i, n] = f(H_n, r, t_i)``."""

    def chunk_tails(self, h: Tensor, r: Tensor, T: Tensor) -> Tensor:
        """:meth:`tails` within each of ``n`` chunks: ``h, T: [n, c, d]`` -> ``[n, c, c]``
        with ``out[k, i, j] = f(h_ki, r, T_kj)`` (in-batch negatives by chunk; ``r``:
        ``[d_r]`` or one per positive, ``[n, c, d_r]``). A loop
        here; the inner-product scores do it in one batched matmul."""
        return torch.stack([self.tails(h[k], r[k] if r.dim() == 3 else r, T[k]) for k in range(h.shape[0])])

    def chunk_heads(self, H: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """:meth:`heads` within each chunk: ``H, t: [n, c, d]`` -> ``[n, c, c]`` with
        ``out[k, i, j] = f(H_kj, r, t_ki)``."""
        return torch.stack([self.heads(H[k], r[k] if r.dim() == 3 else r, t[k]) for k in range(H.shape[0])])

    def retrieval(self, h: Tensor, r: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
        """``(query [B, d'], candidate [N, d'])`` whose inner products order the
        candidates of each head as :meth:`tails` does; ``ValueError`` when the score has
        no exact inner-product form. Equal to ``(retrieval_queries(h, r),
        retrieval_candidates(T))``."""
        return self.retrieval_queries(h, r), self.retrieval_candidates(T)

    def retrieval_queries(self, h: Tensor, r: Tensor) -> Tensor:
        """Query vectors ``[B, d']`` of heads ``h: [B, d]`` under relation ``r: [d_r]``,
        row by row (any subset of a type's rows gives those rows' vectors); ``ValueError``
        when the score has no exact inner-product form."""
        raise self._no_inner_product()

    def retrieval_candidates(self, T: Tensor) -> Tensor:
        """Candidate vectors ``[N, d']`` of tails ``T: [N, d]``, row by row (the relation
        enters only the queries); ``ValueError`` when the score has no exact
        inner-product form."""
        raise self._no_inner_product()

    def candidate_queries(self, C: Tensor) -> Tensor:
        """Query vectors ``[B, d']`` that rank candidates by their likeness to the
        candidate vectors ``C: [B, d']`` (rows of :meth:`retrieval_candidates`, or a mean
        of them) in the score's geometry: item→item and session queries over a
        ``--query`` index. ``C`` itself where the candidate vector is the tail vector (every
        dot-product form); ``ValueError`` without an inner-product form."""
        self.retrieval_candidates(C[:0])  # raises where there is no inner-product form
        return C

    def _no_inner_product(self) -> ValueError:
        return ValueError(f"score function {self!r} has no exact inner-product form; it cannot be exported "
                          "for ANN retrieval")

    def node_moduli(self, x: Tensor) -> Tensor:
        """``|x|`` elementwise, ``[..., d]`` (real-valued coordinates)."""
        return x.abs()

    def relation_moduli(self, r: Tensor) -> Tensor | None:
        """Magnitudes of the relation's coordinates, ``[..., d_r]`` (``None``: nothing to
        regularise)."""
        return r.abs()

    def reset_relations(self, weight: Tensor, std: float) -> None:
        """Initialise a relation table ``[R, d_r]`` in place: ``N(0, std²)``."""
        nn.init.normal_(weight, std=std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@SCORES.register_as("translation_dot")
class TranslationDot(ScoreFunction):
    """TwHIN: ``(θ_s + θ_r)ᵀ θ_t``."""


    def pair(self, h, r, t):
        return ((h + r) * t).sum(-1)

    def tails(self, h, r, T):
        return (h + r) @ T.mT

    def heads(self, H, r, t):
        # (H_n + r)·t_b = t_b·H_n + r·t_b
        return t @ H.mT + (t * r).sum(-1, keepdim=True)

    chunk_tails, chunk_heads = tails, heads  # .mT: the same code scores [n, c, d] chunks

    def retrieval_queries(self, h, r):
        return h + r

    def retrieval_candidates(self, T):
        return T


@SCORES.register_as("transe")
class TransE(ScoreFunction):
    """``−‖θ_s + θ_r − θ_t‖_p`` (Bordes et al. 2013)."""


    def __init__(self, p: int = 2):
        if p not in (1, 2):
            raise ValueError("TransE p must be 1 or 2")
        self.p = p
        self.has_inner_product_form = p == 2

    def __repr__(self) -> str:
        return f"TransE(p={self.p})"

    def pair(self, h, r, t):
        return -torch.linalg.vector_norm(h + r - t, ord=self.p, dim=-1)

    def _dist(self, a, b):
        if self.p == 2:
            return _sq_dist(a, b).add(1e-12).sqrt()
        return torch.cdist(a, b, p=1)

    def tails(self, h, r, T):
        return -self._dist(h + r, T)

    def heads(self, H, r, t):
        # ‖H_n + r − t_b‖ = ‖H_n − (t_b − r)‖
        return -self._dist(t - r, H)

    # −‖q − t‖² = 2 q·t − ‖t‖² − ‖q‖²: the same order over t as [2q, −1]·[t, ‖t‖²]
    def retrieval_queries(self, h, r):
        if self.p != 2:
            raise self._no_inner_product()
        q = h + r
        return torch.cat([2.0 * q, -torch.ones(q.shape[0], 1, dtype=q.dtype)], dim=1)

    def retrieval_candidates(self, T):
        if self.p != 2:
            raise self._no_inner_product()
        return torch.cat([T, (T * T).sum(-1, keepdim=True)], dim=1)

    # C = [t, ‖t‖²] (or a mean of such rows): the query [2t, −1] ranks by −‖t − t'‖², L2 likeness
    def candidate_queries(self, C):
        if self.p != 2:
            raise self._no_inner_product()
        return torch.cat([2.0 * C[:, :-1], -torch.ones(C.shape[0], 1, dtype=C.dtype)], dim=1)


@SCORES.register_as("distmult")
class DistMult(ScoreFunction):
    """``Σ θ_s ∘ θ_r ∘ θ_t`` (Yang et al. 2015)."""


    def pair(self, h, r, t):
        return (h * r * t).sum(-1)

    def tails(self, h, r, T):
        return (h * r) @ T.mT

    def heads(self, H, r, t):
        return (t * r) @ H.mT

    chunk_tails, chunk_heads = tails, heads  # .mT: the same code scores [n, c, d] chunks

    def retrieval_queries(self, h, r):
        return h * r

    def retrieval_candidates(self, T):
        return T

    def reset_relations(self, weight, std):
        """``N(1, std²)``: ``r ≈ 1`` starts the score as a plain dot product ``h·t``."""
        nn.init.normal_(weight, mean=1.0, std=std)


def _halves(x):
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


def _complex_moduli(x):
    """``sqrt(re² + im²)`` of ``[re | im]`` vectors: ``[..., d/2]``."""
    re, im = _halves(x)
    return (re * re + im * im).add(1e-18).sqrt()


@SCORES.register_as("complex")
class ComplEx(ScoreFunction):
    """``Re(Σ h ∘ r ∘ conj(t))`` with complex vectors as ``[re | im]`` (Trouillon et al. 2016)."""

    complex_valued = True


    @staticmethod
    def _hr(h, r):
        hr, hi = _halves(h)
        rr, ri = _halves(r)
        return torch.cat([hr * rr - hi * ri, hr * ri + hi * rr], dim=-1)

    @staticmethod
    def _conj_r_t(r, t):
        rr, ri = _halves(r)
        tr, ti = _halves(t)
        return torch.cat([rr * tr + ri * ti, rr * ti - ri * tr], dim=-1)

    def pair(self, h, r, t):
        return (self._hr(h, r) * t).sum(-1)

    def tails(self, h, r, T):
        return self._hr(h, r) @ T.mT

    def heads(self, H, r, t):
        # Re(h · conj(conj(r) t)) = [h_re, h_im] · [u_re, u_im] with u = conj(r) t
        return self._conj_r_t(r, t) @ H.mT

    chunk_tails, chunk_heads = tails, heads  # .mT: the same code scores [n, c, d] chunks

    def retrieval_queries(self, h, r):
        return self._hr(h, r)

    def retrieval_candidates(self, T):
        return T

    def node_moduli(self, x):
        return _complex_moduli(x)

    def relation_moduli(self, r):
        return _complex_moduli(r)


@SCORES.register_as("rotate")
class RotatE(ScoreFunction):
    """``−Σ_k |h_k e^{iθ_k} − t_k|`` (Sun et al. 2019); relation vectors are phases
    ``θ`` of dimension ``d/2``."""

    has_inner_product_form = False
    complex_valued = True

    def __init__(self, chunk: int = 256):
        self.chunk = chunk

    def relation_dim(self, dim: int) -> int:
        return dim // 2

    def reset_relations(self, weight, std):
        """Phases uniform in ``[−π, π)`` (``std`` unused)."""
        nn.init.uniform_(weight, -math.pi, math.pi)

    @staticmethod
    def _rotate(x, theta):
        xr, xi = _halves(x)
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.cat([xr * c - xi * s, xr * s + xi * c], dim=-1)

    def _moduli_sum(self, a, B):
        """``Σ_k |a_k − B_nk|`` for every row pair: ``[A, N]`` (chunked over A)."""
        out = []
        br, bi = _halves(B)
        for start in range(0, a.shape[0], self.chunk):
            ar, ai = _halves(a[start : start + self.chunk])
            dr = ar[:, None, :] - br[None]
            di = ai[:, None, :] - bi[None]
            out.append((dr * dr + di * di).add(1e-12).sqrt().sum(-1))
        return torch.cat(out) if out else a.new_zeros(0, B.shape[0])

    def pair(self, h, r, t):
        d = self._rotate(h, r) - t
        dr, di = _halves(d)
        return -(dr * dr + di * di).add(1e-12).sqrt().sum(-1)

    def tails(self, h, r, T):
        return -self._moduli_sum(self._rotate(h, r), T)

    def heads(self, H, r, t):
        # |h e^{iθ} − t| = |h − t e^{−iθ}| since |e^{iθ}| = 1
        return -self._moduli_sum(self._rotate(t, -r), H)

    def node_moduli(self, x):
        return _complex_moduli(x)

    def relation_moduli(self, r):
        return None  # phases: every coordinate has modulus 1


def make_score(name: str, p: int = 2) -> ScoreFunction:
    """The score function registered as ``name`` (``p``: the norm of ``transe``);
    ``ValueError`` listing the choices for an unknown name."""
    cls = SCORES.get(name)
    return cls(p) if cls is TransE else cls()
