"""The methods of the differentiable family by registry name: where each class lives and one
line about it. Read without importing torch (the plugin registers the paths; the classes load
when a run uses them)."""
from __future__ import annotations

#: registry name -> ("module:Class", one line)
METHODS = {
    "darts": ("nasframe_darts.optimizer:DARTSOptimizer",
              "DARTS (Liu et al. 2019): first or second order (optimizer.unrolled)"),
    "gdas": ("nasframe_darts.gdas:GDASOptimizer",
             "GDAS (Dong & Yang 2019): hard Gumbel-softmax, only the sampled op runs"),
    "drnas": ("nasframe_darts.drnas:DrNASOptimizer",
              "DrNAS (Chen et al. 2021): Dirichlet op weights, KL/L2 regularizer"),
    "pc_darts": ("nasframe_darts.pc_darts:PCDARTSOptimizer",
                 "PC-DARTS (Xu et al. 2020): partial channels, edge normalisation"),
    "fair_darts": ("nasframe_darts.fair_darts:FairDARTSOptimizer",
                   "FairDARTS (Chu et al. 2020): sigmoid op weights, zero-one loss"),
    "sdarts": ("nasframe_darts.sdarts:SDARTSOptimizer",
               "SDARTS (Chen & Hsieh 2020): weight step on perturbed op weights (RS/ADV)"),
    "darts_minus": ("nasframe_darts.darts_minus:DARTSMinusOptimizer",
                    "DARTS- (Chu et al. 2021): decaying auxiliary skip connection"),
    "beta_darts": ("nasframe_darts.beta_darts:BetaDARTSOptimizer",
                   "beta-DARTS (Ye et al. 2022): Beta-Decay regularization"),
}
