"""Optimizers of embedding tables beyond torch's own.

:class:`RowAdagrad` is PyTorch-BigGraph's ``row_adagrad``: Adagrad with one accumulator
per row instead of per coordinate, so the optimizer state of an ``[N, d]`` table is
``[N]`` — half the memory and half the I/O of a partitioned run's tables.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RowAdagrad(torch.optim.Optimizer):
    r"""Adagrad with one accumulator per row of each (2-D) parameter.

    For the gradient :math:`g_i \in \mathbb{R}^d` of row :math:`i`:

    .. math::
        s_i \leftarrow s_i + \tfrac{1}{d} \lVert g_i \rVert^2, \qquad
        \theta_i \leftarrow \theta_i - \frac{\mathrm{lr}}{\sqrt{s_i} + \epsilon}\, g_i

    (PyTorch-BigGraph's ``RowAdagrad``). Sparse gradients (``nn.Embedding(sparse=True)``)
    touch only their rows; duplicate rows are summed first. ``state["sum"]``: ``[N]``,
    created at construction (so a caller may load it before the first step).
    """

    def __init__(self, params, lr: float = 0.1, eps: float = 1e-10):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr, "eps": eps})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"RowAdagrad updates [rows, dim] tables, got a parameter of shape {tuple(p.shape)}")
                self.state[p]["sum"] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
                self.state[p]["step"] = torch.zeros((), dtype=torch.float32)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                total: Tensor = state["sum"]
                if p.grad.is_sparse:
                    g = p.grad.coalesce()
                    rows, values = g.indices()[0], g.values()
                    total.index_add_(0, rows, values.pow(2).mean(1))
                    std = total[rows].sqrt_().add_(eps)
                    p.index_add_(0, rows, values / std.unsqueeze(1), alpha=-lr)
                else:
                    total.add_(p.grad.pow(2).mean(1))
                    p.addcdiv_(p.grad, total.sqrt().add_(eps).unsqueeze(1), value=-lr)
        return loss
