"""SDARTS (Chen & Hsieh, ICML 2020): the weight step on perturbed op weights."""
from __future__ import annotations

from . import recipes
from .engine import OneShotOptimizer
from .parts import Perturbation


class SDARTSOptimizer(OneShotOptimizer):
    """DARTS whose weights are trained on perturbed op weights
    (:class:`~nasframe_darts.parts.Perturbation`), which smooths the validation loss landscape:
    ``attack=random`` (SDARTS-RS, the default) adds ``U(-eps, eps)``; ``attack=adversarial``
    (SDARTS-ADV) runs ``attack_steps`` steps of L-inf PGD on the train loss, in eval mode as the
    official ``Linf_PGD_alpha`` (SmoothDARTS ``attacker/perturb.py``). ``eps`` rises linearly
    from ``epsilon_min`` to ``epsilon_max`` (the paper's 0.03 to 0.3). The architecture step is
    plain DARTS; the fused path is kept.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.SDARTS
    method_label = "SDARTS"
    perturbation = Perturbation()
