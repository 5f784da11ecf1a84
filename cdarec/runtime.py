"""Heavy resources behind the graph, built lazily once per settings.

The graph's run context carries only plain settings (so ``langgraph dev`` can send it
as JSON); nodes turn it into these resources with ``get_resources``. Each resource is
built on first use (a unit test with fake models never starts a server or loads a
GGUF). Tests and benchmarks can install their own with ``use_resources``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from cdarec.catalogue.embeddings import MiniLMEmbeddings
from cdarec.catalogue.store import Catalogue, open_catalogue
from cdarec.data import Dataset, leave_one_out, load_dataset
from cdarec.device.sequence import SequenceScorer, TransitionModel
from cdarec.graph.plan import Plan
from cdarec.graph.request import CatalogueFacts, Vocabulary
from cdarec.llm.factory import LLM, build_llm
from cdarec.memory.device_memory import (
    DeviceMemory,
    DeviceRecord,
    Interaction,
    UnknownUserError,
)
from cdarec.prompts import Prompt, load_all
from cdarec.settings import Settings

R = TypeVar("R")


def _lazy(build: Callable[[Resources], R]) -> property:
    """A property built once, under the resources' lock (parallel branches share it)."""
    name = build.__name__

    def get(self: Resources) -> R:
        if name not in self.__dict__:
            with self._lock:
                if name not in self.__dict__:
                    self.__dict__[name] = build(self)
        return self.__dict__[name]

    return property(get, doc=build.__doc__)


class UserNotFoundError(LookupError):
    """Unknown user id: the message names the data set and how to list users."""


