"""Where the shipped structured model lives, shared by both sides.

The cloud's `cdarec train` writes ``home/models/sasrec-<dataset>-<key>.npz``; the device
loads the same file. ``key`` hashes the data set's shape and content (a checksum of its
interaction arrays), the training configuration and the file format, so changing any of
them trains a new model.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cdarec.seqrec.config import TrainConfig
from cdarec.seqrec.sasrec import FORMAT_VERSION
from cdarec.settings import slug

if TYPE_CHECKING:
    from cdarec.data import Dataset


def model_key(ds: Dataset, cfg: TrainConfig) -> str:
    """12 hex digits identifying (data set, configuration, file format)."""
    ident = {
        "dataset": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "items_crc": zlib.crc32(np.ascontiguousarray(ds.inter_items).tobytes()),
        "indptr_crc": zlib.crc32(np.ascontiguousarray(ds.indptr).tobytes()),
        "config": cfg.model_dump(mode="json"),
        "format": FORMAT_VERSION,
    }
    blob = json.dumps(ident, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def model_path(ds: Dataset, home: Path | str, cfg: TrainConfig) -> Path:
    return Path(home) / "models" / f"sasrec-{slug(ds.name, limit=255)}-{model_key(ds, cfg)}.npz"


def train_config(ds: Dataset) -> TrainConfig:
    """The SASRec training configuration for a data set (one place: `cdarec train`, the
    device's loader and the benchmarks agree on which cached model is meant)."""
    return TrainConfig()


def shipped_model_path(ds: Dataset, home: Path | str) -> Path:
    """The file of the data set's trained SASRec (which may not exist yet)."""
    return model_path(ds, home, train_config(ds))
