"""DrNAS's progressive scheme: between stages, prune ops per edge and widen the partial channels.

As the official code (xiangning-chen/DrNAS ``201-space/train_search_progressive.py``,
``DARTS-space/train_search.py``, ``utils.py`` ``prune``, ``net2wider.py``): the search runs in
stages of equal length; after a stage

- :func:`prune` keeps the ``keep`` largest alphas of every edge (among the ops still kept),
  sets the others to 0 and masks them out of every forward (the op weights of the pruned ops
  are 0 and the rest renormalised to sum 1);
- :func:`widen_op` widens every op of a partial-channel edge from ``C/k_old`` to ``C/k_new``
  channels: each convolution's weight gets copies of randomly chosen input and output channels
  appended (``InChannelWider``/``OutChannelWider``), a batch norm after a convolution follows that
  convolution's output channels (``BNWider``; after several, their blocks in order), any other
  batch norm copies random channels; the SGD momentum buffers are widened with the same indices
  (``configure_optimizer``). A depthwise convolution keeps one map for its input and output
  channels. The random indices come from the optimizer's seeded generator.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from nasframe_core.errors import NasframeError
from nasframe_core.ops import FactorizedReduce


def prune(alpha: torch.Tensor, keep: int, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``utils.prune``: the new mask of the ``keep`` largest alphas per row (among ``mask``);
    ``alpha`` is set in place to those values and 0 elsewhere."""
    with torch.no_grad():
        scores = alpha.detach().clone()
        if mask is not None:
            scores[~mask] -= 1e6
        _, index = scores.topk(keep, dim=-1)
        kept = torch.zeros_like(alpha, dtype=torch.bool).scatter(-1, index, True)
        alpha.copy_(torch.where(kept, alpha, torch.zeros_like(alpha)))
    return kept


def masked(weights: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``process_step_vector`` with a mask: the masked-out entries 0, the rest renormalised."""
    if mask is None:
        return weights
    w = weights * mask.to(weights.dtype)
    return w / w.sum(dim=-1, keepdim=True)


def channel_map(old: int, new: int, generator: torch.Generator) -> torch.Tensor:
    """The old channel behind each new one: ``0..old-1`` then ``new - old`` random picks."""
    if new < old:
        raise NasframeError(f"progressive partial channels only widen: {old} -> {new} channels")
    return torch.cat([torch.arange(old), torch.randint(0, old, (new - old,), generator=generator)])


#: (the old parameter, the new one, the index map of each of its leading dims or None)
Replaced = tuple[nn.Parameter, nn.Parameter, tuple]


def _take(t: torch.Tensor, maps: tuple) -> torch.Tensor:
    out = t
    for dim, m in enumerate(maps):
        if m is not None:
            out = out.index_select(dim, m.to(out.device))
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out.contiguous() if not out.is_contiguous(memory_format=torch.channels_last) else out


def widen_op(op: nn.Module, old_c: int, new_c: int, generator: torch.Generator) -> list[Replaced]:
    """Widen ``op`` (built at ``old_c`` channels) to ``new_c`` in place; returns what it replaced."""
    if new_c == old_c:
        return []
    scale = lambda n: n * new_c // old_c  # noqa: E731  every channel count is proportional to C
    replaced: list[Replaced] = []
    pending: list[torch.Tensor] = []  # output maps of the convolutions since the last batch norm
    old_sizes: dict[int, int] = {}  # each such map's old channel count
    out_size: dict[int, int] = {}  # a factorized reduce splits its new width as new // 2 + the rest
    for m in op.modules():
        if isinstance(m, FactorizedReduce):
            out_size[id(m.conv_1)] = new_c // 2
            out_size[id(m.conv_2)] = new_c - new_c // 2

    def swap(module: nn.Module, name: str, maps: tuple) -> None:
        old = getattr(module, name)
        new = nn.Parameter(_take(old.detach(), maps), requires_grad=old.requires_grad)
        setattr(module, name, new)
        replaced.append((old, new, maps))

    for m in op.modules():
        if isinstance(m, nn.Conv2d):
            out_c = m.weight.shape[0]
            if m.groups > 1:
                if not m.groups == m.in_channels == out_c:
                    raise NasframeError("progressive partial channels widen depthwise or dense convolutions only")
                omap, imap = channel_map(out_c, scale(out_c), generator), None
                m.groups = len(omap)
                m.in_channels = len(omap)
            else:
                imap = channel_map(m.in_channels, scale(m.in_channels), generator)
                omap = channel_map(out_c, out_size.get(id(m), scale(out_c)), generator)
                m.in_channels = len(imap)
            m.out_channels = len(omap)
            swap(m, "weight", (omap, imap))
            if m.bias is not None:
                swap(m, "bias", (omap,))
            pending.append(omap)
            old_sizes[id(omap)] = out_c
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            feeding = []  # the last convolutions whose outputs, concatenated, are this norm's input
            for p in reversed(pending):
                feeding.insert(0, p)
                if sum(len(q) for q in feeding) >= scale(n):
                    break
            if feeding and sum(len(q) for q in feeding) == scale(n):
                offset, blocks = 0, []
                for p in feeding:
                    blocks.append(p + offset)
                    offset += old_sizes[id(p)]
                bmap = torch.cat(blocks)
            else:
                bmap = channel_map(n, scale(n), generator)
            pending = []
            if m.affine:
                swap(m, "weight", (bmap,))
                swap(m, "bias", (bmap,))
            if m.track_running_stats and m.running_mean is not None:
                m.running_mean = _take(m.running_mean, (bmap,))
                m.running_var = _take(m.running_var, (bmap,))
            m.num_features = len(bmap)
        elif any(True for _ in m.parameters(recurse=False)):
            raise NasframeError(f"progressive partial channels cannot widen a {type(m).__name__} "
                                f"(only convolutions and batch norms)")
    return replaced


def move_sgd_state(optimizer: torch.optim.Optimizer, replaced: list[Replaced],
                   params: Callable[[], list]) -> None:
    """Point ``optimizer`` at ``params()`` (in place, so whoever holds it keeps it) and widen the
    momentum buffers of the replaced parameters with their maps."""
    for old, new, maps in replaced:
        state = optimizer.state.pop(old, None)
        if state:
            state = dict(state)
            if state.get("momentum_buffer") is not None:
                state["momentum_buffer"] = _take(state["momentum_buffer"], maps)
            optimizer.state[new] = state
    if len(optimizer.param_groups) != 1:
        raise NasframeError("progressive partial channels need one parameter group in the weight optimizer")
    optimizer.param_groups[0]["params"] = list(params())