class Resources:
    def __init__(
        self,
        settings: Settings,
        *,
        device_llm: LLM | None = None,
        cloud_llm: LLM | None = None,
        records: dict[str, DeviceRecord] | None = None,
    ) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        if device_llm is not None:
            self.__dict__["device_llm"] = device_llm
        if cloud_llm is not None:
            self.__dict__["cloud_llm"] = cloud_llm
        # In evaluation the device holds a fixed history (test item held out), not saved.
        self.records = records
        # Plans the cloud planner wrote, by user state and request kind (plan reuse).
        self.plan_cache: dict[str, Plan] = {}

    @_lazy
    def dataset(self) -> Dataset:
        return load_dataset(self.settings.dataset, self.settings.home)

    @_lazy
    def sequence_model(self) -> SequenceScorer:
        """The structured model the device runs: the trained SASRec (shipped from the
        cloud's `cdarec train`) or the transition model fitted here."""
        choice = self.settings.sequence_model
        if choice != "transition":
            from cdarec.seqrec.runtime import SASRecModel
            from cdarec.seqrec.train_cli import model_path, with_transition_blend

            path = model_path(self.dataset, self.settings.home, train_config(self.dataset))
            if path.exists():
                try:
                    return with_transition_blend(SASRecModel.load(path), self.dataset, path)
                except ValueError:
                    if choice == "sasrec":
                        raise
            elif choice == "sasrec":
                raise FileNotFoundError(
                    f"no trained SASRec for {self.dataset.name}: run `cdarec train "
                    f"--dataset {self.settings.dataset}` (or use --sequence-model transition)"
                )
        return self.transition_model

    def sasrec_path(self) -> Any:
        from cdarec.seqrec.train_cli import model_path

        return model_path(self.dataset, self.settings.home, train_config(self.dataset))

    def refresh_sequence_model(self) -> bool:
        """Switch to the trained SASRec if it appeared since the transition model was
        chosen (a background `cdarec train` finished); True if it switched."""
        with self._lock:
            current = self.__dict__.get("sequence_model")
            if (
                self.settings.sequence_model != "auto"
                or current is None
                or current is not self.__dict__.get("transition_model")
                or not self.sasrec_path().exists()
            ):
                return False
            for name in ("sequence_model", "collab_index"):
                self.__dict__.pop(name, None)
            return self.sequence_model is not self.transition_model

    def sasrec_model(self, console: Any = None, *, retrain: bool = False) -> Any:
        """The trained SASRec for the data set: loaded from the cache, or trained now (the
        cloud's job; shows progress on ``console``) and cached for the device."""
        with self._lock:
            if retrain or "sasrec" not in self.__dict__:
                from cdarec.seqrec.train_cli import train_or_load

                self.__dict__["sasrec"] = train_or_load(
                    self.dataset,
                    self.settings.home,
                    train_config(self.dataset),
                    console,
                    retrain=retrain,
                )
            return self.__dict__["sasrec"]

    @_lazy
    def transition_model(self) -> TransitionModel:
        """The foundation's scorer, fitted on the training split once and cached on disk."""
        ds = self.dataset
        name = f"transition-{_slug(ds.name)}-{ds.n_users}u-{ds.n_items}i-{ds.n_interactions}.npz"
        path = self.settings.home / "cache" / "sequence" / name
        if path.exists():
            try:
                return TransitionModel.load(path)
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a corrupted artefact is refitted below
        model = TransitionModel.fit(leave_one_out(ds).train, ds.n_items)
        model.save(path)
        return model

    @_lazy
    def collab_index(self) -> Any:
        """The cloud's index of the structured model's item vectors (None without one)."""
        model = self.sequence_model
        if not hasattr(model, "item_vectors"):
            return None
        import zlib

        from cdarec.catalogue.collab import CollabIndex

        vectors = model.item_vectors()
        key = f"{model.name}-{zlib.crc32(np.ascontiguousarray(vectors).tobytes()):08x}"
        index = CollabIndex(self.settings.chroma_dir, self.dataset.name, key)
        index.index(self.dataset.items, vectors)
        return index

    @_lazy
    def catalogue(self) -> Catalogue:
        cat = open_catalogue(self.settings, self.dataset)
        if cat.count() == 0:  # first use without `cdarec index`
            cat.index(self.dataset.items)
        return cat

    @_lazy
    def vocabulary(self) -> Vocabulary:
        """The public catalogue as the request parser reads it (genres, titles)."""
        ds = self.dataset
        return Vocabulary.build(
            ds.genres, [(it.item_id, it.title, it.label()) for it in ds.items], ds.popularity
        )

    @_lazy
    def catalogue_facts(self) -> CatalogueFacts:
        ds = self.dataset
        return CatalogueFacts.build(ds.genres, [(it.genres, it.year) for it in ds.items])

    @_lazy
    def latest_year(self) -> int | None:
        years = [it.year for it in self.dataset.items if it.year]
        return max(years) if years else None

    @_lazy
    def dataset_end(self) -> float:
        """The data set's last timestamp: 'now' for judging recency of data-set activity."""
        times = self.dataset.inter_times
        return float(times.max()) if times.size else 0.0

    @_lazy
    def device_embedder(self) -> MiniLMEmbeddings:
        """The device's own copy of the embedder (semantic relevance of its proposals)."""
        return MiniLMEmbeddings.from_home(
            self.settings.home, self.settings.embedder, threads=self.settings.llm_threads
        )

    @_lazy
    def memory(self) -> DeviceMemory:
        return DeviceMemory(self.settings.device_dir, self.dataset.name)

    @_lazy
    def device_llm(self) -> LLM:
        return build_llm(self.settings.device_model, self.settings)

    @_lazy
    def cloud_llm(self) -> LLM:
        return build_llm(self.settings.cloud_model, self.settings)

    @_lazy
    def prompts(self) -> dict[str, Prompt]:
        return load_all(self.settings.prompts_override_dir)

    # -- device side ----------------------------------------------------------------------
    def dataset_history(self, user_id: str) -> list[Interaction]:
        ds = self.dataset
        seq, ts, ratings = ds.sequence(user_id), ds.timestamps(user_id), ds.ratings(user_id)
        return [
            Interaction(item_id=ds.items[int(i)].item_id, ts=float(t), rating=float(r))
            for i, t, r in zip(seq, ts, ratings, strict=True)
        ]

    def device_record(self, user_id: str | None) -> DeviceRecord:
        """The user's device memory; seeded from the data set on the device's first use."""
        if not user_id:
            raise UserNotFoundError(
                "no user given: pass --user ID (or the 'user_id' context field); "
                "`cdarec users` lists some."
            )
        if self.records is not None:
            if user_id not in self.records:
                raise UserNotFoundError(f"user '{user_id}' has no evaluation record")
            return self.records[user_id]
        try:
            return self.memory.load(user_id)
        except UnknownUserError:
            pass
        ds = self.dataset
        if not ds.has_user(user_id):
            sample = ", ".join(ds.users[:3])
            raise UserNotFoundError(
                f"unknown user '{user_id}' in data set {ds.name} ({ds.n_users} users, e.g. "
                f"{sample}). Run `cdarec users` to list them, or `cdarec memory new --user "
                f"{user_id}` to create an empty (cold-start) device."
            ) from None
        return self.memory.seed(user_id, self.dataset_history(user_id))

    def history_indices(self, rec: DeviceRecord) -> np.ndarray:
        index = self.dataset.item_index
        return np.array([index[i] for i in rec.history_ids() if i in index], dtype=np.int64)


def train_config(ds: Dataset) -> Any:
    """The SASRec training configuration for a data set (one place: `cdarec train`, the
    device runtime and the benchmark agree on which cached model is meant)."""
    from cdarec.seqrec.sasrec import TrainConfig

    return TrainConfig()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)[:60]


_REGISTRY: dict[str, Resources] = {}
_REGISTRY_LOCK = threading.Lock()


class RunResources:
    """The shared resources seen with one run's own settings.

    Heavy objects are shared by every run with the same ``fingerprint``; per-run values
    (the user, retrieval size, planner mode, ...) come from the run's context.
    """

    def __init__(self, shared: Resources, settings: Settings) -> None:
        self._shared = shared
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shared, name)


def get_resources(context: Settings | dict[str, Any] | None) -> Resources:
    settings = Settings.coerce(context)
    key = settings.fingerprint()
    with _REGISTRY_LOCK:
        res = _REGISTRY.get(key)
        if res is None:
            res = _REGISTRY[key] = Resources(settings)
    if res.settings == settings:
        return res
    return RunResources(res, settings)  # type: ignore[return-value]


def use_resources(res: Resources) -> Resources:
    """Install resources for their settings (tests with fake models, benchmarks)."""
    with _REGISTRY_LOCK:
        _REGISTRY[res.settings.fingerprint()] = res
    return res
