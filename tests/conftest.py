"""Shared fixtures: a fresh, empty database of each kind for every test that asks for one.

``database_url`` is parametrised over SQLite (a file in ``tmp_path``) and
PostgreSQL (a uniquely named database created through the admin URL and dropped
afterwards, so parallel runs never see each other's rows).  PostgreSQL cases
are marked ``postgres`` and skipped, with the reason, only when the server
cannot be reached (and fail instead when ``ACTIVEADV_REQUIRE_POSTGRES`` is set,
as ``scripts/test.sh`` does when it started the server).  Override the server with ``ACTIVEADV_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get("ACTIVEADV_TEST_POSTGRES_URL",
                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_postgres_problem: list[str | None] = []


def _postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (checked once per session), or None."""
    if not _postgres_problem:
        try:
            import sqlalchemy as sa

            engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _postgres_problem.append(None)
        except Exception as exc:  # driver missing, server down, auth...
            _postgres_problem.append(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {str(exc).splitlines()[0]}")
    return _postgres_problem[0]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a brand-new empty PostgreSQL database, dropped after the test."""
    problem = _postgres_unreachable()
    if problem:
        if os.environ.get("ACTIVEADV_REQUIRE_POSTGRES"):  # CI (scripts/test.sh): must run, never skip
            pytest.fail(f"{problem} (ACTIVEADV_REQUIRE_POSTGRES is set)")
        pytest.skip(problem)
    import sqlalchemy as sa

    name = f"activeadv_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'activeadv.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> str:
    """An empty database URL: one SQLite file, one PostgreSQL database."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(database_url):
    """A ``Store`` on a fresh database already upgraded to the head revision."""
    from activeadv.store import Store

    s = Store(database_url)
    s.upgrade()
    yield s
    s.close()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks: one torch thread is faster, and two on a shared 2-core machine are 5-10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
