"""Search spaces as descriptions: networkx DAGs with candidate op names on their edges.

A search-space plugin describes; an optimizer plugin executes. The space says which cell
types exist (:class:`CellSpec`: a DAG whose edges carry candidate op names), how to build
each op, and how cells are stacked into a network. An optimizer turns every edge into
whatever it needs (a mixed op for a one-shot method) through the *cell factory* it passes to
:meth:`SearchSpace.build_network`. The graph is walked once, when the network is built:
the modules keep a precomputed edge order and never touch networkx during a forward.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping, Optional, Sequence

import attrs
import networkx as nx
from torch import nn

from .errors import NasframeError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .benchmark import Benchmark
    from .genotype import Genotype

Edge = tuple[int, int]  # (source node, destination node)
OpBuilder = Callable[[str, Edge], nn.Module]
CellFactory = Callable[["CellSpec", OpBuilder], nn.Module]


@attrs.frozen
class Choice:
    """One kept edge of a discrete cell: ``op`` applied to node ``src``, added into ``dst``."""

    src: int
    dst: int
    op: str


class CellSpec:
    """One cell type: a DAG with candidate ops on its edges, checked and indexed once.

    ``inputs`` are the nodes fed from outside (they have no incoming edges). Every other
    node is the sum of its incoming edges. The cell's output is ``output`` (one node), or
    the channel concatenation of several (``combine="concat"``). ``edges`` is the fixed
    edge order: row ``k`` of this cell type's architecture weights belongs to ``edges[k]``.

    Discretization rule (used by gradient-based optimizers): keep ``keep_edges`` incoming
    edges per node (``None``: all of them), and choose among ``ops`` minus
    ``exclude_from_choice`` (for example ``("none",)``).
    """

    def __init__(
        self,
        name: str,
        graph: nx.DiGraph,
        inputs: Sequence[int],
        output: Sequence[int],
        combine: str = "sum",
        edge_order: Optional[Sequence[Edge]] = None,
        keep_edges: Optional[int] = None,
        exclude_from_choice: Sequence[str] = (),
    ):
        self.name = name
        self.graph = graph
        self.inputs = tuple(inputs)
        self.output = tuple(output)
        self.combine = combine
        self.keep_edges = keep_edges
        self.exclude_from_choice = tuple(exclude_from_choice)
        self._check(edge_order)

    def _check(self, edge_order: Optional[Sequence[Edge]]) -> None:
        g = self.graph
        where = f"cell {self.name!r}"
        if not nx.is_directed_acyclic_graph(g):
            raise NasframeError(f"{where}: the graph must be a directed acyclic graph")
        for n in self.inputs:
            if n not in g or g.in_degree(n):
                raise NasframeError(f"{where}: input node {n} must exist and have no incoming edges")
        if self.combine not in ("sum", "concat"):
            raise NasframeError(f"{where}: combine must be 'sum' or 'concat', not {self.combine!r}")
        if not self.output or any(n not in g for n in self.output):
            raise NasframeError(f"{where}: output nodes {self.output} are not all in the graph")
        if self.combine == "sum" and len(self.output) != 1:
            raise NasframeError(f"{where}: combine='sum' takes exactly one output node")
        ops = None
        for src, dst, data in g.edges(data=True):
            edge_ops = tuple(data.get("ops", ()))
            if not edge_ops:
                raise NasframeError(f"{where}: edge {src}->{dst} has no candidate ops")
            if ops is None:
                ops = edge_ops
            elif edge_ops != ops:
                raise NasframeError(f"{where}: every edge must offer the same candidate ops in the same order")
        if ops is None:
            raise NasframeError(f"{where}: the graph has no edges")
        self.ops: tuple[str, ...] = ops
        for op in self.exclude_from_choice:
            if op not in ops:
                raise NasframeError(f"{where}: exclude_from_choice names {op!r}, which is not a candidate op")
        edges = list(edge_order) if edge_order is not None else sorted(g.edges, key=lambda e: (e[1], e[0]))
        if sorted(edges) != sorted(g.edges):
            raise NasframeError(f"{where}: edge_order must list every edge exactly once")
        self.edges: tuple[Edge, ...] = tuple((int(a), int(b)) for a, b in edges)
        self.edge_index: dict[Edge, int] = {e: k for k, e in enumerate(self.edges)}
        order = list(nx.lexicographical_topological_sort(g))
        self.nodes: tuple[int, ...] = tuple(n for n in order if n not in self.inputs)
        self.in_edges: dict[int, tuple[Edge, ...]] = {
            n: tuple(sorted(((s, n) for s in g.predecessors(n)), key=lambda e: e[0])) for n in self.nodes
        }
        for n in self.nodes:
            if not self.in_edges[n]:
                raise NasframeError(f"{where}: node {n} has no incoming edge")

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"CellSpec({self.name!r}, edges={len(self.edges)}, ops={self.ops})"


def dense_cell_graph(inputs: Sequence[int], nodes: Sequence[int], ops: Sequence[str]) -> nx.DiGraph:
    """A DAG where every node takes an edge from every input and every earlier node."""
    g = nx.DiGraph()
    g.add_nodes_from(inputs, role="input")
    g.add_nodes_from(nodes, role="intermediate")
    earlier = list(inputs)
    for n in nodes:
        for src in earlier:
            g.add_edge(src, n, ops=tuple(ops))
        earlier.append(n)
    return g


class SearchSpace(abc.ABC):
    """The base of every search-space plugin: a description, no torch state.

    Subclasses set ``name`` (the registry name) and, when a tabular benchmark covers the
    space, ``benchmark_name`` (the benchmark's registry name); ``zero_ops`` and ``skip_ops``
    say which op names mean "no edge" and "shortcut", so that a found cell can be judged
    (:mod:`nasframe_core.structure`, and plugins' reporting hooks). ``benchmark`` holds the
    loaded table, if any (see :meth:`attach_benchmark`).
    """

    name: ClassVar[str] = "?"
    benchmark_name: ClassVar[Optional[str]] = None
    #: ops whose output is zero: an edge carrying one is absent from the discrete cell
    zero_ops: ClassVar[tuple[str, ...]] = ("none",)
    #: identity-like shortcut ops, counted when judging whether skip connections take over a cell
    skip_ops: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.benchmark: Optional["Benchmark"] = None

    # ---------------------------------------------------------------- description
    @abc.abstractmethod
    def cell_specs(self) -> dict[str, CellSpec]:
        """The cell types of the space, by name, in a fixed order."""

    @abc.abstractmethod
    def make_op(self, name: str, C: int, stride: int, *, search: bool) -> nn.Module:
        """Build the candidate op ``name`` for ``C`` channels (``search``: the supernet flavour)."""

    @abc.abstractmethod
    def build_network(
        self,
        cell_factory: CellFactory,
        *,
        num_classes: int,
        in_channels: int = 3,
        search: bool = True,
    ) -> nn.Module:
        """Stack cells into a network; each cell comes from ``cell_factory(spec, op_builder)``.

        The network's ``forward(x, arch_weights=None)`` passes ``arch_weights[spec.name]``
        (or ``None``) to every cell of that type and returns the logits.
        """

    # ------------------------------------------------------------------ genotypes
    @abc.abstractmethod
    def make_genotype(self, choices: Mapping[str, Sequence[Choice]]) -> "Genotype":
        """The genotype for the kept edges and ops of every cell type."""

    @abc.abstractmethod
    def genotype_choices(self, genotype: "Genotype") -> dict[str, list[Choice]]:
        """The kept edges and ops of every cell type of ``genotype`` (inverse of make_genotype)."""

    @abc.abstractmethod
    def parse_genotype(self, text: str) -> "Genotype":
        """Parse the string form of a genotype of this space; bad input raises NasframeError."""

    # ------------------------------------------------------- black-box search
    # Built from the cell specs (ops on edges, ``keep_edges``, ``exclude_from_choice``), so
    # every space whose genotypes round-trip through make_genotype/genotype_choices has them.

    def choosable_ops(self, spec: CellSpec) -> tuple[str, ...]:
        """The ops a discrete cell of ``spec`` may carry on a kept edge."""
        return tuple(op for op in spec.ops if op not in spec.exclude_from_choice)

    def random_genotype(self, rng: "np.random.Generator") -> "Genotype":
        """A genotype drawn uniformly from ``rng``: per node ``keep_edges`` distinct incoming
        edges (all of them when ``None``), each with a uniformly drawn choosable op."""
        choices: dict[str, list[Choice]] = {}
        for name, spec in self.cell_specs().items():
            ops = self.choosable_ops(spec)
            kept: list[Choice] = []
            for node in spec.nodes:
                edges = spec.in_edges[node]
                if spec.keep_edges is not None and spec.keep_edges < len(edges):
                    picked = sorted(int(i) for i in rng.choice(len(edges), size=spec.keep_edges, replace=False))
                    edges = tuple(edges[i] for i in picked)
                kept.extend(Choice(src, dst, ops[int(rng.integers(len(ops)))]) for src, dst in edges)
            choices[name] = kept
        return self.make_genotype(choices)

    def neighbours(self, genotype: "Genotype") -> list["Genotype"]:
        """Every genotype that differs from ``genotype`` in the op of exactly one kept edge,
        in a fixed order (cell type, edge, op)."""
        base = self.genotype_choices(genotype)
        specs = self.cell_specs()
        out = []
        for name, kept in base.items():
            ops = self.choosable_ops(specs[name])
            for k, c in enumerate(kept):
                for op in ops:
                    if op != c.op:
                        changed = dict(base)
                        changed[name] = [*kept[:k], Choice(c.src, c.dst, op), *kept[k + 1:]]
                        out.append(self.make_genotype(changed))
        return out

    def random_neighbour(self, genotype: "Genotype", rng: "np.random.Generator") -> "Genotype":
        """A uniformly drawn neighbour (a uniformly drawn kept edge given another op)."""
        options = self.neighbours(genotype)
        if not options:
            raise NasframeError(f"genotype {genotype} of space {self.name!r} has no neighbour (one choosable op per edge)")
        return options[int(rng.integers(len(options)))]

    #: black-box search protocols of the space's benchmark, name -> one line; the first is the
    #: default. The base offers one: each dataset searched on its own results.
    search_protocols: ClassVar[Mapping[str, str]] = {
        "per-dataset": "searched on the requested dataset's own validation accuracy and training time"}

    def search_protocol(self, protocol: Optional[str]) -> str:
        """The name of ``protocol`` (``None``: the default), checked."""
        names = list(self.search_protocols)
        if protocol is None:
            return names[0]
        if protocol not in self.search_protocols:
            raise NasframeError(f"space {self.name!r} has no search protocol {protocol!r}; it has {', '.join(names)}")
        return protocol

    def search_dataset(self, dataset: str, protocol: str) -> str:
        """The dataset whose results a black-box search for ``dataset`` scores on, under
        ``protocol``. Default: ``dataset`` itself."""
        return dataset

    def report_datasets(self) -> tuple[str, ...]:
        """The datasets the benchmark reports results on (for a cell found under a protocol that
        transfers, every one of them is recorded). Default: none known."""
        return ()

    def default_fidelity(self, protocol: str) -> Optional[int]:
        """The training epochs a table's search score stands for under ``protocol`` (``None``:
        the table's only one)."""
        return None

    def fidelities(self) -> tuple[int, ...]:
        """The training epochs the attached table has results for (empty: one, unnamed)."""
        return ()

    def simulate_train_eval(self, genotype: "Genotype", dataset: Optional[str],
                            rng: "np.random.Generator", fidelity: Optional[int] = None) -> tuple[float, float]:
        """Score ``genotype`` from the attached benchmark as a black-box search sees it:
        ``(validation accuracy, seconds charged)`` after ``fidelity`` epochs of training (``None``:
        the table's default). Default: the table's validation accuracy and training time (0 when
        the table has none). Spaces whose table holds per-seed results draw one seed from
        ``rng`` (NB201 does)."""
        from .benchmark import TRAIN_TIME_S, VALID_ACCURACY

        if fidelity is not None and fidelity not in self.fidelities():
            raise NasframeError(f"the {self.benchmark_name} table has no results after {fidelity} epochs")
        valid = self.query(genotype, dataset, VALID_ACCURACY)
        if valid is None:
            raise NasframeError(
                f"the {self.benchmark_name} table holds no validation accuracy for {dataset}; "
                f"a black-box search cannot score on it")
        seconds = self.query(genotype, dataset, TRAIN_TIME_S)
        return float(valid), float(seconds or 0.0)

    # ------------------------------------------------------------------ benchmark
    def attach_benchmark(self, benchmark: Optional["Benchmark"]) -> None:
        """Make the space queryable through ``benchmark`` (``None`` detaches it)."""
        self.benchmark = benchmark

    def benchmark_dataset(self, dataset: Optional[str]) -> Optional[str]:
        """The benchmark dataset that results on ``dataset`` are reported for."""
        return dataset

    def query(self, genotype: "Genotype", dataset: Optional[str], metric: str) -> Optional[float]:
        """Look ``metric`` of ``genotype`` up in the attached benchmark (``None`` without one)."""
        if self.benchmark is None:
            return None
        bench_dataset = self.benchmark_dataset(dataset)
        if bench_dataset is None:
            return None
        return self.benchmark.query(genotype, bench_dataset, metric)

    def no_statistics_reason(self, dataset: Optional[str]) -> Optional[str]:
        """Why :meth:`test_statistics` has no number for ``dataset`` (``None`` when it may have one)."""
        if self.benchmark_name is None:
            return f"search space {self.name!r} has no benchmark table, so there is no test accuracy to look up"
        if self.benchmark is None:
            return (f"no {self.benchmark_name} table is attached: space.attach_benchmark(table) (from "
                    f"nasframe_core.benchmark.open_benchmark) or --benchmark PATH on the command line")
        return None

    def test_statistics(self, genotype: "Genotype", dataset: Optional[str]) -> Optional[float]:
        """The benchmark's test accuracy of ``genotype`` on ``dataset``, or ``None``."""
        from .benchmark import TEST_ACCURACY

        return self.query(genotype, dataset, TEST_ACCURACY)
