"""Every test marked ``labelstudio`` needs the real server (see ls_gate.py)."""

import pytest
from ls_gate import require_server


def pytest_runtest_setup(item):
    if item.get_closest_marker("labelstudio"):
        require_server()


@pytest.fixture()
def cli_env(tmp_path, monkeypatch):
    """A fresh SQLite project database and ACTIVEADV_HOME for CLI runs; no project chosen by the environment."""
    monkeypatch.setenv("ACTIVEADV_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("ACTIVEADV_HOME", str(tmp_path / "home"))  # no local server.json to fall back on
    monkeypatch.delenv("ACTIVEADV_PROJECT", raising=False)
    return tmp_path
