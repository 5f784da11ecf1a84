"""Shared: data sets as the rest of cdarec sees them — items, users and time-ordered sequences.

A ``Dataset`` is built from RecBole atomic files (ML-1M, ML-100K, or any directory of
``.inter`` [+ ``.item``, ``.user``] files). Items and users get dense internal ids (the
list index) so that sequence models, popularity counts and the split work on numpy
arrays, while everything user-facing keeps the original string ids.

Why a cache: parsing ML-1M's million lines costs about a second or two on every start
of the app and every test; the parsed arrays are saved once under ``home/cache`` and
reloaded in milliseconds. The cache is keyed by the source files' sizes and mtimes (and
``min_rating``), so editing a file rebuilds it, and a damaged cache is rebuilt, never
trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cdarec.data.atomic import AtomicTable, DataError, gc_paused, read_atomic

log = logging.getLogger(__name__)

# Bump when the cache layout or the meaning of any cached value changes.
CACHE_VERSION = 1

TITLE_COLUMNS = ("movie_title", "title", "name")
YEAR_COLUMNS = ("release_year", "year")
GENRE_COLUMNS = ("genre", "genres", "class", "categories")
USER_COLUMN = "user_id"
ITEM_COLUMN = "item_id"
RATING_COLUMN = "rating"
TIME_COLUMN = "timestamp"


@dataclass(frozen=True)
class Item:
    """One catalogue item. ``item_id`` is the data set's own id (in ML-1M, the title)."""

    item_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]

    def label(self) -> str:
        """How prompts and the UI name the item: "Title (Year)", without doubling a year
        the title already carries (ML-100K titles and ML-1M ids do)."""
        if self.year is None:
            return self.title
        suffix = f"({self.year})"
        if self.title.rstrip().endswith(suffix):
            return self.title
        return f"{self.title} {suffix}"


class Dataset:
    """Items, users and every user's interactions, sorted by time.

    Interactions are stored CSR-style: user ``u``'s history is
    ``inter_items[indptr[u]:indptr[u + 1]]`` (with matching ``inter_times`` and
    ``inter_ratings``), oldest first; equal timestamps keep file order. The arrays are
    read-only because a loaded data set is shared across the app.
    """

    def __init__(
        self,
        name: str,
        items: Sequence[Item],
        users: Sequence[str],
        indptr: np.ndarray,
        inter_items: np.ndarray,
        inter_times: np.ndarray,
        inter_ratings: np.ndarray,
    ) -> None:
        self.name = name
        self.items: list[Item] = list(items)
        self.item_index: dict[str, int] = {it.item_id: i for i, it in enumerate(self.items)}
        if len(self.item_index) != len(self.items):
            raise DataError(f"data set {name}: duplicate item ids")
        self.users: list[str] = list(users)
        self.user_index: dict[str, int] = {u: i for i, u in enumerate(self.users)}
        if len(self.user_index) != len(self.users):
            raise DataError(f"data set {name}: duplicate user ids")

        self.indptr = _frozen(np.asarray(indptr, dtype=np.int64))
        self.inter_items = _frozen(np.asarray(inter_items, dtype=np.int32))
        self.inter_times = _frozen(np.asarray(inter_times, dtype=np.float64))
        self.inter_ratings = _frozen(np.asarray(inter_ratings, dtype=np.float32))
        n = len(self.inter_items)
        if (
            self.indptr.shape != (len(self.users) + 1,)
            or self.indptr[0] != 0
            or self.indptr[-1] != n
            or np.any(np.diff(self.indptr) < 0)
            or len(self.inter_times) != n
            or len(self.inter_ratings) != n
            or (n and (self.inter_items.min() < 0 or self.inter_items.max() >= len(self.items)))
        ):
            raise DataError(f"data set {name}: inconsistent interaction arrays")

        self.n_interactions: int = n
        # Per-user views (no copies); index = internal user id.
        self.sequences: list[np.ndarray] = [
            self.inter_items[a:b] for a, b in zip(self.indptr[:-1], self.indptr[1:], strict=True)
        ]
        self.popularity: np.ndarray = _frozen(
            np.bincount(self.inter_items, minlength=len(self.items)).astype(np.int64)
        )
        self.genres: list[str] = sorted({g for it in self.items for g in it.genres})

    # -- sizes ----------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions})"
        )

    # -- look-ups -------------------------------------------------------------------------
    def has_user(self, user_id: str) -> bool:
        return user_id in self.user_index

    def _user(self, user_id: str) -> int:
        try:
            return self.user_index[user_id]
        except KeyError:
            raise KeyError(f"unknown user {user_id!r} in data set {self.name}") from None

    def sequence(self, user_id: str) -> np.ndarray:
        """The user's item indices (int32), oldest first. A read-only view."""
        return self.sequences[self._user(user_id)]

    def timestamps(self, user_id: str) -> np.ndarray:
        """Timestamps (float64) matching ``sequence(user_id)``."""
        u = self._user(user_id)
        return self.inter_times[self.indptr[u] : self.indptr[u + 1]]

    def ratings(self, user_id: str) -> np.ndarray:
        """Ratings (float32, NaN where the data set has none) matching ``sequence``."""
        u = self._user(user_id)
        return self.inter_ratings[self.indptr[u] : self.indptr[u + 1]]

    def with_users(self, users: Sequence[int], name: str) -> Dataset:
        """The same items (same indices) with only the users at ``users`` (internal ids,
        in that order) and their interactions: a population to train on."""
        idx = [int(u) for u in users]
        spans = [(int(self.indptr[u]), int(self.indptr[u + 1])) for u in idx]
        take = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, int)
        lengths = np.array([b - a for a, b in spans], dtype=np.int64)
        return Dataset(
            name,
            self.items,
            [self.users[u] for u in idx],
            np.concatenate([[0], np.cumsum(lengths)]),
            self.inter_items[take],
            self.inter_times[take],
            self.inter_ratings[take],
        )

    def item(self, item_id: str | int) -> Item:
        """An item by its data-set id (``str``) or by its internal index (``int``)."""
        if isinstance(item_id, int | np.integer):
            if 0 <= item_id < len(self.items):
                return self.items[int(item_id)]
            raise KeyError(f"item index {item_id} out of range 0..{len(self.items) - 1}")
        try:
            return self.items[self.item_index[item_id]]
        except KeyError:
            raise KeyError(f"unknown item {item_id!r} in data set {self.name}") from None


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# -- locating the files -------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetFiles:
    """The atomic files of one data set; ``item`` and ``user`` are optional."""

    name: str
    inter: Path
    item: Path | None = None
    user: Path | None = None

    def sources(self) -> list[Path]:
        return [p for p in (self.inter, self.item, self.user) if p is not None]


