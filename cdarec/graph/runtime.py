"""Graph: both sides' resources for one configuration, what the service and the benchmarks hold.

Knows both sides (like ``cdarec.graph.builder``): a ``Resources`` pairs the cloud's
``CloudResources`` and the device's ``DeviceResources`` for one settings, and
``use_resources`` installs both where the graph's nodes look them up. Nodes never see
this object: each side's nodes reach only their own side's resources.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING, Any

from cdarec.cloud.resources import REGISTRY as CLOUD
from cdarec.cloud.resources import CloudResources
from cdarec.device.resources import REGISTRY as DEVICE
from cdarec.device.resources import DeviceResources, UserNotFoundError
from cdarec.settings import Settings

if TYPE_CHECKING:
    from cdarec.cloud.catalogue.store import Catalogue
    from cdarec.data import Dataset
    from cdarec.device.memory import DeviceMemory, DeviceRecord
    from cdarec.llm.factory import LLM
    from cdarec.prompts import Prompt
    from cdarec.seqrec.transition import SequenceScorer, TransitionModel

__all__ = ["Resources", "UserNotFoundError", "get_resources", "use_resources"]

log = logging.getLogger(__name__)


class Resources:
    """One configuration's cloud and device resources (``.cloud``, ``.device``).

    Everything a benchmark or a test configures goes through this constructor: fake or
    shared models, a fixed device memory per user (``records``, evaluation), a loaded
    data set, catalogue or prompt set, and the structured model (``sequence_model``: the
    device runs it; when it is a trained SASRec the cloud indexes its item vectors).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        device_llm: LLM | None = None,
        cloud_llm: LLM | None = None,
        records: dict[str, DeviceRecord] | None = None,
        dataset: Dataset | None = None,
        catalogue: Catalogue | None = None,
        prompts: dict[str, Prompt] | None = None,
        sequence_model: SequenceScorer | None = None,
        transition_model: TransitionModel | None = None,
        population: Dataset | None = None,
    ) -> None:
        self.settings = settings
        trained = sequence_model if hasattr(sequence_model, "item_vectors") else None
        self.device = DeviceResources(
            settings,
            llm=device_llm,
            records=records,
            dataset=dataset,
            prompts=prompts,
            sequence_model=sequence_model,
            transition_model=transition_model,
        )
        self.cloud = CloudResources(
            settings,
            llm=cloud_llm,
            dataset=dataset,
            prompts=prompts,
            catalogue=catalogue,
            trained_model=trained,  # type: ignore[arg-type]
        )
        if population is not None:
            self.cloud.population = population

    @classmethod
    def pair(cls, cloud: CloudResources, device: DeviceResources) -> Resources:
        """Two sides' existing resources (looked up by ``get_resources``)."""
        res = cls.__new__(cls)
        res.settings, res.cloud, res.device = device.settings, cloud, device
        return res

    def derive(
        self,
        settings: Settings,
        *,
        records: dict[str, DeviceRecord] | None = None,
        cloud_llm: LLM | None = None,
    ) -> Resources:
        """Resources for other settings that share this configuration's loaded models,
        data set, catalogue and prompts (evaluation runs one per method)."""
        return Resources(
            settings,
            device_llm=self.device.device_llm,
            cloud_llm=cloud_llm or self.cloud.cloud_llm,
            records=records,
            dataset=self.dataset,
            catalogue=self.cloud.catalogue,
            prompts=self.device.prompts,
            sequence_model=self.device.sequence_model,
            # Only if built (or given): a benchmark's, fitted on its training population.
            transition_model=self.device.__dict__.get("transition_model"),
            population=self.cloud.population,
        )

    # -- what the service, the CLI and the benchmarks read ------------------------------
    @property
    def dataset(self) -> Dataset:
        return self.device.dataset

    @property
    def memory(self) -> DeviceMemory:
        return self.device.memory

    def device_record(self, user_id: str | None) -> DeviceRecord:
        return self.device.device_record(user_id)

    def refresh_sequence_model(self) -> bool:
        """Both sides switch to the trained SASRec once it exists (True if they did)."""
        switched = self.device.refresh_sequence_model()
        if switched:
            self.cloud.refresh_trained_model()
        return switched

    def warm_up(self, prime: bool = True) -> threading.Thread:
        """Load both sides' models in the background: the device's first (small, and its
        judgement's system prompt evaluated), then the cloud's (the embedded server
        started; with ``prime``, the shared cloud system prompt evaluated too). One thread,
        one model at a time: on two cores, loading both at once only slows a turn that
        starts meanwhile. A turn that needs a model before it is ready waits for it."""

        stop = threading.Event()

        def run() -> None:
            for name, warm in (
                ("device", self.device.warm_up),
                ("cloud", lambda: self.cloud.warm_up(prime)),
            ):
                if stop.is_set():
                    return
                try:
                    warm()
                except Exception as err:  # the turn that needs the model reports it
                    log.warning("warming up the %s side failed: %s", name, err)

        thread = threading.Thread(target=run, name="warm-up", daemon=True)
        thread.start()
        # A process that ends while the warm-up still runs llama.cpp in process (a
        # one-message chat answered from facts) crashed at exit: the interpreter freed
        # the model under ggml's compute threads (SIGSEGV in ggml_cpu_extra_compute_
        # forward). At exit the warm-up skips what it has not begun and is waited for.
        # Before the atexit hooks (that stop the cloud's model server, which the warm-up
        # may be using): the hook concurrent.futures uses for the same reason.
        getattr(threading, "_register_atexit", atexit.register)(_finish_warm_up, thread, stop)
        return thread

    def sasrec_model(self, console: Any = None, *, retrain: bool = False) -> Any:
        """The trained SASRec (trained now by the cloud, with progress on ``console``, if
        not cached; the device loads the same file)."""
        return self.cloud.train(console, retrain=retrain)


def _finish_warm_up(thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join(timeout=300)


def get_resources(context: Settings | dict[str, Any] | None) -> Resources:
    """The resources the graph's nodes see for a run's context."""
    return Resources.pair(CLOUD.get(context), DEVICE.get(context))


def use_resources(res: Resources) -> Resources:
    """Install both sides' resources for their settings (tests with fake models,
    benchmarks): the graph's nodes then see these."""
    CLOUD.install(res.cloud)
    DEVICE.install(res.device)
    return res
