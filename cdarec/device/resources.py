"""Device side: the device's resources — its memory, its structured model, its SLM and
its embedder.

The private history lives here and only here: ``device_record`` is the one way to a
user's memory, and nothing under ``cdarec.cloud`` can import this module. Device nodes
look their resources up with ``device_resources(runtime.context)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdarec.contract.resources import PublicResources, Registry, lazy
from cdarec.data import leave_one_out
from cdarec.device.abstract import PopulationTable, population_table
from cdarec.device.context import ContextMonitor
from cdarec.device.memory import DeviceMemory, DeviceRecord, Interaction, UnknownUserError
from cdarec.device.recent import RecentIndex
from cdarec.llm.embeddings import MiniLMEmbeddings
from cdarec.llm.factory import LLM, build_llm
from cdarec.seqrec.artefacts import shipped_model_path
from cdarec.seqrec.transition import SequenceScorer, TransitionModel
from cdarec.settings import Settings, slug

if TYPE_CHECKING:
    from cdarec.data import Dataset
    from cdarec.prompts import Prompt


class UserNotFoundError(LookupError):
    """Unknown user id: the message names the data set and how to list users."""


class DeviceResources(PublicResources):
    def __init__(
        self,
        settings: Settings,
        *,
        llm: LLM | None = None,
        records: dict[str, DeviceRecord] | None = None,
        dataset: Dataset | None = None,
        prompts: dict[str, Prompt] | None = None,
        sequence_model: SequenceScorer | None = None,
        transition_model: TransitionModel | None = None,
    ) -> None:
        super().__init__(settings, dataset=dataset, prompts=prompts)
        self._warm = False  # warm_up has run
        self._given(
            device_llm=llm, sequence_model=sequence_model, transition_model=transition_model
        )
        # In evaluation the device holds a fixed history (test item held out), not saved.
        self.records = records

    @lazy
    def sequence_model(self) -> SequenceScorer:
        """The structured model the device runs: the trained SASRec (shipped from the
        cloud's `cdarec train`) or the transition model fitted here."""
        choice = self.settings.sequence_model
        if choice != "transition":
            from cdarec.seqrec.sasrec import SASRecModel
            from cdarec.seqrec.structured import with_transition_blend

            path = self.sasrec_path()
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

    def use_sequence_model(self, model: SequenceScorer) -> None:
        """Run ``model`` as the structured model from now on (a benchmark's trained
        SASRec, trained by the cloud in the same process)."""
        with self._lock:
            self.__dict__["sequence_model"] = model

    def use_transition_model(self, model: TransitionModel) -> None:
        """Run ``model`` as the transition model (the ensemble's second member, and the
        structured model itself where there is no SASRec) from now on: a benchmark's,
        fitted on the cloud's training population only (the user-disjoint split)."""
        with self._lock:
            old = self.__dict__.get("transition_model")
            if old is not None and self.__dict__.get("sequence_model") is old:
                self.__dict__["sequence_model"] = model
            self.__dict__["transition_model"] = model

    def sasrec_path(self) -> Path:
        """Where the cloud's trained SASRec for this data set is shipped to."""
        return shipped_model_path(self.dataset, self.settings.home)

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
            self.__dict__.pop("sequence_model", None)
            return self.sequence_model is not self.transition_model

    @lazy
    def transition_model(self) -> TransitionModel:
        """The foundation's scorer, fitted on the training split once and cached on disk."""
        ds = self.dataset
        name = f"transition-{slug(ds.name)}-{ds.n_users}u-{ds.n_items}i-{ds.n_interactions}.npz"
        path = self.settings.home / "cache" / "sequence" / name
        if path.exists():
            try:
                return TransitionModel.load(path)
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a corrupted artefact is refitted below
        model = TransitionModel.fit(leave_one_out(ds).train, ds.n_items)
        model.save(path)
        return model

    @lazy
    def dataset_end(self) -> float:
        """The data set's last timestamp: 'now' for judging recency of data-set activity."""
        times = self.dataset.inter_times
        return float(times.max()) if times.size else 0.0

    @lazy
    def abstract_table(self) -> PopulationTable:
        """The public population table the abstract is released against (k-anonymity):
        counts of every data set user's abstract, no history (``device.abstract``)."""
        return population_table(self.dataset, self.dataset_end)

    @lazy
    def device_embedder(self) -> MiniLMEmbeddings:
        """The device's own copy of the embedder (semantic relevance of its proposals)."""
        return MiniLMEmbeddings.from_home(
            self.settings.home, self.settings.embedder, threads=self.settings.llm_threads
        )

    @lazy
    def context_monitor(self) -> ContextMonitor:
        """What the device measures of its context before each turn (``device.context``)."""
        return ContextMonitor()

    @lazy
    def recent_index(self) -> RecentIndex:
        """The catalogue items the cloud retrieved lately, per user, searched on the device
        when retrieval is placed there (``device.recent``)."""
        ds = self.dataset
        # Kept on disk for the device's own users; an evaluation's fixed records are not.
        folder = (
            self.settings.device_dir / "recent" / slug(ds.name) if self.records is None else None
        )
        return RecentIndex(
            lambda texts: self.device_embedder.embed_array(texts),
            folder=folder,
            ids=[it.item_id for it in ds.items],
        )

    @lazy
    def memory(self) -> DeviceMemory:
        return DeviceMemory(self.settings.device_dir, self.dataset.name)

    @lazy
    def device_llm(self) -> LLM:
        return build_llm(self.settings.device_model, self.settings)

    def new_turn(self) -> None:
        """A turn starts: the device model is tried again even if it failed last turn."""
        llm = self.__dict__.get("device_llm")
        if llm is not None:
            llm.new_turn()

    def warm_up(self) -> None:
        """Load the device SLM and evaluate its judgement's system prompt once, so that a
        session's first judgement pays only for its own message."""
        with self._lock:
            if self._warm:
                return
            self._warm = True
        from langchain_core.messages import HumanMessage, SystemMessage

        system = self.prompts["rank_on_device"].system
        prime = [SystemMessage(content=system), HumanMessage(content="Recently watched:")]
        self.device_llm.text(1).invoke(prime, config={"callbacks": []})
        _ = self.sequence_model, self.device_embedder, self.context_monitor
        if self.settings.abstract_k >= 2:  # the k-anonymous release counts users
            _ = self.abstract_table

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


REGISTRY: Registry[DeviceResources] = Registry(DeviceResources)


def device_resources(context: Settings | dict[str, Any] | None) -> DeviceResources:
    """The device's resources for a run's context (a graph node's ``runtime.context``)."""
    return REGISTRY.get(context)
