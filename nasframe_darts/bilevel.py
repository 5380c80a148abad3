"""The bilevel math of differentiable search: frozen parameters and the unrolled step.

:func:`unrolled_alpha_grads` is the second-order architecture gradient of the DARTS paper
(a finite-difference Hessian-vector term); it sees the supernet only through ``loss_fn``.
"""
from __future__ import annotations

from typing import Callable

import torch

from nasframe_core import distributed

#: the finite-difference step of the unrolled Hessian-vector term: eps = FD_SCALE / ||v||
FD_SCALE = 0.01

LossFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


class frozen:
    """Temporarily stop autograd from tracking ``params`` (so no gradient is computed for them)."""

    def __init__(self, params):
        self.params = [p for p in params if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
        return False


def copy_(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    copy = getattr(torch, "_foreach_copy_", None)
    if copy is not None:
        copy(dst, src)
    else:  # older torch
        for d, s in zip(dst, src):
            d.copy_(s)


def unrolled_alpha_grads(loss_fn: LossFn, op_optimizer: torch.optim.Optimizer, x_train, y_train, x_val, y_val,
                         weights: list, alphas: list, fd_scale: float = FD_SCALE, own_outputs: bool = False):
    """The second-order architecture gradient of the DARTS paper.

    w' = w - xi (momentum * m + grad_w L_train(w) + wd * w) with xi, momentum and wd read from
    ``op_optimizer`` (with Nesterov momentum, the step SGD takes then: ``d + momentum * (momentum * m + d)``,
    ``d = grad_w L_train(w) + wd * w``); dalpha = grad_alpha L_val(w'); v = grad_w' L_val(w');
    eps = fd_scale / ||v||; the result is
    dalpha - xi (grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps).
    Every quantity stays on the device (no host synchronisation). ``own_outputs``: copy
    tensors that a later CUDA-graph replay would overwrite. Returns (logits_val, loss_val, grads).
    """
    group = op_optimizer.param_groups[0]
    xi = float(group["lr"])
    momentum = group.get("momentum", 0.0) or 0.0
    wd = group.get("weight_decay", 0.0) or 0.0
    nesterov = bool(group.get("nesterov", False)) and bool(momentum)

    with frozen(alphas):
        g_train = torch.autograd.grad(loss_fn(x_train, y_train)[1], weights, allow_unused=True)
    g_train = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, g_train)]
    distributed.all_reduce_mean_(g_train)
    with torch.no_grad():
        backup = [w.detach().clone() for w in weights]
        update = torch._foreach_add(g_train, weights, alpha=wd) if wd else g_train
        if nesterov:  # SGD's Nesterov step: d + momentum * (momentum * m + d)
            steps = []
            for d, w in zip(update, weights):
                buf = op_optimizer.state.get(w, {}).get("momentum_buffer")
                new_buf = d.clone() if buf is None else torch.add(d, buf, alpha=momentum)
                steps.append(torch.add(d, new_buf, alpha=momentum))
            update = steps
        elif momentum:
            for u, w in zip(update, weights):
                buf = op_optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is not None:
                    u.add_(buf, alpha=momentum)
        torch._foreach_add_(weights, update, alpha=-xi)

    logits_val, loss_val = loss_fn(x_val, y_val)
    grads = torch.autograd.grad(loss_val, list(alphas) + weights, allow_unused=True)
    dalpha = list(grads[: len(alphas)])
    v = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[len(alphas):])]
    if own_outputs:  # needed after later replays: own copies (small tensors)
        dalpha = [g.clone() for g in dalpha]
        logits_val, loss_val = logits_val.detach().clone(), loss_val.detach().clone()
    distributed.all_reduce_mean_(dalpha + v)

    with torch.no_grad():
        copy_(weights, backup)
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(v)).double())
        eps = (fd_scale / norm.clamp_min(1e-12)).to(v[0].dtype)
        step = torch._foreach_mul(v, eps)
        torch._foreach_add_(weights, step)
    with frozen(weights):
        g_pos = torch.autograd.grad(loss_fn(x_train, y_train)[1], alphas)
    if own_outputs:
        g_pos = [g.clone() for g in g_pos]
    with torch.no_grad():
        torch._foreach_sub_(weights, step)
        torch._foreach_sub_(weights, step)
    with frozen(weights):
        g_neg = torch.autograd.grad(loss_fn(x_train, y_train)[1], alphas)
    distributed.all_reduce_mean_(list(g_pos) + list(g_neg))
    with torch.no_grad():
        copy_(weights, backup)
        scale = xi / (2 * eps)
        out = [da - scale * (gp - gn) for da, gp, gn in zip(dalpha, g_pos, g_neg)]
    return logits_val, loss_val, out
