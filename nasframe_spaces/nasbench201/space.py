"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020).

Cell: nodes 0..3, an edge j->i for every j < i (6 edges), 5 candidate ops, node i is the sum
of its incoming edges, the output is node 3. Network: a 3x3 stem conv with BN, three stages
of N cells at C, 2C and 4C channels joined by residual reduction blocks, then BN, ReLU,
global average pooling and a linear classifier. One set of architecture weights (6x5) is
shared by all cells.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from nasframe_core.domains import COUNT
from nasframe_core.errors import NasframeError
from nasframe_core.ops import Pool, ReLUConvBN, Zero
from nasframe_core.space import CellFactory, CellSpec, Choice, SearchSpace, dense_cell_graph

from .codec import EDGES, OPS, NB201Genotype
from .tables import ENV_TABLE, _is_int_text, load_nb201_table, normalize_dataset, resolve_arch
from .tables.codes import DATASETS


_EDGE_INDEX = {edge: k for k, edge in enumerate(EDGES)}


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two ReLU-conv-BN 3x3 (the first strided) plus a pooled 1x1 shortcut."""

    def __init__(self, C_in: int, C_out: int, stride: int = 2):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(C_in, C_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NB201 macro network around cells made by a cell factory."""

    def __init__(self, space: "NasBench201SearchSpace", cell_factory: CellFactory, *,
                 num_classes: int, in_channels: int, search: bool):
        super().__init__()
        C, N = space.C, space.N
        spec = space.cell_specs()["cell"]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        is_cell: list[bool] = []
        C_prev = C
        for stage in range(3):
            C_curr = C * 2**stage
            if stage:
                layers.append(ResNetBasicBlock(C_prev, C_curr, 2))
                is_cell.append(False)
            for _ in range(N):
                layers.append(cell_factory(spec, space.op_builder(C_curr, search)))
                is_cell.append(True)
            C_prev = C_curr
        self.cells = nn.ModuleList(layers)
        self._is_cell = tuple(is_cell)
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor, arch_weights: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        w = None if arch_weights is None else arch_weights["cell"]
        x = self.stem(x)
        for layer, is_cell in zip(self.cells, self._is_cell):
            x = layer((x,), w) if is_cell else layer(x)
        x = self.global_pooling(self.lastact(x)).flatten(1)
        return self.classifier(x)


