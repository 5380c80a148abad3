"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid weights and the zero-one loss."""
from __future__ import annotations

from . import recipes
from .engine import OneShotOptimizer
from .parts import Sigmoid, ThresholdParse, ZeroOneLoss


class FairDARTSOptimizer(OneShotOptimizer):
    """Op weights are ``sigmoid(alpha)`` (no competition between ops,
    :class:`~nasframe_darts.parts.Sigmoid`); the architecture loss adds the zero-one loss
    (:class:`~nasframe_darts.parts.ZeroOneLoss`) pushing the weights to 0 or 1. The fused path
    is kept (only the weights differ).

    As the official code (xiaomi-automl/FairDARTS ``fairdarts/``): the op set has no ``none``
    (``genotypes.py``): with ``none_op`` off (the default) the space's zero ops weigh 0 in every
    forward and report, and their alphas stay out of the zero-one loss; discretization is its
    ``threshold_sparse`` parse (``utils.py``, :class:`~nasframe_darts.parts.ThresholdParse`):
    per node the spec's edges are kept as DARTS keeps them, and a kept edge whose strongest
    weight is under ``threshold`` (0.85) becomes the space's zero op (in NB201 the absent edge).
    Paper defaults: weight lr 0.005, architecture Adam 3e-3 with betas (0.9, 0.999).
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.FAIR_DARTS
    method_label = "FairDARTS"
    defaults = {"learning_rate": 0.005, "arch_learning_rate": 0.003, "arch_betas": [0.9, 0.999]}
    sampler = Sigmoid()
    regularizers = (ZeroOneLoss(),)
    discretizer = ThresholdParse()
