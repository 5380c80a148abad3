"""REINFORCE (Williams 1992) as NAS-Bench-201 ran it.

Read in xautodl's ICLR release (``exps/algos/reinforce.py``, ``scripts-search/algos/REINFORCE.sh``,
and the command that reproduces the paper's baselines in ``docs/NAS-Bench-201.md``, "To Reproduce
10 Baseline NAS Algorithms": ``bash ./scripts-search/algos/REINFORCE.sh 0.5 -1``, learning rate 0.5):
the policy is one categorical distribution per edge over its ops, the softmax of a parameter
matrix started at ``1e-3 * randn``; each proposal samples one op per edge; the reward is the
evaluation's validation accuracy; the baseline is an exponential moving average of the rewards
(momentum 0.9, bias-corrected: numerator and denominator both averaged), updated with the reward
before the advantage ``reward - baseline`` is taken; the loss ``-log p(actions) * advantage`` is
minimised by Adam with learning rate 0.5 (the script's own usage line shows 0.001; its learning
rate is an argument, and the paper's runs used 0.5, chosen by the authors from the grid of
``scripts-search/algos/hps/GRID-RL.sh``). The search's answer is the best evaluated cell (the
release's ``best_arch = max(trace, key=lambda x: x[0])[1]``, which replaced "the first version"'s
``policy.genotype()``, the policy's most likely cell; that one is in each round's
``policy_genotype``).

With several workers, each free worker samples from the current policy, and a result updates
the policy when it arrives (the gradient of the log-probability under the policy at that time).
"""
from __future__ import annotations

import numpy as np

from nasframe_core.blackbox import BlackBoxOptimizer
from nasframe_core.domains import between, greater_than
from nasframe_core.errors import NasframeError
from nasframe_core.evaluation import Evaluation
from nasframe_core.space import Choice


class Reinforce(BlackBoxOptimizer):
    """REINFORCE over each edge's op (see the module's documentation)."""

    settings_domain = {"learning_rate": greater_than(0), "ema_momentum": between(0, 1, high_inclusive=False)}
    settings_help = {"learning_rate": "Adam's learning rate of the policy (NB201's runs: 0.5)",
                     "ema_momentum": "momentum of the reward baseline's moving average"}

    def __init__(self, learning_rate: float = 0.5, ema_momentum: float = 0.9, evaluations: int = 0,
                 time_budget: float = 0.0, train_epochs: int = 4, max_attempts: int = 2):
        super().__init__(evaluations, time_budget, train_epochs, max_attempts)
        if not learning_rate > 0:
            raise NasframeError(f"optimizer.learning_rate must be above 0, got {learning_rate}")
        if not 0 <= ema_momentum < 1:
            raise NasframeError(f"optimizer.ema_momentum must be at least 0 and below 1, got {ema_momentum}")
        self.learning_rate, self.ema_momentum = float(learning_rate), float(ema_momentum)
        self.edges: list[tuple[str, int, int, tuple[str, ...]]] = []  # (cell, src, dst, ops) per decision
        self.theta = np.zeros((0, 0))
        self.mask = np.zeros((0, 0), dtype=bool)

    def adapt_search_space(self, search_space, dataset, scope=None, **kwargs) -> None:
        super().adapt_search_space(search_space, dataset)
        self.edges = []
        for name, spec in search_space.cell_specs().items():
            if spec.keep_edges is not None:
                raise NasframeError(
                    f"reinforce samples an op for every edge, but space {search_space.name!r} keeps only "
                    f"{spec.keep_edges} inputs per node; use re, rs or ls there")
            ops = search_space.choosable_ops(spec)
            self.edges.extend((name, src, dst, ops) for src, dst in spec.edges)
        width = max(len(ops) for *_, ops in self.edges)
        self.mask = np.array([[k < len(ops) for k in range(width)] for *_, ops in self.edges])

    def start(self, seed: int) -> None:
        super().start(seed)
        self.theta = 1e-3 * self.rng.standard_normal(self.mask.shape)
        self._m = np.zeros_like(self.theta)
        self._v = np.zeros_like(self.theta)
        self._t = 0
        self._num = self._den = 0.0

    def policy(self) -> np.ndarray:
        """Every edge's op probabilities (rows), the softmax of the parameters."""
        z = np.where(self.mask, self.theta, -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def _genotype(self, actions) -> object:
        choices: dict[str, list[Choice]] = {}
        for (name, src, dst, ops), a in zip(self.edges, actions):
            choices.setdefault(name, []).append(Choice(src, dst, ops[int(a)]))
        return self.search_space.make_genotype(choices)

    def _actions(self, genotype) -> list[int]:
        chosen = {(name, c.src, c.dst): c.op for name, kept in self.search_space.genotype_choices(genotype).items()
                  for c in kept}
        return [ops.index(chosen[(name, src, dst)]) for name, src, dst, ops in self.edges]

    def ask(self):
        p = self.policy()
        actions = [int(self.rng.choice(p.shape[1], p=row)) for row in p]
        return self._genotype(actions)

    def tell(self, evaluation: Evaluation) -> None:
        if not evaluation.ok:
            return
        reward = float(evaluation.valid_accuracy)
        m = self.ema_momentum
        self._num = m * self._num + (1 - m) * reward
        self._den = m * self._den + (1 - m)
        advantage = reward - self._num / self._den
        # d/dtheta of -log p(actions) * advantage: -(onehot - p) * advantage, row by row
        grad = self.policy()
        grad[np.arange(len(self.edges)), self._actions(evaluation.genotype)] -= 1.0
        grad *= advantage
        grad[~self.mask] = 0.0
        self._adam(grad)

    def _adam(self, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        """One step of Adam (torch.optim.Adam's update, without weight decay)."""
        self._t += 1
        self._m = b1 * self._m + (1 - b1) * grad
        self._v = b2 * self._v + (1 - b2) * grad * grad
        m_hat = self._m / (1 - b1 ** self._t)
        v_hat = self._v / (1 - b2 ** self._t)
        self.theta = self.theta - self.learning_rate * m_hat / (np.sqrt(v_hat) + eps)

    def policy_genotype(self):
        """The policy's most likely cell (the argmax of every edge)."""
        return self._genotype(np.where(self.mask, self.theta, -np.inf).argmax(axis=1))

    def epoch_report(self) -> dict:
        return {"policy_genotype": str(self.policy_genotype())}
