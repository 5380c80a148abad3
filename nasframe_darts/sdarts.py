"""SDARTS (Chen & Hsieh, ICML 2020): the weight step on perturbed op weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nasframe_core.domains import COUNT, NON_NEGATIVE, one_of
from nasframe_core.errors import NasframeError

from .bilevel import frozen
from . import recipes
from .engine import OneShotOptimizer
from .samplers import project_rows_to_simplex, uniform


class SDARTSOptimizer(OneShotOptimizer):
    """The weights are trained on perturbed architecture weights, which smooths the
    validation loss landscape. The perturbation acts on the op weights ``softmax(alpha)``:

    - ``attack=random`` (SDARTS-RS, the default): ``w + U(-eps, eps)``;
    - ``attack=adversarial`` (SDARTS-ADV): ``attack_steps`` steps of L-inf PGD on the train
      loss, step ``2 eps / attack_steps``, random start, kept only if it raises the loss; the
      attack runs the supernet in eval mode (batch norm on its running statistics, which it
      leaves unchanged), as the official ``Linf_PGD_alpha`` (SmoothDARTS ``attacker/perturb.py``);

    each projected back on the simplex (clamp to [0, 1], rows renormalised). ``eps`` rises
    linearly from ``epsilon_min`` to ``epsilon_max`` (``epoch / epochs``, the paper's 0.03 to
    0.3). The architecture step is plain DARTS; the fused path is kept.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.SDARTS

    defaults = {"attack": "random", "epsilon_min": 0.03, "epsilon_max": 0.3, "attack_steps": 7}
    settings_domain = {"attack": one_of("random", "adversarial"), "epsilon_min": NON_NEGATIVE,
                       "epsilon_max": NON_NEGATIVE, "attack_steps": COUNT}
    settings_help = {"attack": "perturbation: random (SDARTS-RS) or adversarial (SDARTS-ADV, PGD)",
                     "epsilon_min": "perturbation size at epoch 0",
                     "epsilon_max": "perturbation size it rises to by the last epoch",
                     "attack_steps": "PGD steps of the adversarial attack"}
    stochastic = True

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.attack not in ("random", "adversarial"):
            raise NasframeError(f"attack must be random or adversarial, got {self.attack!r}")
        self.update_schedules(0)

    def update_schedules(self, epoch: int) -> None:
        self.epsilon = self.epsilon_min + (self.epsilon_max - self.epsilon_min) * self.progress(epoch, inclusive=False)

    def weight_step_weights(self, x, y):
        graph = self._require_graph()
        with torch.no_grad():
            clean = {n: F.softmax(graph.alpha(n), dim=-1) for n in graph.cell_types}
        eps = self.epsilon
        scoped = list(graph.alphas)
        with torch.no_grad():
            noisy = dict(clean)
            for n in scoped:
                noise = uniform(clean[n].shape, -eps, eps, self.rng.generator).to(clean[n].device, clean[n].dtype)
                noisy[n] = project_rows_to_simplex(clean[n] + noise)
        if self.attack == "random" or not scoped:
            return noisy
        return self._pgd(x, y, clean, noisy, scoped, eps)

    def _pgd(self, x, y, clean, start, scoped, eps):
        graph = self._require_graph()
        step = 2 * eps / self.attack_steps
        params = [p for p in graph.parameters()]
        current = dict(start)
        training = graph.training
        graph.eval()
        try:
            return self._pgd_steps(x, y, clean, current, scoped, eps, step, params)
        finally:
            graph.train(training)

    def _pgd_steps(self, x, y, clean, current, scoped, eps, step, params):
        with frozen(params):
            with torch.no_grad():
                loss_before = self._loss(x, y, clean)[1]
            for _ in range(self.attack_steps):
                leaves = {n: current[n].detach().requires_grad_(True) for n in scoped}
                loss = self._loss(x, y, {**current, **leaves})[1]
                grads = torch.autograd.grad(loss, [leaves[n] for n in scoped])
                with torch.no_grad():
                    for n, g in zip(scoped, grads):
                        moved = leaves[n] + step * g.sign()
                        current[n] = project_rows_to_simplex(clean[n] + (moved - clean[n]).clamp(-eps, eps))
            with torch.no_grad():
                loss_after = self._loss(x, y, current)[1]
        return current if float(loss_after) >= float(loss_before) else clean
