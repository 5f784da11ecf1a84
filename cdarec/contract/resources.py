"""Contract: how each side's resources are built, shared and looked up; the public part.

Neither side. The graph's run context carries only plain settings (so ``langgraph dev``
can send it as JSON); each side turns it into its own resources (``CloudResources``,
``DeviceResources``) through a ``Registry``: heavy objects are built on first use, once
per settings fingerprint, and shared by every run with those settings. What both sides
may read is here (``PublicResources``): the public data set and what the request parser
reads of its catalogue, and the prompt texts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from cdarec.contract.request import CatalogueFacts, Vocabulary
from cdarec.data import Dataset, load_dataset
from cdarec.prompts import Prompt, load_all
from cdarec.settings import Settings

R = TypeVar("R")


def lazy(build: Callable[[Any], R]) -> property:
    """A property built once, under a lock of its own (parallel branches share it, and
    building one resource never holds up another); a value given to the constructor
    (``self.__dict__[name]``) is used as it is."""
    name = build.__name__

    def get(self: Any) -> R:
        if name not in self.__dict__:
            with self._guard:  # held only to find this property's own lock
                lock = self._locks.setdefault(name, threading.RLock())
            with lock:
                if name not in self.__dict__:
                    self.__dict__[name] = build(self)
        return self.__dict__[name]

    return property(get, doc=build.__doc__)


_DATASETS: dict[tuple[str, str], Dataset] = {}
_DATASETS_LOCK = threading.Lock()


def shared_dataset(settings: Settings) -> Dataset:
    """The data set of ``settings``, loaded once per process: both sides read the same
    public data (the cloud its catalogue and training data, the device its catalogue and
    the seed of a new device's memory), so they share one copy in memory."""
    key = (str(settings.dataset), str(Path(settings.home).expanduser()))
    with _DATASETS_LOCK:
        ds = _DATASETS.get(key)
        if ds is None:
            ds = _DATASETS[key] = load_dataset(settings.dataset, settings.home)
        return ds


class PublicResources:
    """What either side may read: the public data set, its catalogue as the request parser
    reads it, the prompt texts. Values given to the constructor replace the lazily built
    ones (benchmarks and tests configure resources this way, never through ``__dict__``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dataset: Dataset | None = None,
        prompts: dict[str, Prompt] | None = None,
    ) -> None:
        self.settings = settings
        self._lock = threading.RLock()  # whole-object changes (refresh, train, warm-up)
        self._locks: dict[str, threading.RLock] = {}  # one per lazy property
        self._guard = threading.Lock()  # guards ``_locks`` only, never held while building
        self._given(dataset=dataset, prompts=prompts)

    def _given(self, **values: Any) -> None:
        for name, value in values.items():
            if value is not None:
                self.__dict__[name] = value

    @lazy
    def dataset(self) -> Dataset:
        return shared_dataset(self.settings)

    @lazy
    def vocabulary(self) -> Vocabulary:
        """The public catalogue as the request parser reads it (genres, titles)."""
        ds = self.dataset
        return Vocabulary.build(
            ds.genres, [(it.item_id, it.title, it.label()) for it in ds.items], ds.popularity
        )

    @lazy
    def catalogue_facts(self) -> CatalogueFacts:
        ds = self.dataset
        return CatalogueFacts.build(ds.genres, [(it.genres, it.year) for it in ds.items])

    @lazy
    def latest_year(self) -> int | None:
        years = [it.year for it in self.dataset.items if it.year]
        return max(years) if years else None

    @lazy
    def prompts(self) -> dict[str, Prompt]:
        return load_all(self.settings.prompts_override_dir)


T = TypeVar("T", bound=PublicResources)


class RunView:
    """A side's shared resources seen with one run's own settings: heavy objects are
    shared by every run with the same ``fingerprint``; per-run values (the user, retrieval
    size, planner mode, ...) come from the run's context."""

    def __init__(self, shared: PublicResources, settings: Settings) -> None:
        self._shared = shared
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shared, name)


MAX_CONFIGURATIONS = 4  # loaded configurations (models, catalogues) kept per side


class Registry(Generic[T]):
    """One side's resources by settings fingerprint (built on first use), at most
    ``MAX_CONFIGURATIONS`` of them: the least recently used is dropped (its models are
    freed with it) when another is loaded, so no caller can make a process load model
    after model."""

    def __init__(self, build: Callable[[Settings], T], limit: int = MAX_CONFIGURATIONS) -> None:
        self._build = build
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def get(self, context: Settings | dict[str, Any] | None) -> T:
        settings = Settings.coerce(context)
        key = settings.fingerprint()
        with self._lock:
            res = self._items.get(key)
            if res is None:
                res = self._items[key] = self._build(settings)
                self._evict()
            self._items.move_to_end(key)
        if res.settings == settings:
            return res
        return RunView(res, settings)  # type: ignore[return-value]

    def install(self, res: T) -> T:
        """Use ``res`` for its settings (tests with fake models, benchmarks)."""
        with self._lock:
            key = res.settings.fingerprint()
            self._items[key] = res
            self._items.move_to_end(key)
            self._evict()
        return res

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self) -> None:
        while len(self._items) > self.limit:
            _, old = self._items.popitem(last=False)
            close = getattr(old, "close", None)
            if callable(close):
                close()