def known_datasets() -> list[str]:
    """Names ``load_dataset`` downloads by itself (the asset manifest's data sets)."""
    from cdarec.assets import catalog

    return sorted(name for kind, name in catalog() if kind == "datasets")


def _sibling(directory: Path, stem: str, suffix: str) -> Path | None:
    exact = directory / f"{stem}{suffix}"
    if exact.is_file():
        return exact
    found = sorted(p for p in directory.glob(f"*{suffix}") if p.is_file())
    return found[0] if len(found) == 1 else None


def resolve_dataset(spec: str | Path, home: Path) -> DatasetFiles:
    """Map a data-set spec to files: a known name (downloaded and verified on first use),
    a directory of atomic files, or a ``.inter`` file.

    A known name always means the managed copy; to read a local folder that happens to
    be called ``ml-1m``, pass it as a path (``./ml-1m``).
    """
    spec_s = str(spec)
    if isinstance(spec, str) and spec in known_datasets():
        from cdarec.assets import ensure_asset

        paths = ensure_asset(Path(home), "datasets", spec)
        by_suffix = {p.suffix: p for p in paths}
        if ".inter" not in by_suffix:
            raise DataError(f"data set {spec}: the asset manifest lists no .inter file")
        return DatasetFiles(
            spec, by_suffix[".inter"], by_suffix.get(".item"), by_suffix.get(".user")
        )

    path = Path(spec_s).expanduser()
    if path.is_file():
        if path.suffix != ".inter":
            raise DataError(f"{path}: expected a directory or a .inter file")
        return DatasetFiles(
            path.stem,
            path,
            _sibling(path.parent, path.stem, ".item"),
            _sibling(path.parent, path.stem, ".user"),
        )
    if not path.is_dir():
        raise DataError(
            f"unknown data set {spec_s!r}: not one of {', '.join(known_datasets())} and not "
            "a directory of RecBole atomic files"
        )
    inter = path / f"{path.name}.inter"
    if not inter.is_file():
        found = sorted(p for p in path.glob("*.inter") if p.is_file())
        if not found:
            raise DataError(
                f"{path}: no .inter file; a data set directory needs <name>.inter "
                "(tab-separated, with a 'name:type' header) and optionally .item/.user"
            )
        if len(found) > 1:
            raise DataError(
                f"{path}: several .inter files ({', '.join(p.name for p in found)}) and none "
                f"named {path.name}.inter; pass the one you mean as a path"
            )
        inter = found[0]
    stem = inter.stem
    return DatasetFiles(stem, inter, _sibling(path, stem, ".item"), _sibling(path, stem, ".user"))


