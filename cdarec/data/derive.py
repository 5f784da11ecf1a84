"""Shared: derived data sets, a filtered copy of a data set written as RecBole atomic files.

Protocol B (ANCHORS.md; RecBole's ml-1m_seq benchmark) keeps ratings >= 3 and then
filters to the 10-core (every user and every item with at least 10 interactions,
repeated until stable). The result is written as an ordinary atomic directory under
``$CDAREC_HOME/datasets/derived/``, so everything that takes ``--dataset PATH`` (the
catalogue, `cdarec train`, the graph, the benchmarks) works on it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cdarec.data.atomic import DataError
from cdarec.data.datasets import Dataset, load_dataset


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Mask of the interactions in the k-core: repeatedly drop users and items with
    fewer than ``k`` interactions until none is left to drop."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_cnt = np.bincount(users[keep], minlength=users.max() + 1 if len(users) else 0)
        i_cnt = np.bincount(items[keep], minlength=items.max() + 1 if len(items) else 0)
        drop = keep & ((u_cnt[users] < k) | (i_cnt[items] < k))
        if not drop.any():
            return keep
        keep &= ~drop


def derived_name(name: str, min_rating: float, core: int) -> str:
    return f"{name}-r{min_rating:g}-core{core}"


def derive_seq_dataset(
    spec: str | Path, home: Path, *, min_rating: float = 3.0, core: int = 10
) -> Path:
    """The directory of the filtered copy of ``spec`` (written once, then reused)."""
    src = load_dataset(spec, home, min_rating=min_rating)
    name = derived_name(src.name, min_rating, core)
    out = Path(home) / "datasets" / "derived" / name
    inter, item = out / f"{name}.inter", out / f"{name}.item"
    if inter.is_file() and item.is_file():
        return out
    users = np.repeat(np.arange(src.n_users), np.diff(src.indptr))
    keep = k_core(users, src.inter_items.astype(np.int64), core)
    if not keep.any():
        raise DataError(
            f"{src.name}: nothing is left after ratings >= {min_rating} and the {core}-core"
        )
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(inter, _inter_lines(src, users, keep))
    kept_items = np.unique(src.inter_items[keep])
    _write_atomic(item, _item_lines(src, kept_items))
    return out


def _inter_lines(src: Dataset, users: np.ndarray, keep: np.ndarray) -> list[str]:
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u, i, r, t in zip(
        users[keep],
        src.inter_items[keep],
        src.inter_ratings[keep],
        src.inter_times[keep],
        strict=True,
    ):
        lines.append(f"{src.users[u]}\t{src.items[i].item_id}\t{r:g}\t{t:.0f}")
    return lines


def _item_lines(src: Dataset, kept: np.ndarray) -> list[str]:
    lines = ["item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"]
    for i in kept:
        it = src.items[int(i)]
        year = "" if it.year is None else str(it.year)
        lines.append(f"{it.item_id}\t{it.title}\t{year}\t{' '.join(it.genres)}")
    return lines


def _write_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
