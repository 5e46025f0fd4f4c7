"""Every test marked ``labelstudio`` needs the real server (see ls_gate.py)."""

from ls_gate import require_server


def pytest_runtest_setup(item):
    if item.get_closest_marker("labelstudio"):
        require_server()
