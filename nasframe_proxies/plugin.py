"""Plugin: the zero-cost proxies and the parameter and FLOP baselines."""
from __future__ import annotations

from nasframe_core import hookimpl


#: the classes by import path: listing the plugins imports no torch
_M = "nasframe_proxies.measures:"


@hookimpl
def nasframe_register_proxies(register):
    register("grad_norm", _M + "GradNorm", description="sum over layers of the L2 norm of the loss gradient of the weights")
    register("snip", _M + "Snip", description="SNIP (Lee et al. 2019): sum of |weight x loss gradient|")
    register("grasp", _M + "Grasp", description="GraSP (Wang et al. 2020): sum of -weight x (Hessian x gradient)")
    register("fisher", _M + "Fisher", description="Fisher (Turner et al. 2020): channel saliency from activations x gradients")
    register("synflow", _M + "Synflow", description="SynFlow (Tanaka et al. 2020): |weight x gradient| of a linearised net, all-ones input, float64, no batch norm")
    register("jacob_cov", _M + "JacobCov", description="Jacobian covariance (Mellor et al. 2020, v1): eigenvalues of the input-Jacobian correlations")
    register("naswot", _M + "NASWOT", description="NASWOT (Mellor et al. 2021): log-determinant of the Hamming kernel of ReLU codes")
    register("params", _M + "Params", description="baseline: number of parameters")
    register("flops", _M + "Flops", description="baseline: multiply-accumulates of one forward pass per image")
