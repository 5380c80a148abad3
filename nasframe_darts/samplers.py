"""How alphas become op weights: the samplers of the family, as plain functions.

Every random draw takes an explicit CPU ``generator`` (the optimizer's checkpointed
:class:`~nasframe_darts.engine.RandomStreams`), so a resumed search draws the same numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise on the CPU: ``-log(E)``, ``E ~ Exponential(1)``."""
    e = torch.empty(shape).exponential_(generator=generator)
    return -e.clamp_min(torch.finfo(e.dtype).tiny).log()


def hard_gumbel_softmax(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """GDAS's op weights: one-hot of ``argmax(log_softmax(alpha) + g)`` in value, the
    gradient of ``softmax((log_softmax(alpha) + g) / tau)`` (straight-through).
    The sampled columns are attached as ``.sampled_index`` (a list, one per row), the others as
    ``.unsampled_mask`` (1 where a column was not sampled)."""
    g = gumbel(alpha.shape, generator).to(alpha.device, alpha.dtype)
    soft = F.softmax((F.log_softmax(alpha, dim=-1) + g) / tau, dim=-1)
    index = soft.detach().argmax(dim=-1)
    one = F.one_hot(index, alpha.shape[-1]).to(soft.dtype)
    hard = one - soft.detach() + soft
    hard.sampled_index = index.tolist()
    hard.unsampled_mask = 1 - one  # on the device: which columns were not sampled
    return hard


def dirichlet_concentration(alpha: torch.Tensor) -> torch.Tensor:
    """DrNAS's concentration: ``elu(alpha) + 1`` (positive)."""
    return F.elu(alpha) + 1


def dirichlet_rsample(concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A pathwise-differentiable Dirichlet sample per row: normalised Gamma(concentration, 1)
    draws (the Gamma draw's implicit reparameterisation gradient), drawn on the CPU."""
    z = torch._standard_gamma(concentration.cpu(), generator=generator)
    z = z.clamp_min(torch.finfo(z.dtype).tiny).to(concentration.device)
    return z / z.sum(dim=-1, keepdim=True)


def uniform(shape, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """U(low, high) noise on the CPU."""
    return torch.empty(shape).uniform_(low, high, generator=generator)


def project_rows_to_simplex(w: torch.Tensor) -> torch.Tensor:
    """SDARTS's clip: clamp to [0, 1], a row that became all zero keeps its largest entry as 1,
    then every row is divided by its sum."""
    out = w.clamp(0, 1)
    empty = out.sum(dim=-1) == 0
    if bool(empty.any()):
        rows = empty.nonzero(as_tuple=True)[0]
        out[rows, w[rows].argmax(dim=-1)] = 1.0
    return out / out.sum(dim=-1, keepdim=True)