# -- parsing --------------------------------------------------------------------------------
def _float_array(table: AtomicTable, name: str, dtype: type) -> np.ndarray:
    """A numeric column as an array (NaN for empty), whether declared float or token."""
    f = table.get_field(name)
    assert f is not None
    values = table[name]
    if f.type == "float":
        return np.array(values, dtype=dtype)  # None -> NaN
    if f.type == "token":
        try:
            return np.array([v if v else "nan" for v in values], dtype=dtype)
        except ValueError:
            bad = next(i for i, v in enumerate(values) if v and not _is_float(v))
            raise DataError(
                f"{table.path}: data row {bad + 1}: column '{name}': cannot parse "
                f"{values[bad]!r} as a number"
            ) from None
    raise DataError(f"{table.path}: column '{name}' is {f.type}, expected a number")


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _year(value: Any) -> int | None:
    """Years arrive as floats (1995.0), tokens ("1995"), or junk ("unkonwn", "V")."""
    if value is None:
        return None
    if isinstance(value, list):  # token_seq
        value = value[0] if len(value) == 1 else None
        if value is None:
            return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


_GENRE_SPLIT = re.compile(r"[|\s]+")


def _genres(value: Any) -> tuple[str, ...]:
    """token_seq (a list) or one token holding space- (or '|'-) separated genres."""
    parts = value if isinstance(value, list) else _GENRE_SPLIT.split(value or "")
    return tuple(dict.fromkeys(p for p in parts if p))


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(value)
    return "" if value is None else str(value)


def _read_items(path: Path) -> list[Item]:
    # Only the columns we map: a malformed extra column should not block loading.
    table = read_atomic(path, columns=[ITEM_COLUMN, *TITLE_COLUMNS, *YEAR_COLUMNS, *GENRE_COLUMNS])
    if ITEM_COLUMN not in table:
        raise DataError(f"{path}: no '{ITEM_COLUMN}' column (header: {', '.join(table.names)})")
    if table.get_field(ITEM_COLUMN).type != "token":  # type: ignore[union-attr]
        raise DataError(f"{path}: '{ITEM_COLUMN}' must be a token column")
    ids = table[ITEM_COLUMN]
    n = len(ids)
    title_f, year_f, genre_f = (
        table.first(*c) for c in (TITLE_COLUMNS, YEAR_COLUMNS, GENRE_COLUMNS)
    )
    titles = table[title_f.name] if title_f else [None] * n
    years = table[year_f.name] if year_f else [None] * n
    genres = table[genre_f.name] if genre_f else [None] * n
    items: list[Item] = []
    seen: set[str] = set()
    for iid, t, y, g in zip(ids, titles, years, genres, strict=True):
        if iid in seen:  # a repeated row: the first one wins, as in RecBole
            continue
        seen.add(iid)
        items.append(Item(iid, _text(t).strip() or iid, _year(y), _genres(g)))
    return items


def _read_users(path: Path) -> list[str]:
    table = read_atomic(path, columns=[USER_COLUMN])
    if USER_COLUMN not in table:
        raise DataError(f"{path}: no '{USER_COLUMN}' column (header: {', '.join(table.names)})")
    return list(dict.fromkeys(table[USER_COLUMN]))


def _index(values: list[str], index: dict[str, int], order: list[str]) -> np.ndarray:
    """Internal ids for ``values``; unseen values are appended in order of appearance."""
    get = index.get
    ids = [get(v, -1) for v in values]
    if -1 in ids:
        for v in dict.fromkeys(v for v, i in zip(values, ids, strict=True) if i < 0):
            index[v] = len(order)
            order.append(v)
        ids = [index[v] for v in values]
    return np.array(ids, dtype=np.int32)


def _build(files: DatasetFiles, min_rating: float | None) -> Dataset:
    items = _read_items(files.item) if files.item else []
    users = _read_users(files.user) if files.user else []

    inter = read_atomic(files.inter, columns=[USER_COLUMN, ITEM_COLUMN, RATING_COLUMN, TIME_COLUMN])
    for col in (USER_COLUMN, ITEM_COLUMN):
        if col not in inter:
            raise DataError(f"{files.inter}: no '{col}' column (header: {', '.join(inter.names)})")
    n = len(inter)
    has_rating = RATING_COLUMN in inter
    ratings = (
        _float_array(inter, RATING_COLUMN, np.float32)
        if RATING_COLUMN in inter
        else np.full(n, np.nan, dtype=np.float32)
    )
    # Without timestamps, file order is the only order there is.
    times = (
        _float_array(inter, TIME_COLUMN, np.float64)
        if TIME_COLUMN in inter
        else np.arange(n, dtype=np.float64)
    )

    # Ids are assigned from all interactions, before any rating filter, so an item's or
    # a user's index does not depend on min_rating.
    with gc_paused():
        item_ids = [it.item_id for it in items]
        item_index = {iid: i for i, iid in enumerate(item_ids)}
        iidx = _index(inter[ITEM_COLUMN], item_index, item_ids)
        user_index = {u: i for i, u in enumerate(users)}
        uidx = _index(inter[USER_COLUMN], user_index, users)
    del inter
    # Items rated but missing from the item file: the id is all we know.
    items += [Item(iid, iid, None, ()) for iid in item_ids[len(items) :]]

    if min_rating is not None:
        if not has_rating:
            raise DataError(
                f"{files.inter}: min_rating={min_rating} but no '{RATING_COLUMN}' "
                "column to filter on"
            )
        keep = ratings >= np.float32(min_rating)
        iidx, uidx, times, ratings = iidx[keep], uidx[keep], times[keep], ratings[keep]

    # Two stable sorts: by time, then by user; equal timestamps keep file order.
    order = np.argsort(times, kind="stable")
    order = order[np.argsort(uidx[order], kind="stable")]
    counts = np.bincount(uidx, minlength=len(users))
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Dataset(files.name, items, users, indptr, iidx[order], times[order], ratings[order])


