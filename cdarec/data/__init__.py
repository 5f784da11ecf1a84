"""Shared: data sets for cdarec — RecBole atomic files in, items, users and sequences out."""

from cdarec.data.atomic import (
    AtomicField,
    AtomicTable,
    DataError,
    parse_header,
    read_atomic,
    read_header,
)
from cdarec.data.datasets import (
    Dataset,
    DatasetFiles,
    Item,
    known_datasets,
    load_dataset,
    resolve_dataset,
)
from cdarec.data.split import (
    LeaveOneOut,
    history_before_test,
    leave_one_out,
    split_sequence,
    user_disjoint,
)

__all__ = [
    "AtomicField",
    "AtomicTable",
    "DataError",
    "Dataset",
    "DatasetFiles",
    "Item",
    "LeaveOneOut",
    "history_before_test",
    "known_datasets",
    "leave_one_out",
    "load_dataset",
    "parse_header",
    "read_atomic",
    "read_header",
    "resolve_dataset",
    "split_sequence",
    "user_disjoint",
]
