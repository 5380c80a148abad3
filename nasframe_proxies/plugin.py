"""Plugin: the zero-cost proxies and the parameter and FLOP baselines."""
from __future__ import annotations

from nasframe_core import hookimpl


@hookimpl
def nasframe_register_proxies(register):
    from . import measures as m

    register("grad_norm", m.GradNorm, description="sum over layers of the L2 norm of the loss gradient of the weights")
    register("snip", m.Snip, description="SNIP (Lee et al. 2019): sum of |weight x loss gradient|")
    register("grasp", m.Grasp, description="GraSP (Wang et al. 2020): sum of -weight x (Hessian x gradient)")
    register("fisher", m.Fisher, description="Fisher (Turner et al. 2020): channel saliency from activations x gradients")
    register("synflow", m.Synflow, description="SynFlow (Tanaka et al. 2020): |weight x gradient| of a linearised net, all-ones input, float64, no batch norm")
    register("jacob_cov", m.JacobCov, description="Jacobian covariance (Mellor et al. 2020, v1): eigenvalues of the input-Jacobian correlations")
    register("naswot", m.NASWOT, description="NASWOT (Mellor et al. 2021): log-determinant of the Hamming kernel of ReLU codes")
    register("params", m.Params, description="baseline: number of parameters")
    register("flops", m.Flops, description="baseline: multiply-accumulates of one forward pass per image")