# -- the cache ------------------------------------------------------------------------------
def _fingerprint(files: DatasetFiles, min_rating: float | None) -> dict[str, Any]:
    srcs = []
    for p in files.sources():
        st = p.stat()
        srcs.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return {"version": CACHE_VERSION, "name": files.name, "min_rating": min_rating, "sources": srcs}


def _cache_paths(home: Path, files: DatasetFiles, min_rating: float | None) -> tuple[Path, Path]:
    key = f"{files.inter.resolve()}|{min_rating!r}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", files.name)[:60] or "dataset"
    stem = f"{safe}-{digest}" if min_rating is None else f"{safe}-r{min_rating:g}-{digest}"
    d = Path(home) / "cache" / "datasets"
    return d / f"{stem}.npz", d / f"{stem}.json"


def _load_cache(npz: Path, meta_path: Path, fingerprint: dict[str, Any]) -> Dataset | None:
    """The cached data set, or None when absent, stale or damaged in any way."""
    if not (npz.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("fingerprint") != fingerprint:
            return None
        with np.load(npz, allow_pickle=False) as z:
            if str(z["token"]) != meta["token"]:
                return None  # the two files come from different writes
            arrays = {k: z[k] for k in ("indptr", "items", "times", "ratings")}
        items = [
            Item(str(i), str(t), None if y is None else int(y), tuple(map(str, g)))
            for i, t, y, g in meta["items"]
        ]
        return Dataset(
            meta["name"],
            items,
            [str(u) for u in meta["users"]],
            arrays["indptr"],
            arrays["items"],
            arrays["times"],
            arrays["ratings"],
        )
    except Exception as e:  # any damage means "rebuild", never a crash
        log.warning("ignoring damaged data set cache %s (%s: %s)", npz, type(e).__name__, e)
        return None


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_cache(ds: Dataset, npz: Path, meta_path: Path, fingerprint: dict[str, Any]) -> None:
    """Write arrays, then the JSON (last, so a crash in between leaves no valid pair)."""
    token = hashlib.sha1(f"{time.time_ns()}|{os.getpid()}|{npz}".encode()).hexdigest()
    meta = {
        "fingerprint": fingerprint,
        "token": token,
        "name": ds.name,
        "items": [[it.item_id, it.title, it.year, list(it.genres)] for it in ds.items],
        "users": ds.users,
    }
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            npz,
            lambda fh: np.savez(
                fh,
                token=np.array(token),
                indptr=ds.indptr,
                items=ds.inter_items,
                times=ds.inter_times,
                ratings=ds.inter_ratings,
            ),
        )
        _atomic_write(
            meta_path, lambda fh: fh.write(json.dumps(meta, ensure_ascii=False).encode("utf-8"))
        )
    except OSError as e:  # a read-only home only costs speed
        log.warning("could not write the data set cache %s: %s", npz, e)


def load_dataset(spec: str | Path, home: Path | str, min_rating: float | None = None) -> Dataset:
    """Load a data set by name (``"ml-1m"``, ``"ml-100k"``) or directory path.

    ``min_rating`` keeps only interactions rated at least that much (item and user ids
    stay those of the unfiltered data). Raises ``DataError`` for missing or malformed
    files; a known name that cannot be downloaded raises ``cdarec.assets.AssetError``.
    """
    if min_rating is not None:
        if (
            isinstance(min_rating, bool)
            or not isinstance(min_rating, int | float)
            or not math.isfinite(min_rating)
        ):
            raise DataError(f"min_rating must be a finite number, got {min_rating!r}")
        min_rating = float(min_rating)
    home = Path(home).expanduser()
    files = resolve_dataset(spec, home)
    fingerprint = _fingerprint(files, min_rating)
    npz, meta = _cache_paths(home, files, min_rating)
    with gc_paused():
        ds = _load_cache(npz, meta, fingerprint)
    if ds is not None:
        return ds
    ds = _build(files, min_rating)
    _save_cache(ds, npz, meta, fingerprint)
    return ds