class NasBench201SearchSpace(SearchSpace):
    """NAS-Bench-201: 15,625 cells, queryable through a benchmark table.

    ``C`` and ``N`` are the initial channels and cells per stage (16 and 5 in the benchmark).
    The table comes from :meth:`attach_benchmark`, or is loaded from the path in
    ``NASFRAME_NB201`` the first time a query needs it.
    """

    name = "nasbench201"
    skip_ops = ("skip_connect",)
    benchmark_name = "nasbench201"
    settings_domain = {"C": COUNT, "N": COUNT}
    settings_help = {"C": "channels of the first stage (doubled at each of the two reductions; 16 in the benchmark)",
                     "N": "cells per stage (5 in the benchmark)",
                     "table_dataset": "the table's dataset whose results a stand-in dataset (synthetic data, a "
                                      "subset) reports (default: the run's own dataset)"}
    #: NAS-Bench-201's training recipe, the defaults of `nasframe train` for this space
    train_recipe = {
        "run.epochs": 200,
        "run.batch_size": 256,
        "train.learning_rate": 0.1,
        "train.momentum": 0.9,
        "train.nesterov": True,
        "train.weight_decay": 5e-4,
        "run.lr_min": 0.0,
        "train.grad_clip": 0.0,
        "train.auxiliary_weight": 0.0,
        "train.drop_path_prob": 0.0,
        "augment.cutout": 0,
    }

    def __init__(self, C: int = 16, N: int = 5, table_dataset: Optional[str] = None):
        super().__init__()
        if table_dataset:
            normalize_dataset(table_dataset)  # an unknown name fails here, listing the known ones
        self.table_dataset = table_dataset or None
        #: whether a query may load the table named by NASFRAME_NB201 (until one is attached or detached)
        self._table_from_env = True
        if C < 1 or N < 1:
            raise NasframeError(f"NB201 needs C >= 1 and N >= 1, got C={C}, N={N}")
        self.C, self.N = int(C), int(N)
        self._spec = CellSpec(
            "cell",
            dense_cell_graph(inputs=(0,), nodes=(1, 2, 3), ops=OPS),
            inputs=(0,),
            output=(3,),
            edge_order=EDGES,
        )

    def cell_specs(self) -> dict[str, CellSpec]:
        return {"cell": self._spec}

    def make_op(self, name: str, C: int, stride: int, *, search: bool) -> nn.Module:
        # In search BN has neither affine parameters nor running statistics (as NB201's code).
        affine = track = not search
        if name == "none":
            return Zero(stride)
        if name == "skip_connect":
            if stride != 1:
                raise NasframeError("NB201 cells have no strided edges")
            return nn.Identity()
        if name == "nor_conv_1x1":
            return ReLUConvBN(C, C, 1, stride, 0, 1, affine, track)
        if name == "nor_conv_3x3":
            return ReLUConvBN(C, C, 3, stride, 1, 1, affine, track)
        if name == "avg_pool_3x3":
            return Pool("avg", C, stride)
        raise NasframeError(f"unknown NB201 op {name!r}; the ops are: {', '.join(OPS)}")

    def op_builder(self, C: int, search: bool):
        return lambda name, edge: self.make_op(name, C, 1, search=search)

    def build_network(self, cell_factory: CellFactory, *, num_classes: int, in_channels: int = 3,
                      search: bool = True) -> nn.Module:
        return NB201Network(self, cell_factory, num_classes=num_classes, in_channels=in_channels, search=search)

    # ------------------------------------------------------------------ genotypes
    def make_genotype(self, choices: Mapping[str, Sequence[Choice]]) -> NB201Genotype:
        by_edge = {(c.src, c.dst): c.op for c in choices["cell"]}
        missing = [e for e in EDGES if e not in by_edge]
        if missing:
            raise NasframeError(f"an NB201 genotype needs an op on every edge; missing {missing}")
        return NB201Genotype(tuple(by_edge[e] for e in EDGES))

    def random_genotype(self, rng) -> NB201Genotype:
        """A uniformly drawn cell: the base class's draws (one op per edge, in edge order),
        without building the intermediate choices."""
        return NB201Genotype(tuple(OPS[int(rng.integers(len(OPS)))] for _ in EDGES))

    def random_neighbour(self, genotype: NB201Genotype, rng) -> NB201Genotype:
        """NB201's mutation (``R_EA.py``'s ``mutate_arch``): a uniformly drawn node (1..3), a
        uniformly drawn input of it, then a different op drawn uniformly for that edge. Edges
        into node 1 are thus mutated more often than with a uniform edge (1/3 against 1/6)."""
        dst = 1 + int(rng.integers(3))
        src = int(rng.integers(dst))
        k = _EDGE_INDEX[(src, dst)]
        old = OPS.index(genotype.ops[k])
        new = int(rng.integers(len(OPS) - 1))
        new += new >= old
        return NB201Genotype((*genotype.ops[:k], OPS[new], *genotype.ops[k + 1:]))

    def genotype_choices(self, genotype: NB201Genotype) -> dict[str, list[Choice]]:
        return {"cell": [Choice(src, dst, op) for (src, dst), op in zip(EDGES, genotype.ops)]}

    def parse_genotype(self, text: str) -> NB201Genotype:
        text = str(text).strip()
        if _is_int_text(text):
            return resolve_arch(int(text), self._table())
        return NB201Genotype.from_str(text)

    # ------------------------------------------------------------------ benchmark
    def attach_benchmark(self, benchmark) -> None:
        super().attach_benchmark(benchmark)
        self._table_from_env = False  # attached or detached on purpose: the environment no longer decides

    def _table(self):
        if self.benchmark is None and self._table_from_env:
            path = os.environ.get(ENV_TABLE)
            if path:
                from nasframe_core.benchmark import check_env_path

                check_env_path(ENV_TABLE, path, self.benchmark_name)
                self.benchmark = load_nb201_table(path)
        return self.benchmark

    def benchmark_dataset(self, dataset: Optional[str]) -> Optional[str]:
        """NB201's name for ``dataset`` (``table_dataset`` when set; CIFAR-10 when no dataset is
        named). A dataset the table has no results for is an error naming the ones it has:
        its results would otherwise be another dataset's."""
        if self.table_dataset:
            return normalize_dataset(self.table_dataset)
        name = getattr(dataset, "name", dataset)
        if name is None:
            return "cifar10"
        try:
            return normalize_dataset(name)
        except NasframeError:
            raise NasframeError(
                f"the {self.benchmark_name} table has no results for dataset {name!r}; it has "
                f"{', '.join(DATASETS)} (search_space.table_dataset=NAME reports one of them for a stand-in dataset)"
            ) from None

    def no_statistics_reason(self, dataset):
        if self._table() is None and not os.environ.get(ENV_TABLE):
            return (f"no NAS-Bench-201 table: set {ENV_TABLE} to nb201_200ep.csv (or a NASLib pickle or the NATS "
                    f"directory), or space.attach_benchmark(load_nb201_table(PATH))")
        if dataset is not None:
            try:
                self.benchmark_dataset(dataset)
            except NasframeError as exc:
                return str(exc)
        return super().no_statistics_reason(dataset)

    def query(self, genotype, dataset, metric):
        if self._table() is None:
            return None
        return super().query(genotype, dataset, metric)

    #: NB201's Table 5 protocol first (the default), NATS-Bench's second
    search_protocols = {
        "nb201": "NAS-Bench-201 (ICLR 2020), Table 5: every search scores on cifar10-valid's 12-epoch validation "
                 "accuracy, charged its training time; the chosen cell is reported on the requested dataset",
        "per-dataset": "NATS-Bench: each dataset searched on its own 200-epoch validation accuracy and training time",
    }

    def search_dataset(self, dataset, protocol):
        if protocol == "nb201":
            return "cifar10-valid"
        return self.benchmark_dataset(dataset)

    def report_datasets(self):
        return ("cifar10", "cifar100", "ImageNet16-120")

    def default_fidelity(self, protocol):
        return 12 if protocol == "nb201" else 200

    def fidelities(self):
        return (12, 200)

    def simulate_train_eval(self, genotype, dataset, rng, fidelity=None):
        """One simulated training, as NB201/NATS ``simulate_train_eval``: with the merged CSV
        table, after 200 epochs one seed's cifar10-valid validation accuracy drawn from ``rng``
        and its training time; after 12 epochs (NB201's ``use_012_epoch_training``) the
        12-epoch table's validation accuracy (``nb201_12ep_minibench.csv`` beside the 200-epoch
        table, or ``$NASFRAME_NB201_12EP``; seed-averaged, the only form the file has) and the
        200-epoch time x 12/200 (see :mod:`.simulate` for CIFAR-100 and ImageNet16-120);
        with other table formats, the table's mean validation accuracy and time."""
        from .simulate import arrays_for, proxy12_for

        table = self._table()
        arrays = arrays_for(str(table.path)) if table is not None else None
        if arrays is None:
            if fidelity not in (None, 200):
                raise NasframeError(f"{getattr(table, 'path', 'the table')} has 200-epoch results only; "
                                    f"a {fidelity}-epoch search needs nb201_200ep.csv and nb201_12ep_minibench.csv")
            return super().simulate_train_eval(genotype, dataset, rng, None)
        bench_dataset = self.benchmark_dataset(dataset)
        if fidelity in (None, 200):
            return arrays.simulate(arrays.row(genotype), bench_dataset, rng)
        if fidelity != 12:
            raise NasframeError(f"the NAS-Bench-201 table has results after 12 and 200 epochs, not {fidelity}")
        proxy = proxy12_for(str(table.path))
        return proxy.simulate(arrays, arrays.row(genotype), bench_dataset)
