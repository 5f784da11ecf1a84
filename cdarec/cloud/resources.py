"""Cloud side: the cloud's resources — its LLM, the catalogue, the collaborative index,
the plan cache and the model it trains.

Nothing here can reach device memory, the device model or the device SLM: they live in
``cdarec.device.resources``, which this side never imports. Cloud nodes look their
resources up with ``cloud_resources(runtime.context)``.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from cdarec.cloud.catalogue import filters
from cdarec.cloud.catalogue.store import Catalogue, open_catalogue
from cdarec.contract.plan import Plan
from cdarec.contract.resources import PublicResources, Registry, lazy
from cdarec.llm.factory import LLM, build_llm
from cdarec.seqrec import artefacts
from cdarec.settings import Settings

if TYPE_CHECKING:
    from cdarec.cloud.catalogue.collab import CollabIndex
    from cdarec.data import Dataset
    from cdarec.prompts import Prompt
    from cdarec.seqrec.sasrec import SASRecModel


class CloudResources(PublicResources):
    def __init__(
        self,
        settings: Settings,
        *,
        llm: LLM | None = None,
        dataset: Dataset | None = None,
        prompts: dict[str, Prompt] | None = None,
        catalogue: Catalogue | None = None,
        trained_model: SASRecModel | None = None,
    ) -> None:
        super().__init__(settings, dataset=dataset, prompts=prompts)
        self._warm = False  # warm_up has run
        self._given(cloud_llm=llm, catalogue=catalogue, trained_model=trained_model)
        # Plans the cloud planner wrote, by user state and request kind (plan reuse).
        self.plan_cache: dict[str, Plan] = {}
        self._trained: SASRecModel | None = None  # what `train` returned
        # Whose histories `train` learns from: the data set's users, or a benchmark's
        # training population (the user-disjoint split: the evaluated users held out).
        self.population: Dataset | None = None

    @lazy
    def cloud_llm(self) -> LLM:
        return build_llm(self.settings.cloud_model, self.settings)

    @lazy
    def catalogue(self) -> Catalogue:
        cat = open_catalogue(self.settings, self.dataset)
        if cat.size() != self.dataset.n_items:  # first use, or an index cut short: complete it
            cat.index(self.dataset.items)
        return cat

    @lazy
    def trained_model(self) -> SASRecModel | None:
        """The SASRec the cloud trained and ships to the device (None before `cdarec
        train` has run, or with ``sequence_model = "transition"``, or for an unreadable
        file: the device then runs its transition model and sends no user vector)."""
        if self.settings.sequence_model == "transition":
            return None
        path = artefacts.shipped_model_path(self.dataset, self.settings.home)
        if not path.exists():
            return None
        from cdarec.seqrec.sasrec import SASRecModel

        try:
            return SASRecModel.load(path)
        except ValueError:
            return None

    @lazy
    def collab_index(self) -> CollabIndex | None:
        """The cloud's index of the trained model's item vectors (None without one)."""
        model = self.trained_model
        if model is None:
            return None
        from cdarec.cloud.catalogue.collab import CollabIndex

        vectors = model.item_vectors()
        key = f"{model.name}-{zlib.crc32(np.ascontiguousarray(vectors).tobytes()):08x}"
        index = CollabIndex(
            self.settings.chroma_dir, self.dataset.name, key, self.settings.chroma_url
        )
        index.index(self.dataset.items, vectors)
        return index

    def revive_cloud_llm(self) -> bool:
        """At a turn's start: forget the last turn's endpoint failure (this turn tries it
        again) and restart a dead embedded cloud server (see ``LLM.revive``); returns
        whether it was restarted. Nothing is built here."""
        llm = self.__dict__.get("cloud_llm")
        if llm is None:
            return False
        llm.new_turn()
        return bool(llm.revive())

    def warm_up(self, prime: bool = True) -> None:
        """Start the cloud model; with ``prime``, also evaluate the shared system prompt of
        every cloud call once (``cloud_context``: it holds no user data), so that the
        first call pays only for its own short message, as every later call does."""
        with self._lock:
            if self._warm:
                return
            self._warm = True
        llm = self.cloud_llm
        if prime:
            from langchain_core.messages import HumanMessage, SystemMessage

            system = self.prompts["plan_strategy"].system.format(
                genres=", ".join(self.dataset.genres), retrieval_k=self.settings.retrieval_k
            )
            prime_msgs = [SystemMessage(content=system), HumanMessage(content="Task: none.")]
            llm.text(1).invoke(prime_msgs, config={"callbacks": []})
        if self.dataset.n_items >= filters.INDEX_MIN:  # read a large catalogue's filter
            cat = self.catalogue  # facts now, not in the first filtered search
            cat.filters.prepare(cat.collection, cat.size())

    def refresh_trained_model(self) -> None:
        """Look for the trained model again (a background `cdarec train` finished)."""
        with self._lock:
            if self.__dict__.get("trained_model", False) is None:
                for name in ("trained_model", "collab_index"):
                    self.__dict__.pop(name, None)

    def use_population(self, population: Dataset) -> None:
        """Train on ``population`` (the same items, fewer users) from now on, forgetting a
        model trained on the whole data set (``data.split.user_disjoint``)."""
        with self._lock:
            self.population = population
            self._trained = None
            for name in ("trained_model", "collab_index"):
                self.__dict__.pop(name, None)

    def train(self, console: Any = None, *, retrain: bool = False) -> SASRecModel:
        """Train the data set's SASRec (shows progress on ``console``) on the training
        population (default: every user), or load the cached one, and use it from now
        on; the device loads the same file."""
        from cdarec.cloud.training.train import train_or_load

        with self._lock:
            if self._trained is not None and not retrain:
                return self._trained
            ds = self.population or self.dataset
            model = self._trained = train_or_load(
                ds,
                self.settings.home,
                artefacts.train_config(ds),
                console,
                retrain=retrain,
            )
            self.__dict__["trained_model"] = model
            self.__dict__.pop("collab_index", None)
            return model


REGISTRY: Registry[CloudResources] = Registry(CloudResources)


def cloud_resources(context: Settings | dict[str, Any] | None) -> CloudResources:
    """The cloud's resources for a run's context (a graph node's ``runtime.context``)."""
    return REGISTRY.get(context)
