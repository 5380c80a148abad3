"""DARTS (Liu, Simonyan & Yang, ICLR 2019) with NASLib's ``DARTSOptimizer`` API.

The machinery lives in the one-shot engine (:mod:`nasframe_darts.engine`); this module is
the NASLib-shaped face of it: the seed constructor, the static ``add_alphas``/``update_ops``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import recipes
from .engine import OneShotOptimizer
from .mixed import MixedOp
from .options import DEFAULTS as OPTION_DEFAULTS

#: the finite-difference step of the unrolled Hessian-vector term: eps = FD_SCALE / ||v||
FD_SCALE = 0.01


class DARTSOptimizer(OneShotOptimizer):
    """Differentiable architecture search.

    Every cell type of the space gets one architecture-weight tensor ``[edges, ops]``
    (``1e-3 * randn``), shared by all cells of that type; every edge becomes a
    :class:`~nasframe_darts.mixed.MixedOp`. One :meth:`step` updates the architecture on a
    validation batch (first order, or the paper's unrolled second-order step when
    ``unrolled``), then the weights on a train batch with gradient-norm clipping.

    Extra settings beyond NASLib's: ``device`` (default: CUDA when available),
    ``fused`` (the fast cell execution, same math; ``False`` runs edge by edge),
    ``channels_last`` (NHWC activations; ``auto``: on the CPU, where it is faster),
    ``compile`` (``torch.compile`` the supernet; on CUDA with CUDA graphs, mode
    ``reduce-overhead``) and ``autocast`` (bfloat16 autocast; off by default, it changes
    the numbers). ``op_optimizer`` and ``arch_optimizer`` are the torch optimizer
    instances once :meth:`adapt_search_space` has built them; :meth:`get_op_optimizer`
    returns the class.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.DARTS

    extra_settings = {**OPTION_DEFAULTS, "nesterov": False, "arch_betas": [0.5, 0.999]}

    def __init__(
        self,
        learning_rate: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 0.0003,
        grad_clip: float = 5,
        unrolled: bool = False,
        arch_learning_rate: float = 0.0003,
        arch_weight_decay: float = 0.001,
        op_optimizer: str = "SGD",
        arch_optimizer: str = "Adam",
        loss_criteria: str = "CrossEntropyLoss",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                         grad_clip=grad_clip, unrolled=unrolled, arch_learning_rate=arch_learning_rate,
                         arch_weight_decay=arch_weight_decay, op_optimizer=op_optimizer,
                         arch_optimizer=arch_optimizer, loss_criteria=loss_criteria, **kwargs)

    # ------------------------------------------------------------- NASLib statics
    @staticmethod
    def add_alphas(edge) -> None:
        """Give ``edge`` its architecture weights: ``1e-3 * randn(number of candidate ops)``.

        ``edge`` is anything with a ``data`` mapping (or attribute holder) that lists the
        candidate op names under ``ops``; the alphas are stored under ``alpha``.
        """
        data = edge.data
        ops = data["ops"] if isinstance(data, dict) else data.ops
        alpha = nn.Parameter(1e-3 * torch.randn(len(ops)))
        if isinstance(data, dict):
            data["alpha"] = alpha
        else:
            data.alpha = alpha

    @staticmethod
    def update_ops(edge) -> None:
        """Replace the candidate op names of ``edge`` by a MixedOp (``data.op``).

        The edge data must provide ``ops`` (names) and ``op_builder(name, edge)``.
        """
        data = edge.data
        get = data.get if isinstance(data, dict) else lambda k: getattr(data, k)
        op = MixedOp(get("ops"), get("op_builder"), (edge.head, edge.tail) if hasattr(edge, "head") else (0, 0))
        if isinstance(data, dict):
            data["op"] = op
        else:
            data.op = op

    def initial_alphas(self, spec) -> torch.Tensor:
        """One :meth:`add_alphas` per edge, stacked."""
        rows = []
        for _ in spec.edges:
            edge = _Edge(spec.ops)
            self.add_alphas(edge)
            rows.append(edge.data["alpha"].data)
        return torch.stack(rows)

    def finite_difference_scale(self) -> float:
        return FD_SCALE


class _Edge:
    def __init__(self, ops: Any):
        self.data = {"ops": ops}
