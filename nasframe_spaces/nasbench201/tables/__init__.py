"""NAS-Bench-201 benchmark tables: look results up by architecture.

Three file formats are read (see ``load_nb201_table``):

- ``csv``: the merged 200-epoch table (the layout of ``nb201_200ep.csv``: one row per
  architecture, ``index`` 0..15624 in benchmark order, ``arch_str`` and numeric columns).
- ``naslib``: NASLib's ``nb201_{cifar10,cifar100,ImageNet16}_full_training.pickle``, a dict
  keyed by arch string whose values hold ``'cifar10-valid'``, ``'cifar100'`` or
  ``'ImageNet16-120'`` results (per-epoch lists, the last entry is used).
- ``nats``: the NATS-Bench topology directory ``NATS-tss-v1_0-3ffb9-simple/`` (or an
  uncompressed ``.tar`` of it): ``meta.pickle.pbz2`` holds ``meta_archs`` (the arch strings in
  index order) and each ``{index:06d}.pickle.pbz2`` holds that architecture's results for the
  ``'12'``- and ``'200'``-epoch schedules. The 200-epoch results are used, averaged over seeds.

Datasets are NB201's ``cifar10-valid``, ``cifar10``, ``cifar100`` and ``ImageNet16-120`` (the
aliases ``imagenet16-120`` and ``imagenet16`` are accepted). Accuracies are in %.

The CIFAR-10 protocol: architectures are *selected* on the validation accuracy of
``cifar10-valid`` (trained on the 25k train split) and *reported* by the test accuracy of
``cifar10`` (trained on train+valid). Hence ``query(a, "cifar10", "valid_accuracy")`` returns the
``cifar10-valid`` validation accuracy (the selection number; also for ``valid_loss``), and
``query(a, "cifar10", "test_accuracy")`` the ``cifar10`` test accuracy. NASLib's pickles only
hold validation numbers, which are never reported as test accuracy here.

Loading is lazy: constructing a table only records the path; the file is read at the first
query. CSV and NASLib tables are kept as compact float arrays; NATS per-architecture files
are read on demand through a small LRU cache.

Pickles are read with a restricted unpickler that only builds plain containers and numbers
(builtins, ``collections``, numpy), so a file that is not a benchmark table cannot run code.

One module per format (``csv_table``, ``naslib``, ``nats``), each a subclass of
:class:`~.base.NB201Table` (``base``, which says what a format implements); ``codes`` holds the
dataset names, arch codes and argument checks they share, ``pickles`` the restricted unpickler,
``loader`` the choice of format by path.
"""
from __future__ import annotations

from .base import ArrayTable, NB201Table
from .codes import DATASETS, ENV_TABLE, _is_int_text, normalize_dataset, resolve_arch
from .csv_table import NB201CsvTable
from .loader import load_nb201_table
from .naslib import NB201NaslibTable
from .nats import NB201NatsTable

__all__ = [
    "NB201Table",
    "ArrayTable",
    "NB201CsvTable",
    "NB201NaslibTable",
    "NB201NatsTable",
    "load_nb201_table",
    "resolve_arch",
    "normalize_dataset",
    "DATASETS",
    "ENV_TABLE",
]
