"""Shared fixtures.

Tests run in a temporary data home that links to the real downloaded models, data sets
and embedder (pulled by scripts/test.sh), so device memory, checkpoints and Chroma
collections written by tests never touch the user's own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cdarec.settings import Settings

REAL_HOME = Path(os.environ.get("CDAREC_HOME", Path.home() / ".cache" / "cdarec")).expanduser()
# Every test runs the fixed default placement unless it sets one: the adaptive placement
# follows what the machine measures (a busy CI core, a slow first call), and a test of
# something else must not change with it. tests/*/test_placement.py set it explicitly.
os.environ.setdefault("CDAREC_PLACEMENT", "default")
SMOL = "smollm2-135m"


def _link_assets(home: Path) -> None:
    for sub in ("datasets", "embedders"):
        src = REAL_HOME / sub
        if src.exists() and not (home / sub).exists():
            (home / sub).symlink_to(src, target_is_directory=True)
    # The model files one by one, into a folder of the test home's own: a model a test
    # trains (a tiny SASRec) lands there, never in the real models folder.
    models = home / "models"
    models.mkdir(exist_ok=True)
    if (REAL_HOME / "models").is_dir():
        for f in (REAL_HOME / "models").iterdir():
            if f.is_file() and not (models / f.name).exists():
                (models / f.name).symlink_to(f)


@pytest.fixture(scope="session", autouse=True)
def _embedder_in_real_home() -> None:
    """The embedder is small and every catalogue test needs it: fetch it once into the
    real home (scripts/test.sh pulls the models and data sets the same way)."""
    from cdarec.assets import ensure_asset

    ensure_asset(REAL_HOME, "embedders", "minilm-l6-int8")


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the session (its Chroma catalogue and model caches are reused)."""
    home = tmp_path_factory.mktemp("cdarec-home")
    _link_assets(home)
    return home


@pytest.fixture(scope="session")
def _catalogue_template(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """ML-100K's Chroma catalogue, built once per session (12 s of embedding here) and
    copied into every fresh home: tests then start from an indexed catalogue of their own
    instead of each embedding the same 1,682 items."""
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        return None
    from cdarec.cloud.resources import cloud_resources

    home = tmp_path_factory.mktemp("catalogue-template")
    _link_assets(home)
    cloud = cloud_resources(Settings(home=home, dataset="ml-100k"))
    assert cloud.catalogue.count() == cloud.dataset.n_items
    return home / "chroma"


@pytest.fixture()
def home(tmp_path: Path, _catalogue_template: Path | None) -> Path:
    """A fresh home per test (for device-memory tests that must start empty), with its
    own copy of the ML-100K catalogue."""
    _link_assets(tmp_path)
    if _catalogue_template is not None:
        shutil.copytree(_catalogue_template, tmp_path / "chroma")
    return tmp_path


def need_asset(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash scripts/test.sh` (it pulls the test assets)")


@pytest.fixture(scope="session")
def smol_settings(shared_home: Path) -> Settings:
    need_asset(REAL_HOME / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    need_asset(REAL_HOME / "datasets" / "ml-100k" / "ml-100k.inter")
    return Settings(
        home=shared_home,
        dataset="ml-100k",
        user_id="196",
        device_model=f"llamacpp:{SMOL}",
        cloud_model=f"embedded:{SMOL}",
        llm_threads=2,
        judge_top=4,
        show_top=4,
    )


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session, started on loopback from the system's
    binaries (scripts/test.sh installs Debian's package) and removed after."""
    from cdarec.service.engines import EngineError, start_postgres

    try:
        engine = start_postgres()
    except EngineError as err:
        pytest.fail(str(err))
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def chroma_server(_catalogue_template: Path | None, tmp_path_factory: pytest.TempPathFactory):
    """A real Chroma server (`chroma run`) for the session, on loopback, serving a copy of
    the ML-100K catalogue (tests index into it as into the embedded one)."""
    from cdarec.service.engines import EngineError, start_chroma

    path = tmp_path_factory.mktemp("chroma-server") / "chroma"
    if _catalogue_template is not None:
        shutil.copytree(_catalogue_template, path)
    try:
        engine = start_chroma(path)
    except EngineError as err:
        pytest.fail(str(err))
    yield engine
    engine.stop()


@pytest.fixture()
def postgres_url(postgres_server, request: pytest.FixtureRequest):
    """A fresh database on the session's server for one test (dropped after), as
    LangGraph's own checkpointer tests do."""
    import uuid

    from cdarec.graph.checkpoint import close_postgres
    from cdarec.service.engines import create_database, drop_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_server.url, name)
    yield url
    close_postgres(url)
    drop_database(postgres_server.url, name)


@pytest.fixture(params=["device-files", "servers"])
def backends(request: pytest.FixtureRequest, smol_settings: Settings) -> Settings:
    """Every pair of backends the chat runs on (issue 18): the device's SQLite file with the
    embedded Chroma, and a PostgreSQL server (a fresh database) with a Chroma server. The
    integration tests of a turn take this fixture and run on each: one test body, every
    backend, the pattern of LangGraph's own checkpointer tests."""
    if request.param == "device-files":
        return smol_settings
    return smol_settings.model_copy(
        update={
            "database_url": request.getfixturevalue("postgres_url"),
            "chroma_url": request.getfixturevalue("chroma_server").url,
        }
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def checkpointer(request: pytest.FixtureRequest, tmp_path: Path):
    """Every checkpointer backend the graph runs on, with the project's own serializer
    (its allow-list of state types): graph tests take this fixture and run on each."""
    from langgraph.checkpoint.memory import InMemorySaver

    from cdarec.graph.checkpoint import postgres_checkpointer, serializer, sqlite_checkpointer

    if request.param == "memory":
        yield InMemorySaver(serde=serializer())
    elif request.param == "sqlite":
        saver = sqlite_checkpointer(tmp_path / "checkpoints.sqlite")
        yield saver
        saver.conn.close()
    else:
        yield postgres_checkpointer(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session", autouse=True)
def _real_models_folder_untouched():
    """No test may leave a model it trained in the user's own models folder."""
    folder = REAL_HOME / "models"
    before = set(folder.iterdir()) if folder.is_dir() else set()
    yield
    after = set(folder.iterdir()) if folder.is_dir() else set()
    new = sorted(p.name for p in after - before if p.name.startswith("sasrec-"))
    assert not new, f"tests trained models into {folder}: {new}"
