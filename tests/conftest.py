"""Shared fixtures: real databases (a SQLite file on tmp_path, and PostgreSQL when one
is reachable), the shared sample payloads, and signing helpers.

PostgreSQL comes from KWAI_BRIDGE_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test). Locally, tests that need it skip with the
reason; under CI=true an unreachable server fails them instead.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

FIXTURES = Path(__file__).parent / "fixtures"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"
#: The key that seals stored secrets in every test, and in the processes tests start:
#: PostgreSQL has no key-file fallback. Tests of the fallback remove it from their env.
TEST_SECRET_KEYS = "a3dhaS1icmlkZ2UtdGVzdC1zZWFsaW5nLWtleS0zMmI="  # 32 bytes, url-safe base64
os.environ.setdefault("KWAI_BRIDGE_SECRET_KEYS", TEST_SECRET_KEYS)


def _pg_base_url() -> str:
    return os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", DEFAULT_PG)


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


_pg_checked: dict[str, str | None] = {}


def _pg_problem() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per session)."""
    url = _pg_base_url()
    if url not in _pg_checked:
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("select 1")
            _pg_checked[url] = None
        except Exception as exc:  # any failure means "not available here"
            _pg_checked[url] = f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}: {exc}"
    return _pg_checked[url]


# This test leaves its child process's output pipe open, which the garbage collector
# closes with a ResourceWarning: ignored for this test alone.
_UNCLOSED_PIPE = "tests/test_fake_kwai.py::test_runs_on_its_own"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid == _UNCLOSED_PIPE:
            item.add_marker(pytest.mark.filterwarnings("ignore:unclosed file <_io.TextIOWrapper:ResourceWarning"))


def leaked_secrets(outputs, secrets) -> list[str]:
    """Where each of `secrets` shows in `outputs` ((where, text) pairs), naming the secret
    by its last four characters only."""
    return [f"{where} printed the secret ending {secret[-4:]!r}"
            for where, text in outputs for secret in secrets if secret in text]


@pytest.fixture(autouse=True)
def _no_secret_in_output(request):
    """Fail a test whose output holds a secret the test helpers configure: what pytest
    captured (stdout, stderr, log records) and what every process it started printed.
    Set up first, so it looks after the other fixtures have stopped their processes."""
    from tests.fake_platforms import CONFIGURED as PLATFORM_CREDENTIALS
    from tests.serving import CONFIGURED_SECRETS, take_outputs

    take_outputs()  # a previous test's leftovers are that test's
    yield
    captured = [(f"the test ({name} {when})", text)
                for when, name, text in getattr(request.node, "_report_sections", [])]
    leaks = leaked_secrets([*captured, *take_outputs()], (*CONFIGURED_SECRETS, *PLATFORM_CREDENTIALS, TEST_SECRET_KEYS))
    if leaks:
        pytest.fail("secrets in the output: " + "; ".join(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def _dispose_engines():
    """Close the pooled connections of every engine a test used. Left to the garbage
    collector, an open PostgreSQL connection warns (ResourceWarning), and in whichever
    later test the collector happens to run."""
    engines: set[Engine] = set()

    def used(connection) -> None:
        engines.add(connection.engine)

    event.listen(Engine, "engine_connect", used)
    yield
    event.remove(Engine, "engine_connect", used)
    # and those whose only use was an autocommit statement (which keeps its connection)
    from kwai_bridge.db.engine import _autocommitted

    engines.update(_autocommitted.keys())
    for engine in engines:
        engine.dispose()


@pytest.fixture(autouse=True)
def _stop_workers():
    """End what a test started with tests.serving.start_worker, even when it failed."""
    yield
    from tests.serving import stop_workers

    stop_workers()


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards (skipped,
    or failed under CI, when there is no server)."""
    problem = _pg_problem()
    if problem:
        _unavailable(problem)
    import psycopg

    base = _pg_base_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'drop schema "{schema}" cascade')


@pytest.fixture
def postgres_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'kwai-bridge.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """The same test on both backends: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def kwai():
    """A fake Kwai Event API on loopback (tests/fake_kwai.py), checking every request."""
    from tests.fake_kwai import FakeKwai

    with FakeKwai() as fake:
        yield fake


#: The shops the platforms' documentation samples name (Shopify's is a placeholder).
SAMPLE_SHOPS = ("{shop}.myshopify.com", "jsmith.myshopify.com", "shoptest.myshopline.com", "example.myshopline.com")


def fixture_bytes(relpath: str, *, shop: str | None = None) -> bytes:
    """The exact bytes of a sample under tests/fixtures/ (copied verbatim from shared/samples).

    With `shop`, the shop the sample names (its documentation's example shop) is `shop`
    instead: the bridge refuses a body that names another shop than its shop header.
    """
    body = (FIXTURES / relpath).read_bytes()
    for example in SAMPLE_SHOPS if shop else ():
        body = body.replace(example.encode(), shop.encode())
    return body
