"""The proxies, each as its paper and its authors' code define it.

Pruning-at-initialisation scores (grad_norm, snip, grasp, fisher, synflow) are summed over the
weights of every convolution and linear layer, as in Abdelfattah et al.'s code
(``foresight/pruners``): a per-weight saliency, summed over all weights. The network is in
training mode (batch norm on the batch's statistics), with its default initialisation, scored on
one labelled batch with the cross-entropy loss; synflow removes batch norm, takes the absolute
value of every parameter and sends one all-ones image through the network in float64.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from nasframe_core.proxy import Proxy, ProxyContext, weight_layers

_BATCH_NORM = nn.modules.batchnorm._BatchNorm


# ------------------------------------------------------------------- one shared pass
LOSS_GRADIENTS = "loss_gradients"
HESSIAN = "hessian"
INPUT_JACOBIAN = "input_jacobian"


def shared_pass(ctx: ProxyContext) -> dict:
    """One forward of the cell's batch, and from it what the proxies of the cell use
    (``ctx.uses``): the input Jacobian of the summed logits (jacob_cov), the loss gradient of
    the weights (grad_norm, snip, grasp) with its graph kept when a Hessian-vector product
    follows (grasp), and Fisher's per-channel saliencies, ``0.5 * mean_n (sum_hw a * dL/da)^2``
    per output channel of each layer, ``a`` the layer's output (Turner et al.;
    ``foresight/pruners/measures/fisher.py``). The authors' code runs one forward per proxy; on
    the same batch and weights, with batch norm on batch statistics, the values are the same."""
    model = ctx.model
    uses = ctx.uses
    layers = weight_layers(model)
    weights = [l.weight for l in layers]
    fisher: list[Optional[torch.Tensor]] = [None] * len(layers)
    recording = [False]
    handles = []

    def forward_hook(k):
        def hook(module, inputs, out):
            if not out.requires_grad:
                return
            act = out.detach().clone()  # kept as computed, whatever runs in place afterwards

            def grad_hook(grad):
                if not recording[0]:
                    return
                g = act * grad.detach()
                g_nk = g.sum(dim=tuple(range(2, g.dim()))) if g.dim() > 2 else g
                saliency = 0.5 * g_nk.pow(2).mean(0)
                fisher[k] = saliency if fisher[k] is None else fisher[k] + saliency

            out.register_hook(grad_hook)
        return hook

    want_grads = LOSS_GRADIENTS in uses or HESSIAN in uses
    if want_grads:
        handles = [layer.register_forward_hook(forward_hook(k)) for k, layer in enumerate(layers)]
    result: dict = {"layers": layers}
    try:
        x, y = ctx.batch()
        if INPUT_JACOBIAN in uses:
            x = x.detach().clone().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        out = model(x)
        if INPUT_JACOBIAN in uses:
            (jac,) = torch.autograd.grad(out, x, torch.ones_like(out), retain_graph=want_grads)
            result["jacobian"] = jac.detach().reshape(len(jac), -1)
        if want_grads:
            loss = ctx.loss(out, y)
            recording[0] = True
            hessian = HESSIAN in uses
            grads = torch.autograd.grad(loss, weights, create_graph=hessian, allow_unused=True)
            recording[0] = False
            result["grads"] = [None if g is None else g.detach() for g in grads]
            result["fisher"] = fisher
            if hessian:
                result["graph_grads"] = grads  # consumed (and freed) by grasp
    finally:
        for h in handles:
            h.remove()
    return result


def _shared(ctx: ProxyContext) -> dict:
    return ctx.shared("shared_pass", lambda: shared_pass(ctx))


# ------------------------------------------------------------------------- proxies
class GradNorm(Proxy):
    """Sum over layers of ``||dL/dW||_2`` (Abdelfattah et al.'s ``grad_norm``)."""

    name = "grad_norm"
    uses = (LOSS_GRADIENTS,)

    def score(self, ctx: ProxyContext) -> float:
        p = _shared(ctx)
        return float(sum(float(g.norm()) for g in p["grads"] if g is not None))


class Snip(Proxy):
    """SNIP (Lee et al., ICLR 2019): ``sum |dL/dm|`` over weight masks ``m = 1``, which is
    ``sum |W * dL/dW|``."""

    name = "snip"
    uses = (LOSS_GRADIENTS,)

    def score(self, ctx: ProxyContext) -> float:
        p = _shared(ctx)
        return float(sum(float((l.weight.detach() * g).abs().sum())
                         for l, g in zip(p["layers"], p["grads"]) if g is not None))


class Fisher(Proxy):
    """Fisher (Turner et al., ICLR 2020), channel saliency; as the authors' code, each
    channel's value counts once per weight of that channel (``prod(weight.shape[1:])``)."""

    name = "fisher"
    uses = (LOSS_GRADIENTS,)

    def score(self, ctx: ProxyContext) -> float:
        p = _shared(ctx)
        total = 0.0
        for layer, f in zip(p["layers"], p["fisher"]):
            if f is not None:
                total += float(f.abs().sum()) * math.prod(layer.weight.shape[1:])
        return total


class Grasp(Proxy):
    """GraSP (Wang et al., ICLR 2020): ``sum -W * (H g)``, ``g`` the loss gradient of the
    weights and ``H`` the loss Hessian, with Abdelfattah et al.'s sign (higher is better):
    ``Hg`` is the gradient of ``z = sum(stop_gradient(g) * g)``."""

    name = "grasp"
    uses = (LOSS_GRADIENTS, HESSIAN)

    def score(self, ctx: ProxyContext) -> float:
        p = _shared(ctx)
        grads = p.pop("graph_grads")
        weights = [l.weight for l in p["layers"]]
        z = None
        for g in grads:
            if g is not None:
                term = (g.detach() * g).sum()
                z = term if z is None else z + term
        if z is None:
            return 0.0
        hg = torch.autograd.grad(z, weights, allow_unused=True)
        del grads, z
        total = 0.0
        for w, h in zip(weights, hg):
            if h is not None:
                total += float((-w.detach() * h).sum())
        return total


def _identity(x, *args, **kwargs):
    return x


class Synflow(Proxy):
    """SynFlow (Tanaka et al., NeurIPS 2020): with batch norm removed and every parameter
    replaced by its absolute value, ``R = sum(f(1))`` for an all-ones input in float64; the
    score is ``sum |W * dR/dW|``. Runs on a copy of the network."""

    name = "synflow"
    needs_batch = False

    def score(self, ctx: ProxyContext) -> float:
        net = ctx.copy()
        for m in net.modules():
            if isinstance(m, _BATCH_NORM):
                m.forward = _identity
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
        net.double()
        net.zero_grad(set_to_none=True)
        x = torch.ones((1, *ctx.input_shape), dtype=torch.float64, device=ctx.device)
        net(x).sum().backward()
        total = 0.0
        for layer in weight_layers(net):
            if layer.weight.grad is not None:
                total += float((layer.weight.detach() * layer.weight.grad).abs().sum())
        del net
        return total


class JacobCov(Proxy):
    """Jacobian covariance (Mellor et al., "NAS without training" v1, as Abdelfattah et al.'s
    ``jacob_cov``): ``J`` the gradient of the summed logits with respect to each input image;
    ``-sum_i log(v_i + k) + 1 / (v_i + k)`` over the eigenvalues ``v`` of the correlation
    matrix of ``J``'s rows, ``k = 1e-5``."""

    name = "jacob_cov"
    uses = (INPUT_JACOBIAN,)

    def score(self, ctx: ProxyContext) -> float:
        jac = _shared(ctx)["jacobian"]
        return jacob_cov_score(jac.double().cpu().numpy())


def jacob_cov_score(jacobians: np.ndarray, k: float = 1e-5) -> float:
    """The score of a ``[N, D]`` matrix of per-image Jacobians."""
    with np.errstate(all="ignore"):
        corr = np.corrcoef(jacobians)
        if not np.all(np.isfinite(corr)):
            return float("nan")
        v = np.linalg.eigvalsh(corr)
        return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
if hasattr(F, "relu_"):
    _RELUS.add(F.relu_)


class _ReLUCodes(TorchFunctionMode):
    """Adds every ReLU's binary code (``input > 0``) of the batch into the Hamming kernel."""

    def __init__(self, n: int):
        super().__init__()
        self.K = torch.zeros(n, n, dtype=torch.float64)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS and args and isinstance(args[0], torch.Tensor):
            self.K += hamming_kernel(args[0])
        return func(*args, **kwargs)


def hamming_kernel(pre_activation: torch.Tensor) -> torch.Tensor:
    """``K[i, j]`` = the number of units on which images ``i`` and ``j`` agree (both active or
    both inactive): ``c c^T + (1 - c)(1 - c)^T`` for the binary codes ``c = x > 0``, computed
    as ``2 c c^T + D - s_i - s_j`` (one product; exact: integers below 2^24 in float32)."""
    c = (pre_activation.detach().reshape(pre_activation.shape[0], -1) > 0).to(torch.float32)
    D = c.shape[1]
    s = c.sum(1, dtype=torch.float64)
    cc = (c @ c.T).to(torch.float64) if D < 2**24 else (c.double() @ c.double().T)
    return (2 * cc + D - s.view(-1, 1) - s.view(1, -1)).cpu()


class NASWOT(Proxy):
    """NASWOT (Mellor et al., ICML 2021): ``log |det K|``, ``K`` the sum over the network's
    ReLUs of the Hamming kernels of their binary codes on one batch of 128 images without
    augmentation (the authors' ``hook_logdet`` at their batch size)."""

    name = "naswot"
    batch_size = 128
    augment = False

    def score(self, ctx: ProxyContext) -> float:
        x, _ = ctx.batch(self.batch_size, augment=self.augment)
        mode = _ReLUCodes(len(x))
        with torch.no_grad(), mode:
            ctx.model(x)
        sign, logdet = np.linalg.slogdet(mode.K.numpy())
        return float(logdet)  # -inf for a singular kernel (two images with the same codes everywhere)


class Params(Proxy):
    """Baseline: the number of parameters (without an auxiliary head)."""

    name = "params"
    needs_batch = False

    def score(self, ctx: ProxyContext) -> float:
        return float(sum(p.numel() for n, p in ctx.model.named_parameters() if not n.startswith("auxiliary.")))


class Flops(Proxy):
    """Baseline: multiply-accumulates of the convolutions and linear layers for one image."""

    name = "flops"
    needs_batch = False

    def score(self, ctx: ProxyContext) -> float:
        model = ctx.model
        total = [0]

        def hook(module, inputs, out):
            per_image = out.numel() // out.shape[0]
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                total[0] += per_image * (module.in_channels // module.groups) * kh * kw
            else:
                total[0] += per_image * module.in_features

        handles = [l.register_forward_hook(hook) for l in weight_layers(model)]
        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros((1, *ctx.input_shape), device=ctx.device))
        finally:
            for h in handles:
                h.remove()
            for m, training in modes:
                m.training = training
        return float(total[0])
