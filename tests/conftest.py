from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.statedb import checkpointer, journal
from tests.postgres import PostgresServer, postgres_server

# Prefect reads its settings when first imported (at collection), so its home for the whole
# session is set here: one temporary Prefect server serves every in-process flow test.
_PREFECT_HOME = tempfile.mkdtemp(prefix="taxi-mlops-test-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
for _key, _value in {
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}.items():
    os.environ[_key] = _value
for _key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_key, None)
# Two test workers share the 2 cores of CI with the servers their tests start. OpenMP's default,
# a thread per core in every process, oversubscribes them (the HGB fits of every training run,
# tree scoring in the services), and OpenMP threads spin while they wait for each other. One
# thread a process unless the caller says otherwise; scikit-learn's histogram boosting gives
# the same model whatever its thread count, so every figure the suite checks stays the same.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


#: the slowest test modules, slowest first (from `make test`'s durations). With ``--dist
#: loadfile`` each module is one unit of work, handed out in collection order: the longest first,
#: so the two workers finish together instead of one waiting on a long module started last.
#: ``--no-loadscope-reorder`` (Makefile) keeps that order: by default xdist hands out the modules
#: with the most tests first, which put these (a few tests each) last.
HEAVIEST = (
    "test_readme_commands.py",
    "test_stack.py",
    "test_level4_replay.py",
    "test_compare.py",
    "test_demo.py",
    "test_level2_kfp.py",
    "test_level3_service.py",
    "test_level2_flow.py",
    "test_infra_local.py",
    "test_level2_cli.py",
    "test_hostile_input.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heaviest modules first, then the other slow tests, then the rest.

    `make test` distributes by file (``--dist loadfile``): a module-scoped run checked by several
    tests (the demo, the calm replay, the stack) then happens once. (xdist's ``loadgroup`` would
    be finer, but with pytest 9.2 its group markers are ignored: it rewrites ``item._nodeid``,
    which pytest no longer reads.)"""

    def cost(item: pytest.Item) -> tuple[int, bool]:
        name = item.path.name
        rank = HEAVIEST.index(name) if name in HEAVIEST else len(HEAVIEST)
        return rank, item.get_closest_marker("slow") is None

    items.sort(key=cost)


REAL_DATA = ROOT.parent / "shared" / "data" / "tlc-yellow-sample"


#: Tool caches may appear in a fresh clone while tests run; nothing else may.
TOOL_CACHES = {
    ".ruff_cache",
    ".mypy_cache",
    ".pytest_cache",
    ".venv",
    "__pycache__",
    "taxi_mlops.egg-info",
}


@pytest.fixture(scope="session", autouse=True)
def nothing_written_to_the_checkout() -> object:
    """No test may leave state in the repository (e.g. MLflow's default ./mlruns)."""
    before = {p.name for p in ROOT.iterdir()}
    yield
    added = {p.name for p in ROOT.iterdir()} - before - TOOL_CACHES
    assert not added, f"tests wrote into the checkout: {sorted(added)}"


#: the project's background threads that work inside SQLite (with the GIL released)
_SQLITE_THREADS = (checkpointer.THREAD_NAME, journal.THREAD_NAME)


@pytest.fixture(autouse=True)
def no_sqlite_thread_outlives_its_test() -> Iterator[None]:
    """A test closes the logs and databases it wrote with: one that left their background
    threads running let a later test's fork() copy SQLite's locks without the thread that
    held them (shared/statedb/process_thread.py), and ten such threads were alive when four
    forked processes hung in the state tests."""
    before = set(threading.enumerate())
    yield
    left = [
        t for t in threading.enumerate() if t not in before and t.name.startswith(_SQLITE_THREADS)
    ]
    for thread in left:
        thread.join(timeout=2.0)  # a stopped thread ends at its next wake-up
    alive = [t.name for t in left if t.is_alive()]
    assert not alive, f"the test left SQLite threads running (close what started them): {alive}"


@pytest.fixture(scope="session")
def native_trees_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of native tree libraries for the whole run, every xdist worker included.

    A library is named by its model, code generator, compiler and flags, and built under a lock
    (shared/native_trees.py), so homes can share one: the same model, trained the same way in
    several tests' homes, is then compiled once rather than once a home (44 builds of 30
    models in a run, ~5 CPU-s each)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = root / "native-trees"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_trees_cache: Path
) -> Path:
    """Every test gets its own TAXI_MLOPS_HOME, so nothing touches ./.taxi-mlops; its native
    trees folder is the run's shared one."""
    home = tmp_path / "home"
    monkeypatch.setenv("TAXI_MLOPS_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("TAXI_MLOPS_") and name != "TAXI_MLOPS_HOME":
            monkeypatch.delenv(name)
    # Each test gets its own MLflow store under its home (runtime.configure sets this too).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    (home / "mlflow").mkdir(parents=True)
    (home / "native-trees").symlink_to(native_trees_cache, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real TLC samples beside the project; tests using them skip where they are absent."""
    if not REAL_DATA.is_dir() or not any(REAL_DATA.glob("yellow_tripdata_*.parquet")):
        pytest.skip(f"real TLC samples not found at {REAL_DATA} (see ../shared/data/README.md)")
    return REAL_DATA


def real_month(data_dir: Path, month: str) -> Path:
    path = data_dir / f"yellow_tripdata_{month}.parquet"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """This test process's private PostgreSQL server (skips where PostgreSQL is absent)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh state database on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    with server.database() as url:
        yield url
