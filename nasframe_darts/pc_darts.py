"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections and edge normalisation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nasframe_core.domains import COUNT, NON_NEGATIVE

from . import recipes
from .engine import OneShotOptimizer
from .partial import partial_cell_factory


class PCDARTSOptimizer(OneShotOptimizer):
    """Every edge runs its mixed op on 1/``k`` of the channels (:mod:`nasframe_darts.partial`);
    every node weights its incoming edges by a softmax over their betas (edge
    normalisation), folded into the op weights: row ``j`` is ``beta_j * softmax(alpha_j)``.
    Discretization reads the same product, as the paper does. The architecture is not
    updated in the first ``warmup_epochs`` epochs. Paper defaults: k=4, weight lr 0.1,
    architecture lr 6e-4, 15 warm-up epochs.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.PC_DARTS

    defaults = {"learning_rate": 0.1, "arch_learning_rate": 0.0006, "k": 4, "warmup_epochs": 15}
    settings_domain = {"k": COUNT, "warmup_epochs": NON_NEGATIVE}
    settings_help = {"k": "edges run on 1/k of the channels",
                     "warmup_epochs": "epochs at the start in which the architecture is not updated"}
    strict_weight_inheritance = False

    def build_cell_factory(self):
        return partial_cell_factory(self.search_space, self.k)

    def extra_arch_parameters(self, specs):
        scoped = specs if self.scope is None else [n for n in specs if n in self.scope]
        self._node_rows = {
            name: [[specs[name].edge_index[e] for e in specs[name].in_edges[n]] for n in specs[name].nodes]
            for name in scoped
        }
        return {f"betas_{name}": 1e-3 * torch.randn(specs[name].num_edges) for name in scoped}

    def edge_weights(self, name: str) -> torch.Tensor:
        """The betas of cell type ``name`` softmaxed over the incoming edges of every node."""
        betas = self._require_graph().extra[f"betas_{name}"]
        out = torch.empty_like(betas)
        parts, rows = [], []
        for node_rows in self._node_rows[name]:
            parts.append(F.softmax(betas[node_rows], dim=0))
            rows.extend(node_rows)
        return out.index_copy(0, torch.tensor(rows, device=betas.device), torch.cat(parts))

    def sample_op_weights(self, name, alpha):
        return F.softmax(alpha, dim=-1) * self.edge_weights(name).unsqueeze(-1)

    expected_op_weights = sample_op_weights

    def arch_step_enabled(self) -> bool:
        return self.epoch >= self.warmup_epochs

    def start_notes(self, epochs: int) -> list[str]:
        """What to say before the first epoch: an architecture frozen for the whole run."""
        if epochs > self.warmup_epochs:
            return []
        return [f"the architecture is frozen for the whole run: PC-DARTS updates it only after "
                f"optimizer.warmup_epochs={self.warmup_epochs} epochs of weight training, and this run has "
                f"{epochs}; the found cell is its random start. Search longer than {self.warmup_epochs} epochs "
                f"or lower optimizer.warmup_epochs"]
