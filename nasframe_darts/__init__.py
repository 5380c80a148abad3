"""The differentiable family: a public one-shot engine and the methods built on it.

``from nasframe_darts import GDASOptimizer`` (and the others of :data:`FAMILY`); write a
method of your own by subclassing :class:`OneShotOptimizer` (see :mod:`nasframe_darts.engine`).
"""
from __future__ import annotations

from .beta_darts import BetaDARTSOptimizer
from .darts_minus import DARTSMinusOptimizer
from .drnas import DrNASOptimizer
from .engine import OneShotOptimizer, RandomStreams
from .fair_darts import FairDARTSOptimizer
from .gdas import GDASOptimizer
from .optimizer import DARTSOptimizer
from .pc_darts import PCDARTSOptimizer
from .sdarts import SDARTSOptimizer

#: registry name -> (class, one line)
FAMILY = {
    "darts": (DARTSOptimizer, "DARTS (Liu et al. 2019): first or second order (optimizer.unrolled)"),
    "gdas": (GDASOptimizer, "GDAS (Dong & Yang 2019): hard Gumbel-softmax, only the sampled op runs"),
    "drnas": (DrNASOptimizer, "DrNAS (Chen et al. 2021): Dirichlet op weights, KL/L2 regularizer"),
    "pc_darts": (PCDARTSOptimizer, "PC-DARTS (Xu et al. 2020): partial channels, edge normalisation"),
    "fair_darts": (FairDARTSOptimizer, "FairDARTS (Chu et al. 2020): sigmoid op weights, zero-one loss"),
    "sdarts": (SDARTSOptimizer, "SDARTS (Chen & Hsieh 2020): weight step on perturbed op weights (RS/ADV)"),
    "darts_minus": (DARTSMinusOptimizer, "DARTS- (Chu et al. 2021): decaying auxiliary skip connection"),
    "beta_darts": (BetaDARTSOptimizer, "beta-DARTS (Ye et al. 2022): Beta-Decay regularization"),
}

__all__ = ["FAMILY", "OneShotOptimizer", "RandomStreams"] + sorted(cls.__name__ for cls, _ in FAMILY.values())
